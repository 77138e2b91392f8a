# Test data for the ks-extract and ks-batch suites: WAV files and example
# streams made with Debian's python3 (wave, numpy, msgpack), and a Python
# prelude that reads w2v streams into numpy arrays.

# Python code run after this prelude can call:
#   read_stream(path) -> (header, [records]); arr(tensor) -> numpy array
#   hf_normalize(x)   -> Wav2Vec2FeatureExtractor's do_normalize, numpy float32
PYLIB='
import sys, struct, wave, msgpack, numpy as np
DT = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "i32": np.int32, "u8": np.uint8}
def read_stream(path):
    with open(path, "rb") as f:
        maps = list(msgpack.Unpacker(f, raw=False))
    return maps[0], maps[1:]
def arr(t):
    return np.frombuffer(t["data"], dtype=DT[t["dtype"]]).reshape(t["shape"])
def hf_normalize(x):
    x = np.asarray(x, dtype=np.float32)
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)
def wav_samples(path):
    w = wave.open(path, "rb")
    x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    return x.reshape(-1, w.getnchannels()).mean(axis=1, dtype=np.float32)
'

# mkwav PATH RATE SAMPLES [CHANNELS [KIND [FREQ]]]: 16-bit PCM WAV.
# KIND: sine (FREQ Hz, default 440), noise (seeded by the name), const.
mkwav() {
    "$PY" -c "$PYLIB"'
path, rate, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
kind = sys.argv[5] if len(sys.argv) > 5 else "sine"
freq = float(sys.argv[6]) if len(sys.argv) > 6 else 440.0
t = np.arange(n) / rate
if kind == "sine": x = 0.5 * np.sin(2 * np.pi * freq * t)
elif kind == "noise": x = np.random.default_rng(sum(map(ord, path))).uniform(-0.3, 0.3, n) + 0.05
else: x = np.full(n, 0.25)
frames = np.repeat((x * 32767).astype("<i2")[:, None], ch, axis=1)
w = wave.open(path, "wb"); w.setnchannels(ch); w.setsampwidth(2); w.setframerate(rate)
w.writeframes(frames.tobytes()); w.close()
' "$@"
}

# mkwav_float PATH SAMPLES: 32-bit float WAV (format 3) of seeded noise with
# a DC offset, unquantised, so that float32 sums round often.
mkwav_float() {
    "$PY" -c "$PYLIB"'
path, n = sys.argv[1], int(sys.argv[2])
x = (np.random.default_rng(n).uniform(-0.4, 0.4, n) + 0.03).astype("<f4").tobytes()
fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
with open(path, "wb") as f:
    f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(x)) + b"WAVE")
    f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(x)) + x)
' "$@"
}

# mkexamples PATH SPEC...: an examples stream.  SPEC is LENGTH:LABEL (LENGTH
# below 100000); example i is keyed k<i> and holds i * 100000 + j + 1 at
# sample j, exact in float32 for i < 160, so a value tells which example and
# which sample it came from.  Labels: a b c d.
mkexamples() {
    "$PY" -c "$PYLIB"'
out = open(sys.argv[1], "wb")
out.write(msgpack.packb({"format": "w2v-stream", "version": 1, "type": "examples",
                         "sample_rate": 16000, "labels": ["a", "b", "c", "d"]}))
for i, spec in enumerate(sys.argv[2:]):
    n, label = map(int, spec.split(":"))
    x = (i * 100000 + np.arange(n) + 1).astype("<f4")
    out.write(msgpack.packb({"key": "k%d" % i, "label": label, "input_values":
        {"dtype": "f32", "shape": [n], "data": x.tobytes()}}, use_bin_type=True))
' "$@"
}

#!/usr/bin/env bats
# w2v-predict: audio files, streams and windows of recordings to JSON lines.

load helpers
load stream_helpers
load model_helpers

# Clips of several lengths and rates (c.wav: 8 kHz stereo, resampled to
# 12000 samples), a manifest keyed by file name, labels a..d.
mkcorpus() {
    mkwav a.wav 16000 16000 1 sine 440
    mkwav b.wav 16000 16000 1 noise
    mkwav c.wav 8000 6000 2 sine 300
    mkwav d.wav 16000 9000 1 noise
    mkwav e.wav 16000 16000 1 sine 1000
    printf '%s\t%s\t%s\n' a.wav a.wav a b.wav b.wav b c.wav c.wav c d.wav d.wav d e.wav e.wav > m.tsv
}

# same_logits A.jsonl B.jsonl: the same keys (unless NOKEYS) and labels, logits within 1e-5.
same_logits() {
    "$PY" -c "$PYJSON"'
a, b = jsonl(sys.argv[1]), jsonl(sys.argv[2])
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
for x, y in zip(a, b):
    if len(sys.argv) < 4: assert x["key"] == y["key"], (x["key"], y["key"])
    d = np.abs(np.array(x["logits"]) - np.array(y["logits"])).max()
    assert d < 1e-5, (x["key"], d)
    assert x["label"] == y["label"], (x, y)
' "$@"
}

@test "w2v-predict: --help, --version, usage errors" {
    run w2v-predict --help
    assert_success
    assert_output --partial "Usage: w2v-predict -m MODEL"
    assert_output --partial "--window SECONDS"
    run w2v-predict --version
    assert_success
    assert_output --partial "w2vtools"
    run w2v-predict a.wav
    assert_failure 2
    assert_output --partial "no model"
    run w2v-predict -m model --hop 1 a.wav
    assert_failure 2
    assert_output --partial "--hop needs --window"
    run w2v-predict -m model -b 0 a.wav
    assert_failure 2
    mkmodel model a,b
    run w2v-predict -m model --window 0.001 a.wav
    assert_failure 2
    assert_output --partial "the model needs at least 40"
    run w2v-predict -m nowhere a.wav
    assert_failure 1
    assert_output --partial "nowhere"
}

@test "w2v-predict: audio files give the logits of their ks-extract stream; true labels from the stream" {
    mkcorpus
    mkmodel model a,b,c,d 3
    w2v-predict -m model --logits a.wav b.wav c.wav d.wav e.wav > files.jsonl
    ks-extract --quiet -o ex.stream m.tsv
    w2v-predict -m model --logits ex.stream > stream.jsonl
    same_logits files.jsonl stream.jsonl
    "$PY" -c "$PYJSON"'
f, s = jsonl("files.jsonl"), jsonl("stream.jsonl")
assert [x["key"] for x in f] == ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav"]
assert all("true_label" not in x for x in f)
assert [x.get("true_label") for x in s] == ["a", "b", "c", "d", None], [x.get("true_label") for x in s]
'
}

@test "w2v-predict: batch size and batches streams do not change the logits" {
    mkcorpus
    mkmodel plain a,b,c,d 5
    mkmodel_masked masked a,b,c,d 5
    grep -q '"return_attention_mask": true' masked/preprocessor_config.json
    files="d.wav a.wav b.wav c.wav e.wav a.wav d.wav d.wav"
    for m in plain masked; do
        w2v-predict -m $m --logits $files > $m-b8.jsonl
        w2v-predict -m $m -b 1 --logits $files > $m-b1.jsonl
        w2v-predict -m $m -b 3 --threads 1 --logits $files > $m-b3.jsonl
        same_logits $m-b8.jsonl $m-b1.jsonl
        same_logits $m-b3.jsonl $m-b1.jsonl
    done
    # a batches stream is split into its examples: its padding is not classified
    ks-extract --quiet -o ex.stream m.tsv
    ks-batch --quiet -b 4 ex.stream > batches.stream
    w2v-predict -m plain --logits ex.stream > ex.jsonl
    w2v-predict -m plain --logits batches.stream > batches.jsonl
    same_logits ex.jsonl batches.jsonl
}

@test "w2v-predict: a model without an attention mask is never given padded examples" {
    # padding is signal to such a model: the same clip padded gives another answer
    mkcorpus
    mkmodel model a,b,c,d 5
    "$PY" -c "$PYLIB"'
import wave
x = (wav_samples("d.wav") * 32768).astype("<i2")
w = wave.open("d-padded.wav", "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(np.concatenate([x, np.zeros(16000 - len(x), "<i2")]).tobytes()); w.close()
'
    w2v-predict -m model --logits d.wav > alone.jsonl
    w2v-predict -m model --logits d-padded.wav > padded.jsonl
    w2v-predict -m model --logits a.wav d.wav > mixed.jsonl
    run same_logits alone.jsonl padded.jsonl nokeys
    assert_failure
    "$PY" -c "$PYJSON"'
assert jsonl("mixed.jsonl")[1]["logits"] == jsonl("alone.jsonl")[0]["logits"]
'
}

@test "w2v-predict: label, score, --top-k and --logits agree" {
    mkcorpus
    mkmodel model a,b,c,d 7
    scale_head model 50
    w2v-predict -m model -k 3 --logits a.wav b.wav c.wav d.wav e.wav > out.jsonl
    w2v-predict -m model -k 9 a.wav > all.jsonl
    "$PY" -c "$PYJSON"'
names = ["a", "b", "c", "d"]
for r in jsonl("out.jsonl"):
    p = softmax(r["logits"])
    assert r["label"] == names[int(np.argmax(p))], r
    assert abs(r["score"] - p.max()) < 1e-7, r
    k = r["top_k"]
    assert len(k) == 3 and k[0]["label"] == r["label"], r
    assert [x["label"] for x in k] == [names[i] for i in np.argsort(-p, kind="stable")[:3]], r
    assert all(abs(x["score"] - p[names.index(x["label"])]) < 1e-7 for x in k), r
r = jsonl("all.jsonl")[0]
assert sorted(x["label"] for x in r["top_k"]) == names and "logits" not in r, r
assert abs(sum(x["score"] for x in r["top_k"]) - 1) < 1e-6
'
}

@test "w2v-predict: --window and --hop scan a long recording window by window" {
    mkwav long.wav 16000 52800 1 noise
    mkmodel model a,b,c,d 9
    w2v-predict -m model --logits --window 1 --hop 0.25 long.wav > scan.jsonl
    # the same windows cut out as files of their own
    "$PY" -c "$PYLIB"'
import wave
x = (wav_samples("long.wav") * 32768).astype("<i2")
for k in range(10):
    w = wave.open("w%d.wav" % k, "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    w.writeframes(x[4000 * k:4000 * k + 16000].tobytes()); w.close()
'
    w2v-predict -m model --logits w0.wav w1.wav w2.wav w3.wav w4.wav w5.wav w6.wav w7.wav w8.wav w9.wav > cut.jsonl
    same_logits scan.jsonl cut.jsonl nokeys
    "$PY" -c "$PYJSON"'
s = jsonl("scan.jsonl")
assert len(s) == 10, len(s)   # starts 0 .. 2.25; a window from 2.5 would end past 3.3 s
assert [r["start"] for r in s] == [0.25 * k for k in range(10)], s
assert [r["end"] for r in s] == [0.25 * k + 1 for k in range(10)], s
assert all(r["key"] == "long.wav" for r in s)
'
    # a hop longer than the window skips; a recording shorter than a window is one window
    w2v-predict -m model --window 1 --hop 1.5 long.wav > skip.jsonl
    w2v-predict -m model --window 5 long.wav > whole.jsonl
    "$PY" -c "$PYJSON"'
assert [(r["start"], r["end"]) for r in jsonl("skip.jsonl")] == [(0, 1), (1.5, 2.5)]
assert [(r["start"], r["end"]) for r in jsonl("whole.jsonl")] == [(0, 3.3)]
'
}

@test "w2v-predict: audio and streams on stdin, from a file or a pipe" {
    mkcorpus
    mkmodel model a,b,c,d 4
    w2v-predict -m model --logits c.wav > file.jsonl
    w2v-predict -m model --logits - < c.wav > redirected.jsonl
    cat c.wav | w2v-predict -m model --logits > piped.jsonl
    same_logits file.jsonl redirected.jsonl nokeys
    same_logits file.jsonl piped.jsonl nokeys
    run "$PY" -c "$PYJSON"'print(jsonl("piped.jsonl")[0]["key"])'
    assert_output "stdin"
    ks-extract --quiet -o ex.stream m.tsv
    w2v-predict -m model --logits a.wav ex.stream e.wav > mixed.jsonl
    cat ex.stream | w2v-predict -m model --logits a.wav - e.wav > mixed-piped.jsonl
    same_logits mixed.jsonl mixed-piped.jsonl
    run "$PY" -c "$PYJSON"'print(" ".join(r["key"] for r in jsonl("mixed.jsonl")))'
    assert_output "a.wav a.wav b.wav c.wav d.wav e.wav e.wav"
}

@test "w2v-predict: an endless pipe gets a line per window as soon as the window is complete" {
    mkmodel model a,b,c,d 2
    # Writes one window (then half windows) and waits for its line before
    # writing more: a program that waited for more input or held its output
    # back would hang here until the alarm.
    "$PY" -c '
import signal, struct, subprocess, numpy as np, json
signal.alarm(120)
p = subprocess.Popen(["w2v-predict", "-m", "model", "--window", "1", "--hop", "0.5", "-"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
# a WAV header as arecord writes it when the length is unknown
p.stdin.write(b"RIFF" + struct.pack("<I", 0x7fffffff) + b"WAVE" + b"fmt " +
              struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", 0x7fffffff))
rng = np.random.default_rng(1)
def send(n):
    p.stdin.write((rng.uniform(-0.3, 0.3, n) * 32767).astype("<i2").tobytes()); p.stdin.flush()
send(16000)
spans = [json.loads(p.stdout.readline())["start"]]
for i in range(3):
    send(8000)
    spans.append(json.loads(p.stdout.readline())["start"])
p.stdin.close()
assert p.stdout.read() == b"" and p.wait() == 0
assert spans == [0, 0.5, 1, 1.5], spans
'
}

@test "w2v-predict: mismatched sample rates and labels, short examples, bad inputs are clear errors" {
    mkcorpus
    mkmodel model a,b,c,d 1
    ks-extract --quiet --rate 8000 -o slow.stream m.tsv
    run w2v-predict -m model slow.stream
    assert_failure 1
    assert_output --partial "w2v-predict: slow.stream: the stream's sample rate is 8000 Hz, the model's 16000 Hz"
    printf 'x\ta.wav\tyes\ny\tb.wav\tmaybe\n' > other.tsv
    ks-extract --quiet -o other.stream other.tsv
    run w2v-predict -m model other.stream
    assert_failure 1
    assert_output --partial "w2v-predict: other.stream: the stream's label 'maybe' is not one of the model's labels (a,b,c,d)"
    # labels in another order, or fewer, are mapped by name
    ks-extract --quiet --labels d,b,a,c -o reordered.stream m.tsv
    run w2v-predict -m model reordered.stream
    assert_success
    assert_line --index 0 --partial '"true_label":"a"'
    mkexamples short.stream 16000:0 39:1
    run w2v-predict -m model short.stream
    assert_failure 1
    assert_output --partial "w2v-predict: short.stream: k1: 39 samples (2.4 ms): the model needs at least 40"
    mkwav tiny.wav 16000 30
    run w2v-predict -m model -o out.jsonl a.wav tiny.wav
    assert_failure 1
    assert_output --partial "w2v-predict: tiny.wav: 30 samples"
    run ls
    refute_output --partial "out.jsonl"
    printf 'hello' > text.txt
    run w2v-predict -m model text.txt
    assert_failure 1
    assert_output --partial "text.txt: not a readable audio file"
    : > empty.wav
    run w2v-predict -m model empty.wav
    assert_failure 1
    assert_output --partial "empty.wav: empty input"
    run w2v-predict -m model missing.wav
    assert_failure 1
    assert_output --partial "missing.wav: cannot open"
    scale_head model nan
    run w2v-predict -m model a.wav
    assert_failure 1
    assert_output --partial "w2v-predict: a.wav: the model's logits are not finite"
}

@test "w2v-predict: -o writes the file whole; the golden HF model reads KS labels" {
    [ -d "$SHARED/golden/base-tiny" ] || skip "no golden data in $SHARED/golden"
    mkwav a.wav 16000 16000 1 sine 440
    run w2v-predict -m "$SHARED/golden/base-tiny" -o out.jsonl -k 12 a.wav
    assert_success
    "$PY" -c "$PYJSON"'
r = jsonl("out.jsonl")[0]
assert sorted(x["label"] for x in r["top_k"]) == sorted("yes no up down left right on off stop go _silence_ _unknown_".split())
'
}

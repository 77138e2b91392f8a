# Models for the w2v-predict and w2v-eval suites: tiny randomly initialised
# classifiers, made by tests/bats/make_model.c (a stand-in for w2v-init)
# built once per suite against build/libw2v.a.

build_make_model() {
    cc -I"$TOP/include" -D_GNU_SOURCE -o "$BATS_FILE_TMPDIR/make_model" "$TOP/tests/bats/make_model.c" \
        "$TOP/build/libw2v.a" $(pkg-config --libs jansson openblas msgpack sndfile samplerate) -fopenmp -lm
}

# mkmodel DIR LABELS [SEED [PRESET [ATTENTION_MASK]]]: LABELS like a,b,c.
mkmodel() {
    "$BATS_FILE_TMPDIR/make_model" "$1" "${4:-tiny}" "$2" "${3:-1}" "${5:-0}"
}

# scale_head DIR FACTOR: multiplies the projector and classifier weights by
# FACTOR.  50 makes a random model's answers depend on its input (a fresh
# one's logits are almost equal, and almost always pick one label); nan
# breaks it.
scale_head() {
    "$PY" -c '
import json, struct, sys, numpy as np
p = sys.argv[1] + "/model.safetensors"
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
for k in ["projector.weight", "classifier.weight"]:
    s, e = (8 + n + o for o in h[k]["data_offsets"])
    b[s:e] = (np.frombuffer(bytes(b[s:e]), dtype="<f4") * np.float32(sys.argv[2])).astype("<f4").tobytes()
open(p, "wb").write(b)
' "$1" "$2"
}

# Python prelude for JSON-lines outputs: jsonl(path) -> [dict].
PYJSON='
import json, sys, numpy as np
def jsonl(path):
    return [json.loads(l) for l in open(path)]
def softmax(z):
    z = np.asarray(z, dtype=np.float64); e = np.exp(z - z.max()); return e / e.sum()
'

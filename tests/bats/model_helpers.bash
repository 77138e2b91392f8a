# Models for the w2v-predict and w2v-eval suites: tiny randomly initialised
# classifiers.

# mkmodel DIR LABELS [SEED [w2v-init options...]]: LABELS like a,b,c.
mkmodel() {
    local dir=$1 labels=$2 seed=${3:-1}
    shift $(($# < 3 ? $# : 3))
    w2v-init --quiet --preset tiny --labels "$labels" --seed "$seed" -o "$dir" "$@"
}

# mkmodel_masked DIR LABELS SEED: one that takes an attention mask, with a
# LayerNorm feature encoder (as wav2vec2-large-lv60), where padding with a
# mask leaves the answer as it is.
mkmodel_masked() {
    mkmodel "$@" --set 'feat_extract_norm="layer"' --set do_stable_layer_norm=true --set conv_bias=true \
        --attention-mask yes
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

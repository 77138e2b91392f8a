#!/usr/bin/env bats
# The experiment pipelines: every stage a file target, variables override,
# a rerun does nothing.  Run small (a 6-speaker corpus, a shrunk model).

load helpers

setup_file() {
    export PATH="${W2V_BIN:-$BATS_TEST_DIRNAME/../../build/bin}:$PATH"
}

MINI='--filterbank --set conv_dim=[16,4] --set hidden_size=32 --set num_hidden_layers=1 --set num_attention_heads=2 --set intermediate_size=64 --set num_conv_pos_embeddings=8 --set num_conv_pos_embedding_groups=4 --set classifier_proj_size=8'

@test "demo.mk runs end to end on a small corpus and learns, then has nothing left to do" {
    # the demo's own model and augmentation, on 60 speakers of one clip a
    # word, 10 epochs (about 30 s): 33% on the 72 test clips here (28% to
    # 39% with SEED=1 to 5), where chance is 8.3%
    run make -s -f "$TOP/pipelines/demo.mk" OUT="$T/demo" SPEAKERS=60 SYNTH_OPTS="--per-word 1 --noise-seconds 2" \
        EPOCHS=10 BATCH_SIZE=16 MAX_LENGTH=8000 SLICE_LONG=0.5 THREADS=2 -j2
    assert_success
    for f in eval.json eval.txt predictions.jsonl training.png confusion.png model/config.json \
             model/model.safetensors model/preprocessor_config.json run/metrics.jsonl data/test.tsv; do
        [ -s "$T/demo/$f" ] || { echo "missing $f"; false; }
    done
    run "$PY" -c '
import json, sys
e = json.load(open(sys.argv[1])); n = sum(1 for _ in open(sys.argv[2])) - 1
# twice chance: 12 of 72 right by guessing has a probability near 1%
assert 2 / 12 <= e["accuracy"] <= 1 and e["examples"] == n, (e["accuracy"], e["examples"], n)
' "$T/demo/eval.json" "$T/demo/data/test.tsv"
    assert_success
    # nothing is out of date
    run make -q -f "$TOP/pipelines/demo.mk" OUT="$T/demo" SPEAKERS=60 SYNTH_OPTS="--per-word 1 --noise-seconds 2" \
        EPOCHS=10 BATCH_SIZE=16 MAX_LENGTH=8000 SLICE_LONG=0.5 THREADS=2
    assert_success
    # a changed model is evaluated again, and only that
    touch "$T/demo/model/model.safetensors"
    run make -n -f "$TOP/pipelines/demo.mk" OUT="$T/demo" SPEAKERS=60 EPOCHS=10
    assert_success
    assert_output --partial "w2v-eval"
    refute_output --partial "w2v-train"
    refute_output --partial "ks-synth"

    # robustness.mk: every condition made and scored, a table row of them
    local R=(RUNS="$T/demo" OUT="$T/robust" BABBLE_CLIPS=100 THREADS=2 PYTHON="$PY"
             VOICES_OPTS="SPEAKERS=12 SYNTH_SEED=7 SYNTH_OPTS='--per-word 1 --noise-seconds 2 --voices fr,es'")
    run make -s -f "$TOP/pipelines/robustness.mk" "${R[@]}" -j2
    assert_success
    run "$PY" -c '
import json, sys, wave
d, r = sys.argv[1], sys.argv[2]
n = {c: json.load(open(f"{d}/robust/{c}.json"))["examples"] for c in
     ("test", "voices", "babble-0-10", "babble-10-20", "rooms", "slower", "faster")}
voices = sum(1 for _ in open(f"{r}/voices/data/test.tsv")) - 1
assert voices > 0 and n.pop("voices") == voices and set(n.values()) == {72}, n
w = wave.open(f"{r}/babble/babble.wav"); assert w.getnframes() == 60 * 16000 and w.getframerate() == 16000
rows = open(f"{r}/table.md").read().splitlines()
assert rows[0].startswith("| run | test | voices | babble-0-10 |") and len(rows) == 3, rows
cells = rows[2].split("|")[2:-1]
assert len(cells) == 7 and all(0 <= float(c.strip().rstrip("%")) <= 100 for c in cells), cells
# a changed set is a changed test split
assert open(f"{r}/babble-0-10.examples", "rb").read() != open(f"{d}/test.examples", "rb").read()
' "$T/demo" "$T/robust"
    assert_success
    run make -q -f "$TOP/pipelines/robustness.mk" "${R[@]}"
    assert_success
}

@test "superb-ks.mk takes any Speech-Commands-shaped archive pair and a model directory" {
    ks-synth --quiet --speakers 4 --per-word 1 --noise-seconds 2 corpus > /dev/null
    # a stand-in for a pretrained encoder: no labels of its own (LABEL_0, LABEL_1), no head
    w2v-init --quiet --preset small $MINI -o pretrained
    "$PY" -c '
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
keep = {k: v for k, v in h.items() if k == "__metadata__" or not k.startswith(("projector.", "classifier."))}
data, off = b"", 0
for k, v in keep.items():
    if k == "__metadata__": continue
    chunk = b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]
    v["data_offsets"] = [off, off + len(chunk)]; off += len(chunk); data += chunk
hj = json.dumps(keep).encode(); hj += b" " * (-len(hj) % 8)
open(p, "wb").write(struct.pack("<Q", len(hj)) + hj + data)' pretrained/model.safetensors
    run make -s -f "$TOP/pipelines/superb-ks.mk" OUT="$T/ks" MODEL="$T/pretrained" \
        DATA_URL="$T/corpus/speech_commands_v0.01.tar.gz" DATA_SHA256= \
        TEST_URL="$T/corpus/speech_commands_test_set_v0.01.tar.gz" \
        EPOCHS=1 BATCH_SIZE=8 GRAD_ACCUM=2 MAX_LENGTH=8000 SLICE_LONG=0.5 THREADS=2 -j2
    assert_success
    [ -s "$T/ks/eval.json" ] && [ -s "$T/ks/model/model.safetensors" ] && [ -s "$T/ks/confusion.png" ]
    # the conv encoder was frozen, as the guide's run
    run "$PY" -c '
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
conv = [k for k in a if "feature_extractor.conv_layers" in k]
assert conv and all(a[k] == b[k] for k in conv)
' "$T/pretrained/model.safetensors" "$T/ks/model/model.safetensors"
    assert_success
    run make -s -f "$TOP/pipelines/superb-ks.mk" OUT="$T/ks2" MODEL="$T/nothing-here" \
        DATA_URL="$T/corpus/speech_commands_v0.01.tar.gz" DATA_SHA256= \
        TEST_URL="$T/corpus/speech_commands_test_set_v0.01.tar.gz" MAX_LENGTH=8000 SLICE_LONG=0.5
    assert_failure
    assert_output --partial "no model at MODEL="
}

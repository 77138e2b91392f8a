#!/usr/bin/env bats
# w2v-train: Trainer's loop over a batches stream, checkpoints, resumption.

load helpers
load train_helpers

setup_file() {
    load train_helpers
    train_setup_file
}

setup() {
    train_setup || return 1
}

@test "a run writes checkpoints each epoch, metrics, and the final model; the loss falls" {
    mini_model m0 --labels-from "$DATA/train.ex"
    run w2v-train -m m0 -o run --learning-rate 2e-3 --logging-steps 5 --eval "$DATA/valid.b" "$DATA/train.b"
    assert_success
    assert_output --partial "epoch 3: eval loss"
    n=$("$PY" -c 'import json; print(json.load(open("run/trainer_state.json"))["global_step"])')
    bpe=$(ks-cat "$DATA/train.b" | head -1 | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["batches_per_epoch"])')
    [ "$n" -eq $((3 * bpe)) ]
    for e in 1 2 3; do
        for f in config.json model.safetensors preprocessor_config.json optimizer.safetensors trainer_state.json; do
            [ -s "run/checkpoint-$((e * bpe))/$f" ]
        done
    done
    for f in config.json model.safetensors preprocessor_config.json metrics.jsonl; do [ -s "run/$f" ]; done
    run "$PY" -c '
import json
rows = [json.loads(l) for l in open("run/metrics.jsonl")]
train = [r for r in rows if "loss" in r]; ev = [r for r in rows if "eval_accuracy" in r]
assert len(ev) == 3, ev
assert all(k in train[0] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm", "clips_per_s"))
first, last = train[0]["loss"], sum(r["loss"] for r in train[-3:]) / 3
print(first, last); assert last < first - 0.1
lrs = [r["learning_rate"] for r in train]; assert lrs == sorted(lrs, reverse=True)   # linear decay
'
    assert_success
    # the final model predicts something; the stream labels are the model labels
    cmp run/model.safetensors "run/checkpoint-$((3 * bpe))/model.safetensors"
}

@test "resumed from a checkpoint of a run, the run ends the same, bit for bit" {
    mini_model m0 --labels-from "$DATA/train.ex"
    w2v-train --quiet -m m0 -o full --learning-rate 1e-3 --max-steps 16 --save-steps 4 --seed 7 --threads 2 "$DATA/train.b"
    # a run cut at step 8 is that run's checkpoint-8: resume from a copy of it
    mkdir cut
    cp -r full/checkpoint-8 cut/
    cp full/metrics.jsonl cut/
    w2v-train --quiet --resume cut/checkpoint-8 -o cut --learning-rate 1e-3 --max-steps 16 --save-steps 4 --seed 7 \
        --threads 2 "$DATA/train.b"
    cmp full/model.safetensors cut/model.safetensors
    cmp full/checkpoint-16/optimizer.safetensors cut/checkpoint-16/optimizer.safetensors
    # the logs agree too, but for the measured speed
    diff <(sed 's/,"clips_per_s":[^}]*//' full/metrics.jsonl) <(sed 's/,"clips_per_s":[^}]*//' cut/metrics.jsonl)
}

@test "SIGINT while waiting on a slow producer: a checkpoint, the resume line, and the run ends as one unbroken" {
    mini_model m0 --labels-from "$DATA/train.ex"
    w2v-train --quiet -m m0 -o full --learning-rate 1e-3 --max-steps 8 --seed 7 --threads 2 "$DATA/train.b"
    # the header and five batches, then a producer that stalls: the signal
    # arrives while w2v-train waits for the sixth batch, after step 5
    "$PY" -c '
import msgpack, sys
maps = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
sys.stdout.buffer.write(b"".join(msgpack.packb(m) for m in maps[:6]))' "$DATA/train.b" > first5.b
    mkfifo feed
    w2v-train --quiet -m m0 -o cut --learning-rate 1e-3 --max-steps 8 --seed 7 --threads 2 --save-steps 4 - \
        < feed 2> cut.err &
    pid=$!
    { cat first5.b; exec sleep 60; } > feed 3>&- &
    feeder=$!
    for i in $(seq 1200); do [ -d cut/checkpoint-4 ] && break; sleep 0.05; done
    sleep 1 # step 5 takes milliseconds; then w2v-train waits for the sixth batch
    kill -INT $pid
    rc=0
    wait $pid || rc=$?
    kill $feeder 2> /dev/null || true
    [ "$rc" -eq 1 ]
    run cat cut.err
    assert_output --regexp "interrupted by signal 2 at step [45]; continue with: w2v-train --resume cut/checkpoint-[45] -o cut"
    # (step 5 unless a busy machine delayed it past the signal)
    ckpt=$(sed -n 's/.*--resume \(cut\/checkpoint-[0-9]*\) .*/\1/p' cut.err)
    [ -s "$ckpt/model.safetensors" ] && [ ! -e cut/model.safetensors ]
    w2v-train --quiet --resume "$ckpt" -o cut --learning-rate 1e-3 --max-steps 8 --seed 7 --threads 2 "$DATA/train.b"
    cmp full/model.safetensors cut/model.safetensors
}

@test "--resume with other options, or a bad --eval, is refused before the first step" {
    mini_model m0 --labels-from "$DATA/train.ex"
    w2v-train --quiet -m m0 -o run --learning-rate 1e-3 --max-steps 4 --save-steps 2 --seed 7 "$DATA/train.b"
    run w2v-train --quiet --resume run/checkpoint-2 -o run --learning-rate 2e-3 --max-steps 4 --seed 7 "$DATA/train.b"
    assert_failure
    assert_output --partial "run/checkpoint-2/trainer_state.json: the checkpoint's run had other options (learning_rate was 0.001, now 0.002)"
    run w2v-train --quiet --resume run/checkpoint-2 -o run --learning-rate 1e-3 --max-steps 4 --seed 8 "$DATA/train.b"
    assert_failure
    assert_output --partial "(seed was 7, now 8)"
    run w2v-train --quiet --resume run/checkpoint-2 -o run --learning-rate 1e-3 --max-steps 4 --seed 7 \
        --gradient-accumulation-steps 2 "$DATA/train.b"
    assert_failure
    assert_output --partial "(gradient_accumulation_steps was 1, now 2)"
    # the eval stream is checked at the start, not at the first epoch end
    run w2v-train --quiet -m m0 -o run2 --eval "$DATA/valid.ex" "$DATA/train.b"
    assert_failure
    assert_output --partial "--eval: $DATA/valid.ex: not a batches stream"
    [ ! -e run2/checkpoint-1 ] && [ ! -e run2/metrics.jsonl ]
    run w2v-train --quiet -m m0 -o run3 --eval absent.b "$DATA/train.b"
    assert_failure
    assert_output --partial "absent.b"
    # nor over its own starting model, nor into a directory that is not a run
    run w2v-train --quiet -m m0 -o m0 --max-steps 1 "$DATA/train.b"
    assert_failure
    assert_output --partial "m0: is the model to start from"
    mkdir other && touch other/thesis.tex
    run w2v-train --quiet -m m0 -o other --max-steps 1 "$DATA/train.b"
    assert_failure
    assert_output --partial "other: holds 'thesis.tex', which is not part of a model or a run"
    [ ! -e other/config.json ]
}

@test "what a killed run left half-written is removed by the next; a live process's is kept" {
    mini_model m0 --labels-from "$DATA/train.ex"
    mkdir -p run/checkpoint-2.old.2147480001 run/model.safetensors.tmp.2147480002
    touch run/metrics.jsonl.tmp.2147480003 "run/config.json.tmp.$$"
    w2v-train --quiet -m m0 -o run --max-steps 2 "$DATA/train.b"
    [ ! -e run/checkpoint-2.old.2147480001 ] && [ ! -e run/model.safetensors.tmp.2147480002 ]
    [ ! -e run/metrics.jsonl.tmp.2147480003 ] && [ -e "run/config.json.tmp.$$" ]
    [ -s run/model.safetensors ]
}

@test "SIGKILL at 12 random moments: checkpoints whole or absent, no strays after, the resumed run ends bit-identical" {
    mini_model m0 --labels-from "$DATA/train.ex"
    opts=(--quiet --learning-rate 1e-3 --max-steps 40 --save-steps 1 --seed 9 --threads 2)
    w2v-train -m m0 -o full "${opts[@]}" "$DATA/train.b"
    RANDOM=7
    for k in $(seq 12); do
        newest=$(ls -d cut/checkpoint-* 2> /dev/null | sort -t- -k2 -n | tail -1)
        if [ -n "$newest" ]; then
            w2v-train --resume "$newest" -o cut "${opts[@]}" "$DATA/train.b" &
        else
            w2v-train -m m0 -o cut "${opts[@]}" "$DATA/train.b" &
        fi
        pid=$!
        sleep "0.$((RANDOM % 60 + 5))"
        kill -9 $pid 2> /dev/null || true
        wait $pid || true
        for c in cut/checkpoint-*; do
            [ -e "$c" ] || continue
            for f in config.json model.safetensors preprocessor_config.json optimizer.safetensors trainer_state.json; do
                [ -s "$c/$f" ] || fail "$c/$f is missing after kill $k"
            done
            "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$c/trainer_state.json" || fail "$c: bad state"
        done
        # the final model: config.json is written last, so with it the rest
        [ ! -e cut/config.json ] || { [ -s cut/model.safetensors ] && [ -s cut/preprocessor_config.json ]; } ||
            fail "cut/config.json without the model after kill $k"
    done
    newest=$(ls -d cut/checkpoint-* | sort -t- -k2 -n | tail -1)
    w2v-train --resume "$newest" -o cut "${opts[@]}" "$DATA/train.b"
    cmp full/model.safetensors cut/model.safetensors
    # nothing of the killed runs is left
    [ -z "$(ls -a cut | grep -E '[.](tmp|old)[.]|^[.]checkpoint[.]tmp$')" ] || { ls -a cut; false; }
}

@test "a disk that fills while saving: the error says what failed, the previous checkpoint stays" {
    mini_model m0 --labels-from "$DATA/train.ex"
    w2v-train --quiet -m m0 -o run --max-steps 4 --save-steps 2 "$DATA/train.b"
    rm -r run/checkpoint-4 run/model.safetensors
    cp -r run/checkpoint-2 keep
    # files may not grow past 16 KiB (SIGXFSZ ignored, so writes fail with EFBIG)
    run bash -c 'trap "" XFSZ; ulimit -f 16; exec w2v-train --quiet --resume run/checkpoint-2 -o run --max-steps 4 \
        --save-steps 2 "$1"' _ "$DATA/train.b"
    assert_failure 1
    assert_output --regexp "model.safetensors.*(File too large|No space)"
    diff -r keep run/checkpoint-2
    [ ! -e run/checkpoint-4 ] && [ ! -e run/.checkpoint.tmp ]
}

@test "--bf16 trains as fp32 does, to bf16's rounding; checkpoints stay fp32" {
    mini_model m0 --labels-from "$DATA/train.ex"
    opts=(--quiet -m m0 --learning-rate 2e-3 --max-steps 40 --logging-steps 40 --threads 2)
    w2v-train "${opts[@]}" -o f32 "$DATA/train.b"
    w2v-train "${opts[@]}" -o b16 --bf16 "$DATA/train.b"
    run "$PY" -c '
import json, struct
a, b = (json.loads(open(d + "/metrics.jsonl").readline()) for d in ("f32", "b16"))
print(a["loss"], b["loss"])
assert abs(a["loss"] - b["loss"]) < 0.01 * a["loss"], (a, b)
raw = open("b16/model.safetensors", "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
assert {v["dtype"] for v in h.values()} == {"F32"}
'
    assert_success
}

@test "gradient accumulation: 4 micro-batches of 2 make the step one batch of the same 8 makes" {
    # no random draws, so that micro-batches and the batch see the same
    # model; an epsilon of 1 makes the first AdamW step proportional to the
    # gradient rather than its sign
    mini_model m0 --labels-from "$DATA/train.ex" --set hidden_dropout=0 --set attention_dropout=0 \
        --set feat_proj_dropout=0 --set activation_dropout=0
    ks-batch --quiet -b 8 --pad-to 8000 "$DATA/train.ex" > b8
    ks-batch --quiet -b 2 --pad-to 8000 "$DATA/train.ex" > b2
    opts=(--learning-rate 1 --adam-epsilon 1 --max-grad-norm 0 --max-steps 1 --logging-steps 1 --threads 2 --quiet)
    w2v-train -m m0 -o whole "${opts[@]}" b8
    w2v-train -m m0 -o accum --gradient-accumulation-steps 4 "${opts[@]}" b2
    w2v-train -m m0 -o first "${opts[@]}" b2
    run "$PY" -c '
import json, struct, numpy as np
def load(p):
    b = open(p + "/model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], dtype="<f4")
            for k, v in h.items() if k != "__metadata__"}
p0, whole, accum, first = load("m0"), load("whole"), load("accum"), load("first")
norm = lambda a, b: np.sqrt(sum(float(((a[k] - b[k]).astype(np.float64) ** 2).sum()) for k in p0))
step, d_accum, d_first = norm(whole, p0), norm(accum, whole), norm(first, whole)
print("update %.3g; accumulated vs whole %.3g, first micro-batch vs whole %.3g" % (step, d_accum, d_first))
assert step > 1e-3 and d_accum < 1e-5 * step and d_first > 0.2 * step
w, a = (json.loads(open(d + "/metrics.jsonl").readline()) for d in ("whole", "accum"))
assert abs(w["loss"] - a["loss"]) < 1e-5 * w["loss"] and abs(w["grad_norm"] - a["grad_norm"]) < 1e-5 * w["grad_norm"], (w, a)
'
    assert_success
}

@test "gradient accumulation, warmup and the schedule follow Trainer" {
    mini_model m0 --labels-from "$DATA/train.ex"
    bpe=$(ks-cat "$DATA/train.b" | head -1 | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["batches_per_epoch"])')
    run w2v-train --quiet -m m0 -o run --learning-rate 1e-3 --gradient-accumulation-steps 4 --warmup-ratio 0.25 \
        --logging-steps 1 --lr-scheduler-type cosine "$DATA/train.b"
    assert_success
    run "$PY" -c '
import json, math, sys
bpe = int(sys.argv[1]); per_epoch = max(bpe // 4, 1); total = 3 * per_epoch; warm = math.ceil(0.25 * total)
rows = [json.loads(l) for l in open("run/metrics.jsonl")]
assert rows[-1]["step"] == total, (rows[-1], total)
for r in rows:
    t = r["step"] - 1
    want = 1e-3 * t / warm if t < warm else 1e-3 * max(0, 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total - warm))))
    assert abs(r["learning_rate"] - want) < 1e-12, (r, want)
' "$bpe"
    assert_success
}

@test "--max-steps, --save-total-limit, --load-best-model-at-end, --freeze-feature-encoder" {
    mini_model m0 --labels-from "$DATA/train.ex"
    run w2v-train --quiet -m m0 -o run --max-steps 6 --save-steps 2 --save-total-limit 2 --freeze-feature-encoder \
        --eval "$DATA/valid.b" "$DATA/train.b"
    assert_success
    [ "$(ls -d run/checkpoint-* | wc -l)" -le 3 ]
    [ -d run/checkpoint-6 ] && [ -d run/checkpoint-4 ] && [ ! -d run/checkpoint-2 ]
    # the frozen conv encoder has not moved
    run "$PY" -c '
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = load("m0/model.safetensors"), load("run/model.safetensors")
conv = [k for k in a if "feature_extractor.conv_layers" in k]
assert conv and all(a[k] == b[k] for k in conv)
assert any(a[k] != b[k] for k in a if k not in conv)
'
    assert_success
}

@test "--load-best-model-at-end: the final model is the checkpoint of best eval accuracy (the first of equals)" {
    mini_model m0 --labels-from "$DATA/train.ex"
    w2v-train --quiet -m m0 -o run --learning-rate 1e-2 --lr-scheduler-type constant --eval "$DATA/valid.b" \
        --load-best-model-at-end "$DATA/train.b"
    best=$("$PY" -c '
import json
ev = [json.loads(l) for l in open("run/metrics.jsonl")]
ev = [r for r in ev if "eval_accuracy" in r]
assert len(ev) == 3, ev
best = max(ev, key=lambda r: r["eval_accuracy"])   # the first of the best, as Trainer keeps it
assert json.load(open("run/trainer_state.json"))["best_model_checkpoint"] == "run/checkpoint-%d" % best["step"]
print(best["step"])')
    last=$(ls -d run/checkpoint-* | sed 's/.*-//' | sort -n | tail -1)
    # the test tells "best" from "last" only where they differ: they do here
    [ "$best" -ne "$last" ]
    cmp run/model.safetensors "run/checkpoint-$best/model.safetensors"
    ! cmp -s run/model.safetensors "run/checkpoint-$last/model.safetensors"
}

@test "label and rate mismatches, NaN losses and bad streams are clear errors" {
    mini_model m0 --labels a,b,c
    run w2v-train -m m0 -o run "$DATA/train.b"
    assert_failure
    assert_output --partial "the model's labels (a,b,c) are not the stream's (yes,no,"
    mini_model m1 --labels-from "$DATA/train.ex"
    run w2v-train -m m1 -o run "$DATA/train.ex"
    assert_failure
    assert_output --partial "an examples stream: batch it first"
    # a batch holding NaN: training stops, the last good checkpoint stays
    "$PY" -c '
import msgpack, numpy as np, sys
f = open(sys.argv[1], "rb"); maps = list(msgpack.Unpacker(f, raw=False))
x = np.frombuffer(maps[3]["input_values"]["data"], dtype=np.float32).copy(); x[5] = np.nan
maps[3]["input_values"]["data"] = x.tobytes()
sys.stdout.buffer.write(b"".join(msgpack.packb(m) for m in maps))' "$DATA/train.b" > nan.b
    run w2v-train -m m1 -o run --save-steps 1 nan.b
    assert_failure
    assert_output --partial "the loss is nan at step 2"
    [ -d run/checkpoint-2 ] && [ ! -d run/checkpoint-3 ] && [ ! -e run/model.safetensors ]
    head -c 3000 "$DATA/train.b" > cut.b
    run w2v-train -m m1 -o run2 cut.b
    assert_failure
    assert_output --regexp "cut.b: record [0-9]+ at byte [0-9]+: truncated"
}

#!/usr/bin/env bats
# w2v-train under mpirun: data parallelism over ranks on loopback equals one
# process with as many threads, to float rounding; repeats bit for bit;
# resumes bit for bit; a killed rank ends the job.

load helpers
load train_helpers

setup_file() {
    load train_helpers
    train_setup_file
}

setup() {
    train_setup || return 1
    # CI runs as root; two cores take three ranks
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    command -v mpirun > /dev/null || fail "mpirun is missing (make deps installs openmpi-bin)"
}

# same_run A B TOL PTOL: the metrics (loss, grad_norm, eval) of two runs
# agree within TOL, relatively; their parameters within PTOL of the update.
same_run() {
    "$PY" -c '
import json, struct, sys, numpy as np
a, b, tol, ptol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def load(p):
    raw = open(p + "/model.safetensors", "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; h = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], dtype="<f4")
            for k, v in h.items() if k != "__metadata__"}
ra = [json.loads(l) for l in open(a + "/metrics.jsonl")]; rb = [json.loads(l) for l in open(b + "/metrics.jsonl")]
assert len(ra) == len(rb) and len(ra) >= 20, (len(ra), len(rb))
for x, y in zip(ra, rb):
    assert x["step"] == y["step"], (x, y)
    for k in ("loss", "grad_norm", "eval_loss", "eval_accuracy"):
        if k in x:
            assert abs(x[k] - y[k]) <= tol * max(abs(x[k]), 1e-3), (k, x, y)
# parameters as a whole: AdamW turns rounding in a near-zero gradient into
# a step of up to lr, so single elements may differ by that much (one
# process with 1 and with 3 threads: 2.3e-3 of the update after 24 steps)
p0, pa, pb = load("m0"), load(a), load(b)
norm = lambda x, y: np.sqrt(sum(float(((x[k] - y[k]).astype(np.float64) ** 2).sum()) for k in p0))
step, diff = norm(pa, p0), norm(pa, pb)
print("update %.3g, difference %.3g" % (step, diff))
assert step > 1e-3 and diff <= ptol * step, (step, diff)
' "$@"
}

@test "2 ranks x 1 thread train as 1 process x 2 threads; 3 ranks as 3 shards; the eval split and summed" {
    mini_model m0 --labels-from "$DATA/train.b"
    opts=(--quiet -m m0 --learning-rate 1e-3 --max-steps 24 --logging-steps 1 --seed 3 --eval "$DATA/valid.b")
    w2v-train "${opts[@]}" -o one --threads 2 "$DATA/train.b"
    # the stream from a pipe: mpirun hands stdin to rank 0 only
    mpirun -np 2 w2v-train "${opts[@]}" -o two --threads 1 - < "$DATA/train.b"
    run same_run one two 1e-4 1e-2
    assert_success
    echo "# 2 ranks: $output" >&3
    # batches of 8 over 3 ranks: 2, 3 and 3 examples
    w2v-train "${opts[@]}" -o one3 --threads 3 "$DATA/train.b"
    mpirun -np 3 w2v-train "${opts[@]}" -o three --threads 1 "$DATA/train.b"
    run same_run one3 three 1e-4 1e-2
    assert_success
    echo "# 3 ranks: $output" >&3
    # rank 0 alone writes: one row a step, the eval rows as one process's
    [ -s two/model.safetensors ] && [ -s two/trainer_state.json ]
    [ "$(grep -c '"loss"' two/metrics.jsonl)" -eq 24 ]
    [ "$(grep -c eval_accuracy two/metrics.jsonl)" -eq "$(grep -c eval_accuracy one/metrics.jsonl)" ]
}

@test "under mpirun a run repeats bit for bit, and resumes bit for bit" {
    mini_model m0 --labels-from "$DATA/train.b"
    opts=(--quiet -m m0 --learning-rate 1e-3 --max-steps 12 --save-steps 4 --seed 5 --threads 1)
    mpirun -np 2 w2v-train "${opts[@]}" -o a "$DATA/train.b"
    mpirun -np 2 w2v-train "${opts[@]}" -o b "$DATA/train.b"
    cmp a/model.safetensors b/model.safetensors
    mkdir c && cp -r a/checkpoint-4 c/ && cp a/metrics.jsonl c/
    mpirun -np 2 w2v-train --quiet --resume c/checkpoint-4 -o c --learning-rate 1e-3 --max-steps 12 --save-steps 4 \
        --seed 5 --threads 1 "$DATA/train.b"
    cmp a/model.safetensors c/model.safetensors
    cmp a/checkpoint-12/optimizer.safetensors c/checkpoint-12/optimizer.safetensors
}

@test "a rank killed mid-run ends the job with a non-zero status; the newest checkpoint loads" {
    mini_model m0 --labels-from "$DATA/train.b"
    # a producer that stalls after the header and 6 batches keeps the job waiting
    "$PY" -c '
import msgpack, sys
maps = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
sys.stdout.buffer.write(b"".join(msgpack.packb(m) for m in maps[:7]))' "$DATA/train.b" > first6.b
    mkfifo feed
    timeout 50 mpirun -np 2 w2v-train --quiet -m m0 -o run --max-steps 20 --save-steps 2 --threads 1 - < feed \
        > out.txt 2>&1 &
    pid=$!
    { cat first6.b; exec sleep 60; } > feed 3>&- &
    feeder=$!
    # (mpirun forwards stdin in chunks: the last batches may wait for more)
    for i in $(seq 600); do [ -d run/checkpoint-4 ] && break; sleep 0.05; done
    [ -d run/checkpoint-4 ] || { cat out.txt; false; }
    # rank 1: the w2v-train whose environment says so
    victim=""
    for p in $(pgrep -f "w2v-train --quiet -m m0 -o run"); do
        grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$p/environ" 2> /dev/null && victim=$p
    done
    [ -n "$victim" ]
    t0=$SECONDS
    kill -9 "$victim"
    rc=0
    wait $pid || rc=$?
    kill $feeder 2> /dev/null || true
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]
    [ $((SECONDS - t0)) -le 20 ]
    newest=$(ls -d run/checkpoint-* | sort -t- -k2 -n | tail -1)
    run w2v-eval -m "$newest" "$DATA/valid.b"
    assert_success
}

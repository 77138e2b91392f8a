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

@test "--zero-stage 1 splits the optimizer state over the ranks and changes no bit; its checkpoints resume on any rank count" {
    mini_model m0 --labels-from "$DATA/train.b"
    opts=(--quiet --learning-rate 1e-3 --weight-decay 0.01 --max-steps 12 --save-steps 4 --logging-steps 1 --seed 5
        --threads 1)
    mpirun -np 3 w2v-train "${opts[@]}" -m m0 -o whole "$DATA/train.b"
    mpirun -np 3 w2v-train "${opts[@]}" -m m0 --zero-stage 1 -o split "$DATA/train.b"
    cmp whole/model.safetensors split/model.safetensors
    for s in 4 8 12; do cmp whole/checkpoint-$s/optimizer.safetensors split/checkpoint-$s/optimizer.safetensors; done
    # the same rows, with the time the stepped parameters took to share
    "$PY" -c '
import json, sys
rows = [[json.loads(l) for l in open(d + "/metrics.jsonl")] for d in sys.argv[1:]]
assert len(rows[0]) == len(rows[1]) == 12
for w, s in zip(*rows):
    assert "allgather_s" in s and "allgather_s" not in w, (w, s)
    assert all(w[k] == s[k] for k in ("step", "loss", "grad_norm", "learning_rate")), (w, s)' whole split
    # resumed on 2 ranks, split or not: each rank takes its own share of the
    # moments a 3-rank run wrote, and the two end on the same bits
    for z in 0 1; do
        mkdir r$z && cp -r split/checkpoint-4 r$z/
        mpirun -np 2 w2v-train "${opts[@]}" --resume r$z/checkpoint-4 --zero-stage $z -o r$z "$DATA/train.b"
    done
    cmp r0/model.safetensors r1/model.safetensors
    cmp r0/checkpoint-12/optimizer.safetensors r1/checkpoint-12/optimizer.safetensors
}

@test "--zero-stage 1: each of 2 ranks holds half the moments (peak memory per rank)" {
    # 19.4M parameters: 148 MiB of moments, of which a rank keeps 74 unsplit
    # and none split, less the 16 MiB rank 0 gathers the largest tensor's
    # moments in as it writes a checkpoint
    mini_model big --labels-from "$DATA/train.b" --set hidden_size=512 --set intermediate_size=8192 \
        --set num_hidden_layers=2 --set num_attention_heads=8
    peak() { # OUTDIR [options]: each rank's peak RSS in KiB, one a line
        local out=$1
        shift
        mpirun -np 2 "$PY" -c '
import os, resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
            w2v-train --quiet -m big -o "$out" --max-steps 2 --save-steps 2 --threads 1 "$@" "$DATA/train.b"
    }
    run peak whole
    assert_success
    whole=("${lines[@]}")
    run peak split --zero-stage 1
    assert_success
    split=("${lines[@]}")
    echo "# peak RSS per rank (KiB): whole ${whole[*]}, split ${split[*]}" >&3
    cmp whole/checkpoint-2/optimizer.safetensors split/checkpoint-2/optimizer.safetensors
    for r in 0 1; do [ $((whole[r] - split[r])) -gt $((48 * 1024)) ]; done
}

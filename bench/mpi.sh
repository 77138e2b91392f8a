#!/bin/sh
# w2v-train over MPI beside one process, on this machine: wav2vec2-base's
# architecture (random weights), conv encoder frozen, fp32, global batches
# of 8 and 32 one-second clips.  For each batch: 1 process x T threads,
# then R ranks x T/R threads (mpirun --oversubscribe, loopback), with
# --zero-stage 0 and 1.  Reports the median step's clips/s, the seconds a
# step spends in the allreduce (waiting for the slowest rank included) and
# the allgather, and each rank's peak RSS (getrusage); then OpenMPI's
# allreduce of the gradients' size by bucket size (build/bench/mpi-buckets).
#
# Usage: bench/mpi.sh [STEPS [RANKS [THREADS]]]  (default 8 steps, 2 ranks, the cores available)
# Needs the programs built (make bench does it), mpirun and Debian's python3 with numpy.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
bin="$top/$build/bin"
steps=${1:-8}
ranks=${2:-2}
threads=${3:-$(nproc)}
per=$((threads / ranks > 0 ? threads / ranks : 1))
command -v mpirun > /dev/null || { echo "bench/mpi.sh: no mpirun (make deps installs openmpi-bin)" >&2; exit 1; }
[ -x "$bin/w2v-train" ] && [ -x "$top/$build/bench/mpi-buckets" ] ||
    { echo "bench/mpi.sh: build first (make all $build/bench/mpi-buckets)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

dir=$(mktemp -d "${TMPDIR:-/tmp}/w2v-mpi-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM

# (steps + 1) x 32 one-second clips: tones in noise, the 12 labels in turn
/usr/bin/python3 - "$dir" $(((steps + 1) * 32)) <<'EOF'
import sys, wave, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
labels = "yes no up down left right on off stop go _silence_ _unknown_".split()
rng = np.random.default_rng(0)
with open(d + "/clips.tsv", "w") as m:
    for i in range(n):
        t = np.arange(16000) / 16000
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + rng.normal(0, 0.05, 16000)
        w = wave.open("%s/c%d.wav" % (d, i), "wb")
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()); w.close()
        m.write("k%d\tc%d.wav\t%s\n" % (i, i, labels[i % 12]))
EOF
"$bin/ks-extract" --quiet "$dir/clips.tsv" > "$dir/clips.ex"
"$bin/w2v-init" --quiet --preset base --labels-from "$dir/clips.ex" -o "$dir/base"

# peak RSS of the command's process, in MiB, on stdout (one line a rank)
peak='
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)'
report() { # RUN RSS...
    /usr/bin/python3 - "$@" <<'EOF'
import json, statistics, sys
run, rss = sys.argv[1], sys.argv[2:]
rows = [json.loads(l) for l in open(run + "/metrics.jsonl")][1:]  # after the first step
med = lambda k: statistics.median(r.get(k, 0) for r in rows)
print("%-34s %8.2f %12.3f %12.3f   %s" % (run.rsplit("/", 1)[1], med("clips_per_s"), med("allreduce_s"),
                                          med("allgather_s"), " ".join(rss)))
EOF
}
echo "w2v-train over MPI: wav2vec2-base, encoder frozen, fp32, $steps steps; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %8s %12s %12s   %s\n' "run" "clips/s" "allreduce s" "allgather s" "peak RSS MiB (each rank)"
for b in 8 32; do
    "$bin/ks-batch" --quiet -b $b "$dir/clips.ex" > "$dir/b$b"
    opts="--quiet -m $dir/base --freeze-feature-encoder --logging-steps 1 --max-steps $steps"
    run=$dir/b$b-1x$threads
    rss=$(/usr/bin/python3 -c "$peak" "$bin/w2v-train" $opts --threads "$threads" -o "$run" "$dir/b$b")
    report "$run" "$rss"
    for z in 0 1; do
        run=$dir/b$b-${ranks}x$per-zero$z
        rss=$(mpirun -np "$ranks" /usr/bin/python3 -c "$peak" "$bin/w2v-train" $opts --threads $per --zero-stage $z \
            -o "$run" "$dir/b$b" | sort -n | tr '\n' ' ')
        report "$run" $rss
    done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
mpirun -np "$ranks" "$top/$build/bench/mpi-buckets"

#!/bin/sh
# ks-extract throughput: clips per second on one-second WAVs at 16 kHz (no
# resampling, as Speech Commands) and at 22.05 kHz (resampled to 16 kHz with
# each libsamplerate converter), with -j1 and -j2.  Output to /dev/null, so
# decoding, resampling, normalising and packing are measured, not the disk.
#
# Usage: bench/ks-extract.sh [CLIPS_16K [CLIPS_22K]]   (default 4000 and 200)
# Needs the programs built (make) and Debian's python3 with numpy.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/build/bin"
n16=${1:-4000}
n22=${2:-200}
[ -x "$bin/ks-extract" ] || { echo "bench/ks-extract.sh: build first (make)" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/ks-extract-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM

/usr/bin/python3 - "$dir" "$n16" "$n22" <<'EOF'
import sys, wave, numpy as np
d, counts = sys.argv[1], {16000: int(sys.argv[2]), 22050: int(sys.argv[3])}
rng = np.random.default_rng(0)
for rate, n in counts.items():
    with open("%s/m%d.tsv" % (d, rate), "w") as m:
        for i in range(n):
            t = np.arange(rate) / rate
            x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + rng.normal(0, 0.05, rate)
            name = "%s/c%d_%d.wav" % (d, rate, i)
            w = wave.open(name, "wb")
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
            w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()); w.close()
            m.write("k%d\tc%d_%d.wav\tyes\n" % (i, rate, i))
EOF

# clips/s of one run: wall time of the whole process, files already cached
rate_of() {
    clips=$1; shift
    t0=$(date +%s.%N)
    "$bin/ks-extract" --quiet "$@" > /dev/null
    t1=$(date +%s.%N)
    echo "$clips $t0 $t1" | awk '{ printf "%.0f", $1 / ($3 - $2) }'
}

cores=$(nproc)
echo "ks-extract: one-second clips, mono 16-bit WAV, normalised, $cores cores available ($(uname -m))"
printf '%-34s %-4s %10s\n' "input" "jobs" "clips/s"
"$bin/ks-extract" --quiet -j2 "$dir/m16000.tsv" > /dev/null # warm the page cache
for j in 1 2; do
    printf '%-34s %-4s %10s\n' "$n16 clips at 16 kHz" "-j$j" "$(rate_of "$n16" -j$j "$dir/m16000.tsv")"
done
for conv in best medium fastest; do
    for j in 1 2; do
        printf '%-34s %-4s %10s\n' "$n22 clips at 22.05 kHz, $conv" "-j$j" \
            "$(rate_of "$n22" -j$j --converter $conv "$dir/m22050.tsv")"
    done
done

#!/usr/bin/env bats
# The stream format between C and an independent Python implementation
# (pystream.py), through ks-cat: round trips both ways, concatenation,
# truncation, corruption, conflicting headers.
load helpers

# The offsets of the maps of FILE, then its size, into the array BOUNDS.
bounds() { mapfile -t BOUNDS < <(pystream bounds "$1"); }

@test "Python writes, C reads: ks-cat --full prints every value exactly" {
    pystream examples 6 --extras > e.stream
    run ks-cat --full e.stream
    assert_success
    printf '%s\n' "$output" > e.jsonl
    run pystream matches-json e.stream e.jsonl
    assert_success
    pystream batches 4 > b.stream
    ks-cat --full b.stream > b.jsonl
    run pystream matches-json b.stream b.jsonl
    assert_success
}

@test "Python writes, C reads: the default summary gives exact min, max and the mean" {
    pystream examples 6 --extras > e.stream
    ks-cat e.stream > e.jsonl
    run pystream matches-json --summary e.stream e.jsonl
    assert_success
    pystream batches 4 > b.stream
    ks-cat b.stream > b.jsonl
    run pystream matches-json --summary b.stream b.jsonl
    assert_success
}

@test "Python writes, C validates: ks-cat --check counts the records" {
    pystream examples 9 > e.stream
    pystream batches 4 > b.stream
    run ks-cat --check e.stream
    assert_success
    assert_output "e.stream: examples stream, 12 labels, 9 records"
    run ks-cat --check b.stream
    assert_output "b.stream: batches stream, 12 labels, 4 records"
}

@test "C writes, Python reads: ks-cat --head copies the header and records exactly" {
    pystream examples 7 --extras > e.stream
    ks-cat --head 3 e.stream > h.stream
    run pystream same e.stream h.stream --records 3
    assert_success
    # byte for byte: both sides write msgpack in its shortest forms
    bounds e.stream
    head -c "${BOUNDS[4]}" e.stream > want.stream
    cmp want.stream h.stream
    pystream batches 5 > b.stream
    ks-cat --head 5 -o hb.stream b.stream
    cmp b.stream hb.stream
}

@test "concatenated streams (cat a b) read as one stream" {
    pystream examples 3 --seed 1 > a.stream
    pystream examples 4 --seed 2 > b.stream
    run bash -c 'cat a.stream b.stream | ks-cat --check'
    assert_success
    assert_output "stdin: examples stream, 12 labels, 7 records"
    # one header out, the records of both, the same as naming both files
    bounds b.stream
    { cat a.stream; tail -c +$((BOUNDS[1] + 1)) b.stream; } > want.stream
    cat a.stream b.stream | ks-cat --head 100 > got.stream
    cmp want.stream got.stream
    ks-cat --head 100 a.stream b.stream > got2.stream
    cmp want.stream got2.stream
    ks-cat a.stream b.stream > two.jsonl
    cat a.stream b.stream | ks-cat > cat.jsonl
    cmp two.jsonl cat.jsonl
    [ "$(wc -l < cat.jsonl)" -eq 8 ]
}

@test "a conflicting header in a concatenated stream is an error at its record" {
    pystream examples 3 > a.stream
    pystream examples 2 --labels yes,no > labels.stream
    pystream examples 2 --sample-rate 8000 > rate.stream
    pystream batches 2 > type.stream
    bounds a.stream
    for other in labels rate type; do
        run bash -c "cat a.stream $other.stream | ks-cat --check"
        assert_failure 1
        assert_output "ks-cat: stdin: record 4 at byte ${BOUNDS[4]}: header conflicts with the first header (type, sample_rate or labels differ)"
        run ks-cat a.stream "$other.stream"
        assert_failure 1
        assert_output --partial "ks-cat: $other.stream: record 0 at byte 0: header conflicts with that of a.stream"
    done
}

@test "a stream cut at every byte: a clean end at record boundaries, else a clear error" {
    pystream examples 2 > s.stream
    bounds s.stream
    size=${BOUNDS[-1]}
    j=0 # the map the cut falls in
    for ((k = 0; k <= size; k++)); do
        while ((j + 1 < ${#BOUNDS[@]} && BOUNDS[j + 1] <= k)); do j=$((j + 1)); done
        head -c "$k" s.stream > t.stream
        out=$(ks-cat --check t.stream 2>&1) && st=0 || st=$?
        if ((k == 0)); then
            want="ks-cat: t.stream: record 0 at byte 0: empty stream: no header"
        elif ((k == BOUNDS[j] && j > 0)); then
            [ "$st" -eq 0 ] || fail "cut at $k (a boundary): status $st: $out"
            [ "$out" = "t.stream: examples stream, 12 labels, $((j - 1)) records" ] || fail "cut at $k: $out"
            continue
        else
            want="ks-cat: t.stream: record $j at byte ${BOUNDS[j]}: truncated: the stream ends inside the record ($((k - BOUNDS[j])) bytes of it present)"
        fi
        [ "$st" -eq 1 ] || fail "cut at $k: status $st: $out"
        [ "$out" = "$want" ] || fail "cut at $k: '$out', expected '$want'"
    done
}

@test "a stream with a byte changed anywhere: a clean read or one clear error, never a crash" {
    pystream examples 2 --seed 3 --labels yes,no > s.stream
    pystream batches 1 --batch 2 --time 2 --labels yes,no > b.stream
    mkdir -p v/b
    pystream corrupt s.stream v
    pystream corrupt b.stream v/b
    errors=0
    for f in v/*.stream v/b/*.stream; do
        out=$(ks-cat --check "$f" 2>&1) && st=0 || st=$?
        case $st in
        0) ;;
        1)  errors=$((errors + 1))
            # one line, printable ASCII whatever the damage
            LC_ALL=C
            [[ $out =~ ^"ks-cat: $f: record "[0-9]+" at byte "[0-9]+": "[[:print:]]+$ ]] ||
                fail "$f: not the error form: $out" ;;
        *) fail "$f: status $st: $out" ;;
        esac
        # printing walks every map too
        ks-cat "$f" > /dev/null 2>&1 && st=0 || st=$?
        [ "$st" -le 1 ] || fail "$f: printing: status $st"
    done
    echo "# $errors of the damaged streams were rejected" >&3
    [ "$errors" -gt 0 ]
}

@test "a record that declares a huge count is reported as truncated, at once" {
    pystream examples 4 > s.stream
    bounds s.stream
    for count in '\xdf\xff\xff\xff\xff' '\xdd\xff\xff\xff\xff' '\xc6\xff\xff\xff\xff'; do
        cp s.stream h.stream
        printf "$count" | dd of=h.stream bs=1 seek="${BOUNDS[2]}" conv=notrunc status=none
        # 200 MB of address space: the reader must not ask for gigabytes.
        # (One OpenBLAS thread: its worker threads reserve 128 MB each at
        # start and spin forever when they cannot.)  AddressSanitizer needs
        # terabytes of address space: under it, no allocation over 200 MB.
        if [ -n "${W2V_SANITIZED:-}" ]; then
            run timeout 60 env ASAN_OPTIONS="${ASAN_OPTIONS:-}:max_allocation_size_mb=200" ks-cat --check h.stream
        else
            run timeout 60 bash -c 'ulimit -v 200000 && OPENBLAS_NUM_THREADS=1 exec ks-cat --check h.stream'
        fi
        assert_failure 1
        assert_output --partial "ks-cat: h.stream: record 2 at byte ${BOUNDS[2]}: truncated"
    done
}

@test "a header of 200,000 labels and a 1 MB key pass through in bounded memory" {
    "$PY" - << 'EOF'
import msgpack, numpy as np
def stream(path, labels, keys):
    with open(path, "wb") as f:
        f.write(msgpack.packb({"format": "w2v-stream", "version": 1, "type": "examples",
                               "sample_rate": 16000, "labels": labels}))
        for i, key in enumerate(keys):
            x = np.full(16000, i, dtype="<f4")
            f.write(msgpack.packb({"key": key, "label": (i * 99991) % len(labels), "input_values":
                                   {"dtype": "f32", "shape": [16000], "data": x.tobytes()}}, use_bin_type=True))
stream("labels.stream", ["label%d" % i for i in range(200000)], ["k0", "k1", "k2"])
stream("key.stream", ["a", "b"], ["k%d" % i + "x" * (1 << 20) for i in range(3)])
EOF
    # peak RSS of a program's run, in MB
    peak() { "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:]).returncode
print(r, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$@"; }
    # measured 20-25 MB; AddressSanitizer's shadow memory adds its own
    limit=100
    [ -z "${W2V_SANITIZED:-}" ] || limit=400
    for s in labels key; do
        read -r rc mb < <(peak ks-batch --quiet -b 2 -o $s.b $s.stream)
        [ "$rc" = 0 ] && [ "$mb" -lt $limit ] || fail "ks-batch on $s.stream: exit $rc, $mb MB"
        read -r rc mb < <(peak ks-cat --head 3 -o $s.c $s.stream)
        [ "$rc" = 0 ] && [ "$mb" -lt $limit ] || fail "ks-cat on $s.stream: exit $rc, $mb MB"
        run pystream matches-json $s.stream <(ks-cat --full $s.c)
        assert_success
    done
    # every label and every key arrive whole
    run "$PY" - << 'EOF'
import msgpack
def records(path):
    return list(msgpack.Unpacker(open(path, "rb"), raw=False, max_buffer_size=1 << 30))
b = records("labels.b")
assert len(b[0]["labels"]) == 200000 and b[0]["labels"][-1] == "label199999"
keys = [k for r in records("key.b")[1:] for k in r["keys"]]
assert sorted(len(k) for k in keys) == [(1 << 20) + 2] * 3, [len(k) for k in keys]
EOF
    assert_success
}

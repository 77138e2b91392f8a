#!/usr/bin/env bats
# ks-cat: printing, --check, --head, -o, and the conventions every program
# keeps: usage errors, no binary to a terminal, a quiet end on a closed pipe,
# nothing left behind on failure.
load helpers

@test "prints the header, then one JSON line per record" {
    pystream examples 4 > e.stream
    run ks-cat e.stream
    assert_success
    assert_line --index 0 '{"format":"w2v-stream","version":1,"type":"examples","sample_rate":16000,"labels":["yes","no","up","down","left","right","on","off","stop","go","_silence_","_unknown_"]}'
    assert_line --index 1 --regexp '^\{"key":"ex0000","label":-1,"input_values":\{"dtype":"f32","shape":\[3\],"min":.*,"max":.*,"mean":.*\}\}$'
    assert_line --index 2 --partial '"path":"audio/ex0001.wav"'
    [ "${#lines[@]}" -eq 5 ]
}

@test "reads stdin when there is no FILE or it is -" {
    pystream examples 2 > e.stream
    ks-cat e.stream > want.jsonl
    ks-cat < e.stream > a.jsonl
    ks-cat - < e.stream > b.jsonl
    cmp want.jsonl a.jsonl
    cmp want.jsonl b.jsonl
    run ks-cat --check - < e.stream
    assert_output "stdin: examples stream, 12 labels, 2 records"
}

@test "--check counts the records of each file, and in all" {
    pystream examples 3 > a.stream
    pystream examples 5 > b.stream
    run ks-cat --check a.stream b.stream
    assert_success
    assert_output "a.stream: examples stream, 12 labels, 3 records
b.stream: examples stream, 12 labels, 5 records
total: 8 records"
}

@test "--check rejects a record the header's type cannot hold" {
    pystream batches 2 > b.stream
    bounds=($(pystream bounds b.stream))
    # an examples header followed by the records of a batches stream
    { pystream examples 0; tail -c +$((bounds[1] + 1)) b.stream; } > mixed.stream
    run ks-cat --check mixed.stream
    assert_failure 1
    assert_output --regexp '^ks-cat: mixed.stream: record 1 at byte [0-9]+: example without a key string$'
}

@test "--head N writes the header and N records; -o writes a file" {
    pystream examples 6 > e.stream
    ks-cat --head 2 e.stream > h.stream
    run ks-cat --check h.stream
    assert_output "h.stream: examples stream, 12 labels, 2 records"
    ks-cat --head 0 -o h0.stream e.stream
    run ks-cat --check h0.stream
    assert_output "h0.stream: examples stream, 12 labels, 0 records"
    # more than there are: all of them
    ks-cat --head 100 -o all.stream e.stream
    cmp e.stream all.stream
}

@test "--head stops reading at N: what follows may be damaged" {
    pystream examples 6 > e.stream
    bounds=($(pystream bounds e.stream))
    head -c $((bounds[4] + 5)) e.stream > cut.stream
    run ks-cat --head 3 -o h.stream cut.stream
    assert_success
    run ks-cat --check h.stream
    assert_output "h.stream: examples stream, 12 labels, 3 records"
    run ks-cat --head 4 -o h.stream cut.stream
    assert_failure 1
    assert_output "ks-cat: cut.stream: record 4 at byte ${bounds[4]}: truncated: the stream ends inside the record (5 bytes of it present)"
}

@test "a failure leaves no output file, finished or temporary" {
    pystream examples 6 > e.stream
    head -c 500 e.stream > cut.stream
    run ks-cat --head 10 -o out.stream cut.stream
    assert_failure 1
    assert_output --regexp '^ks-cat: cut.stream: record [0-9]+ at byte [0-9]+: truncated'
    run ls
    assert_output "cut.stream
e.stream"
}

@test "input errors: a missing file, an empty input, something not a stream" {
    run ks-cat no-such.stream
    assert_failure 1
    assert_output "ks-cat: no-such.stream: cannot open: No such file or directory"
    run ks-cat < /dev/null
    assert_failure 1
    assert_output "ks-cat: stdin: record 0 at byte 0: empty stream: no header"
    run bash -c 'echo hello | ks-cat'
    assert_failure 1
    assert_output --regexp '^ks-cat: stdin: record 0 at byte 0: '
    printf '{"json": 1}\n' > j.stream
    run ks-cat j.stream
    assert_failure 1
    assert_output --regexp '^ks-cat: j.stream: record 0 at byte 0: '
}

@test "usage errors exit 2 and point to --help" {
    for args in "--check --head 1" "-o x.stream" "--head many" "--head -1" "--no-such-option"; do
        run ks-cat $args
        assert_failure 2
        assert_line --index 0 --regexp "^ks-cat: "
        assert_line "Try 'ks-cat --help' for more information."
    done
}

@test "refuses to write a binary stream to a terminal" {
    pystream examples 2 > e.stream
    run script -qec "ks-cat --head 1 e.stream" /dev/null
    assert_failure 2
    assert_output --partial "ks-cat: refusing to write a binary stream to a terminal"
    run script -qec "ks-cat --head 1 -o - e.stream" /dev/null
    assert_failure 2
    # JSON lines are text: fine on a terminal
    run script -qec "ks-cat e.stream" /dev/null
    assert_success
    assert_output --partial '"format":"w2v-stream"'
}

@test "a closed pipe ends ks-cat quietly" {
    pystream examples 3000 > big.stream
    # the output is far more than a pipe holds: ks-cat is still writing
    for opts in "" "--full" "--head 3000"; do
        # and also when the parent ignores SIGPIPE (ks-cat restores it)
        for trap in "" "trap '' PIPE;"; do
            run bash -c "$trap ks-cat $opts big.stream 2> err | head -c 10 > /dev/null; echo \${PIPESTATUS[0]}"
            # ended by SIGPIPE (128 + 13) before it finished, and said nothing
            assert_output 141
            [ ! -s err ] || fail "ks-cat $opts wrote to stderr: $(cat err)"
        done
    done
}

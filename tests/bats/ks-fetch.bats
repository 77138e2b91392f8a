#!/usr/bin/env bats
# ks-fetch on a small ks-synth corpus, served from a loopback HTTP server
# (range_server.py), from file:// URLs and from plain paths.
load helpers

TRAIN=speech_commands_v0.01.tar.gz
TEST=speech_commands_test_set_v0.01.tar.gz

setup_file() {
    export CORPUS="$BATS_FILE_TMPDIR/corpus"
    ks-synth --quiet --speakers 6 --per-word 1 --noise-seconds 2 "$CORPUS" > /dev/null
}

teardown() {
    if [ -n "${SERVER_PID:-}" ]; then kill "$SERVER_PID" 2> /dev/null || true; fi
}

# start_server [range_server.py options]: serves $CORPUS, sets URL and LOG
start_server() {
    LOG="$T/server.log"
    : > "$LOG"
    $PY "$TOP/tests/bats/range_server.py" --root "$CORPUS" --port-file "$T/port" --log "$LOG" "$@" 3>&- &
    SERVER_PID=$!
    for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
    URL="http://127.0.0.1:$(cat "$T/port")"
}

# The manifests as the Hugging Face "superb" script (config "ks") splits
# the corpus, written by an independent implementation of its rules.
superb_manifests() { # DIR OUTDIR
    $PY - "$1" "$2" << 'EOF'
import glob, os, sys
d, out = sys.argv[1], sys.argv[2]
words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
def label(p):
    w = os.path.basename(os.path.dirname(p))
    return w if w in words else "_silence_" if w in ("_silence_", "_background_noise_") else "_unknown_"
def manifest(name, paths):
    with open(os.path.join(out, name), "w") as f:
        f.write("key\tpath\tlabel\n")
        for p in sorted(paths):
            rel = os.path.relpath(p, d)
            f.write("%s\t%s\t%s\n" % (rel.split("/", 1)[1][:-4], rel, label(p)))
root = os.path.join(d, "speech_commands_v0.01")
audio = glob.glob(os.path.join(root, "**", "*.wav"))
lists = {}
for name in ("validation_list.txt", "testing_list.txt"):
    with open(os.path.join(root, name)) as f:
        lists[name] = [os.path.join(root, p) for p in f.read().strip().splitlines()]
manifest("train.tsv", set(audio) - set(lists["validation_list.txt"]) - set(lists["testing_list.txt"]))
manifest("validation.tsv", lists["validation_list.txt"])
manifest("test.tsv", glob.glob(os.path.join(d, "speech_commands_test_set_v0.01", "**", "*.wav")))
EOF
}

@test "fetches over HTTP, unpacks, and writes SUPERB's splits" {
    start_server
    run ks-fetch --url "$URL/$TRAIN" --test-url "$URL/$TEST" data
    assert_success
    # the archives are ks-synth's, recorded in SHA256SUMS
    run diff <(sort data/SHA256SUMS) <(sort "$CORPUS/SHA256SUMS")
    assert_success
    mkdir want
    superb_manifests data want
    for m in train validation test; do
        run diff "want/$m.tsv" "data/$m.tsv"
        assert_success
    done
    # totals against what ks-synth made
    wavs=$(ls "$CORPUS"/*/*.wav | wc -l)
    val=$(wc -l < "$CORPUS/validation_list.txt")
    tst=$(wc -l < "$CORPUS/testing_list.txt")
    test_wavs=$($PY -c 'import tarfile, sys; print(sum(n.endswith(".wav") for n in tarfile.open(sys.argv[1]).getnames()))' "$CORPUS/$TEST")
    run ks-fetch --quiet --url "$URL/$TRAIN" --test-url "$URL/$TEST" data
    assert_line --regexp "^ +total +$((wavs - val - tst)) +$val +$test_wavs\$"
    # the five background-noise files are _silence_ in train; the labels in id order
    assert_line --index 0 --regexp '^id +label +train +validation +test$'
    assert_line --index 11 --regexp '^10 +_silence_ +5 +0 +'
    assert_line --index 12 --regexp '^11 +_unknown_ '
}

@test "a second run finds everything in place and does no work" {
    start_server
    ks-fetch --quiet --url "$URL/$TRAIN" --test-url "$URL/$TEST" data > first.txt
    requests=$(wc -l < "$LOG")
    touch -d '2001-01-01' data/*.tsv
    run ks-fetch --url "$URL/$TRAIN" --test-url "$URL/$TEST" data
    assert_success
    assert_output --partial "nothing to do"
    assert_equal "$(wc -l < "$LOG")" "$requests"
    assert_equal "$(find data -maxdepth 1 -name '*.tsv' -newermt '2001-01-02' | wc -l)" 0
    # the same counts are printed
    run diff first.txt <(ks-fetch --quiet --url "$URL/$TRAIN" --test-url "$URL/$TEST" data)
    assert_success
}

@test "resumes a partial download with a range request" {
    start_server
    size=$(stat -c %s "$CORPUS/$TRAIN")
    mkdir data
    head -c $((size / 2)) "$CORPUS/$TRAIN" > "data/$TRAIN.part"
    run ks-fetch --url "$URL/$TRAIN" --test-url "$URL/$TEST" data
    assert_success
    run grep -c "^GET /$TRAIN bytes=$((size / 2))-\$" "$LOG"
    assert_output 1
    cmp "data/$TRAIN" "$CORPUS/$TRAIN"
    [ ! -e "data/$TRAIN.part" ]
}

@test "a dropped connection is retried and resumed; redirects are followed" {
    start_server --cut-after 100000
    run ks-fetch --retry-delay 0.1 --url "$URL/redirect/$TRAIN" --test-url "$URL/$TEST" data
    assert_success
    assert_output --partial "retrying"
    run cat "$LOG"
    assert_line --index 0 "GET /redirect/$TRAIN -"
    assert_line --index 1 "GET /$TRAIN -"
    assert_line --index 2 "GET /redirect/$TRAIN bytes=100000-"
    cmp "data/$TRAIN" "$CORPUS/$TRAIN"
}

@test "a server that cannot resume makes it start over" {
    start_server --no-range
    mkdir data
    head -c 1000 /dev/urandom > "data/$TRAIN.part"
    run ks-fetch --url "$URL/$TRAIN" --test-url "$URL/$TEST" data
    assert_success
    cmp "data/$TRAIN" "$CORPUS/$TRAIN"
}

@test "a wrong checksum fails clearly and leaves nothing half-written" {
    start_server
    run ks-fetch --url "$URL/$TRAIN" --sha256 "$(printf '0%.0s' $(seq 64))" --test-url "$URL/$TEST" data
    assert_failure 1
    assert_output --partial "SHA-256 mismatch: expected 0000000000000000"
    run ls -A data
    assert_output ""
}

@test "a test archive that differs from the recorded checksum is refused" {
    ks-fetch --quiet --url "$CORPUS/$TRAIN" --test-url "$CORPUS/$TEST" data > /dev/null
    rm -r "data/$TEST" data/speech_commands_test_set_v0.01
    run ks-fetch --url "$CORPUS/$TRAIN" --test-url "$CORPUS/$TRAIN" data
    assert_failure 1
    assert_output --partial "SHA-256 mismatch"
    assert_output --partial "recorded in data/SHA256SUMS"
    [ ! -e "data/$TEST" ] && [ ! -e "data/$TEST.part" ] && [ ! -e data/speech_commands_test_set_v0.01 ]
}

@test "file:// URLs and plain paths are sources too" {
    run ks-fetch --quiet --url "file://$CORPUS/$TRAIN" --test-url "$CORPUS/$TEST" data
    assert_success
    run diff <(sort data/SHA256SUMS) <(sort "$CORPUS/SHA256SUMS")
    assert_success
    mkdir want
    superb_manifests data want
    run diff want/train.tsv data/train.tsv
    assert_success
    run ks-fetch --url "$T/missing.tar.gz" other
    assert_failure 1
    assert_output --partial "missing.tar.gz: cannot open"
}

# make_tar NAME MEMBER...: MEMBER is NAME (an empty file), NAME=>SYMLINK-TARGET
# or NAME==>HARDLINK-TARGET
make_tar() {
    $PY - "$@" << 'EOF'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    for spec in sys.argv[2:]:
        if "==>" in spec:
            name, target = spec.split("==>")
            ti = tarfile.TarInfo(name); ti.type = tarfile.LNKTYPE; ti.linkname = target; t.addfile(ti)
        elif "=>" in spec:
            name, target = spec.split("=>")
            ti = tarfile.TarInfo(name); ti.type = tarfile.SYMTYPE; ti.linkname = target; t.addfile(ti)
        else:
            t.addfile(tarfile.TarInfo(spec), io.BytesIO(b""))
EOF
}

@test "archives that would write outside the target are refused" {
    mkdir -p jail/in
    cd jail/in
    make_tar dotdot.tar.gz ./yes/a.wav ../evil
    make_tar absolute.tar.gz "$T/jail/evil_absolute"
    make_tar symlink.tar.gz "link=>../.." link/evil_symlink
    make_tar symlink-abs.tar.gz "link=>$T/jail" link/evil_symlink_abs
    make_tar hardlink.tar.gz "h==>../../etc/passwd"
    for a in dotdot absolute symlink symlink-abs hardlink; do
        run ks-fetch --url $a.tar.gz --test-url $a.tar.gz out-$a
        assert_failure 1
        assert_output --partial "refusing member"
        # nothing unpacked, no temporary directory left
        run ls -A out-$a
        assert_output "$(printf 'SHA256SUMS\nspeech_commands_v0.01.tar.gz')"
    done
    run find "$T/jail" -name 'evil*'
    assert_output ""
}

@test "an archive that unpacks past --max-unpacked is refused and leaves nothing" {
    # 50 MB of zeros (50 kB packed), and 4,000 empty members
    $PY - << 'EOF'
import io, tarfile
with tarfile.open("zeros.tar.gz", "w:gz") as t:
    ti = tarfile.TarInfo("yes/a.wav"); ti.size = 50 << 20
    t.addfile(ti, io.BytesIO(bytes(ti.size)))
with tarfile.open("many.tar.gz", "w:gz") as t:
    for i in range(4000):
        t.addfile(tarfile.TarInfo("yes/%d.wav" % i), io.BytesIO(b""))
EOF
    for a in zeros many; do
        run ks-fetch --max-unpacked 0.001 --url $a.tar.gz --test-url $a.tar.gz out-$a
        assert_failure 1
        assert_output --partial "out-$a/speech_commands_v0.01.tar.gz: unpacks to more than 1000000 bytes, the limit (a decompression bomb?); raise it with --max-unpacked"
        run ls -A out-$a
        assert_output "$(printf 'SHA256SUMS\nspeech_commands_v0.01.tar.gz')"
    done
    # a limit above the size lets it through
    run ks-fetch --quiet --max-unpacked 0.06 --url zeros.tar.gz --test-url zeros.tar.gz ok
    [ "$(stat -c %s ok/speech_commands_v0.01/yes/a.wav)" = $((50 << 20)) ]
    run ks-fetch --max-unpacked 0 --url zeros.tar.gz out
    assert_failure 2
}

@test "links that stay inside are unpacked; extraction through a link is not" {
    make_tar inside.tar.gz d/a.wav "e=>d" validation_list.txt testing_list.txt
    run ks-fetch --quiet --url inside.tar.gz --test-url inside.tar.gz data
    assert_success
    assert_equal "$(readlink data/speech_commands_v0.01/e)" d
    assert_equal "$(cut -f1 data/train.tsv | tr '\n' ' ')" "key d/a e/a "
    make_tar through.tar.gz d/a.wav "e=>d" e/b.wav
    run ks-fetch --url through.tar.gz --test-url through.tar.gz other
    assert_failure 1
    assert_output --partial "through symlink"
    run ls -A other
    assert_output "$(printf 'SHA256SUMS\nspeech_commands_v0.01.tar.gz')"
}

@test "--words labels a corpus of one's own keywords" {
    ks-synth --quiet --speakers 3 --per-word 1 --noise-seconds 1 --words hey-robot,lights_on \
        --unknown-words cat,dog mine > /dev/null
    run ks-fetch --quiet --words hey-robot,lights_on --url mine/$TRAIN --test-url mine/$TEST data
    assert_success
    assert_line --index 1 --regexp '^0 +hey-robot +1 +1 +1$'
    assert_line --index 2 --regexp '^1 +lights_on +1 +1 +1$'
    assert_line --index 3 --regexp '^2 +_silence_ +5 +0 +1$'
    assert_line --index 4 --regexp '^3 +_unknown_ +2 +2 +1$'
}

@test "usage errors exit 2" {
    run ks-fetch
    assert_failure 2
    run ks-fetch --sha256 abc data
    assert_failure 2
    assert_output --partial "not 64 hex digits"
    run ks-fetch --words 'Yes' data
    assert_failure 2
    run ks-fetch --help
    assert_success
    assert_output --partial "Usage: ks-fetch"
}

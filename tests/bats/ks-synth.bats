#!/usr/bin/env bats
# ks-synth: layout, the partition rule, audio format, archives, determinism.
load helpers

setup_file() {
    export CORPUS="$BATS_FILE_TMPDIR/corpus"
    ks-synth --quiet --speakers 10 --per-word 2 --noise-seconds 2 -j 2 "$CORPUS" > "$BATS_FILE_TMPDIR/sums"
}

@test "the same seed gives the same archives, whatever the threads; another seed others" {
    ks-synth --quiet --speakers 10 --per-word 2 --noise-seconds 2 -j 1 again > again.txt
    run diff "$BATS_FILE_TMPDIR/sums" again.txt
    assert_success
    run diff "$CORPUS/SHA256SUMS" again/SHA256SUMS
    assert_success
    ks-synth --quiet --seed 2 --speakers 10 --per-word 2 --noise-seconds 2 other > other.txt
    run grep -c -F -f other.txt again.txt
    assert_output 0
}

@test "a machine's first corpus is the one every later run makes" {
    # libpulse (which espeak-ng loads) draws from rand() the first time it
    # sets up a user's configuration, and espeak-ng's breathy voices draw
    # their noise from it: speaker 18 of these 20 whispers (af+whisperf)
    mkdir home
    HOME="$PWD/home" ks-synth --quiet --speakers 20 --per-word 1 --unknown-per-word 0 --noise-seconds 1 first > /dev/null
    HOME="$PWD/home" ks-synth --quiet --speakers 20 --per-word 1 --unknown-per-word 0 --noise-seconds 1 second > /dev/null
    run diff first/SHA256SUMS second/SHA256SUMS
    assert_success
}

@test "stdout and SHA256SUMS hold the archives' checksums" {
    cd "$CORPUS"
    run sha256sum -c "$BATS_FILE_TMPDIR/sums"
    assert_success
    assert_line "speech_commands_v0.01.tar.gz: OK"
    assert_line "speech_commands_test_set_v0.01.tar.gz: OK"
}

@test "the layout is Speech Commands v0.01's" {
    cd "$CORPUS"
    for f in LICENSE README.md validation_list.txt testing_list.txt _background_noise_/README.md; do
        [ -s "$f" ]
    done
    assert_equal "$(ls _background_noise_/*.wav | wc -l)" 5
    assert_equal "$(ls -d */ | tr -d / | sort | tr '\n' ' ')" \
        "_background_noise_ bed bird cat dog down eight five four go happy house left marvin nine no off on one right seven sheila six stop three tree two up wow yes zero "
    # 10 speakers: keywords twice, other words once
    assert_equal "$(ls yes | wc -l)" 20
    assert_equal "$(ls marvin | wc -l)" 10
    run bash -c "ls */ | grep -v -E '^([0-9a-f]{8}_nohash_[0-9]+|[a-z_]+_noise|running_tap|hum)\.wav$|^README.md$|^$|:$'"
    assert_output ""
    grep -q synthetic README.md
}

@test "the partition lists follow TensorFlow's which_set rule" {
    cd "$CORPUS"
    run $PY - << 'EOF'
import glob, hashlib, re
def which_set(filename, validation_percentage=10, testing_percentage=10):
    hash_name = re.sub(r"_nohash_.*$", "", filename.split("/")[-1])
    h = int(hashlib.sha1(hash_name.encode()).hexdigest(), 16)
    percentage = (h % (2**27 - 1 + 1)) * (100.0 / (2**27 - 1))
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"
clips = sorted(p for p in glob.glob("*/*.wav") if not p.startswith("_"))
want = {s: [c for c in clips if which_set(c) == s] for s in ("validation", "testing", "training")}
for s in ("validation", "testing"):
    got = open(s + "_list.txt").read().splitlines()
    assert got == want[s], s
speakers = {s: {c.split("/")[1][:8] for c in want[s]} for s in want}
print(len(speakers["validation"]), len(speakers["testing"]), len(speakers["training"]))
EOF
    assert_success
    assert_output "1 1 8"
}

@test "clips are 1 s of 16 kHz 16-bit mono with speech in them" {
    cd "$CORPUS"
    run $PY - << 'EOF'
import glob, wave
import numpy as np
n = 0
for p in glob.glob("*/*.wav"):
    with wave.open(p) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), p
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float) / 32768
    if p.startswith("_background_noise_"):
        assert len(x) == 32000, p
        continue
    assert len(x) == 16000, p
    # the loudest 50 ms stand out from the quietest: a word over noise
    e = (x.reshape(20, 800) ** 2).mean(1)
    assert e.max() > 4 * e.min() > 0, (p, e.max(), e.min())
    n += 1
print(n)
EOF
    assert_success
    assert_output 400
}

@test "the training archive holds the tree, reproducibly stamped" {
    run $PY - "$CORPUS" << 'EOF'
import os, sys, tarfile
root = sys.argv[1]
t = tarfile.open(os.path.join(root, "speech_commands_v0.01.tar.gz"))
members = t.getmembers()
names = [m.name for m in members]
assert names == sorted(names) and names[0] == ".", names[:3]
assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(1501718400, 0, 0, "", "")}
files = sorted("./" + os.path.relpath(os.path.join(d, f), root)
               for d, _, fs in os.walk(root) for f in fs if "/" in os.path.relpath(os.path.join(d, f), root)
               or f in ("LICENSE", "README.md", "validation_list.txt", "testing_list.txt"))
assert sorted(m.name for m in members if m.isfile()) == files
for m in members[:50]:
    if m.isfile():
        assert t.extractfile(m).read() == open(os.path.join(root, m.name), "rb").read(), m.name
print(len(files))
EOF
    assert_success
    assert_output $((400 + 5 + 5))
}

@test "the test-set archive has the test speakers' clips, _unknown_ and _silence_" {
    run $PY - "$CORPUS" << 'EOF'
import collections, os, sys, tarfile
root = sys.argv[1]
t = tarfile.open(os.path.join(root, "speech_commands_test_set_v0.01.tar.gz"))
wavs = [m.name[2:] for m in t.getmembers() if m.name.endswith(".wav")]
folders = collections.Counter(w.split("/")[0] for w in wavs)
testing = open(os.path.join(root, "testing_list.txt")).read().split()
keywords = "yes no up down left right on off stop go".split()
assert sorted(w for w in wavs if w.split("/")[0] in keywords) == sorted(c for c in testing if c.split("/")[0] in keywords)
for w in wavs:
    folder, name = w.split("/")
    if folder == "_unknown_":
        word, clip = name.split("_", 1)
        assert word not in keywords and word + "/" + clip in testing, w
print(" ".join("%s:%d" % kv for kv in sorted(folders.items())))
EOF
    assert_success
    # one test speaker, keywords twice: 2 clips a keyword, as many _unknown_ and _silence_
    assert_output "_silence_:2 _unknown_:2 down:2 go:2 left:2 no:2 off:2 on:2 right:2 stop:2 up:2 yes:2"
}

@test "an existing corpus is not overwritten; an empty directory is filled" {
    mkdir full
    echo keep > full/file
    run ks-synth --speakers 3 --per-word 1 --noise-seconds 1 full
    assert_failure 1
    assert_output --partial "not empty"
    assert_equal "$(ls -A full)" file
    mkdir empty
    run ks-synth --quiet --speakers 3 --per-word 1 --noise-seconds 1 --unknown-words cat empty
    assert_success
    [ -s empty/speech_commands_v0.01.tar.gz ]
    assert_equal "$(ls -d empty.* 2> /dev/null)" ""
}

@test "--voices: speakers draw from the languages given, each of which must exist" {
    ks-synth --quiet --voices fr,es --speakers 10 --per-word 2 --noise-seconds 2 fr > fr.txt
    run grep -c -F -f fr.txt "$BATS_FILE_TMPDIR/sums"
    assert_output 0
    ks-synth --quiet --voices fr,es --speakers 10 --per-word 2 --noise-seconds 2 -j 1 fr2 > fr2.txt
    run diff fr.txt fr2.txt
    assert_success
    n=$(ls fr/yes | wc -l)
    [ "$n" -eq 20 ]
    run ks-synth --voices fr,xx x
    assert_failure 2
    assert_output --partial "--voices: espeak-ng has no voice 'xx'"
    run ks-synth --voices en-us+m3 x
    assert_failure 2
    assert_output --partial "give a language alone"
    run ks-synth --voices fr,,es x
    assert_failure 2
    run ks-synth --voices fr,fr x
    assert_failure 2
    [ ! -e x ]
}

@test "usage errors exit 2" {
    run ks-synth
    assert_failure 2
    run ks-synth --speakers 2 x
    assert_failure 2
    run ks-synth --words yes,_silence_ x
    assert_failure 2
    assert_output --partial "reserved"
    run ks-synth --words yes,cat --unknown-words cat x
    assert_failure 2
    run ks-synth --snr-min 30 --snr-max 10 x
    assert_failure 2
    [ ! -e x ]
    run ks-synth --help
    assert_success
    assert_output --partial "Usage: ks-synth"
}

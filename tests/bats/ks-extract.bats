#!/usr/bin/env bats
# ks-extract: manifests to example streams.

load helpers
load stream_helpers

# A small corpus in data/: three 1 s clips and a manifest with a header line.
mkcorpus() {
    mkdir -p data/yes data/no
    mkwav data/yes/a.wav 16000 16000 1 sine 440
    mkwav data/no/b.wav 16000 12000 1 noise
    mkwav data/yes/c.wav 16000 9000 1 sine 1000
    printf 'key\tpath\tlabel\na\tyes/a.wav\tyes\nb\tno/b.wav\tno\nc\tyes/c.wav\t\n' > data/m.tsv
}

@test "ks-extract: --help, --version, usage errors" {
    run ks-extract --help
    assert_success
    assert_output --partial "Usage: ks-extract"
    run ks-extract --version
    assert_success
    assert_output --partial "w2vtools"
    run ks-extract --converter nonsense
    assert_failure 2
    assert_output --partial "unknown converter"
    run ks-extract --max-length -1
    assert_failure 2
}

@test "ks-extract: keys, paths relative to the manifest, KS label ids, HF normalisation" {
    mkcorpus
    mkdir elsewhere && cd elsewhere
    run ks-extract -o out.stream ../data/m.tsv
    assert_success
    assert_output --partial "3 files, 3 records, 0 skipped"
    "$PY" -c "$PYLIB"'
h, recs = read_stream("out.stream")
assert h["type"] == "examples" and h["sample_rate"] == 16000, h
assert h["labels"] == ["yes","no","up","down","left","right","on","off","stop","go","_silence_","_unknown_"], h
assert [r["key"] for r in recs] == ["a", "b", "c"]
assert [r["path"] for r in recs] == ["yes/a.wav", "no/b.wav", "yes/c.wav"]
assert [r["label"] for r in recs] == [0, 1, -1]
for r, f in zip(recs, ["a", "b", "c"]):
    raw = wav_samples("../data/%s/%s.wav" % ({"a": "yes", "b": "no", "c": "yes"}[f], f))
    got = arr(r["input_values"])
    assert got.shape == raw.shape, (got.shape, raw.shape)
    assert np.array_equal(got, hf_normalize(raw)), np.abs(got - hf_normalize(raw)).max()
'
}

@test "ks-extract: a byte order mark keeps the header a header; a missing file's label is not counted" {
    mkcorpus
    # the spreadsheet's way: a BOM before "key"; labels outside KS, so they are sorted names
    printf '\xef\xbb\xbfkey\tpath\tlabel\na\tyes/a.wav\tcat\nb\tno/b.wav\tdog\nz\tno/absent.wav\temu\n' > data/bom.tsv
    run ks-extract -o out.stream data/bom.tsv
    assert_success
    assert_output --partial "data/bom.tsv:4: "
    assert_output --partial "3 files, 2 records, 1 skipped"
    "$PY" -c "$PYLIB"'
h, recs = read_stream("out.stream")
assert h["labels"] == ["cat", "dog"], h["labels"]
assert [(r["key"], r["label"]) for r in recs] == [("a", 0), ("b", 1)], recs
'
}

@test "ks-extract: normalisation equals numpy's float32 for many lengths" {
    lengths="1 7 8 9 127 128 129 255 1000 4097 8192 8193 15999 16000 16001 33333 50000"
    for n in $lengths; do
        mkwav "n$n.wav" 16000 "$n" 1 noise
        mkwav_float "f$n.wav" "$n"
        printf 'n%s\tn%s.wav\nf%s\tf%s.wav\n' "$n" "$n" "$n" "$n"
    done > m.tsv
    run ks-extract -o out.stream m.tsv
    assert_success
    "$PY" -c "$PYLIB"'
h, recs = read_stream("out.stream")
assert len(recs) == 34
for r in recs:
    if r["key"][0] == "n": raw = wav_samples(r["path"])
    else: raw = np.fromfile(r["path"], dtype="<f4", offset=44)
    got = arr(r["input_values"])
    assert np.array_equal(got, hf_normalize(raw)), (r["key"], np.abs(got - hf_normalize(raw)).max())
    assert r["label"] == -1
'
}

@test "ks-extract: --no-normalize gives the raw samples; a constant clip normalises to zeros" {
    mkwav loud.wav 16000 8000 1 sine
    mkwav flat.wav 16000 8000 1 const
    printf 'loud\tloud.wav\tyes\nflat\tflat.wav\tyes\n' > m.tsv
    ks-extract --no-normalize -o raw.stream m.tsv
    ks-extract -o norm.stream m.tsv
    "$PY" -c "$PYLIB"'
_, raw = read_stream("raw.stream")
_, norm = read_stream("norm.stream")
assert np.array_equal(arr(raw[0]["input_values"]), wav_samples("loud.wav"))
assert np.array_equal(arr(raw[1]["input_values"]), wav_samples("flat.wav"))
flat = arr(norm[1]["input_values"])
assert np.all(np.isfinite(flat)) and np.all(flat == 0), flat[:4]
'
}

@test "ks-extract: --max-length truncates before normalising (as HF does)" {
    mkwav long.wav 16000 20000 1 noise
    mkwav short.wav 16000 5000 1 noise
    printf 'long\tlong.wav\tyes\nshort\tshort.wav\tno\n' > m.tsv
    ks-extract --max-length 16000 -o out.stream m.tsv
    "$PY" -c "$PYLIB"'
_, recs = read_stream("out.stream")
a, b = arr(recs[0]["input_values"]), arr(recs[1]["input_values"])
assert a.shape == (16000,) and b.shape == (5000,)
assert np.array_equal(a, hf_normalize(wav_samples("long.wav")[:16000]))
assert np.array_equal(b, hf_normalize(wav_samples("short.wav")))
'
}

@test "ks-extract: label mapping: KS order, sorted names, --labels, unknown label" {
    mkwav x.wav 16000 1600
    printf 'a\tx.wav\tgo\nb\tx.wav\tyes\n' > ks.tsv
    printf 'a\tx.wav\tzebra\nb\tx.wav\tcat\nc\tx.wav\tmouse\nd\tx.wav\tcat\n' > other.tsv
    ks-extract -o ks.stream ks.tsv
    ks-extract -o other.stream other.tsv
    ks-extract --labels zebra,mouse,cat -o given.stream other.tsv
    "$PY" -c "$PYLIB"'
h, r = read_stream("ks.stream")
assert h["labels"][0] == "yes" and len(h["labels"]) == 12 and [x["label"] for x in r] == [9, 0]
h, r = read_stream("other.stream")
assert h["labels"] == ["cat", "mouse", "zebra"] and [x["label"] for x in r] == [2, 0, 1, 0], (h, r)
h, r = read_stream("given.stream")
assert h["labels"] == ["zebra", "mouse", "cat"] and [x["label"] for x in r] == [0, 2, 1, 2]
'
    run ks-extract --labels zebra,cat -o bad.stream other.tsv
    assert_failure 1
    assert_output --partial "other.tsv:3: label 'mouse' is not among --labels"
    [ ! -e bad.stream ]
    run ks-extract --labels a,,b other.tsv
    assert_failure 2
    assert_output --partial "ks-extract: --labels: 'a,,b': an empty label name"
    run ks-extract --labels a,b,a other.tsv
    assert_failure 2
    assert_output --partial "ks-extract: --labels: 'a,b,a': a label named twice ('a')"
}

@test "ks-extract: stereo and 8, 22.05, 44.1 kHz are resampled to 16 kHz mono, keeping the tone" {
    mkwav r8.wav 8000 8000 1 sine 440
    mkwav r22.wav 22050 22050 2 sine 440
    mkwav r44.wav 44100 44100 2 sine 440
    mkwav r16s.wav 16000 16000 2 sine 440
    printf 'r8\tr8.wav\nr22\tr22.wav\nr44\tr44.wav\nr16s\tr16s.wav\n' > m.tsv
    ks-extract --no-normalize -o out.stream m.tsv
    ks-extract --no-normalize --rate 8000 -o out8k.stream m.tsv
    "$PY" -c "$PYLIB"'
for name, rate in (("out.stream", 16000), ("out8k.stream", 8000)):
    h, recs = read_stream(name)
    assert h["sample_rate"] == rate
    for r in recs:
        x = arr(r["input_values"]).astype(np.float64)
        assert abs(len(x) - rate) <= 1, (r["key"], len(x))
        spec = np.abs(np.fft.rfft(x[200:-200] * np.hanning(len(x) - 400)))
        peak = np.argmax(spec) * rate / (len(x) - 400)
        assert abs(peak - 440) < 3, (name, r["key"], peak)
        assert 0.45 < np.abs(x[200:-200]).max() < 0.55, (r["key"], np.abs(x).max())
'
}

@test "ks-extract: missing, empty and corrupt files are reported and skipped; --strict makes them fatal" {
    mkwav good1.wav 16000 1600
    mkwav good2.wav 16000 1600
    mkwav empty.wav 16000 0
    : > zero.wav
    head -c 3000 /dev/urandom > corrupt.wav
    printf 'g1\tgood1.wav\tyes\nm\tmissing.wav\tyes\ne\tempty.wav\tno\nz\tzero.wav\tno\nc\tcorrupt.wav\tno\ng2\tgood2.wav\tyes\n' > m.tsv
    run ks-extract -o out.stream m.tsv
    assert_success
    assert_output --partial "m.tsv:2: missing.wav: cannot open: No such file or directory: skipped"
    assert_output --partial "m.tsv:3: empty.wav: no audio samples"
    assert_output --partial "m.tsv:4: zero.wav: not a readable audio file"
    assert_output --partial "m.tsv:5: corrupt.wav: not a readable audio file"
    assert_output --partial "6 files, 2 records, 4 skipped"
    "$PY" -c "$PYLIB"'
_, recs = read_stream("out.stream")
assert [r["key"] for r in recs] == ["g1", "g2"]
'
    run ks-extract --strict -o strict.stream m.tsv
    assert_failure 1
    assert_output --partial "m.tsv:2: missing.wav: cannot open"
    [ ! -e strict.stream ]
    ls strict.stream* 2>/dev/null && false
    printf 'm\tmissing.wav\tyes\n' > none.tsv
    run ks-extract -o none.stream none.tsv
    assert_failure 1
    assert_output --partial "no file of none.tsv could be read"
}

@test "ks-extract: -j2 writes exactly what -j1 writes, in manifest order" {
    for i in $(seq 1 40); do
        if [ $i = 17 ]; then printf 'k%s\tbad.wav\tno\n' $i; continue; fi
        mkwav "c$i.wav" $([ $((i % 3)) = 0 ] && echo 22050 || echo 16000) $((4000 + 97 * i)) 1 noise
        printf 'k%s\tc%s.wav\t%s\n' $i $i $([ $((i % 2)) = 0 ] && echo yes || echo no)
    done > m.tsv
    echo garbage > bad.wav
    ks-extract -j1 --quiet -o one.stream m.tsv 2>/dev/null
    ks-extract -j2 --quiet -o two.stream m.tsv 2>/dev/null
    ks-extract --threads 2 --quiet -o three.stream m.tsv 2>/dev/null
    cmp one.stream two.stream
    cmp one.stream three.stream
    run ks-cat --check one.stream
    assert_output --partial "39 records"
}

@test "ks-extract: --slice-long cuts long files into windows KEY@FIRST_SAMPLE, each normalised" {
    mkwav noise.wav 16000 56000 1 noise
    mkwav word.wav 16000 12000 1 noise
    printf 'noise\tnoise.wav\t_silence_\nword\tword.wav\tyes\n' > m.tsv
    ks-extract --slice-long 1 -o out.stream m.tsv
    "$PY" -c "$PYLIB"'
_, recs = read_stream("out.stream")
assert [r["key"] for r in recs] == ["noise@0", "noise@16000", "noise@32000", "word"], [r["key"] for r in recs]
assert [r["label"] for r in recs] == [10, 10, 10, 0]
raw = wav_samples("noise.wav")
for k, r in enumerate(recs[:3]):
    assert np.array_equal(arr(r["input_values"]), hf_normalize(raw[16000 * k:16000 * (k + 1)])), k
assert arr(recs[3]["input_values"]).shape == (12000,)
'
}

@test "ks-extract: manifest from stdin resolves paths from the working directory" {
    mkcorpus
    cd data
    run bash -c 'cut -f1-3 m.tsv | ks-extract --quiet | ks-cat --check'
    assert_success
    assert_output --partial "3 records"
}

@test "ks-extract: a malformed manifest line is an error naming the line" {
    mkwav x.wav 16000 1600
    printf 'a\tx.wav\tyes\njust-one-field\n' > m.tsv
    run ks-extract -o out.stream m.tsv
    assert_failure 1
    assert_output --partial "m.tsv:2: expected key<TAB>path<TAB>label"
    [ ! -e out.stream ]
}

@test "ks-extract: a WAV whose header claims 2^32 bytes of data gives the samples it has" {
    "$PY" - << 'EOF'
import struct
fmt = struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
body = struct.pack("<8000h", *([1000, -1000] * 4000))
open("liar.wav", "wb").write(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + fmt +
                             b"data" + struct.pack("<I", 0xFFFFFFF0) + body)
EOF
    printf 'key\tpath\tlabel\nliar\tliar.wav\tyes\n' > m.tsv
    ks-extract --quiet --no-normalize m.tsv > liar.stream
    run "$PY" - << 'EOF'
import msgpack
recs = list(msgpack.Unpacker(open("liar.stream", "rb"), raw=False))
x = recs[1]["input_values"]
assert x["shape"] == [8000], x["shape"]
EOF
    assert_success
}

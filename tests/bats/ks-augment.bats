#!/usr/bin/env bats
# ks-augment: noise at an SNR, time shift, speed, gain and rooms, drawn from
# (seed, key, epoch), with everything but the real samples left as it was.

load helpers
load stream_helpers

# mktones PATH NORMALIZED SPEC...: an examples stream with do_normalize
# NORMALIZED (true/false) in its header; SPEC is LENGTH:LABEL:KIND, KIND a
# frequency in Hz (a tone of amplitude 0.5), 'noise' (seeded by the index)
# or 'silence' (zeros).  Keys t0, t1, ...; labels yes no _silence_.
mktones() {
    "$PY" -c "$PYLIB"'
out = open(sys.argv[1], "wb")
norm = sys.argv[2] == "true"
out.write(msgpack.packb({"format": "w2v-stream", "version": 1, "type": "examples", "sample_rate": 16000,
                         "labels": ["yes", "no", "_silence_"], "do_normalize": norm}))
for i, spec in enumerate(sys.argv[3:]):
    n, label, kind = spec.split(":")
    n = int(n)
    if kind == "silence": x = np.zeros(n, np.float32)
    elif kind == "noise": x = np.random.default_rng(i).uniform(-0.5, 0.5, n).astype(np.float32)
    else: x = (0.5 * np.sin(2 * np.pi * float(kind) * np.arange(n) / 16000)).astype(np.float32)
    if norm and kind != "silence": x = hf_normalize(x)
    out.write(msgpack.packb({"key": "t%d" % i, "label": int(label), "input_values":
        {"dtype": "f32", "shape": [n], "data": x.astype("<f4").tobytes()}}, use_bin_type=True))
' "$@"
}

# Noise recordings: two at 16 kHz, one at 8 kHz (resampled on loading), and
# a README that is no audio.
mknoise() {
    mkdir -p noise
    mkwav noise/a.wav 16000 40000 1 noise
    mkwav noise/b.wav 8000 12000 2 noise
    mkwav noise/c.wav 16000 3000 1 sine 3000
    echo "not audio" > noise/README.md
}

# Twelve examples of different lengths, tones and noise, one silent
# _silence_, batched in fours over three shuffled epochs.
mkbatches() {
    local norm=${1:-true} specs=() i
    for i in $(seq 0 10); do specs+=("$((8000 + 700 * i)):$((i % 2)):$((300 + 150 * i))"); done
    specs[3]="9000:1:noise"
    specs+=("12000:2:silence")
    mktones ex.stream "$norm" "${specs[@]}"
    ks-batch --quiet -b 4 --shuffle --epochs 3 -o batches.stream ex.stream
}

ALL="--noise noise --noise-prob 0.7 --snr-db 0,20 --time-shift 100 --speed 0.9,1.1 --reverb 0.5"

@test "ks-augment: the same seed gives the same bytes, whatever the threads; another seed others" {
    mknoise
    mkbatches
    ks-augment --quiet -j1 $ALL -o one.stream batches.stream
    ks-augment --quiet -j2 $ALL -o two.stream batches.stream
    cmp one.stream two.stream
    ks-augment --quiet -j2 $ALL < batches.stream > again.stream
    cmp one.stream again.stream
    ks-augment --quiet --seed 7 $ALL -o other.stream batches.stream
    ! cmp -s one.stream other.stream
    ks-cat --check one.stream
}

@test "ks-augment: draws come from key and epoch: fresh each epoch, the same in any batch" {
    mknoise
    mkbatches
    ks-augment --quiet $ALL -o out.stream batches.stream
    # an examples stream is epoch 0: its examples equal epoch 0's rows
    ks-augment --quiet $ALL -o ex-out.stream ex.stream
    "$PY" -c "$PYLIB"'
h, bs = read_stream("out.stream")
_, exs = read_stream("ex-out.stream")
exs = {e["key"]: arr(e["input_values"]) for e in exs}
rows = {}
for k, b in enumerate(bs):
    x, L = arr(b["input_values"]), arr(b["lengths"])
    for i, key in enumerate(b["keys"]):
        rows.setdefault(key, {})[k // h["batches_per_epoch"]] = x[i, :L[i]]
assert len(rows) == 12 and all(len(r) == 3 for r in rows.values())
for key, r in rows.items():
    assert np.array_equal(r[0], exs[key]), key
    if key == "t11": continue  # silence: silent again in any epoch without noise
    assert not np.array_equal(r[0], r[1]) and not np.array_equal(r[1], r[2]), key
'
}

@test "ks-augment: an example drawn again in an epoch (ks-batch --balance) gets draws of its own" {
    mknoise
    mkbatches
    ks-batch --quiet -b 4 --balance --epochs 2 --seed 5 -o balanced.stream ex.stream
    ks-augment --quiet -j1 $ALL -o one.stream balanced.stream
    ks-augment --quiet -j2 $ALL -o two.stream balanced.stream
    cmp one.stream two.stream
    "$PY" -c "$PYLIB"'
h, bi = read_stream("balanced.stream")
_, bo = read_stream("one.stream")
seen, repeats = {}, 0
for k, (a, b) in enumerate(zip(bi, bo)):
    L = arr(a["lengths"])
    for i, key in enumerate(a["keys"]):
        x, y = arr(a["input_values"])[i, :L[i]], arr(b["input_values"])[i, :L[i]]
        mine = (k // h["batches_per_epoch"], key)
        if mine in seen and x.any():  # silence without noise stays silent
            assert np.array_equal(seen[mine][0], x) and not np.array_equal(seen[mine][1], y), mine
            repeats += 1
        seen[mine] = (x, y)
assert repeats > 3, repeats
'
}

@test "ks-augment: keys, labels, lengths, mask and padding untouched; changed rows normalised over real samples" {
    mknoise
    mkbatches
    run ks-augment $ALL -o out.stream batches.stream
    assert_success
    assert_output --regexp "ks-augment: 36 examples in .*: noise [0-9]+, shift [0-9]+, speed 36, gain 0, reverb [0-9]+"
    "$PY" -c "$PYLIB"'
hi, bi = read_stream("batches.stream")
ho, bo = read_stream("out.stream")
assert hi == ho, (hi, ho)
assert len(bi) == len(bo) == 9
for a, b in zip(bi, bo):
    assert a["keys"] == b["keys"]
    for f in ("labels", "lengths", "attention_mask"):
        assert np.array_equal(arr(a[f]), arr(b[f])), f
    x, y, L = arr(a["input_values"]), arr(b["input_values"]), arr(a["lengths"])
    assert x.shape == y.shape
    for i in range(len(L)):
        assert np.all(y[i, L[i]:] == 0), "padding"
        r = y[i, :L[i]]
        if not x[i].any() and not r.any(): continue  # silence without noise stays silent
        assert not np.array_equal(r, x[i, :L[i]]), b["keys"][i]
        assert abs(r.mean()) < 1e-5 and abs(r.var() - 1) < 1e-4, (r.mean(), r.var())
        # as the feature extractor would: normalising again changes nothing
        assert np.allclose(hf_normalize(r), r, atol=1e-5)
'
}

@test "ks-augment: noise is mixed at the drawn SNR (within 0.5 dB), _silence_ included" {
    mknoise
    mktones ex.stream false 16000:0:1000 16000:1:440 9000:0:noise 5000:1:2500 16000:2:silence
    for snr in -5 5 15; do
        ks-augment --quiet --noise noise --noise-prob 1 --snr-db $snr,$snr -o out$snr.stream ex.stream
    done
    ks-augment --quiet --noise noise --noise-prob 1 --snr-db 0,20 --seed 3 -o range.stream ex.stream
    "$PY" -c "$PYLIB"'
_, ins = read_stream("ex.stream")
def snrs(path):
    _, outs = read_stream(path)
    got = []
    for a, b in zip(ins, outs):
        x, y = arr(a["input_values"]).astype(np.float64), arr(b["input_values"]).astype(np.float64)
        assert a["key"] == b["key"] and a["label"] == b["label"] and len(x) == len(y)
        if a["label"] == 2:
            # silence gets the noise at its own level
            assert np.all(x == 0) and np.mean(y ** 2) > 1e-4
            continue
        got.append(10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2)))
    return np.array(got)
for snr in (-5, 5, 15):
    got = snrs("out%d.stream" % snr)
    assert np.all(np.abs(got - snr) < 0.5), (snr, got)
got = snrs("range.stream")
assert np.all(got > -0.5) and np.all(got < 20.5) and np.ptp(got) > 1, got
'
}

@test "ks-augment: --noise-prob sets how many examples get noise" {
    mknoise
    mkbatches
    run ks-augment --noise noise --noise-prob 0 -o none.stream batches.stream
    assert_success
    assert_output --partial "noise 0,"
    # untouched examples are written as they came
    cmp none.stream batches.stream
    run ks-augment --noise noise --noise-prob 1 -o all.stream batches.stream
    assert_output --partial "noise 36,"
    run ks-augment --noise noise --noise-prob 0.5 -o half.stream batches.stream
    [[ $output =~ noise\ ([0-9]+), ]]
    n=${BASH_REMATCH[1]}
    ((n >= 9 && n <= 27)) || fail "noise in $n of 36 at --noise-prob 0.5"
}

@test "ks-augment: --time-shift moves the signal within the example, zeros coming in" {
    specs=()
    for i in $(seq 0 19); do specs+=("6000:0:noise"); done
    mktones ex.stream false "${specs[@]}"
    ks-augment --quiet --time-shift 100 -o out.stream ex.stream
    "$PY" -c "$PYLIB"'
_, ins = read_stream("ex.stream")
_, outs = read_stream("out.stream")
shifts = []
for a, b in zip(ins, outs):
    x, y = arr(a["input_values"]), arr(b["input_values"])
    n = len(x)
    found = [s for s in range(-1600, 1601)
             if np.array_equal(y[max(s, 0):n + min(s, 0)], x[max(-s, 0):n - max(s, 0)])
             and not y[:max(s, 0)].any() and not y[n + min(s, 0):].any()]
    assert len(found) == 1, (a["key"], found)
    shifts.append(found[0])
assert len(set(shifts)) > 10 and min(shifts) < 0 < max(shifts), shifts
'
}

@test "ks-augment: --speed keeps the length and moves a tone's frequency by the factor" {
    mktones ex.stream false 16000:0:1000 16000:1:2000
    for f in 0.9 1.1; do
        ks-augment --quiet --speed $f,$f -o out$f.stream ex.stream
        ks-augment --quiet --speed $f,$f --converter best -o best$f.stream ex.stream
    done
    "$PY" -c "$PYLIB"'
_, ins = read_stream("ex.stream")
for f in (0.9, 1.1):
    for conv in ("out", "best"):
        _, outs = read_stream("%s%s.stream" % (conv, f))
        for a, b in zip(ins, outs):
            x, y = arr(a["input_values"]), arr(b["input_values"])
            assert len(y) == len(x) == 16000
            spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
            peak = np.argmax(spec) * 16000 / len(y)
            want = f * (1000 if a["label"] == 0 else 2000)
            assert abs(peak - want) <= 2, (f, conv, peak, want)
            # a faster clip is shorter: zeros pad it at both ends
            if f > 1: assert not y[:500].any() and not y[-500:].any()
            else: assert y[:500].any() and y[-500:].any()
'
}

@test "ks-augment: --gain-db scales raw audio; a normalised stream is told it changes nothing" {
    mktones ex.stream false 16000:0:1000 7000:1:noise
    ks-augment --quiet --gain-db 6,6 -o out.stream ex.stream
    "$PY" -c "$PYLIB"'
_, ins = read_stream("ex.stream")
_, outs = read_stream("out.stream")
for a, b in zip(ins, outs):
    x, y = arr(a["input_values"]), arr(b["input_values"])
    assert np.allclose(y, x * 10 ** (6 / 20), rtol=1e-6, atol=0)
'
    mktones norm.stream true 16000:0:1000
    run ks-augment --gain-db -6,6 -o out.stream norm.stream
    assert_success
    assert_output --partial "--gain-db changes nothing in a normalised stream"
}

@test "ks-augment: --rir convolves the impulse response, its direct path in place, the power kept" {
    mkdir rir
    # a direct path at sample 20, echoes 100 and 900 samples later
    "$PY" -c "$PYLIB"'
h = np.zeros(1200, np.float32); h[20] = 0.8; h[120] = -0.4; h[920] = 0.2
w = wave.open("rir/room.wav", "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes((h * 32767).astype("<i2").tobytes()); w.close()
'
    mktones ex.stream false 16000:0:1000 7000:1:noise 3000:0:300
    ks-augment --quiet --reverb 1 --rir rir -o out.stream ex.stream
    ks-augment --quiet --reverb 1 -o rooms.stream ex.stream
    "$PY" -c "$PYLIB"'
h = wav_samples("rir/room.wav").astype(np.float64)
_, ins = read_stream("ex.stream")
for path in ("out.stream", "rooms.stream"):
    _, outs = read_stream(path)
    for a, b in zip(ins, outs):
        x, y = arr(a["input_values"]).astype(np.float64), arr(b["input_values"]).astype(np.float64)
        assert len(y) == len(x)
        assert abs(np.mean(y ** 2) / np.mean(x ** 2) - 1) < 1e-4
        if path == "out.stream":
            want = np.convolve(x, h)[20:20 + len(x)]
            want *= np.sqrt(np.mean(x ** 2) / np.mean(want ** 2))
            assert np.max(np.abs(y - want)) < 1e-4 * np.max(np.abs(want)), np.max(np.abs(y - want))
        else:
            assert np.max(np.abs(y - x)) > 0.05
'
}

@test "ks-augment: missing or bad noise and impulse responses are named" {
    mktones ex.stream true 16000:0:1000
    run ks-augment --noise nosuch ex.stream
    assert_failure 1
    assert_output "ks-augment: nosuch: cannot open: No such file or directory"
    mkdir empty
    echo hello > empty/README.md
    run ks-augment --noise empty ex.stream
    assert_failure 1
    assert_output --partial "ks-augment: empty: no audio files"
    mkdir bad
    mkwav bad/good.wav 16000 4000 1 noise
    head -c 300 /dev/urandom > bad/broken.wav
    run ks-augment --noise bad ex.stream
    assert_failure 1
    assert_output --partial "ks-augment: bad/broken.wav: not a readable audio file"
    # a list: paths relative to it, a missing one named
    mkdir lists
    printf '# noise\n../bad/good.wav\n\n../gone.wav\n' > lists/noise.txt
    run ks-augment --noise lists/noise.txt ex.stream
    assert_failure 1
    assert_output --partial "ks-augment: lists/../gone.wav: cannot open"
    printf '../bad/good.wav\n' > lists/ok.txt
    ks-augment --quiet --noise lists/ok.txt ex.stream > out.stream
    mkdir long
    mkwav long/hall.wav 16000 48000 1 noise
    run ks-augment --reverb 1 --rir long ex.stream
    assert_failure 1
    assert_output --partial "ks-augment: long/hall.wav: 3.0 s is too long for an impulse response"
}

@test "ks-augment: bad ranges and options are usage errors" {
    mktones ex.stream true 16000:0:1000
    for args in "--speed 1.2,0.9" "--speed 3,4" "--speed 1" "--snr-db 5" "--snr-db a,b" "--noise-prob 1.5" \
                "--time-shift -5" "--reverb 2" "--gain-db 1,x" "--converter cubic" "--snr-db 0,10" \
                "--rir somewhere" "-j 0"; do
        run ks-augment $args ex.stream
        assert_failure 2
        assert_line --index 0 --regexp "^ks-augment: "
    done
    run ks-augment --speed 1.2,0.9 ex.stream
    assert_output --partial "--speed: LO 1.2 is above HI 0.9"
    run ks-augment --snr-db 0,10 ex.stream
    assert_output --partial "--noise-prob and --snr-db need --noise"
}

@test "ks-augment: a truncated stream is an error that leaves no output" {
    mknoise
    mkbatches
    head -c 60000 batches.stream > cut.stream
    run ks-augment --noise noise -o out.stream cut.stream
    assert_failure 1
    assert_output --partial "cut.stream: record"
    assert_output --partial "truncated"
    [ ! -e out.stream ]
    [ -z "$(ls | grep out.stream)" ]
    run ks-augment --noise noise ex.stream.missing
    assert_failure 1
    assert_output --partial "ex.stream.missing"
}

@test "ks-augment: refuses a terminal, ends quietly on a closed pipe" {
    mkbatches
    run script -qec "ks-augment --time-shift 10 batches.stream" /dev/null
    assert_failure 2
    assert_output --partial "ks-augment: refusing to write a binary stream to a terminal"
    ks-batch --quiet -b 4 --epochs 200 -o big.stream ex.stream
    run bash -c "ks-augment --time-shift 10 big.stream 2> err | head -c 10 > /dev/null; echo \${PIPESTATUS[0]}"
    assert_output 141
    [ ! -s err ] || fail "ks-augment wrote to stderr: $(cat err)"
}

@test "ks-augment: raw audio from ks-extract --no-normalize stays raw" {
    mknoise
    mkwav a.wav 16000 16000 1 sine 500
    printf 'a\ta.wav\tyes\n' > m.tsv
    ks-extract --quiet --no-normalize m.tsv | ks-batch --quiet -b 1 -o raw.stream
    ks-augment --quiet --noise noise --noise-prob 1 --snr-db 20,20 -o out.stream raw.stream
    "$PY" -c "$PYLIB"'
h, [b] = read_stream("out.stream")
assert h["do_normalize"] is False, h
_, [a] = read_stream("raw.stream")
x, y = arr(a["input_values"])[0].astype(np.float64), arr(b["input_values"])[0].astype(np.float64)
assert abs(10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2)) - 20) < 0.5
assert abs(np.std(y) - 1) > 0.3, np.std(y)  # not normalised: the tone has amplitude 0.5
'
}

@test "ks-augment: pipelines/ks.mk puts it between ks-batch and w2v-train when AUGMENT_OPTS is set; the demo sets it" {
    make -n -f "$TOP/pipelines/demo.mk" OUT="$T/d" AUGMENT_OPTS='--speed 0.9,1.1 --noise $(NOISE_DIR)' \
        "$T/d/run/model.safetensors" > plan
    run grep -B1 -A1 "ks-augment" plan
    assert_line --index 0 --partial "train.examples | "
    assert_line --index 1 --partial "ks-augment --quiet --seed 1 --speed 0.9,1.1 --noise $T/d/data/speech_commands_v0.01/_background_noise_ | "
    assert_line --index 2 --partial "w2v-train -m $T/d/init"
    # the demo's default: the corpus's noise, shifts and speed; AUGMENT_OPTS= none
    make -n -f "$TOP/pipelines/demo.mk" OUT="$T/d" "$T/d/run/model.safetensors" > default
    grep -q -- "ks-augment --quiet --seed 1 --threads 1 --noise $T/d/data/speech_commands_v0.01/_background_noise_ .*--speed 0.9,1.1" default
    make -n -f "$TOP/pipelines/demo.mk" OUT="$T/d" AUGMENT_OPTS= "$T/d/run/model.safetensors" > plain
    ! grep -q ks-augment plain
}

@test "ks-augment: in a pipeline after ks-extract and ks-batch" {
    mknoise
    mkwav a.wav 16000 16000 1 sine 500
    mkwav b.wav 16000 12000 1 noise
    printf 'a\ta.wav\tyes\nb\tb.wav\tno\n' > m.tsv
    run bash -c 'ks-extract --quiet m.tsv | ks-batch --quiet -b 2 --epochs 2 |
                 ks-augment --quiet --noise noise --speed 0.9,1.1 --reverb 1 | ks-cat'
    assert_success
    assert_output --partial '"do_normalize":true'
    assert_output --partial '"batches_per_epoch":1'
    assert_output --partial '"shape":[2,16000]'
}

#!/usr/bin/env bats
# ks-batch: examples streams to batches streams.

load helpers
load stream_helpers

# Python that checks every batch of a stream against the examples it came
# from (mkexamples' values say which example and sample each value is):
# rows are contiguous windows of their example, zero-padded, with a mask
# and length that agree.  Sets h (header), batches, epochs (lists of keys).
CHECK_BATCHES='
def check(path, per_epoch=None):
    h, batches = read_stream(path)
    assert h["type"] == "batches", h
    for b in batches:
        x, m, L, y = arr(b["input_values"]), arr(b["attention_mask"]), arr(b["lengths"]), arr(b["labels"])
        B, T = x.shape
        assert m.shape == (B, T) and L.shape == (B,) and y.shape == (B,) and len(b["keys"]) == B
        assert T == L.max() or FIXED_T, (T, L)
        for i in range(B):
            n = L[i]
            assert np.all(m[i, :n] == 1) and np.all(m[i, n:] == 0)
            assert np.all(x[i, n:] == 0)
            v = x[i, :n].astype(np.int64) - 1
            ex = int(b["keys"][i][1:])
            assert np.all(v // 100000 == ex), (b["keys"][i], v[:3])
            assert np.all(np.diff(v % 100000) == 1)
            assert y[i] == LABELS[ex]
    return h, batches
FIXED_T = False
'

# 23 examples of lengths 1000..3200 with labels cycling 0..3.
mk23() {
    specs=()
    for i in $(seq 0 22); do specs+=("$((1000 + 100 * i)):$((i % 4))"); done
    mkexamples ex.stream "${specs[@]}"
    LABELS="LABELS = [i % 4 for i in range(23)]"
}

@test "ks-batch: --help, --version, usage errors" {
    run ks-batch --help
    assert_success
    assert_output --partial "Usage: ks-batch"
    run ks-batch --version
    assert_success
    run ks-batch --crop random
    assert_failure 2
    assert_output --partial "--crop random needs --max-length"
    run ks-batch --crop middle
    assert_failure 2
    run ks-batch -b 0
    assert_failure 2
}

@test "ks-batch: shapes, zero padding, mask, lengths, labels; header schedule" {
    mk23
    run ks-batch -b 5 -o out.stream ex.stream
    assert_success
    "$PY" -c "$PYLIB$CHECK_BATCHES$LABELS"'
h, bs = check("out.stream")
assert h["batches_per_epoch"] == 5 and h["epochs"] == 1 and h["batch_size"] == 5, h
assert h["labels"] == ["a", "b", "c", "d"] and h["sample_rate"] == 16000
assert [len(b["keys"]) for b in bs] == [5, 5, 5, 5, 3]
assert [k for b in bs for k in b["keys"]] == ["k%d" % i for i in range(23)]
assert [arr(b["input_values"]).shape[1] for b in bs] == [1400, 1900, 2400, 2900, 3200]
assert list(arr(bs[0]["lengths"])) == [1000, 1100, 1200, 1300, 1400]
'
}

@test "ks-batch: --shuffle: each example once per epoch, a fresh order per epoch, the same for the same seed" {
    mk23
    ks-batch -b 4 --shuffle --seed 7 --epochs 3 -o a.stream ex.stream
    ks-batch -b 4 --shuffle --seed 7 --epochs 3 -o b.stream ex.stream
    ks-batch -b 4 --shuffle --seed 8 --epochs 3 -o c.stream ex.stream
    cmp a.stream b.stream
    ! cmp -s a.stream c.stream
    "$PY" -c "$PYLIB$CHECK_BATCHES$LABELS"'
h, bs = check("a.stream")
assert h["batches_per_epoch"] == 6 and h["epochs"] == 3 and len(bs) == 18
epochs = [[k for b in bs[6 * e:6 * e + 6] for k in b["keys"]] for e in range(3)]
for keys in epochs:
    assert sorted(keys) == sorted("k%d" % i for i in range(23)), keys
assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]
assert epochs[0] != ["k%d" % i for i in range(23)]
'
}

@test "ks-batch: a pipe gives what the file gives" {
    mk23
    ks-batch -b 4 --shuffle --epochs 2 --crop random --max-length 1500 -o file.stream ex.stream
    cat ex.stream | ks-batch -b 4 --shuffle --epochs 2 --crop random --max-length 1500 > pipe.stream
    cmp file.stream pipe.stream
    cat ex.stream | TMPDIR="$T" ks-batch --quiet | ks-cat --check
}

@test "ks-batch: --drop-last keeps only full batches" {
    mk23
    ks-batch -b 5 --drop-last --shuffle --epochs 2 -o out.stream ex.stream
    "$PY" -c "$PYLIB$CHECK_BATCHES$LABELS"'
h, bs = check("out.stream")
assert h["batches_per_epoch"] == 4 and len(bs) == 8
assert all(len(b["keys"]) == 5 for b in bs)
'
}

@test "ks-batch: --max-length truncates; --crop random takes a fresh window per epoch" {
    mk23
    ks-batch -b 23 --max-length 1500 -o trunc.stream ex.stream
    ks-batch -b 23 --max-length 1500 --crop random --epochs 4 -o crop.stream ex.stream
    "$PY" -c "$PYLIB$CHECK_BATCHES$LABELS"'
h, bs = check("trunc.stream")
x, L = arr(bs[0]["input_values"]), arr(bs[0]["lengths"])
assert x.shape == (23, 1500) and list(L) == [min(1000 + 100 * i, 1500) for i in range(23)]
assert all((x[i, 0] - 1) % 100000 == 0 for i in range(23)), "truncation keeps the start"
h, bs = check("crop.stream")
starts = np.array([[(int(arr(b["input_values"])[i, 0]) - 1) % 100000 for i in range(23)] for b in bs])
lens = np.array([1000 + 100 * i for i in range(23)])
assert np.all(starts[:, lens <= 1500] == 0)
assert np.all(starts <= np.maximum(lens - 1500, 0))
long = lens > 1500
assert len(set(map(tuple, starts[:, long]))) == 4, "a fresh window every epoch"
assert (starts[:, long] > 0).mean() > 0.5
'
}

@test "ks-batch: --pad-to pads every batch to N; an example longer than N is an error" {
    mk23
    ks-batch -b 4 --pad-to 4000 -o out.stream ex.stream
    "$PY" -c "$PYLIB$CHECK_BATCHES$LABELS"'
FIXED_T = True
h, bs = check("out.stream")
assert all(arr(b["input_values"]).shape[1] == 4000 for b in bs)
'
    run ks-batch -b 4 --pad-to 2000 -o bad.stream ex.stream
    assert_failure 1
    assert_output --partial "do not fit --pad-to 2000"
    [ ! -e bad.stream ]
    ks-batch -b 4 --pad-to 2000 --max-length 2000 ex.stream | ks-cat --check
}

@test "ks-batch: --sort-by-length groups similar lengths and pads less" {
    specs=()
    for i in $(seq 0 59); do specs+=("$((1000 + (i * 7919) % 3001)):$((i % 4))"); done
    mkexamples ex.stream "${specs[@]}"
    ks-batch -b 6 --shuffle -o plain.stream ex.stream
    ks-batch -b 6 --shuffle --sort-by-length -o sorted.stream ex.stream
    ks-batch -b 6 --sort-by-length -o ordered.stream ex.stream
    "$PY" -c "$PYLIB$CHECK_BATCHES"'
LABELS = [i % 4 for i in range(60)]
def padding(path):
    h, bs = check(path)
    keys = sorted(k for b in bs for k in b["keys"])
    assert keys == sorted("k%d" % i for i in range(60))
    return sum(int((arr(b["attention_mask"]) == 0).sum()) for b in bs), bs
plain, _ = padding("plain.stream")
shuffled, _ = padding("sorted.stream")
ordered, bs = padding("ordered.stream")
assert shuffled < plain / 3, (shuffled, plain)
L = np.concatenate([arr(b["lengths"]) for b in bs])
assert np.all(np.diff(L) >= 0), "without --shuffle everything is sorted"
'
}

@test "ks-batch: --balance draws the classes evenly" {
    specs=()
    for i in $(seq 0 99); do
        if [ $i -lt 85 ]; then label=0; elif [ $i -lt 95 ]; then label=1; else label=2; fi
        specs+=("1000:$label")
    done
    mkexamples ex.stream "${specs[@]}"
    ks-batch -b 10 --balance --epochs 30 -o out.stream ex.stream
    ks-batch -b 10 --balance --epochs 30 -o again.stream ex.stream
    cmp out.stream again.stream
    "$PY" -c "$PYLIB$CHECK_BATCHES"'
LABELS = [0] * 85 + [1] * 10 + [2] * 5
h, bs = check("out.stream")
assert h["batches_per_epoch"] == 10 and len(bs) == 300
y = np.concatenate([arr(b["labels"]) for b in bs])
share = np.bincount(y, minlength=3) / len(y)
assert np.all(np.abs(share - 1 / 3) < 0.04), share
keys = {k for b in bs for k in b["keys"]}
assert {"k95", "k96", "k97", "k98", "k99"} <= keys
'
}

@test "ks-batch: refuses a batches stream and a broken stream" {
    mk23
    ks-batch -o batches.stream ex.stream
    run ks-batch batches.stream
    assert_failure 1
    assert_output --partial "not an examples stream"
    head -c 5000 ex.stream > cut.stream
    run ks-batch -o out.stream cut.stream
    assert_failure 1
    assert_output --partial "truncated"
    [ ! -e out.stream ]
}

@test "ks-batch: works on ks-extract output end to end" {
    mkwav a.wav 16000 16000 1 noise
    mkwav b.wav 16000 9000 1 sine
    printf 'a\ta.wav\tyes\nb\tb.wav\tno\n' > m.tsv
    run bash -c 'ks-extract --quiet m.tsv | ks-batch --quiet -b 2 | ks-cat'
    assert_success
    assert_output --partial '"batches_per_epoch":1'
    assert_output --partial '"keys":["a","b"]'
    assert_output --partial '"shape":[2,16000]'
}

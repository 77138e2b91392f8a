#!/usr/bin/env bats
# w2v-init: model directories transformers can load, from presets and configs.

load helpers

@test "presets make Hugging Face model directories with the given labels" {
    run w2v-init --preset tiny --labels yes,no,maybe -o m
    assert_success
    assert_output --partial "3 labels"
    for f in config.json model.safetensors preprocessor_config.json; do [ -s "m/$f" ]; done
    run "$PY" -c '
import json; c = json.load(open("m/config.json"))
assert c["architectures"] == ["Wav2Vec2ForSequenceClassification"], c["architectures"]
assert c["id2label"] == {"0": "yes", "1": "no", "2": "maybe"}, c["id2label"]
assert c["label2id"] == {"yes": 0, "no": 1, "maybe": 2}
assert c["hidden_size"] == 32 and c["conv_dim"] == [16, 16, 16]
p = json.load(open("m/preprocessor_config.json"))
assert p["sampling_rate"] == 16000 and p["do_normalize"] is True
'
    assert_success
}

@test "the base preset is facebook/wav2vec2-base's config.json, key for key" {
    [ -f "$SHARED/golden/base-full-config.json" ] || skip "no golden data at $SHARED"
    run w2v-init --preset base --labels yes,no,up,down,left,right,on,off,stop,go,_silence_,_unknown_ -o base
    assert_success
    assert_output --partial "94"   # 94.5 M parameters
    run "$PY" -c '
import json, sys
want = json.load(open(sys.argv[1])); got = json.load(open("base/config.json"))
bad = [k for k in set(want) | set(got) if want.get(k) != got.get(k)]
print(bad); assert not bad
' "$SHARED/golden/base-full-config.json"
    assert_success
}

@test "--set changes the architecture; --config and --labels-from" {
    run w2v-init --preset tiny --set num_hidden_layers=3 --set 'conv_dim=[8,8,8]' --labels a,b -o m
    assert_success
    run "$PY" -c 'import json; c = json.load(open("m/config.json")); assert c["num_hidden_layers"] == 3 and c["conv_dim"] == [8, 8, 8]'
    assert_success
    run w2v-init --config m/config.json --labels a,b,c -o m2
    assert_success
    run "$PY" -c 'import json; c = json.load(open("m2/config.json")); assert c["num_hidden_layers"] == 3 and len(c["id2label"]) == 3'
    assert_success
    "$PY" -c '
import msgpack, sys
sys.stdout.buffer.write(msgpack.packb({"format": "w2v-stream", "version": 1, "type": "examples", "sample_rate": 16000, "labels": ["x", "y"]}))' > h.stream
    run w2v-init --preset tiny --labels-from h.stream -o m3
    assert_success
    run "$PY" -c 'import json; c = json.load(open("m3/config.json")); assert c["id2label"] == {"0": "x", "1": "y"}'
    assert_success
}

@test "the same seed gives the same weights, another seed others" {
    w2v-init --quiet --preset tiny --labels a,b --seed 3 -o a
    w2v-init --quiet --preset tiny --labels a,b --seed 3 -o b
    w2v-init --quiet --preset tiny --labels a,b --seed 4 -o c
    cmp a/model.safetensors b/model.safetensors
    ! cmp -s a/model.safetensors c/model.safetensors
}

@test "--filterbank starts the encoder as a filterbank and its envelopes; the rest and the config as without" {
    w2v-init --quiet --preset small --labels a,b --seed 3 -o plain
    run w2v-init --preset small --labels a,b --seed 3 --filterbank -o fb
    assert_success
    assert_output --partial "conv layers 0-1 a filterbank and its envelopes"
    cmp plain/config.json fb/config.json
    run "$PY" -c '
import json, struct, numpy as np
def tensors(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], "<f4").reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}
a, b = tensors("plain/model.safetensors"), tensors("fb/model.safetensors")
enc = "wav2vec2.feature_extractor.conv_layers."
changed = sorted(k for k in a if not np.array_equal(a[k], b[k]))
assert changed == [enc + "0.conv.bias", enc + "0.conv.weight", enc + "1.conv.bias", enc + "1.conv.weight"], changed
w0, w1 = b[enc + "0.conv.weight"], b[enc + "1.conv.weight"]
assert np.allclose((w0[:, 0] ** 2).sum(1), 1, atol=1e-5)           # unit-norm filters
want = np.zeros_like(w1)
for i in range(w1.shape[0]): want[i, 4 * i: 4 * i + 4] = 1 / w1.shape[2]
assert np.array_equal(w1, want)                                      # band i: its four phases
assert not b[enc + "0.conv.bias"].any() and not b[enc + "1.conv.bias"].any()
'
    assert_success
    # a first layer that cannot hold one is a usage error
    run w2v-init --preset tiny --labels a,b --filterbank -o t
    assert_failure 2
    assert_output --partial "at least 16 taps"
    [ ! -e t ]
}

@test "bad options and configs are clear errors, and leave nothing" {
    run w2v-init --preset huge -o m
    assert_failure 2
    assert_output --partial "unknown preset 'huge'"
    run w2v-init --preset tiny --set hidden_size=30 -o m
    assert_failure 2
    assert_output --partial "hidden_size 30 must divide"
    run w2v-init --preset tiny --set 'feat_extract_norm="batch"' -o m
    assert_failure 2
    assert_output --partial "feat_extract_norm"
    # a receptive field past 2^31 samples (it overflowed the arithmetic once)
    run w2v-init --preset tiny --set 'conv_kernel=[65536,65536,65536]' --set 'conv_stride=[65536,65536,65536]' -o m
    assert_failure 2
    assert_output --partial "conv_kernel and conv_stride need inputs of 2.81e+14 samples at least: too long"
    run w2v-init --preset tiny
    assert_failure 2
    [ ! -e m ]
    echo '{"model_type": "bert"}' > bad.json
    run w2v-init --config bad.json -o m
    assert_failure
    assert_output --partial 'model_type is "bert": w2vtools runs "wav2vec2", "hubert", "data2vec-audio" and "wavlm" models'
    [ ! -e m ]
}

@test "-o DIR holding anything but a model is refused, untouched, unless --overwrite" {
    mkdir keep && echo "my notes" > keep/notes.txt
    run w2v-init --preset tiny -o keep
    assert_failure
    assert_output --partial "keep: holds 'notes.txt', which is not part of a model or a run: not replaced (--overwrite replaces it)"
    [ "$(cat keep/notes.txt)" = "my notes" ] && [ ! -e keep/config.json ]
    # a model directory of ours is replaced
    w2v-init --quiet --preset tiny --seed 1 -o m
    w2v-init --quiet --preset tiny --seed 2 -o m
    [ -s m/model.safetensors ]
    run w2v-init --quiet --preset tiny --overwrite -o keep
    assert_success
    [ ! -e keep/notes.txt ] && [ -s keep/model.safetensors ]
}

@test "--labels follows ks-extract's rule: no empty name, none twice" {
    for bad in 'a,,b' 'a,b,a' ',' ''; do
        run w2v-init --preset tiny --labels "$bad" -o m
        assert_failure 2
        assert_output --partial "w2v-init: --labels: '$bad': a"
        [ ! -e m ]
    done
}

@test "each family's config makes its model: config.json key for key, HF's tensor names and shapes" {
    need_golden
    for c in hubert-tiny distilhubert-tiny data2vec-audio-tiny wavlm-tiny; do
        run w2v-init --config "$SHARED/golden/family/$c" -o "$c"
        assert_success
        run "$PY" -c '
import json, struct, sys
g, m = sys.argv[1], sys.argv[2]
want = json.load(open(g + "/config.json")); got = json.load(open(m + "/config.json"))
bad = [k for k in set(want) | set(got) if want.get(k) != got.get(k)]
assert not bad, (m, bad)
def header(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: v["shape"] for k, v in h.items()}
w, o = header(g + "/model.safetensors"), header(m + "/model.safetensors")
assert w == o, (m, set(w) ^ set(o))
' "$SHARED/golden/family/$c" "$c"
        assert_success
    done
}

@test "the family presets: each config class's keys, model_type, architectures and size" {
    need_golden
    for p in hubert-base:hubert-tiny:94569090 distilhubert:distilhubert-tiny:23689346 wavlm-base:wavlm-tiny:94579314 \
             data2vec-audio-base:data2vec-audio-tiny:93365250; do
        IFS=: read -r preset golden size <<< "$p"
        run w2v-init --preset "$preset" --labels a,b -o "$preset"
        assert_success
        assert_output --partial "$size parameters"
        run "$PY" -c '
import json, sys
want = json.load(open(sys.argv[1] + "/config.json")); got = json.load(open(sys.argv[2] + "/config.json"))
assert set(want) | {"_name_or_path"} == set(got), set(want) ^ set(got)
for k in "model_type", "architectures":
    assert got[k] == want[k], (k, got[k])
assert got["hidden_size"] == 768 and got["conv_dim"] == [512] * 7
' "$SHARED/golden/family/$golden" "$preset"
        assert_success
    done
}

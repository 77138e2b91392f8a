#!/usr/bin/env bats
# w2v-convert: pytorch_model.bin (tests/data/torch, made by torch 1.13) to
# model.safetensors.

load helpers

DATA="$TOP/tests/data/torch"

# Python: the tensors of two safetensors files are the same, name by name
# (dtype, shape, bytes), and the first has metadata {"format": "pt"}.
SAME_TENSORS='
import json, struct, sys
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", None)
    return meta, {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
                  for k, v in h.items()}
meta, got = read(sys.argv[1])
_, want = read(sys.argv[2])
assert meta == {"format": "pt"}, meta
assert sorted(got) == sorted(want), (sorted(got), sorted(want))
for k in want:
    assert got[k] == want[k], (k, got[k][:2], want[k][:2])
'

@test "w2v-convert: --help, --version, usage errors" {
    run w2v-convert --help
    assert_success
    assert_output --partial "Usage: w2v-convert [options] INPUT [OUTPUT]"
    run w2v-convert --version
    assert_success
    assert_output --partial "w2v-convert (w2vtools)"
    run w2v-convert
    assert_failure 2
    assert_output --partial "no INPUT given"
    run w2v-convert a b c
    assert_failure 2
    run w2v-convert --list a b
    assert_failure 2
    run w2v-convert --bogus x
    assert_failure 2
}

@test "w2v-convert: the golden tiny model's pytorch_model.bin gives HF's model.safetensors, byte for byte" {
    cp -r "$DATA/tiny" m
    run w2v-convert m
    assert_success
    assert_output --partial "m/model.safetensors: 51 tensors"
    cmp m/config.json "$DATA/tiny/config.json"
    cmp m/pytorch_model.bin "$DATA/tiny/pytorch_model.bin"
    [ "$(ls m | sort | tr '\n' ' ')" = "config.json model.safetensors preprocessor_config.json pytorch_model.bin " ]
    if [ ! -d "$SHARED/golden/base-tiny" ]; then
        skip "no golden data at $SHARED/golden (set W2V_SHARED)"
    fi
    cmp m/model.safetensors "$SHARED/golden/base-tiny/model.safetensors"
}

# Python: a safetensors file holds the encoder of a golden model under the
# names the bare model saves (argv[3], the family's prefix, taken off).
SAME_AS_BARE='
import json, struct, sys
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
got, golden, prefix = read(sys.argv[1]), read(sys.argv[2]), sys.argv[3]
want = {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix)}
assert sorted(got) == sorted(want), (sorted(got), sorted(want))
assert all(got[k] == want[k] for k in want)
'

@test "w2v-convert: other families: HuBERT's classifier, and a WavLM encoder saved without its prefix, which loads with a new head" {
    cp -r "$DATA/hubert-tiny" h
    run w2v-convert h
    assert_success
    assert_output --partial "h/model.safetensors: 51 tensors"
    cp -r "$DATA/wavlm-bare" w
    run w2v-convert w
    assert_success
    assert_output --partial "w/model.safetensors: 54 tensors"
    /usr/bin/python3 -c '
import math, struct, wave
w = wave.open("t.wav", "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(0.07 * i))) for i in range(16000))); w.close()'
    run w2v-predict -m w t.wav
    assert_success
    assert_output --partial "w/model.safetensors: no classification head (projector, classifier): newly initialised"
    assert_output --partial '{"key":"t.wav","label":'
    if [ ! -d "$SHARED/golden/family" ]; then
        skip "no golden data at $SHARED/golden (set W2V_SHARED)"
    fi
    cmp h/model.safetensors "$SHARED/golden/family/hubert-tiny/model.safetensors"
    /usr/bin/python3 -c "$SAME_AS_BARE" w/model.safetensors "$SHARED/golden/family/wavlm-tiny/model.safetensors" wavlm.
}

@test "w2v-convert: strided, offset, shared, expanded views and every dtype keep torch's values" {
    for f in odd-layouts odd-layouts-p4; do
        mkdir "$f"
        cp "$DATA/$f.bin" "$f/"
        w2v-convert --quiet "$f/$f.bin"
        "$PY" -c "$SAME_TENSORS" "$f/model.safetensors" "$DATA/odd-expected.safetensors"
    done
}

@test "w2v-convert: OUTPUT as a file or a directory; an existing one needs --force" {
    w2v-convert --quiet "$DATA/odd-layouts.bin" out.safetensors
    "$PY" -c "$SAME_TENSORS" out.safetensors "$DATA/odd-expected.safetensors"
    mkdir d
    w2v-convert --quiet "$DATA/odd-layouts.bin" d
    cmp d/model.safetensors out.safetensors
    echo old > d/model.safetensors
    run w2v-convert "$DATA/odd-layouts.bin" d
    assert_failure 1
    assert_output "w2v-convert: d/model.safetensors: exists: use --force to replace it"
    [ "$(cat d/model.safetensors)" = old ]
    run w2v-convert --force "$DATA/odd-layouts.bin" d
    assert_success
    cmp d/model.safetensors out.safetensors
    [ "$(ls d)" = model.safetensors ]
}

@test "w2v-convert: --list prints name, dtype and shape in the state dict's order" {
    run w2v-convert --list "$DATA/odd-layouts.bin"
    assert_success
    assert_output "$(printf '%s\t%s\t%s\n' \
        base F32 '[3, 4]' transposed F32 '[4, 3]' window F32 '[2, 2]' row F32 '[4]' expanded F32 '[2, 3]' \
        permuted F64 '[4, 2, 3]' half F16 '[4]' bf16 BF16 '[3]' long I64 '[3]' int I32 '[1, 2]' short I16 '[2]' \
        char I8 '[2]' byte U8 '[3]' bool BOOL '[3]' scalar F32 '[]' empty F32 '[0, 3]' param F32 '[2]')"
    [ ! -e "$DATA/model.safetensors" ]
    run w2v-convert --list "$DATA/tiny"
    assert_success
    assert_line "$(printf 'wav2vec2.encoder.pos_conv_embed.conv.weight_v\tF32\t[32, 8, 16]')"
    [ "${#lines[@]}" -eq 51 ]
}

@test "w2v-convert: hostile and broken files are refused, naming the problem, and leave nothing" {
    while IFS='|' read -r file says; do
        mkdir "x-$file"
        cp "$DATA/$file" "x-$file/pytorch_model.bin"
        run w2v-convert "x-$file"
        assert_failure 1
        assert_output --partial "w2v-convert: x-$file/pytorch_model.bin: "
        assert_output --partial "$says"
        [ "$(ls "x-$file")" = pytorch_model.bin ]
    done <<'EOF'
bad-global.bin|refusing global os.system
bad-stack-global.bin|refusing global builtins.eval
bad-inst.bin|pickle opcode INST (0x69) is not allowed in a state dict
bad-opcode.bin|unknown pickle opcode 0xff
bad-truncated.bin|truncated
bad-missing-storage.bin|storage '1' is missing
bad-beyond-storage.bin|reaches element 15, beyond its 12 elements
bad-huge-shape.bin|more than 2^40 elements
bad-short-storage.bin|holds 40 bytes, not 12 F32 elements (48 bytes)
bad-nested.bin|'model' is a dict, not a tensor
bad-legacy.bin|the legacy torch.save format (torch < 1.6), which is not supported
bad-big-endian.bin|byteorder is not 'little'
EOF
    mkdir empty
    run w2v-convert empty
    assert_failure 1
    assert_output "w2v-convert: empty: no pytorch_model.bin in this directory"
    run w2v-convert "$DATA/tiny/config.json" out.safetensors
    assert_failure 1
    assert_output --partial "not a PyTorch checkpoint"
    [ ! -e out.safetensors ]
}

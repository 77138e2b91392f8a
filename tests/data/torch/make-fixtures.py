#!/usr/bin/python3
"""Makes the torch.save fixtures of w2v-convert's tests (run by hand).

Needs Debian's python3-torch (and python3-numpy); the tests themselves need
neither: they read the files this writes, which are committed.  Run from the
top of the checkout:

    /usr/bin/python3 tests/data/torch/make-fixtures.py [GOLDEN_DIR]

GOLDEN_DIR defaults to ../shared/golden/base-tiny.  Writes, beside this
script:

  tiny/pytorch_model.bin      torch.save of the golden tiny model's state dict
  tiny/config.json, tiny/preprocessor_config.json   copied from GOLDEN_DIR
  hubert-tiny/                the same for GOLDEN_DIR/../family/hubert-tiny
                              (HubertForSequenceClassification: hubert. names)
  wavlm-bare/                 GOLDEN_DIR/../family/wavlm-tiny's encoder as
                              WavLMModel.state_dict() saves it: no wavlm.
                              prefix, no projector or classifier
  odd-layouts.bin             views (transposed, offset, expanded, permuted)
                              sharing storages, every dtype, a 0-d and an
                              empty tensor, a Parameter, OrderedDict metadata
  odd-layouts-p4.bin          the same with pickle protocol 4 (STACK_GLOBAL,
                              MEMOIZE, FRAME, SHORT_BINUNICODE)
  odd-expected.safetensors    the contiguous values torch gives for them
  bad-*.bin                   hostile or broken files, hand-assembled below;
                              never torch.load these (bad-global.bin runs a
                              shell command when unpickled)

torch 1.13 writes byte-identical files on every run, except bad-legacy.bin
(the legacy format names storages by object ids).
"""
import collections
import io
import json
import os
import shutil
import struct
import sys
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared", "golden", "base-tiny")

ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
             "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
               torch.bool: "BOOL"}


def read_safetensors(path):
    """The tensors of a safetensors file, in the order of its header."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = collections.OrderedDict()
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        x = np.frombuffer(data[a:b], dtype=ST_DTYPES[t["dtype"]]).reshape(t["shape"]).copy()
        out[name] = torch.from_numpy(x)
    return out


def write_safetensors(path, tensors):
    """Contiguous little-endian data, tensors in the given order."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": TORCH_TO_ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def tiny(name="tiny", golden=GOLDEN, bare_prefix=None):
    """torch.save of a golden case's state dict; with bare_prefix, only the
    encoder's tensors, that prefix taken off (what the bare model saves)."""
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    sd = read_safetensors(os.path.join(golden, "model.safetensors"))
    if bare_prefix:
        sd = collections.OrderedDict((k[len(bare_prefix):], v) for k, v in sd.items() if k.startswith(bare_prefix))
    torch.save(sd, os.path.join(out, "pytorch_model.bin"))
    for f in ("config.json", "preprocessor_config.json"):
        shutil.copyfile(os.path.join(golden, f), os.path.join(out, f))
    back = torch.load(os.path.join(out, "pytorch_model.bin"))
    assert all(torch.equal(back[k], sd[k]) for k in sd) and list(back) == list(sd)


def odd_layouts():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
    sd = collections.OrderedDict()
    sd["base"] = base
    sd["transposed"] = base.t()                                   # strides (1, 4), base's storage
    sd["window"] = base[1:, 1:3]                                  # offset 5, strides (4, 1)
    sd["row"] = base[2]                                           # offset 8, contiguous
    sd["expanded"] = torch.tensor([1.5, -2.0, 3.25]).expand(2, 3)  # stride 0
    sd["permuted"] = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4).permute(2, 0, 1)
    sd["half"] = torch.tensor([0.5, -1.0, 65504.0, 6e-8], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.0, -3.5, 1e30], dtype=torch.bfloat16)
    sd["long"] = torch.tensor([-1, 2**40, -(2**62)], dtype=torch.int64)
    sd["int"] = torch.tensor([[7, -8]], dtype=torch.int32)
    sd["short"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["char"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["byte"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.tensor([0.25, 0.75]))  # _rebuild_parameter
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("layer", {"version": 2})])  # BUILD
    torch.save(sd, os.path.join(HERE, "odd-layouts.bin"))
    torch.save(sd, os.path.join(HERE, "odd-layouts-p4.bin"), pickle_protocol=4)
    write_safetensors(os.path.join(HERE, "odd-expected.safetensors"), sd)
    for f in ("odd-layouts.bin", "odd-layouts-p4.bin"):
        back = torch.load(os.path.join(HERE, f))
        assert all(torch.equal(back[k], sd[k]) for k in sd)


# ---- hand-assembled pickles (protocol 2, as torch writes them) ----

def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(i):
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if -2**31 <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    n = (i.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + i.to_bytes(n, "little", signed=True)


def p_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p_tuple(*items):
    return b"(" + b"".join(items) + b"t"


def p_tensor(storage_type, key, numel, offset, size, stride):
    pid = p_tuple(p_str("storage"), p_global("torch", storage_type), p_str(key), p_str("cpu"), p_int(numel)) + b"Q"
    hooks = p_global("collections", "OrderedDict") + b")R"
    args = p_tuple(pid, p_int(offset), p_tuple(*map(p_int, size)), p_tuple(*map(p_int, stride)), b"\x89", hooks)
    return p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def p_state_dict(*items):
    body = b"".join(p_str(k) + v for k, v in items)
    return b"\x80\x02" + p_global("collections", "OrderedDict") + b")R(" + body + b"u."


def write_zip(name, pkl, storages, byteorder=b"little"):
    """A zip as torch writes it: stored entries under one folder."""
    with zipfile.ZipFile(os.path.join(HERE, name), "w", zipfile.ZIP_STORED) as z:
        def add(entry, data):
            info = zipfile.ZipInfo("archive/" + entry, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data)
        add("data.pkl", pkl)
        for key, data in storages.items():
            add("data/" + key, data)
        add("version", b"3\n")
        add("byteorder", byteorder)  # as torch >= 2.1 writes


def hostile():
    f32 = lambda n: np.arange(n, dtype=np.float32).tobytes()
    # The hand assembly is faithful: torch.load reads a good file made by it.
    good = p_state_dict(("w", p_tensor("FloatStorage", "0", 12, 0, (3, 4), (4, 1))))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", good)
        z.writestr("archive/data/0", f32(12))
        z.writestr("archive/version", b"3\n")
    buf.seek(0)
    assert torch.equal(torch.load(buf)["w"], torch.arange(12.0).reshape(3, 4))

    # os.system("echo pwned") when unpickled
    write_zip("bad-global.bin", b"\x80\x02" + p_global("os", "system") + p_tuple(p_str("echo pwned")) + b"R.", {})
    # builtins.eval through protocol 4's STACK_GLOBAL
    write_zip("bad-stack-global.bin",
              b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93" + p_tuple(p_str("1+1")) + b"R.", {})
    # INST: the protocol-0 way to call os.system
    write_zip("bad-inst.bin", b"(" + p_str("echo pwned") + b"ios\nsystem\n.", {})
    # an opcode that does not exist
    write_zip("bad-opcode.bin", b"\x80\x02" + p_global("collections", "OrderedDict") + b")R\xff.", {})
    # data.pkl cut short inside a tensor
    whole = p_state_dict(("w", p_tensor("FloatStorage", "0", 12, 0, (3, 4), (4, 1))))
    write_zip("bad-truncated.bin", whole[:len(whole) // 2], {"0": f32(12)})
    # a tensor whose storage has no data/ entry
    write_zip("bad-missing-storage.bin",
              p_state_dict(("a", p_tensor("FloatStorage", "0", 4, 0, (4,), (1,))),
                           ("b", p_tensor("FloatStorage", "1", 4, 0, (4,), (1,)))), {"0": f32(4)})
    # a view reaching beyond its storage: [4, 4] on 12 elements
    write_zip("bad-beyond-storage.bin",
              p_state_dict(("w", p_tensor("FloatStorage", "0", 12, 0, (4, 4), (4, 1)))), {"0": f32(12)})
    # a shape whose element count overflows 64 bits
    write_zip("bad-huge-shape.bin",
              p_state_dict(("w", p_tensor("FloatStorage", "0", 12, 0, (2**40, 2**40), (0, 0)))), {"0": f32(12)})
    # the pickle says 12 floats, the entry holds 10
    write_zip("bad-short-storage.bin",
              p_state_dict(("w", p_tensor("FloatStorage", "0", 12, 0, (12,), (1,)))), {"0": f32(10)})
    # a good file but for its byte order
    write_zip("bad-big-endian.bin", good, {"0": f32(12)}, byteorder=b"big")
    # a training checkpoint ({"model": state_dict}), not a state dict
    torch.save({"model": collections.OrderedDict(w=torch.ones(2))}, os.path.join(HERE, "bad-nested.bin"))
    # torch < 1.6's format
    torch.save(collections.OrderedDict(w=torch.ones(2)), os.path.join(HERE, "bad-legacy.bin"),
               _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    tiny()
    family = os.path.join(GOLDEN, "..", "family")
    tiny("hubert-tiny", os.path.join(family, "hubert-tiny"))
    tiny("wavlm-bare", os.path.join(family, "wavlm-tiny"), bare_prefix="wavlm.")
    odd_layouts()
    hostile()

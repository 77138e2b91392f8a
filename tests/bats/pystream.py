#!/usr/bin/python3
"""An independent reader and writer of w2v streams (w2v-stream(5)) for the
bats suites, written from the spec with python3-msgpack and numpy.

  pystream.py examples N [--seed S] [--labels a,b] [--sample-rate R] [--extras]
  pystream.py batches N [--seed S] [--batch B] [--time T] [--labels a,b]
        write a header and N records to stdout
  pystream.py bounds FILE          byte offset of each map, then the file size
  pystream.py same A B [--records N]
        A and B decode to the same header and the same first N records
  pystream.py matches-json [--summary] STREAM JSONL
        JSONL (ks-cat --full, or ks-cat with --summary) holds exactly the
        header and records of STREAM
  pystream.py corrupt FILE DIR     DIR/OFFSET.stream: FILE with that byte changed
"""
import argparse
import json
import math
import sys

import msgpack
import numpy as np

KS_LABELS = "yes,no,up,down,left,right,on,off,stop,go,_silence_,_unknown_"
DTYPES = {"f32": "<f4", "f64": "<f8", "i64": "<i8", "i32": "<i4", "u8": "u1"}


def tensor(dtype, array):
    a = np.asarray(array, dtype=DTYPES[dtype])  # tobytes() is row-major
    return {"dtype": dtype, "shape": list(a.shape), "data": a.tobytes()}


def header(kind, labels, sample_rate, **extra):
    h = {"format": "w2v-stream", "version": 1, "type": kind,
         "sample_rate": sample_rate, "labels": labels}
    h.update(extra)
    return h


def edge_floats(rng, n):
    """float32 values with the awkward ones first: signed zero, the smallest
    subnormal, the largest finite, values that need all 9 digits."""
    edges = np.array([0.0, -0.0, 1e-45, -3.4028235e38, 3.4028235e38, 1 / 3, 0.1,
                      -1.17549435e-38], dtype="<f4")
    v = rng.standard_normal(n).astype("<f4")
    v[:min(n, len(edges))] = edges[:n]
    return v


def write_examples(args, out):
    rng = np.random.default_rng(args.seed)
    labels = args.labels.split(",")
    out.write(msgpack.packb(header("examples", labels, args.sample_rate), use_bin_type=True))
    for i in range(args.n):
        rec = {"key": f"ex{i:04d}", "label": (i % (len(labels) + 1)) - 1,
               "input_values": tensor("f32", edge_floats(rng, 3 + (i * 7) % 11))}
        if i % 2:
            rec["path"] = f"audio/ex{i:04d}.wav"
        if args.extras:
            rec["extras"] = {
                "f64": tensor("f64", [math.pi, -0.1, 1e-300, 2.5e300, math.inf, -math.inf, math.nan]),
                "i64": tensor("i64", [[-(2**53), 2**53 - 1], [-1, 0]]),
                "i32": tensor("i32", [-(2**31), 2**31 - 1, i]),
                "u8": tensor("u8", [0, 1, 255]),
                "scalar": tensor("f32", np.float32(i + 0.5)),
                "empty": tensor("f32", np.zeros((0, 3))),
                "note": "tab\tquote\"back\\slash\nnewline \u00e9",
                "float": 0.1, "int": -7, "big": 2**63 + 5, "none": None, "yes": True,
            }
        out.write(msgpack.packb(rec, use_bin_type=True))


def write_batches(args, out):
    rng = np.random.default_rng(args.seed)
    labels = args.labels.split(",")
    out.write(msgpack.packb(header("batches", labels, args.sample_rate,
                                   batches_per_epoch=args.n, epochs=1, batch_size=args.batch),
                            use_bin_type=True))
    for i in range(args.n):
        lengths = rng.integers(1, args.time + 1, size=args.batch)
        lengths[0] = args.time  # the longest sets T, as padding does
        mask = (np.arange(args.time)[None, :] < lengths[:, None]).astype("u1")
        values = rng.standard_normal((args.batch, args.time)).astype("<f4") * mask
        rec = {"keys": [f"b{i}_{j}" for j in range(args.batch)],
               "labels": tensor("i64", rng.integers(0, len(labels), size=args.batch)),
               "input_values": tensor("f32", values),
               "attention_mask": tensor("u8", mask),
               "lengths": tensor("i64", lengths)}
        out.write(msgpack.packb(rec, use_bin_type=True))


def read_maps(path):
    """(offset, map) for every map in the file; raises on a malformed one."""
    with open(path, "rb") as f:
        u = msgpack.Unpacker(f, raw=False, strict_map_key=False, max_buffer_size=1 << 30)
        maps, offset = [], 0
        for obj in u:
            maps.append((offset, obj))
            offset = u.tell()
    return maps


def decode_tensor(t):
    a = np.frombuffer(t["data"], dtype=DTYPES[t["dtype"]])
    assert a.size == math.prod(t["shape"]), f"tensor data {len(t['data'])} bytes for shape {t['shape']}"
    return a.reshape(t["shape"])


def is_tensor(o):
    return isinstance(o, dict) and set(o) >= {"dtype", "shape", "data"} and isinstance(o["data"], bytes)


def number(g):
    """A number as ks-cat prints it: non-finite values are strings."""
    return float(g) if isinstance(g, str) else g


def same_summary(a, got, where):
    """ks-cat's default view of a tensor: min and max exactly, the mean
    (computed in double) to its 9 printed digits."""
    if a.size == 0:
        if set(got) != {"dtype", "shape"}:
            raise AssertionError(f"{where}: an empty tensor has no summary: {got}")
        return
    v = a.astype(np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        want = {"min": v.min(), "max": v.max(), "mean": v.mean()}  # NaN propagates
    for name, w in want.items():
        g = number(got[name])
        if math.isnan(w) or math.isnan(g):
            ok = math.isnan(w) and math.isnan(g)
        elif name == "mean":  # 9 digits; summation order moves it by ~eps * sum|v|
            ok = math.isclose(g, w, rel_tol=1e-8, abs_tol=1e-15 * float(np.abs(v).sum()))
        elif a.dtype.kind in "iu":
            ok = isinstance(g, int) and g == (a.min() if name == "min" else a.max())
        else:
            ok = a.dtype.type(g) == a.dtype.type(w)
        if not ok:
            raise AssertionError(f"{where}.{name}: {got[name]!r} != {w!r}")


def same_value(expected, got, where, summary=False):
    """expected: a decoded msgpack value; got: what ks-cat printed of it."""
    if is_tensor(expected):
        a = decode_tensor(expected)
        if got["dtype"] != expected["dtype"] or got["shape"] != list(expected["shape"]):
            raise AssertionError(f"{where}: dtype/shape {got['dtype']} {got['shape']}")
        if summary:
            return same_summary(a, got, where)
        flat = a.reshape(-1)
        if len(got["data"]) != flat.size:
            raise AssertionError(f"{where}: {len(got['data'])} values, expected {flat.size}")
        for i, (e, g) in enumerate(zip(flat.tolist(), got["data"])):
            if isinstance(g, str):  # non-finite values print as strings
                ok = g in ("nan", "inf", "-inf") and (math.isnan(e) if g == "nan" else number(g) == e)
            elif expected["dtype"] in ("f32", "f64"):
                ok = a.dtype.type(g) == a.dtype.type(e)  # read back at the tensor's precision
            else:
                ok = g == e and isinstance(g, int)
            if not ok:
                raise AssertionError(f"{where}.data[{i}]: {g!r} != {e!r}")
    elif isinstance(expected, dict):
        if sorted(expected) != sorted(got):
            raise AssertionError(f"{where}: keys {sorted(got)} != {sorted(expected)}")
        for k in expected:
            same_value(expected[k], got[k], f"{where}.{k}", summary)
    elif isinstance(expected, list):
        if len(expected) != len(got):
            raise AssertionError(f"{where}: length {len(got)} != {len(expected)}")
        for i, (e, g) in enumerate(zip(expected, got)):
            same_value(e, g, f"{where}[{i}]", summary)
    elif isinstance(expected, float):
        if isinstance(got, bool) or not isinstance(got, (int, float)) or float(got) != expected:
            raise AssertionError(f"{where}: {got!r} != {expected!r}")
    elif expected != got or type(expected) is not type(got):
        raise AssertionError(f"{where}: {got!r} != {expected!r}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("examples", "batches"):
        s = sub.add_parser(name)
        s.add_argument("n", type=int)
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--labels", default=KS_LABELS)
        s.add_argument("--sample-rate", type=int, default=16000)
        s.add_argument("--extras", action="store_true")
        s.add_argument("--batch", type=int, default=3)
        s.add_argument("--time", type=int, default=7)
    s = sub.add_parser("bounds")
    s.add_argument("file")
    s = sub.add_parser("same")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--records", type=int)
    s = sub.add_parser("matches-json")
    s.add_argument("--summary", action="store_true")
    s.add_argument("stream")
    s.add_argument("jsonl")
    s = sub.add_parser("corrupt")
    s.add_argument("file")
    s.add_argument("dir")
    args = p.parse_args()

    if args.cmd in ("examples", "batches"):
        (write_examples if args.cmd == "examples" else write_batches)(args, sys.stdout.buffer)
    elif args.cmd == "bounds":
        maps = read_maps(args.file)
        for offset, _ in maps:
            print(offset)
        with open(args.file, "rb") as f:
            print(len(f.read()))
    elif args.cmd == "same":
        a = [m for _, m in read_maps(args.a)]
        b = [m for _, m in read_maps(args.b)]
        if args.records is not None:
            a = a[:args.records + 1]
        if a != b:
            sys.exit(f"{args.b} holds {len(b)} maps that differ from the {len(a)} expected")
    elif args.cmd == "corrupt":
        # at even offsets one of the bytes that start the containers, strings
        # and binaries with the largest counts (and others), at odd ones a bit
        # flipped
        with open(args.file, "rb") as f:
            data = f.read()
        values = [0xdf, 0xdd, 0xc6, 0xdb, 0xc1, 0xff, 0x00, 0x9f, 0x8f, 0xc9, 0xcf]
        for i in range(len(data)):
            c = values[i // 2 % len(values)] if i % 2 == 0 else data[i] ^ (1 << (i // 2 % 8))
            with open(f"{args.dir}/{i}.stream", "wb") as f:
                f.write(data[:i] + bytes([c]) + data[i + 1:])
    else:
        expected = [m for _, m in read_maps(args.stream)]
        with open(args.jsonl) as f:
            got = [json.loads(line) for line in f]
        if len(got) != len(expected):
            sys.exit(f"{args.jsonl}: {len(got)} lines for {len(expected)} maps")
        try:
            for i, (e, g) in enumerate(zip(expected, got)):
                same_value(e, g, f"map {i}", args.summary)
        except AssertionError as err:
            sys.exit(f"{args.jsonl}: {err}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Babble noise for pipelines/robustness.mk: many _unknown_ clips of a
manifest (ks-fetch's KEY<TAB>PATH<TAB>LABEL, paths relative to DATA), each
at a random place in a recording of SECONDS, summed and written as 16 kHz
16-bit mono WAV at a peak of half full scale.  Drawn from --seed alone."""

import argparse
import os
import sys
import wave

import numpy as np

RATE = 16000


def read_clip(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"babble.py: {path}: not 16 kHz 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--clips", type=int, default=800)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("data", help="the directory the manifest's paths are relative to")
    ap.add_argument("manifest")
    ap.add_argument("out")
    a = ap.parse_args()

    with open(a.manifest) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    paths = [p for _, p, label in rows if label == "_unknown_"]
    if len(paths) < a.clips:
        sys.exit(f"babble.py: {a.manifest}: {len(paths)} _unknown_ clips, fewer than {a.clips}")
    rng = np.random.default_rng(a.seed)
    n = int(a.seconds * RATE)
    mix = np.zeros(n)
    for i in rng.choice(len(paths), a.clips, replace=False):
        x = read_clip(os.path.join(a.data, paths[i]))[:n]
        at = rng.integers(0, n - len(x) + 1)
        mix[at:at + len(x)] += x
    mix *= 0.5 * 32767 / np.abs(mix).max()
    tmp = a.out + ".tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.round(mix).astype("<i2").tobytes())
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()

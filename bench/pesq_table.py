#!/usr/bin/env python3
"""Scores the WAVs written by `media_bench pesq-wavs` (media/examples/media_bench.rs) with wideband PESQ (ITU-T P.862.2).

Reads <outdir>/manifest.tsv, resamples reference and degraded 48 kHz audio to 16 kHz
(polyphase, Kaiser window), and prints a Markdown table: one row per loss condition, one
column per variant, each cell the mean over the condition's loss patterns (seeds).
"""
import csv
import sys
from collections import defaultdict
from math import gcd

import numpy as np
import soundfile as sf
from pesq import pesq
from scipy.signal import resample_poly


def load16k(path):
    data, rate = sf.read(path, dtype="float64")
    g = gcd(16000, rate)
    return resample_poly(data, 16000 // g, rate // g)


def main(outdir):
    rows = list(csv.DictReader(open(f"{outdir}/manifest.tsv"), delimiter="\t"))
    conditions, variants = [], []
    scores, lost, details = defaultdict(list), defaultdict(dict), []
    cache = {}
    for r in rows:
        c, v = r["condition"], r["variant"]
        if c not in conditions:
            conditions.append(c)
        if v not in variants:
            variants.append(v)
        if r["reference"] not in cache:
            cache[r["reference"]] = load16k(r["reference"])
        ref, deg = cache[r["reference"]], load16k(r["degraded"])
        n = min(len(ref), len(deg))
        score = pesq(16000, ref[:n], deg[:n], "wb")
        scores[(c, v)].append(score)
        lost[c][r["seed"]] = float(r["lost_pct"])
        if r["detail"] != "-":
            details.append(f"- {c}, seed {r['seed']} / {v}: PESQ {score:.2f}; {r['detail']}")
    print("| loss (mean measured in scored part; seeds) | " + " | ".join(variants) + " |")
    print("| --- | " + " | ".join("---" for _ in variants) + " |")
    for c in conditions:
        cells = [f"{np.mean(scores[(c, v)]):.2f}" for v in variants]
        seeds = lost[c]
        print(
            f"| {c} ({np.mean(list(seeds.values())):.1f}%; {len(seeds)}) | "
            + " | ".join(cells)
            + " |"
        )
    print()
    print("Per seed (min .. max):")
    for c in conditions:
        spans = [
            f"{v}: {min(scores[(c, v)]):.2f}..{max(scores[(c, v)]):.2f}" for v in variants
        ]
        print(f"- {c}: " + "; ".join(spans))
    print()
    print("Jitter-buffer counters per run (whole two-pass run):")
    print("\n".join(details))


if __name__ == "__main__":
    main(sys.argv[1])

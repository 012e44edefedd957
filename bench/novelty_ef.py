"""The trends stage's novelty probe at a smaller ef: how often its decision agrees with an exact search.

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python bench/novelty_ef.py [--posts N] [--embedder minilm-onnx]

Real posts (../shared/data/offensive/pool.tsv, then SST-2's train split) embedded with ``--embedder``, the first
``--posts`` into a window index in segments of 1,000 posts (as a shard of the worker seals them), each later post
probed as the stage probes (k = 8, the post itself excluded): its best prior cosine by exact search over the
window and by the HNSW search at each ef. Prints, per ef, the share of probes whose novelty decision
(prior < 0.6) is the exact one's, the mean |error| of the prior cosine and the search's µs per probe (one
thread; ratios within one run).
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from synapse_stream.embedders import make_embedder
from synapse_stream.segments import Retention, SegmentedIndex
from synapse_stream.trends.novelty import WindowNovelty

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def texts(n: int) -> list[str]:
    out = []
    for path in (SHARED / "offensive" / "pool.tsv", SHARED / "sst2" / "train.tsv"):
        with open(path, newline="") as fh:
            out += [r[0] for r in csv.reader(fh, delimiter="\t")][1:]
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=20_000)
    ap.add_argument("--probes", type=int, default=2_000)
    ap.add_argument("--embedder", default="minilm-onnx")
    ap.add_argument("--novelty-sim", type=float, default=0.6)
    a = ap.parse_args()
    t = texts(a.posts + a.probes)
    emb = make_embedder(a.embedder)
    print(f"embedding {len(t)} posts with {a.embedder} ...", flush=True)
    x = emb.encode(t, progress=True).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    window, probes = x[:a.posts], x[a.posts:]
    index = SegmentedIndex(x.shape[1], Retention(segment_posts=1000))
    for s in range(0, a.posts, 256):
        rows = range(s, min(s + 256, a.posts))
        index.add([f"p{i}" for i in rows], window[s:s + 256], None, ts=list(rows))
    exact = (probes @ window.T).max(axis=1)
    exact_novel = exact < a.novelty_sim
    print(f"{a.posts} posts in {len(index.segments)} segments, {len(probes)} probes; "
          f"exact: {exact_novel.mean():.1%} novel")
    with threadpool_limits(1):
        for ef in (None, 64, 32, 24, 16, 8):
            nov = WindowNovelty(index, novelty_sim=a.novelty_sim, k=8, ef=ef)
            t0 = time.perf_counter()
            got = np.array([v for s in range(0, len(probes), 64)
                            for v in nov.prior_similarity(probes[s:s + 64], [set()] * len(probes[s:s + 64]))])
            us = 1e6 * (time.perf_counter() - t0) / len(probes)
            agree = float(((got < a.novelty_sim) == exact_novel).mean())
            print(f"ef={ef or 'index default (64)'}: decision agrees {agree:.4f}, mean |error| "
                  f"{float(np.abs(got - exact).mean()):.4f}, {us:.0f} us/probe", flush=True)


if __name__ == "__main__":
    main()

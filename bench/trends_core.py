"""The trends stage alone over a long stream: cost per post and the size of everything it holds.

    PYTHONPATH=. .venv/bin/python bench/trends_core.py [--posts N] [--dim D]

A stream of ``--posts`` unit vectors around 2000 topic centres (and short random texts, for the
near-duplicate index), one post every 2.16 s of event time (10 000 in the 6 h window), goes in batches of 32 into a window index (6 h) and
the stage, with one BLAS thread as in the worker's model thread. The stage's ``horizon`` is the window, as the
worker sets it (``trend_params``: the retention window when shorter than the stage's 48 h), unless
``--horizon`` says otherwise (0: the stage's default). Every 10 000 posts it prints the stage's
ms per post over those posts (the index's own cost apart), its micro-clusters, groups, posts held by groups,
near-duplicate buckets and the process's peak RSS: the bounds of docs/trends.md, measured.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from threadpoolctl import threadpool_limits

from synapse_stream.segments import Retention, SegmentedIndex
from synapse_stream.trends import TrendParams, TrendStage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=60_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--horizon", type=float, default=6 * 3600.0, help="event-time seconds (0: the default)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2000, a.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, 6)) for _ in range(5000)]   # no digits: normalise() maps digits to "n"
    index = SegmentedIndex(a.dim, Retention(seconds=6 * 3600))
    stage = TrendStage(index, a.dim, TrendParams(horizon=a.horizon or None))
    t_stage = t_index = 0.0
    n = 0
    with threadpool_limits(1):
        while n < a.posts:
            b = 32
            x = centres[rng.integers(len(centres), size=b)] + (0.9 / np.sqrt(a.dim)) * rng.normal(size=(b, a.dim))
            x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
            ids = [f"p{n + i}" for i in range(b)]
            texts = [" ".join(rng.choice(words, 10)) for _ in range(b)]
            ts = [(n + i) * 2.16 for i in range(b)]          # 10 000 posts in the 6 h window
            t0 = time.perf_counter()
            index.add(ids, x, None, ts=ts)
            index.drop(index.expirable().segments)
            t1 = time.perf_counter()
            stage.observe(ids, texts, x, ts)
            t2 = time.perf_counter()
            t_index += t1 - t0
            t_stage += t2 - t1
            n += b
            if n % 10_016 < b:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"{n:7d} posts: stage {1e3 * t_stage / 10_016:.3f} ms/post (index {1e3 * t_index / 10_016:.3f}); "
                      f"{len(stage.clusters)} micro-clusters, {stage.group_count()} groups holding "
                      f"{stage.held_posts()} posts, {len(stage.dupes)} dup buckets, {len(index)} posts in the window; "
                      f"peak RSS {rss:.0f} MB", flush=True)
                t_stage = t_index = 0.0


if __name__ == "__main__":
    main()

"""Micro-cluster engines of the trends stage, per post: numpy FadingMicroClusters vs River's DBSTREAM.

    PYTHONPATH=. .venv/bin/python bench/trends_clusterers.py [--posts N] [--dim D]

Posts are unit vectors around 200 random centres (cosine to their centre about 0.8), fed in batches of 32
with one BLAS thread (as in the worker's model thread). Prints ms per post for each engine and how many
micro-clusters it holds at the end.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from synapse_stream.trends.clusters import FadingMicroClusters, RiverDBSTREAM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=3000)
    ap.add_argument("--river-posts", type=int, default=300, help="River is slow: fewer posts for it")
    ap.add_argument("--dim", type=int, default=384)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, a.dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(200, size=a.posts)] + 0.7 / np.sqrt(a.dim) * rng.normal(size=(a.posts, a.dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ts = np.arange(a.posts, dtype=float)
    with threadpool_limits(1):
        for name, engine, n in (("numpy FadingMicroClusters", FadingMicroClusters(a.dim, radius=0.5), a.posts),
                                ("river DBSTREAM", RiverDBSTREAM(a.dim, radius=0.5), min(a.posts, a.river_posts))):
            t0 = time.perf_counter()
            for s in range(0, n, 32):
                engine.learn(x[s:s + 32], ts[s:s + 32])
            dt = time.perf_counter() - t0
            print(f"{name:28s} {1e3 * dt / n:9.3f} ms/post over {n} posts, {len(engine)} micro-clusters")


if __name__ == "__main__":
    main()

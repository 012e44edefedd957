"""What an HNSW search for a post's 11 nearest costs when the window is cut into segments, per segment count and M.

``python -m bench.segment_search [--posts 200000] [--segments 18,10,6,2] [--m 16,8]``: 384-d clustered unit vectors
(2,000 centres, noise 0.8), each segment its own hnswlib index (ef_construction 200), 2,048 queries near the posts,
each searched in every segment at ef 32 (one thread), as the kNN graph searches a new post in the ``window`` scope.
Prints the CPU µs per post for each layout (docs/live-rounds.md, "The graph's scope"). Builds take most of the time:
about 7 minutes for the defaults on the 2-core machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posts", type=int, default=200_000)
    ap.add_argument("--segments", default="18,10,6,2")
    ap.add_argument("--m", default="16,8")
    ap.add_argument("--ef", type=int, default=32)
    a = ap.parse_args(argv)
    import hnswlib

    rng = np.random.default_rng(0)
    d, n = 384, a.posts
    C = rng.standard_normal((2000, d)).astype(np.float32)
    X = C[rng.integers(0, 2000, n)] + 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q = X[:2048] + 0.3 * rng.standard_normal((2048, d)).astype(np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    for m in [int(x) for x in a.m.split(",")]:
        for segs in [int(x) for x in a.segments.split(",")]:
            size = n // segs
            parts = []
            for i in range(segs):
                p = hnswlib.Index(space="ip", dim=d)
                p.init_index(max_elements=size, ef_construction=200, M=m)
                p.add_items(X[i * size:(i + 1) * size], num_threads=2)
                p.set_ef(a.ef)
                parts.append(p)
            t = time.process_time()
            for p in parts:
                p.knn_query(Q, k=11, num_threads=1)
            us = (time.process_time() - t) / len(Q) * 1e6
            print(f"M={m} segments={segs} posts/segment={size}: {us:.0f} CPU us per post", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

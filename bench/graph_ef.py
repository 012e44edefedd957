"""The kNN graph's searches at a large window: cost per post and recall against the exact neighbours, per ef.

``python -m bench.graph_ef --cache /tmp/rp-cache [--window 200000] [--queries 1000]``

Uses the window ``bench/round_profile.py --cache`` built (one shard, 8 sealed segments of window / 8 posts, M = 16).
``--queries`` new posts of the same synthetic stream are searched as ``KNNGraph.update`` searches them
(``ShardedIndex.knn_parts``: every segment's k + 1 = 11 nearest, merged), for each ef; the recall is that of the
merged 11 nearest against the exact 11 nearest over the whole window (one matrix product). Brute force (the
product and a top-11 selection) is timed beside it. The JSON (``--out``) has every figure and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .common import REPO, machine
from .rounds import Data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--window", type=int, default=200_000)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--efs", default="11,16,24,32,48,64")
    ap.add_argument("--out", default=str(REPO / "bench" / "graph_ef.json"))
    a = ap.parse_args(argv)
    from synapse_stream.index import ShardedIndex
    from synapse_stream.segments import Retention, SegmentedIndex

    w = a.window
    la0 = [round(x, 2) for x in os.getloadavg()]
    shard = SegmentedIndex.load(Path(a.cache) / f"w{w}-efc{a.ef_construction}" / "shard" / "shard.json",
                                Retention(max_posts=w, segment_posts=w // 8))
    index = ShardedIndex(shard.dim)
    index.attach(0, shard)
    Q = np.concatenate([X for _, X, _ in Data(w + a.queries + 1000).rows(w, w + a.queries)])
    _, X, _ = index.vectors_parts()
    t, c = time.perf_counter(), time.process_time()
    S = Q @ X.T
    exact = np.argpartition(-S, 11, axis=1)[:, :11]
    brute, brute_cpu = time.perf_counter() - t, time.process_time() - c
    exact_sets = [set(r.tolist()) for r in exact]
    offsets = np.cumsum([0] + [len(s.index) for s in shard.segments])[:-1]
    res = {"window": w, "segments": len(shard.segments), "queries": a.queries, "k_plus_1": 11,
           "brute_force_ms_per_post": brute / a.queries * 1e3,
           "brute_force_cpu_ms_per_post": brute_cpu / a.queries * 1e3, "ef": {}}
    for ef in [int(x) for x in a.efs.split(",")]:
        t, c = time.perf_counter(), time.process_time()
        parts = index.knn_parts(Q, 11, ef)
        el, cpu = time.perf_counter() - t, time.process_time() - c
        L = np.hstack([lab + off for (_, lab, _), off in zip(parts, offsets)])
        V = np.hstack([s for _, _, s in parts])
        got = np.take_along_axis(L, np.argsort(-V, axis=1, kind="stable")[:, :11], 1)
        recall = float(np.mean([len(set(g.tolist()) & e) / 11 for g, e in zip(got, exact_sets)]))
        res["ef"][ef] = {"ms_per_post": el / a.queries * 1e3, "cpu_ms_per_post": cpu / a.queries * 1e3,
                         "recall_at_11": recall}
        print(f"ef {ef:3d}: {el / a.queries * 1e3:.3f} ms/post ({cpu / a.queries * 1e3:.3f} CPU; {len(parts)} segments "
              f"searched), recall@11 vs exact {recall:.4f}", flush=True)
    print(f"brute force (product + top 11 over {w:,}): {res['brute_force_ms_per_post']:.3f} ms/post "
          f"({res['brute_force_cpu_ms_per_post']:.3f} CPU, BLAS threads included)")
    res["machine"] = machine()
    res["load_average_before"], res["load_average_after"] = la0, [round(x, 2) for x in os.getloadavg()]
    res["command"] = "python -m bench.graph_ef " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"load average {la0} -> {res['load_average_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

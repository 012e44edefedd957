"""One shard in a fresh process: resident bytes per indexed post, then backfill time for new seeds.

``python -m bench.shard --n 100000 [--stats stats.npz] [--text-chars 120] --out result.json``

Vectors: drawn from a Gaussian with the mean and covariance of real MiniLM embeddings (``--stats``), or
uniform random unit vectors without it. Each of ``--queries`` new seeds has 30 planted posts with cosine
0.6–0.95 to it; half of them are already labelled (so the backfill's search must skip them, as it skips
labelled posts in production). Chunks are regenerated from their own random seeds for the exact check,
so the process never holds the whole matrix while its memory is measured.
"""
from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np
import psutil

from synapse_stream.index import PostIndex
from synapse_stream.online import DetectorConfig, OnlineIBG
from synapse_stream.seeds import Seed

TAU, D_MAX, PLANTED, CHUNK, PIECE = 0.55, 10, 30, 20_000, 2_000


def rss() -> int:
    return psutil.Process().memory_info().rss


def malloc_trim() -> bool:
    """Give freed heap pages back to the OS (glibc), to tell the index's memory from the allocator's cache."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--stats")
    ap.add_argument("--text-chars", type=int, default=0)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", default="64,128,256", help="backfill is timed at each (the first is the default)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    dim = 384
    if a.stats:
        z = np.load(a.stats)
        mu, chol = z["mu"].astype(np.float32), z["chol"].astype(np.float32)
        dim = len(mu)
    else:
        mu = chol = None

    def draw(rng, n):
        x = rng.standard_normal((n, dim), dtype=np.float32)
        if chol is not None:
            x = x @ chol.T + mu
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def pieces(c, size):
        """Chunk ``c`` in pieces of PIECE rows (small transient arrays, as a worker's micro-batches are)."""
        rng = np.random.default_rng(1000 + c)
        for s in range(0, size, PIECE):
            yield s, draw(rng, min(PIECE, size - s))

    rng = np.random.default_rng(7)
    seeds = draw(rng, a.queries)
    planted, planted_ids = [], []
    for j, q in enumerate(seeds):
        cos = rng.uniform(0.6, 0.95, PLANTED).astype(np.float32)
        w = rng.standard_normal((PLANTED, dim)).astype(np.float32)
        w -= (w @ q)[:, None] * q[None, :]
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        planted.append(cos[:, None] * q[None, :] + np.sqrt(1 - cos ** 2)[:, None] * w)
        planted_ids += [f"q{j}-{k}" for k in range(PLANTED)]
    planted = np.vstack(planted).astype(np.float32)
    n_random = max(0, a.n - len(planted))
    n_chunks = max(1, -(-n_random // CHUNK))

    # warm-up: load hnswlib's code and allocator pools before the baseline
    w = PostIndex(dim)
    w.add(["w"], planted[:1])
    del w
    gc.collect()
    base = rss()
    idx = PostIndex(dim, m=a.m, ef_construction=a.ef_construction, initial_capacity=1024)
    t0 = time.perf_counter()
    done = 0
    def add(ids, X):
        nonlocal done
        payloads = [f"{i:09d} " + "x" * max(0, a.text_chars - 10) for i in range(done, done + len(ids))] \
            if a.text_chars else None
        for s in range(0, len(ids), 500):
            idx.add(ids[s:s + 500], X[s:s + 500], payloads[s:s + 500] if payloads else None)
        done += len(ids)

    for c in range(n_chunks):
        size = min(CHUNK, n_random - c * CHUNK)
        for off, X in pieces(c, max(0, size)):
            add([f"p-{c * CHUNK + off + i}" for i in range(len(X))], X)
        sl = slice(c * len(planted) // n_chunks, (c + 1) * len(planted) // n_chunks)  # spread the plants
        add(planted_ids[sl], planted[sl])
        if (c + 1) % 10 == 0 or c + 1 == n_chunks:
            el = time.perf_counter() - t0
            print(f"[shard n={a.n}] {done:>9,} posts indexed, {done / el:,.0f}/s, rss +{(rss() - base) / 2**20:,.0f} MiB",
                  flush=True)
    build_s = time.perf_counter() - t0
    gc.collect()
    grown = rss() - base
    trimmed = rss() - base if malloc_trim() else None

    # backfill: a new seed fills its window from the shard (τ floor, labelled posts excluded)
    eng = OnlineIBG(DetectorConfig("bench", TAU, D_MAX), idx)
    labelled = {pid: 0 for j in range(a.queries) for pid in planted_ids[j * PLANTED:(j + 1) * PLANTED][::2]}
    eng.labels.update(labelled)
    efs = [int(x) for x in a.ef_search.split(",") if x.strip()]
    by_ef = {}
    for ef in efs:
        eng = OnlineIBG(DetectorConfig("bench", TAU, D_MAX), idx)
        eng.labels.update(labelled)
        idx.ef_search = ef
        idx._index.set_ef(ef)
        times, found = [], []
        for j, q in enumerate(seeds):
            t = time.perf_counter()
            cands = eng.on_seed(Seed(f"seed-{j}"), q)
            times.append(time.perf_counter() - t)
            found.append([c.post_id for c in cands])
        by_ef[ef] = (times, found)
    idx.ef_search = efs[0]
    idx._index.set_ef(efs[0])
    times, found = by_ef[efs[0]]
    knn = []
    for q in seeds[: min(20, len(seeds))]:
        t = time.perf_counter()
        idx.search(q, D_MAX)
        knn.append(time.perf_counter() - t)

    # exact answer per seed, streaming over regenerated chunks (no full matrix in memory during the measure)
    best = [[] for _ in seeds]
    for c in range(n_chunks):
        size = min(CHUNK, n_random - c * CHUNK)
        if size <= 0:
            continue
        for off, X in pieces(c, size):
            S = X @ seeds.T
            for j in range(len(seeds)):
                hit = np.nonzero(S[:, j] > TAU)[0]
                best[j] += [(float(S[i, j]), f"p-{c * CHUNK + off + i}") for i in hit]
    P = planted @ seeds.T
    for j in range(len(seeds)):
        best[j] += [(float(P[i, j]), planted_ids[i]) for i in np.nonzero(P[:, j] > TAU)[0]
                    if planted_ids[i] not in labelled]
    truths = [{pid for _, pid in sorted(best[j], reverse=True)[:D_MAX]} for j in range(len(seeds))]

    def recall_of(found):
        r = [len(t & set(fd)) / len(t) for t, fd in zip(truths, found) if t]
        return float(np.mean(r)) if r else None

    recall = recall_of(found)
    res = {
        "n": idx.__len__(), "dim": dim, "vectors": "gaussian fitted to real MiniLM embeddings" if a.stats else
        "uniform random unit vectors", "text_chars": a.text_chars, "m": a.m, "ef_construction": a.ef_construction,
        "ef_search": idx.ef_search,
        "build_s": build_s, "insert_per_s": done / build_s, "capacity": idx.capacity,
        "rss_growth_bytes": grown, "bytes_per_post": grown / len(idx),
        "bytes_per_post_after_malloc_trim": trimmed / len(idx) if trimmed is not None else None,
        "backfill_ms_p50": float(np.percentile(times, 50) * 1e3), "backfill_ms_p99": float(np.percentile(times, 99) * 1e3),
        "backfill_ms_max": float(max(times) * 1e3), "backfill_candidates_mean": float(np.mean([len(f) for f in found])),
        "backfill_recall_vs_exact": recall,
        "backfill_by_ef_search": {str(ef): {"p50_ms": float(np.percentile(t, 50) * 1e3),
                                            "p99_ms": float(np.percentile(t, 99) * 1e3),
                                            "recall_vs_exact": recall_of(fd)} for ef, (t, fd) in by_ef.items()},
        "knn10_ms_p50": float(np.percentile(knn, 50) * 1e3), "seeds_timed": len(seeds),
    }
    with open(a.out, "w") as fh:
        json.dump(res, fh)


if __name__ == "__main__":
    main()

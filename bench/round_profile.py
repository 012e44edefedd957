"""A steady live round at a large window, part by part: what a round costs once the window is full.

``python -m bench.round_profile [--window 200000] [--new 1000] [--rounds 4] [--cache DIR] [--profile]``

One shard of time segments (``SegmentedIndex``, ``--window`` posts kept in segments of window / 8) holding the
clustered synthetic posts of ``bench/rounds.py`` (384-d, 200 background clusters, a 1 % rare cluster; 100 seeds
near it, τ = 0.6, d_max = 10, K0 = 100, the policy of IBG, GBLE and the classifier). The sealed segments are
built in parallel (one ``PostIndex`` per segment, M = 16, ``--ef-construction``) and, with ``--cache``, saved
with the first round's kNN graph shares (``GraphShares``), so a second invocation starts from them. Then
``--rounds`` steady rounds, each after ``--new`` more posts (inserted as the worker inserts them, segments
expiring as they leave the window; every candidate answered from the truth): wall seconds of ``LiveRounds.plan``
and of its parts (snapshot copy, graph update and its kNN search, adjacency, GBLE, IBG, the classifier).
``--profile`` prints cProfile's top functions of the last steady round. ``--restart``: then ``--new`` more posts
(those since the last checkpoint) and the first round of a restarted worker over the same window and verdicts,
taking the rounds' checkpoint back and starting from nothing. The JSON (``--out``) has every figure.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .common import REPO, machine
from .rounds import Data, pid
from .window_rounds import Parts, answer, expire_due, make_rounds, train

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[round-profile {time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def build(window: int, data: Data, efc: int, cache: Path | None, nseg: int = 8):
    """A shard holding posts 0..window in ``nseg`` sealed segments (loaded from ``cache`` if there)."""
    from synapse_stream.index import PostIndex
    from synapse_stream.segments import Retention, Segment, SegmentedIndex

    ret = Retention(max_posts=window, segment_posts=window // nseg)
    path = cache / "shard" / "shard.json" if cache else None
    if path is not None and path.exists():
        t = time.perf_counter()
        shard = SegmentedIndex.load(path, ret)
        say(f"loaded {len(shard):,} posts in {len(shard.segments)} segments in {time.perf_counter() - t:.1f}s")
        return shard, 0.0
    seg_n = window // nseg
    X_all = np.concatenate([X for _, X, _ in data.rows(0, window)])

    def one(s: int) -> Segment:
        idx = PostIndex(X_all.shape[1], m=16, ef_construction=efc, ef_search=64,
                        initial_capacity=seg_n)
        hi = (s + 1) * seg_n
        for b in range(s * seg_n, hi, 500):
            e = min(b + 500, hi)
            idx.add([pid(i) for i in range(b, e)], X_all[b:e])
        import uuid
        seg = Segment(uuid.uuid4().hex[:12], idx, sealed=True, min_ts=float(s * seg_n),
                      max_ts=float((s + 1) * seg_n - 1))
        return seg

    t = time.perf_counter()
    with ThreadPoolExecutor(2) as ex:      # hnswlib releases the GIL while it inserts
        segs = list(ex.map(one, range(nseg)))
    built = time.perf_counter() - t
    shard = SegmentedIndex(X_all.shape[1], ret, m=16, ef_construction=efc, ef_search=64)
    shard.segments = segs
    shard.watermark = float(window - 1)
    say(f"built {window:,} posts in {nseg} segments in {built:.0f}s")
    if path is not None:
        shard.save(path)
    return shard, built


def instrument(r, parts: Parts) -> None:
    from .window_rounds import instrument as base
    base(r, parts)
    parts.wrap(r.index, "knn", "graph_knn_search")
    parts.wrap(r.graph, "adjacency", "adjacency")
    parts.wrap(r.graph, "drop", "graph_drop")


def run(a) -> dict:
    from synapse_stream.graph import GraphShares
    from synapse_stream.index import ShardedIndex
    from synapse_stream.segments import Retention

    window = a.window
    cache = Path(a.cache) if a.cache else None
    if cache:
        cache = cache / f"w{window}-efc{a.ef_construction}" / (f"seg{a.segments}" if a.segments != 8 else "")
        cache.mkdir(parents=True, exist_ok=True)
    data = Data(window + a.new * (a.rounds + 1) + 1000)
    shard, built = build(window, data, a.ef_construction, cache, a.segments)
    index = ShardedIndex(shard.dim, Retention(max_posts=window, segment_posts=window // a.segments))
    index.attach(0, shard)
    truth = {pid(i): int(y) for i, y in enumerate(data.labels(0, window).tolist())}
    # the rounds prune the shares of segments they drop: they work on a copy, and the first round's shares are
    # kept in the cache for the next invocation (whose first round is then a restart: every sealed segment loaded)
    shares_dir = Path(tempfile.mkdtemp(prefix="round-profile-shares-"))
    if cache and (cache / "shares").exists():
        shutil.copytree(cache / "shares", shares_dir, dirs_exist_ok=True)
    eng, r = make_rounds(index, data, truth, GraphShares(shares_dir))
    if a.confirmed:   # a detector that has run for a while: this many of the window's positives confirmed already
        for p in [p for p, y in truth.items() if y][:a.confirmed]:
            eng.on_verdict(p, 1)
    r.live.graph.scope = a.scope
    r.graph_first = a.upkeep
    r.graph.ef = a.first_ef or a.ef
    parts = Parts()
    instrument(r, parts)
    t, c = time.perf_counter(), time.process_time()
    answer(eng, r, r.plan(), truth)
    first = time.perf_counter() - t
    first_cpu = time.process_time() - c
    if cache:
        shutil.copytree(shares_dir, cache / "shares", dirs_exist_ok=True)
    p_first = parts.take()
    say(f"first round {first:.1f}s ({first_cpu:.1f}s CPU; {r.live.shares_loaded[1]:,} posts' graph rows loaded from shares) {p_first}")
    train(r, eng, index, data)
    r.graph.ef = a.ef
    res = {"graph_ef": a.ef, "first_round_graph_ef": a.first_ef or a.ef, "window": window, "segment_posts": window // a.segments,
           "scope": a.scope, "upkeep": a.upkeep, "confirmed_before": a.confirmed,
           "retrain": a.retrain, "new_per_round": a.new,
           "ef_construction": a.ef_construction,
           "build_s": built, "first_round_s": first, "first_round_cpu_s": first_cpu, "first_round_parts_s": p_first,
           "shares_loaded_posts": r.live.shares_loaded[1], "steady": []}
    nxt = window
    prof = cProfile.Profile() if a.profile else None
    store = None
    if a.restart:     # the rounds' checkpoint, written at every round (the worker: every snapshot interval)
        from synapse_stream.checkpoints import RoundCheckpoints
        store = RoundCheckpoints(tempfile.mkdtemp(prefix="round-profile-checkpoint-"))
        r.keep_checkpoints(store, 0.0)
    for k in range(a.rounds):
        arrive(index, data, truth, nxt, a.new)
        nxt += a.new
        gone = [p for e in index.expirable().values() for p in e.ids]
        moving = sum(1 for p in gone if eng.labels.get(p) == 1)     # confirmed positives leaving with the window
        due = expire_due(index, r)
        if a.retrain:     # a new classifier version before every round, as the worker trains one (it scores the window)
            train(r, eng, index, data)
        r.touch()
        t_up = time.perf_counter()
        while a.upkeep and r.advance(2048):     # the scheduler's upkeep between rounds (not in the round's time)
            pass
        upkeep = time.perf_counter() - t_up
        if prof is not None and k == a.rounds - 1:
            prof.enable()
        t, c = time.perf_counter(), time.process_time()
        cands = r.plan()
        wall = time.perf_counter() - t
        cpu = time.process_time() - c
        if prof is not None and k == a.rounds - 1:
            prof.disable()
        row = {"round_s": wall, "round_cpu_s": cpu, "window": len(index), "expired": bool(due),
               "expired_positives": moving, "upkeep_s": upkeep, "phases": r.rounds[-1].phases if cands else {},
               **parts.take()}
        res["steady"].append(row)
        answer(eng, r, cands, truth)
        timed = ", ".join(f"{k_}={v:.3f}" for k_, v in row.items()
                          if isinstance(v, float) and k_ not in ("round_s", "round_cpu_s"))
        expiry = f" (a segment expired, {moving} confirmed positives in it)" if due else ""
        say(f"steady round {k + 1}: {wall:.2f}s ({cpu:.2f}s CPU), window {len(index):,}{expiry}: {timed}")
    if a.restart:
        arrive(index, data, truth, nxt, a.new)       # the posts consumed since the last checkpoint
        res["restart"] = restart(a, index, data, truth, eng, store, shares_dir)
    if prof is not None:
        st = pstats.Stats(prof, stream=sys.stderr)
        st.sort_stats("cumulative").print_stats(30)
        st.sort_stats("tottime").print_stats(20)
    return res


def arrive(index, data: Data, truth: dict, start: int, n: int) -> None:
    """Posts ``start .. start + n`` inserted as the worker inserts them (64 at a time)."""
    for first_id, X, y in data.rows(start, start + n):
        for s in range(0, len(X), 64):
            ids = [pid(first_id + s + j) for j in range(len(X[s:s + 64]))]
            truth.update(zip(ids, y[s:s + 64].tolist()))
            index.add(0, ids, X[s:s + 64], ts=[float(first_id + s + j) for j in range(len(ids))])


def restart(a, index, data: Data, truth: dict, eng, store, shares_dir: Path) -> dict:
    """The first round of a restarted worker over the same window and verdicts (the graph's sealed shares loaded
    from disk in both): taking the rounds' checkpoint back, and from nothing (before the checkpoint existed)."""
    from synapse_stream.checkpoints import RoundCheckpoints
    from synapse_stream.graph import GraphShares

    from .window_rounds import make_rounds

    out = {}
    for name, st in (("from_checkpoint", store), ("from_nothing", RoundCheckpoints(tempfile.mkdtemp()))):
        shares = Path(tempfile.mkdtemp(prefix="round-profile-restart-"))
        shutil.copytree(shares_dir, shares, dirs_exist_ok=True)
        eng2, r2 = make_rounds(index, data, truth, GraphShares(shares))
        for p, y in eng.labels.items():          # the verdicts and the seed registry, as from Redis
            if p in index:
                eng2.on_verdict(p, y)
            else:
                eng2.books.labels[p] = y
        for seed, v in zip(list(eng.books.seeds.seeds), eng.books.seeds.matrix):
            if seed.id not in eng2.books.seeds:
                eng2.on_seed(seed, v)
        r2.live.graph.scope = a.scope
        r2.graph.ef = a.ef
        train(r2, eng2, index, data)
        r2.keep_checkpoints(st, 0.0)
        r2.graph_first = a.upkeep
        t_up = time.perf_counter()
        while a.upkeep and r2.advance(2048):     # the scheduler's upkeep: the graph takes the posts between rounds
            pass
        upkeep = time.perf_counter() - t_up
        t, c = time.perf_counter(), time.process_time()
        cands = r2.plan()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        ibg = r2.policy.sources["ibg"]
        out[name] = {"upkeep_before_s": upkeep, "round_s": wall, "round_cpu_s": cpu,
                     "restored": bool(r2.checkpoint.restored),
                     "ibg_compared": ibg.compared, "candidates": len(cands), "ibg_lists": len(ibg.lists),
                     "ibg_waiting": len(ibg._waiting), "phases": r2.rounds[-1].phases if cands else {},
                     "graph_posts_from_shares": r2.live.shares_loaded[1],
                     "graph_posts_searched": sum(1 for n in r2.graph.names if not n.startswith("seed:"))
                     - r2.live.shares_loaded[1]}
        say(f"restart {name}: graph upkeep {upkeep:.1f}s, then the first round {wall:.2f}s ({cpu:.2f}s CPU), IBG compared {ibg.compared:,} pairs, "
            f"{len(ibg.lists):,} positives with a list, {len(ibg._waiting):,} waiting, {len(cands)} candidates; "
            f"{out[name]['phases']}")
        # the rounds until every positive has its list again (IBG's cap on new positives: those beyond it wait)
        later = []
        while ibg._waiting and len(later) < 60:
            answer(eng2, r2, cands, truth)
            r2.touch()
            t = time.perf_counter()
            cands = r2.plan()
            later.append(round(time.perf_counter() - t, 3))
        out[name].update(catch_up_rounds=len(later), catch_up_round_s=later, still_waiting=len(ibg._waiting))
        say(f"restart {name}: {len(later)} more rounds until no positive waits ({sum(later):.1f}s in all)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=200_000)
    ap.add_argument("--new", type=int, default=1000, help="posts arriving before each steady round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", type=int, default=None, help="the graph searches' ef (default: the index's, 64)")
    ap.add_argument("--first-ef", type=int, default=None, help="ef of the first round's graph build (default --ef)")
    ap.add_argument("--cache", default=None, help="keep the built segments and the graph shares here")
    ap.add_argument("--segments", type=int, default=8, help="sealed segments the window holds (window / segments each)")
    ap.add_argument("--scope", default="window", help="the graph's scope (KNNGraph.SCOPES; the worker's: recent)")
    ap.add_argument("--upkeep", action="store_true", 
                    help="grow the graph between rounds (LiveRounds.advance), as the worker")
    ap.add_argument("--confirmed", type=int, default=0, help="positives of the window confirmed before the first round")
    ap.add_argument("--retrain", action="store_true", help="a new classifier version before every round (the worker's)")
    ap.add_argument("--restart", action="store_true",
                    help="then the first round of a restarted worker, from the rounds' checkpoint and from nothing")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "round_profile.json"))
    a = ap.parse_args(argv)
    la0 = [round(x, 2) for x in os.getloadavg()]
    res = run(a)
    res["machine"] = machine()
    res["load_average_before"], res["load_average_after"] = la0, [round(x, 2) for x in os.getloadavg()]
    res["command"] = "python -m bench.round_profile " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(a.out).write_text(json.dumps(res, indent=1))
    steady = [x["round_s"] for x in res["steady"]]
    cpu = [x["round_cpu_s"] for x in res["steady"]]
    print(f"window {a.window:,}: first round {res['first_round_s']:.2f}s ({res['first_round_cpu_s']:.2f}s CPU, "
          f"{res['shares_loaded_posts']:,} posts' rows loaded from shares); steady rounds after {a.new} new posts: "
          f"median {np.median(steady):.2f}s ({np.median(cpu):.2f}s CPU), max {max(steady):.2f}s "
          f"({max(cpu):.2f}s CPU); load {la0} -> {res['load_average_after']}")
    keys = sorted({k for x in res["steady"] for k in x if isinstance(x[k], float) and k not in ("round_s", "round_cpu_s")})
    for k in keys:
        print(f"  {k}: median {np.median([x.get(k, 0.0) for x in res['steady']]):.3f}s")
    return 0 if math.isfinite(res["first_round_s"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())

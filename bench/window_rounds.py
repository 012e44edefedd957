"""Live rounds over a bounded window, off the ingesting thread: what a round costs and what it holds up.

``python -m bench.window_rounds [--window 20000] [--stream 3] [--quick]``

One shard of time segments (``SegmentedIndex``, ``--window`` posts kept, sealed every window / 8) is filled with
the clustered synthetic posts of ``bench/rounds.py`` (384-d, 200 background clusters, a 1 % rare cluster; a
detector with 100 seeds near it, τ = 0.6, d_max = 10, K0 = 100, the policy of IBG, GBLE and the classifier).
Then ``--stream`` windows' worth of posts more arrive in micro-batches of ``--batch`` posts, as the worker's
model thread inserts them, segments expiring as they leave the window; meanwhile rounds run back to back in a
second thread, as the worker's round thread runs them (``LiveRounds.gather`` / ``commit`` on the inserting
thread, between micro-batches; ``compute`` in the round thread). Every candidate is answered from the truth
before the next round. Measured:

* per round: wall seconds of ``compute`` and of its parts (snapshot copy, graph update, IBG, GBLE with its
  adjacency, the classifier), and of ``gather`` + ``commit`` (the only part on the inserting thread);
* the inserting thread's micro-batches (insert + expiry + any gather/commit due): p50, p99 and max seconds,
  with rounds running beside them, and, as the reference, the same micro-batches with each round planned on
  the inserting thread (``plan``, as the worker did before): the longest stall is then a whole round;
* a restart: a new ``LiveRounds`` on the same shard, first round with the sealed segments' saved graph shares
  (``GraphShares``) and without them (every post searched again).

Progress on stderr; a table on stdout; ``bench/window_rounds.json`` gets every figure and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .common import REPO, machine
from .rounds import D_MAX, K0, TAU, Data, pid

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[window-rounds {time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


class Parts:
    """Wall seconds spent in named methods (wrapped), summed per round."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.lock = threading.Lock()

    def wrap(self, obj, name: str, key: str) -> None:
        fn = getattr(obj, name)

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                with self.lock:
                    self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - t
        setattr(obj, name, timed)

    def take(self) -> dict[str, float]:
        with self.lock:
            out, self.t = self.t, {}
        return out


def expire_due(index, rounds) -> bool:
    """Drop every segment past the window from ``index`` and tell ``rounds`` which posts left (as the worker's
    retention step does); True if any did."""
    due = index.expirable()
    if due:
        gone = [p for e in due.values() for p in e.ids]
        for key, e in due.items():
            index.shards[key].drop(e.segments)
        rounds.expire(gone)
    return bool(due)


def make_rounds(index, data: Data, truth: dict[str, int], shares=None):
    from synapse_stream.online import DetectorConfig, OnlineIBG
    from synapse_stream.rounds import LiveRounds
    from synapse_stream.seeds import Seed, SeedOrigin
    from synapse_stream.sources import SourceParams

    eng = OnlineIBG(DetectorConfig("d", TAU, D_MAX, online=False), index)
    for j, s in enumerate(data.seeds):
        eng.on_seed(Seed(f"s{j}", "", SeedOrigin.SYNTHETIC), s)
    r = LiveRounds(eng.books, index, name="d", params=SourceParams(tau=TAU, d_max=D_MAX, k0=K0), k0=K0)
    r.live.shares = shares
    return eng, r


def train(r, eng, index, data: Data) -> None:
    """A classifier version from the seeds, the verdicts so far and 200 provisional negatives."""
    from synapse_stream.classifier import train_model

    labelled = [p for p in eng.labels if p in index]
    X = index.get_vectors(labelled) if labelled else np.zeros((0, data.seeds.shape[1]), np.float32)
    y = np.asarray([eng.labels[p] for p in labelled], np.int8)
    ids = index.shards[0].ids()[:200]
    prov = index.get_vectors(ids)
    r.use_model(train_model("d", len(eng.labels) + 1, data.seeds, X, y, prov, folds=0))


def instrument(r, parts: Parts) -> None:
    parts.wrap(r.index, "vectors_parts", "snapshot")
    parts.wrap(r.graph, "update", "graph_update")
    for name, src in r.policy.sources.items():
        parts.wrap(src, "propose", name)
    parts.wrap(r, "gather", "gather")
    parts.wrap(r, "commit", "commit")


def answer(eng, r, cands, truth) -> int:
    pos = 0
    for c in cands:
        y = truth.get(c.post_id, 0)
        eng.on_verdict(c.post_id, y)
        r.observe(c.post_id, y, True)
        pos += y
    return pos


def stream(index, eng, r, data: Data, truth, start: int, stop: int, batch: int, threaded: bool,
           parts: Parts) -> dict:
    """Posts ``start..stop`` in micro-batches on this thread; rounds beside them (``threaded``) or on it."""
    tasks: queue.Queue = queue.Queue()      # work the round thread hands to the inserting thread
    rounds: list[dict] = []
    stop_flag = threading.Event()

    def on_owner(fn, *a):
        done = threading.Event()
        box = {}

        def run():
            box["v"] = fn(*a)
            done.set()
        tasks.put(run)
        while not done.wait(0.05):
            if stop_flag.is_set() and tasks.empty():
                return None
        return box["v"]

    def round_loop():
        while not stop_flag.is_set():
            r.touch()
            inp = on_owner(r.gather)
            if inp is None:
                return
            t = time.perf_counter()
            out = r.compute(inp)
            compute = time.perf_counter() - t
            cands = on_owner(r.commit, out)
            if cands is None:
                return
            on_owner(answer, eng, r, cands, truth)
            rounds.append({"compute_s": compute, "candidates": len(cands), **parts.take()})

    th = threading.Thread(target=round_loop, daemon=True) if threaded else None
    if th:
        th.start()
    batches = []
    i = start
    last_plan = time.perf_counter()
    for first, X, y in data.rows(start, stop):
        for s in range(0, len(X), batch):
            t = time.perf_counter()
            ids = [pid(first + s + j) for j in range(len(X[s:s + batch]))]
            for p, lab in zip(ids, y[s:s + batch].tolist()):
                truth[p] = lab
            index.add(0, ids, X[s:s + batch], ts=[float(first + s + j) for j in range(len(ids))])
            expire_due(index, r)
            while not tasks.empty():
                tasks.get()()
            if not threaded and time.perf_counter() - last_plan >= 0.5:   # the old way: a round on this thread
                r.touch()
                t_round = time.perf_counter()
                cands = r.plan()
                rounds.append({"compute_s": time.perf_counter() - t_round, "candidates": len(cands), **parts.take()})
                answer(eng, r, cands, truth)
                last_plan = time.perf_counter()
            batches.append(time.perf_counter() - t)
            i += len(ids)
    stop_flag.set()
    if th:
        while th.is_alive():
            while not tasks.empty():
                tasks.get()()
            th.join(0.05)
    b = np.asarray(batches)
    steady = rounds[1:] or rounds
    return {"mode": "round thread" if threaded else "rounds on the inserting thread",
            "posts": stop - start, "batches": len(b), "batch_p50_s": float(np.percentile(b, 50)),
            "batch_p99_s": float(np.percentile(b, 99)), "batch_max_s": float(b.max()), "rounds": len(rounds),
            "round_compute_p50_s": float(np.median([x["compute_s"] for x in steady])) if steady else None,
            "round_parts_median_s": {k: float(np.median([x.get(k, 0.0) for x in steady]))
                                     for k in sorted({k for x in steady for k in x if k not in ("candidates",)})},
            "window_at_end": len(index)}


def restart(index, data: Data, truth, shares_dir: Path, running) -> dict:
    """First round of a new LiveRounds on the same shard: with the saved shares, and without. The running
    rounds plan once more first (as a worker's rounds run on), so every sealed segment's share is saved."""
    from synapse_stream.graph import GraphShares

    running.touch()
    running.plan()
    out = {"shares_saved": len(list(shares_dir.rglob("*.npz")))}
    for label, shares in (("with_shares", GraphShares(shares_dir)), ("without_shares", None)):
        eng, r = make_rounds(index, data, truth, shares)
        searched = [0]
        real = index.knn_parts

        def counting(q, k, ef=None, real=real):
            searched[0] += len(q)
            return real(q, k, ef)
        index.knn_parts = counting
        try:
            t = time.perf_counter()
            r.plan()
            out[label] = {"first_round_s": time.perf_counter() - t, "posts_searched": searched[0]}
        finally:
            index.knn_parts = real
        say(f"restart {label}: first round {out[label]['first_round_s']:.2f}s, {searched[0]:,} searched")
    return out


def run(window: int, n_stream: int, batch: int, efc: int) -> dict:
    from synapse_stream.graph import GraphShares
    from synapse_stream.index import ShardedIndex
    from synapse_stream.segments import Retention

    data = Data(window * (1 + 2 * n_stream) + 1000)
    res = {"window": window, "segment_posts": window // 8, "micro_batch": batch, "ef_construction": efc}
    shares_dir = Path(tempfile.mkdtemp(prefix="synapse-window-rounds-"))
    for threaded in (True, False):
        index = ShardedIndex(data.seeds.shape[1], Retention(max_posts=window, segment_posts=window // 8),
                             m=16, ef_construction=efc, ef_search=64)
        truth: dict[str, int] = {}
        t = time.perf_counter()
        for first, X, y in data.rows(0, window):
            for s in range(0, len(X), 500):
                ids = [pid(first + s + j) for j in range(len(X[s:s + 500]))]
                index.add(0, ids, X[s:s + 500], ts=[float(first + s + j) for j in range(len(ids))])
                truth.update(zip(ids, y[s:s + 500].tolist()))
        say(f"window of {window:,} built in {time.perf_counter() - t:.0f}s")
        eng, r = make_rounds(index, data, truth, GraphShares(shares_dir) if threaded else None)
        parts = Parts()
        instrument(r, parts)
        t = time.perf_counter()
        answer(eng, r, r.plan(), truth)   # the first round (builds the graph over the window)
        res.setdefault("first_round_s", time.perf_counter() - t)
        parts.take()
        train(r, eng, index, data)
        say(f"first round {time.perf_counter() - t:.1f}s; streaming {n_stream} windows "
            f"({'round thread' if threaded else 'rounds on the inserting thread'})")
        row = stream(index, eng, r, data, truth, window, window * (1 + n_stream), batch, threaded, parts)
        res["round_thread" if threaded else "inserting_thread"] = row
        p50 = row["round_compute_p50_s"]
        say(f"  {row['rounds']} rounds, compute p50 {'-' if p50 is None else f'{p50:.2f}s'}; micro-batch p50 "
            f"{row['batch_p50_s'] * 1000:.1f} ms p99 {row['batch_p99_s'] * 1000:.1f} ms max {row['batch_max_s']:.2f}s")
        if threaded:
            res["restart"] = restart(index, data, truth, shares_dir, r)
    return res


def table(res: dict) -> str:
    a, b = res["round_thread"], res["inserting_thread"]
    lines = [f"window {res['window']:,} posts, segments of {res['segment_posts']:,}, micro-batches of "
             f"{res['micro_batch']}, {a['posts']:,} posts streamed",
             "| | rounds in the round thread | rounds on the inserting thread |", "|---|---|---|"]
    for key, label in (("rounds", "rounds"), ("round_compute_p50_s", "round, median s"),
                       ("batch_p50_s", "micro-batch p50 s"), ("batch_p99_s", "micro-batch p99 s"),
                       ("batch_max_s", "micro-batch max s (the longest stall)")):
        cell = [f"{x:.3f}" if isinstance(x, float) else "–" if x is None else f"{x}" for x in (a[key], b[key])]
        lines.append(f"| {label} | {cell[0]} | {cell[1]} |")
    lines.append("")
    lines.append("| round part, median s | round thread |")
    lines.append("|---|---|")
    for k, v in a["round_parts_median_s"].items():
        lines.append(f"| {k} | {v:.3f} |")
    rs = res["restart"]
    lines.append("")
    lines.append(f"restart, first round: {rs['with_shares']['first_round_s']:.2f}s with the {rs['shares_saved']} saved "
                 "graph shares "
                 f"({rs['with_shares']['posts_searched']:,} posts searched), "
                 f"{rs['without_shares']['first_round_s']:.2f}s without ({rs['without_shares']['posts_searched']:,})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=20_000)
    ap.add_argument("--stream", type=int, default=2, help="windows' worth of posts streamed after the first")
    ap.add_argument("--batch", type=int, default=64, help="posts per micro-batch")
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="window 5,000, one window streamed")
    ap.add_argument("--out", default=str(REPO / "bench" / "window_rounds.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.window, a.stream = 5_000, 1
    res = run(a.window, a.stream, a.batch, a.ef_construction)
    res["machine"] = machine()
    res["load_average"] = [round(x, 2) for x in os.getloadavg()]
    res["command"] = "python -m bench.window_rounds " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

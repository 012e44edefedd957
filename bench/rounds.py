"""Round time of the candidate policy (IBG + GBLE + classifier) over a worker's shards at 100 k and 1 M posts.

``python -m bench.rounds [--sizes 100000,1000000] [--quick] [--cache DIR]``

For each size: synthetic clustered unit vectors (384-d; 200 background clusters, one rare cluster of ~1 %
that is the detector's positive class), split over 2 HNSW shards (2 partitions held by one worker) and built
with ``PostIndex.add`` in micro-batches as the worker inserts them (M = 16, ef_construction = 200, the
``stream_app/settings.py`` defaults; ``--ef-construction-1m`` for 1 M). A detector (τ = 0.6, d_max = 10,
K0 = 100: the ``DetectorSettings`` defaults) has 100 synthetic seeds near the rare cluster, 300 labelled posts
(100 positive) and 100 pending ones, and a classifier version trained on them. Then, through the real code
path (``LiveRounds.plan``, with timers wrapped around the pieces it calls):

* the **first round**, which builds the kNN graph over every post (``KNNGraph.update``, timed apart);
* its verdicts are answered, the classifier is retrained, and **1,000 new posts** arrive (HNSW insert);
* a **steady round** (``--steady`` of them, each after 1,000 more posts), broken down into snapshot,
  graph update, adjacency rebuild, propagation, IBG, model scoring and the rest (bandit, ranking, bookkeeping),
  with the peak resident memory it adds (``VmHWM`` reset through ``/proc/self/clear_refs``; a 5 ms RSS
  sampler where that is not allowed);
* **training a classifier version**: ``train_model`` with 5-fold CV on 3,000 labelled rows + 100 seeds +
  100 provisional negatives, plus the service's provisional-negative sample (a salted-hash sort of every
  unlabelled post id of the worker's shards, as ``stream_app/service.py`` does before training).

Progress goes to stderr; the table to stdout; ``bench/rounds.json`` gets the numbers and the machine.
``--cache DIR`` saves the built shards (``PostIndex.save``) and the first round's kNN graph, and reuses them on the
next run with the same size and build parameters (the data are regenerated from the same random seeds; the build
time and the first round's figures are then the cached run's, marked ``cached``).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .common import REPO, machine

DIM, CLUSTERS, RARE_FRAC = 384, 200, 0.01
SIGMA_BG, SIGMA_RARE, SIGMA_SEED = 0.9, 0.7, 0.5
TAU, D_MAX, K0 = 0.6, 10, 100
SEEDS, LABELLED, LABELLED_POS, PENDING, NEW_POSTS, TRAIN_ROWS = 100, 300, 100, 100, 1000, 3000
PIECE, ADD_BATCH = 20_000, 500
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[rounds {time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- memory
def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident memory during a block, above the RSS at its start (bytes)."""

    def __enter__(self):
        gc.collect()
        self.base = rss()
        self.hwm = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")                       # reset VmHWM to the current RSS
            self.hwm = _status("VmHWM") is not None
        except OSError:
            pass
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss())
        if self.hwm:
            self.peak = max(self.peak, _status("VmHWM") or 0)
        self.added = self.peak - self.base
        self.method = "VmHWM" if self.hwm else "RSS sampled every 5 ms"
        return False


# ---------------------------------------------------------------------- data
class Data:
    """Deterministic clustered unit vectors: post ``i`` is in piece ``i // PIECE``, regenerated on demand."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n = n
        self.centres = _unit(rng.standard_normal((CLUSTERS + 1, DIM), dtype=np.float32))
        self.rare = CLUSTERS                       # index of the rare (positive) centre
        self.seeds = _unit(self.centres[self.rare] + SIGMA_SEED / np.sqrt(DIM)
                           * rng.standard_normal((SEEDS, DIM), dtype=np.float32))

    def piece(self, p: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and labels (1 = rare cluster) of posts ``start..stop`` (within piece ``p``), in order."""
        rng = np.random.default_rng(10_000 + p)
        size = PIECE
        y = (rng.random(size) < RARE_FRAC).astype(np.int8)
        c = np.where(y == 1, self.rare, rng.integers(0, CLUSTERS, size))
        sigma = np.where(y == 1, SIGMA_RARE, SIGMA_BG).astype(np.float32)[:, None] / np.float32(np.sqrt(DIM))
        X = self.centres[c] + sigma * rng.standard_normal((size, DIM), dtype=np.float32)
        lo, hi = start - p * PIECE, stop - p * PIECE
        return _unit(X[lo:hi]), y[lo:hi]

    def rows(self, start: int, stop: int):
        """Yield ``(first id, X, y)`` blocks of posts ``start..stop``."""
        i = start
        while i < stop:
            p = i // PIECE
            j = min(stop, (p + 1) * PIECE)
            X, y = self.piece(p, i, j)
            yield i, X, y
            i = j

    def labels(self, start: int, stop: int) -> np.ndarray:
        return np.concatenate([y for _, _, y in self.rows(start, stop)]) if stop > start else np.zeros(0, np.int8)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def pid(i: int) -> str:
    return f"p{i}"


def shard_of(i: int) -> int:
    return i % 2          # 2 partitions


def insert(index, data: Data, start: int, stop: int, parts=(0, 1)) -> None:
    """Posts ``start..stop`` into their shards (post i in shard i % 2), in micro-batches of ``ADD_BATCH``."""
    for first, X, _ in data.rows(start, stop):
        ids = np.arange(first, first + len(X))
        for part in parts:
            rows = np.flatnonzero(ids % 2 == part)
            for s in range(0, len(rows), ADD_BATCH):
                r = rows[s:s + ADD_BATCH]
                index.add(part, [pid(int(i)) for i in ids[r]], X[r])


def build(index, data: Data, n: int, threads: int) -> None:
    """Fill the 2 shards with posts 0..n: one thread inserting both (as one worker's model thread does), or
    one thread per shard (hnswlib releases the GIL while it inserts; each thread regenerates the data)."""
    t = time.perf_counter()
    step = max(PIECE, n // 10 // PIECE * PIECE)
    for part in (0, 1):
        index.shard(part)
    if threads <= 1:
        for s in range(0, n, step):
            insert(index, data, s, min(n, s + step))
            el = time.perf_counter() - t
            say(f"n={n:,}: {len(index):>9,} posts indexed, {len(index) / el:,.0f}/s, load {os.getloadavg()[0]:.1f}")
        return
    errors = []

    def fill(part):
        try:
            for s in range(0, n, step):
                insert(index, data, s, min(n, s + step), parts=(part,))
                if part == 0:
                    el = time.perf_counter() - t
                    say(f"n={n:,}: {len(index):>9,} posts indexed, {len(index) / el:,.0f}/s, "
                        f"load {os.getloadavg()[0]:.1f}")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    ts = [threading.Thread(target=fill, args=(p,)) for p in (0, 1)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------- timers around the pieces of plan()
class Timers:
    """Wall and CPU seconds (``time.process_time``: all threads of this process) of wrapped methods."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.c: dict[str, float] = {}

    def wrap(self, obj, name: str, key: str) -> None:
        fn = getattr(obj, name)

        def timed(*a, **kw):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - t
                self.c[key] = self.c.get(key, 0.0) + time.process_time() - c

        setattr(obj, name, timed)

    def reset(self) -> tuple[dict[str, float], dict[str, float]]:
        out = (self.t, self.c)
        self.t, self.c = {}, {}
        return out


def instrument(rounds, timers: Timers) -> None:
    timers.wrap(rounds.index, "vectors", "snapshot_vectors")
    timers.wrap(rounds, "_snapshot", "snapshot")
    timers.wrap(rounds.graph, "update", "graph_update")
    timers.wrap(rounds.graph, "transition", "graph_transition")
    timers.wrap(rounds.policy, "plan", "policy_plan")
    for name, src in rounds.policy.sources.items():
        timers.wrap(src, "propose", f"propose_{name}")


def breakdown(t: dict[str, float], total: float) -> dict[str, float]:
    def g(k):
        return t.get(k, 0.0)

    out = {
        "total": total,
        "snapshot_vectors": g("snapshot_vectors"),
        "snapshot_other": g("snapshot") - g("snapshot_vectors"),
        "graph_update": g("graph_update"),
        "graph_adjacency": g("graph_transition"),
        "gble_propagation": g("propose_gble") - g("graph_transition"),
        "ibg": g("propose_ibg"),
        "model_scoring": g("propose_model"),
    }
    out["other"] = total - sum(v for k, v in out.items() if k != "total")
    return out


def measured_round(rounds, timers) -> tuple[list, dict, float]:
    """Plan one round (share 1) and measure it: ``(batch, row, total seconds)``; the row has the wall and
    CPU breakdown by component, the batch's size, split and digest, and the peak RSS it added."""
    with PeakRSS() as mem:
        t, c = time.perf_counter(), time.process_time()
        batch = rounds.plan(share=1.0)
        total, cpu = time.perf_counter() - t, time.process_time() - c
    wall_t, cpu_t = timers.reset()
    row = breakdown(wall_t, total)
    row.update(cpu=breakdown(cpu_t, cpu), candidates=len(batch), alloc=rounds.rounds[-1].alloc,
               batch_sha1=digest(batch), peak_rss_added_mib=mem.added / 2**20, memory_method=mem.method,
               load_average=[round(x, 2) for x in os.getloadavg()])
    return batch, row, total


def digest(batch) -> str:
    """A fingerprint of a round's batch (posts, sources, scores in sending order), to compare code versions."""
    return hashlib.sha1("\n".join(f"{c.post_id} {c.reason} {c.score!r}" for c in batch).encode()).hexdigest()[:16]


def save_graph(g, path: Path) -> None:
    np.savez(path, names=np.asarray(g.names), rows=np.concatenate(g._rows), cols=np.concatenate(g._cols),
             seed_names=np.asarray(g._seed_names), seed_vecs=np.vstack(g._seed_vecs))


def load_graph(g, path: Path, index) -> None:
    z = np.load(path)
    names = [str(x) for x in z["names"]]
    posts = [x for x in names if not x.startswith("seed:")]
    if set(posts) != set(index.ids() if hasattr(index, "ids") else [p for s in index.shards.values() for p in s.ids()]):
        raise SystemExit(f"{path}: the cached graph's posts are not the shards' posts; delete it")
    g.names = names
    g.node_of = {x: i for i, x in enumerate(names)}
    g._rows, g._cols = [z["rows"]], [z["cols"]]
    g._seed_names = [str(x) for x in z["seed_names"]]
    g._seed_vecs = list(z["seed_vecs"])
    g._W = None


# ---------------------------------------------------------------------- one size
def run_size(n: int, *, efc: int, m: int, steady: int, cache: Path | None, build_threads: int = 1,
             build_only: bool = False) -> dict:
    from synapse_stream.classifier import train_model
    from synapse_stream.index import PostIndex, ShardedIndex
    from synapse_stream.online import DetectorConfig, OnlineIBG
    from synapse_stream.rounds import LiveRounds
    from synapse_stream.sources import SourceParams
    from synapse_stream.seeds import Seed, SeedOrigin

    res: dict = {"posts": n, "shards": 2, "dim": DIM, "m": m, "ef_construction": efc, "ef_search": 64,
                 "rare_fraction": RARE_FRAC, "tau": TAU, "d_max": D_MAX, "k0": K0, "gble_k": 10,
                 "gble_iterations": 20, "seeds": SEEDS}
    data = Data(n)
    base_rss = rss()
    index = ShardedIndex(DIM, m=m, ef_construction=efc, ef_search=64)
    cdir = cache / f"n{n}-m{m}-efc{efc}" if cache else None
    if cdir and (cdir / "done.json").exists():
        t = time.perf_counter()
        for part in (0, 1):
            index.attach(part, PostIndex.load(cdir / f"shard{part}.json"))
        meta = json.loads((cdir / "done.json").read_text())
        res["build_s"], res["build_cached"] = meta["build_s"], True
        build_threads = meta.get("build_threads", build_threads)
        say(f"n={n:,}: loaded cached shards in {time.perf_counter() - t:.0f}s (built in {meta['build_s']:.0f}s)")
    else:
        say(f"n={n:,}: building 2 shards (M={m}, ef_construction={efc}, {build_threads} thread(s)), "
            f"micro-batches of {ADD_BATCH}...")
        t = time.perf_counter()
        build(index, data, n, build_threads)
        res["build_s"], res["build_cached"] = time.perf_counter() - t, False
        if cdir:
            cdir.mkdir(parents=True, exist_ok=True)
            for part in (0, 1):
                index.shards[part].save(cdir / f"shard{part}.json")
            (cdir / "done.json").write_text(json.dumps({"build_s": res["build_s"], "build_threads": build_threads}))
    res["insert_per_s"], res["build_threads"] = n / res["build_s"], build_threads
    if build_only:
        return res
    gc.collect()
    res["index_rss_mib"] = (rss() - base_rss) / 2**20

    # the detector's books: seeds, labelled and pending posts
    y_all = data.labels(0, n)
    rng = np.random.default_rng(1)
    pos_rows, neg_rows = np.flatnonzero(y_all == 1), np.flatnonzero(y_all == 0)
    eng = OnlineIBG(DetectorConfig("bench", TAU, D_MAX, online=False), index)
    for j, s in enumerate(data.seeds):
        eng.on_seed(Seed(f"s{j}", "", SeedOrigin.SYNTHETIC), s)
    lab_pos = rng.choice(pos_rows, min(LABELLED_POS, len(pos_rows) // 2), replace=False)
    lab_neg = rng.choice(neg_rows, LABELLED - len(lab_pos), replace=False)
    labelled = np.concatenate([lab_pos, lab_neg])
    for r in labelled:
        eng.queried.add(pid(int(r)))
        eng.on_verdict(pid(int(r)), int(y_all[r]))
    rest = np.setdiff1d(np.arange(n), labelled)
    for r in rng.choice(rest, PENDING, replace=False):
        eng.queried.add(pid(int(r)))
    rounds = LiveRounds(eng.books, index, name="bench", k0=K0, seed=0,
                        params=SourceParams(tau=TAU, d_max=D_MAX, k0=K0, gble_k=10, gble_iterations=20))
    timers = Timers()
    instrument(rounds, timers)

    def labelled_rows():
        ids = list(eng.labels)
        return index.get_vectors(ids), np.asarray([eng.labels[p] for p in ids], np.int8)

    def train(version: int, folds: int):
        X_lab, y_lab = labelled_rows()
        prov = rng.choice(np.setdiff1d(np.arange(n), labelled), SEEDS, replace=False)
        X_prov = index.get_vectors([pid(int(r)) for r in prov])
        return train_model("bench", version, data.seeds, X_lab, y_lab, X_prov, folds=folds)

    rounds.use_model(train(1, 0))

    # first round: builds the kNN graph over every post (or loads the graph a previous run built: --cache)
    gfile = cdir / "graph.npz" if cdir else None
    cached_first = None
    if gfile and gfile.exists() and (cdir / "first_round.json").exists():
        load_graph(rounds.graph, gfile, index)
        cached_first = json.loads((cdir / "first_round.json").read_text())
        say(f"n={n:,}: kNN graph loaded from {gfile} ({len(rounds.graph):,} nodes); the first round's graph "
            "build is the run's that built it")
    say(f"n={n:,}: first round (kNN graph over {n:,} posts + {len(eng.seeds)} positives)...")
    batch, first, _ = measured_round(rounds, timers)
    first.update(graph_nodes=len(rounds.graph), graph_edges=int(rounds.graph.adjacency().nnz))
    if cached_first is not None:
        # this round's pieces, with the graph build of the run that built the graph (a loaded graph costs nothing)
        rerun = first
        first = {**rerun, "graph_cached": True, "graph_build_run": cached_first}
        first["total"] = rerun["total"] - rerun["graph_update"] + cached_first["graph_update"]
        first["graph_update"] = cached_first["graph_update"]
        cpu_c, cpu_r = cached_first.get("cpu") or {}, rerun["cpu"]
        if "graph_update" in cpu_c:
            first["cpu"] = {**cpu_r, "graph_update": cpu_c["graph_update"],
                            "total": cpu_r["total"] - cpu_r["graph_update"] + cpu_c["graph_update"]}
        else:
            first["cpu"] = {}
        first["peak_rss_added_mib"] = max(rerun["peak_rss_added_mib"], cached_first["peak_rss_added_mib"])
        first["rerun_with_cached_graph"] = rerun
    elif gfile:
        save_graph(rounds.graph, gfile)
        (cdir / "first_round.json").write_text(json.dumps(first))
    res["first_round"] = first
    say(f"n={n:,}: first round {first['total']:.1f}s (graph {first['graph_update']:.1f}s), {len(batch)} candidates "
        f"{first['alloc']}, peak +{first['peak_rss_added_mib']:.0f} MiB")

    steady_rounds, n_now, version = [], n, 1
    for k in range(steady):
        # the verdicts of the previous round, a new classifier version, then 1,000 new posts
        hits = 0
        for c in batch:
            i = int(c.post_id[1:])
            lab = int(y_all[i]) if i < len(y_all) else int(data.labels(i, i + 1)[0])
            hits += lab
            prev = eng.labels.get(c.post_id)
            eng.on_verdict(c.post_id, lab)
            rounds.observe(c.post_id, lab, first=prev is None)
        version += 1
        t = time.perf_counter()
        rounds.use_model(train(version, 0))
        retrain = time.perf_counter() - t
        t = time.perf_counter()
        insert(index, data, n_now, n_now + NEW_POSTS)
        new_insert = time.perf_counter() - t
        y_all = np.concatenate([y_all, data.labels(n_now, n_now + NEW_POSTS)])
        n_now += NEW_POSTS
        rounds.touch(NEW_POSTS)
        say(f"n={n:,}: steady round {k + 1}: previous batch {hits}/{len(batch)} positive; {NEW_POSTS} new posts "
            f"inserted in {new_insert:.1f}s; classifier retrained (no CV) in {retrain:.1f}s")
        batch, row, total = measured_round(rounds, timers)
        row.update(posts=len(index), new_posts_insert_s=new_insert, retrain_no_cv_s=retrain,
                   previous_batch_positives=hits)
        steady_rounds.append(row)
        say(f"n={n:,}: steady round {k + 1}: {total:.1f}s "
            + ", ".join(f"{k2} {v:.2f}" for k2, v in row.items() if isinstance(v, float) and k2 not in ("total",))
            + f"; {len(batch)} candidates {row['alloc']}")
    res["steady_rounds"] = steady_rounds
    res["steady_round"] = min(steady_rounds, key=lambda r: r["total"]) if steady_rounds else None
    res["snapshot_matrix_mib"] = len(index) * DIM * 4 / 2**20

    # a classifier version with 5-fold CV on 3,000 labelled rows (the rare cluster and the rest, 1:2)
    say(f"n={n:,}: train_model with 5-fold CV on {TRAIN_ROWS:,} labelled rows...")
    p = np.flatnonzero(y_all == 1)
    q = np.flatnonzero(y_all == 0)
    rows = np.concatenate([rng.choice(p, min(len(p), TRAIN_ROWS // 3), replace=False),
                           rng.choice(q, TRAIN_ROWS - min(len(p), TRAIN_ROWS // 3), replace=False)])
    X_lab = index.get_vectors([pid(int(r)) for r in rows])
    y_lab = y_all[rows]
    prov = rng.choice(q, SEEDS, replace=False)
    X_prov = index.get_vectors([pid(int(r)) for r in prov])
    t, c = time.perf_counter(), time.process_time()
    mv = train_model("bench", version + 1, data.seeds, X_lab, y_lab, X_prov, folds=5)
    train_s, train_c = time.perf_counter() - t, time.process_time() - c
    # the service's provisional sample: every unlabelled id of the worker's shards, sorted by a salted hash
    t, c = time.perf_counter(), time.process_time()
    ledger = eng.labels
    pool = [p_ for shard in list(index.shards.values()) for p_ in shard.ids() if p_ not in ledger]
    pool.sort(key=lambda x: hashlib.sha1(f"salt:provisional{x}".encode()).digest())
    prov_s, prov_c = time.perf_counter() - t, time.process_time() - c
    res["train"] = {"rows_labelled": len(rows), "seeds": SEEDS, "provisional": SEEDS, "folds": mv.cv_folds,
                    "seconds": train_s, "cpu_seconds": train_c, "cv_precision": mv.cv_precision,
                    "cv_recall": mv.cv_recall, "provisional_sample_s": prov_s, "provisional_sample_cpu_s": prov_c}
    say(f"n={n:,}: train_model {train_s:.1f}s (CV precision {mv.cv_precision:.3f} recall {mv.cv_recall:.3f}); "
        f"service's provisional sample over {len(pool):,} ids {prov_s:.1f}s")
    return res


# ---------------------------------------------------------------------- report
ROWS = [
    ("build_s", "building the 2 shards (HNSW insert, M = 16)"),
    ("first.total", "first round, total"),
    ("first.graph_update", "  of which kNN graph over all posts (KNNGraph.update)"),
    ("steady.total", "steady round after 1,000 new posts, total"),
    ("steady.snapshot_vectors", "  snapshot: ShardedIndex.vectors()"),
    ("steady.snapshot_other", "  snapshot: labels, pending, external seeds"),
    ("steady.graph_update", "  kNN graph update (1,000 posts through HNSW)"),
    ("steady.graph_adjacency", "  adjacency + transition matrix rebuild"),
    ("steady.gble_propagation", "  GBLE propagation (20 iterations)"),
    ("steady.ibg", "  IBG (brute force, positives × unlabelled)"),
    ("steady.model_scoring", "  model scoring (every unlabelled post)"),
    ("steady.other", "  the rest (bandit, ranking, bookkeeping)"),
    ("first.peak_rss_added_mib", "peak RSS added by the first round"),
    ("steady.peak_rss_added_mib", "peak RSS added by a steady round"),
    ("snapshot_matrix_mib", "  the snapshot matrix alone, n × 384 float32"),
    ("train.seconds", "train_model, 5-fold CV, 3,000 labelled + 100 seeds + 100 provisional"),
    ("train.provisional_sample_s", "service's provisional sample (sha1 sort of the shard ids)"),
]


def _get(r: dict, key: str, cpu: bool = False):
    head, _, tail = key.partition(".")
    if not tail:
        return None if cpu else r.get(head)
    sub = {"first": r.get("first_round"), "steady": r.get("steady_round")}.get(head, r.get(head)) or {}
    if cpu:
        if head == "train":
            return sub.get({"seconds": "cpu_seconds", "provisional_sample_s": "provisional_sample_cpu_s"}.get(tail, ""))
        return (sub.get("cpu") or {}).get(tail)
    return sub.get(tail)


def _fmt(v: float) -> str:
    return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"


def table(res: dict) -> str:
    sizes = list(res["sizes"])
    head = "| wall seconds (CPU seconds of the process) | " + " | ".join(f"{int(s):,} posts" for s in sizes) + " |"
    lines = [head, "|---|" + "---|" * len(sizes)]
    for key, label in ROWS:
        vals = []
        for s in sizes:
            r = res["sizes"][s]
            v, c = _get(r, key), _get(r, key, cpu=True)
            if key == "build_s":
                vals.append(f"{v:,.0f} (ef_construction {r['ef_construction']}, {r.get('build_threads', 1)} thread"
                            f"{'s' if r.get('build_threads', 1) > 1 else ''}, {r['insert_per_s']:,.0f} posts/s"
                            f"{', cached' if r.get('build_cached') else ''})")
            elif v is None:
                vals.append("–")
            elif key.endswith("mib"):
                vals.append(f"{v:,.0f} MiB")
            else:
                vals.append(_fmt(v) + (f" ({_fmt(c)})" if c is not None else ""))
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="posts per worker (2 shards), comma list")
    ap.add_argument("--quick", action="store_true", help="20,000 posts only, 1 steady round (a minute or two)")
    ap.add_argument("--steady", type=int, default=2, help="steady rounds per size (the fastest is reported)")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-construction-1m", type=int, default=200,
                    help="ef_construction for sizes >= 1,000,000 (lower it if the build takes too long)")
    ap.add_argument("--build-threads", default="1",
                    help="threads building the shards: 1 (one worker's model thread) or 2 (one per shard); "
                         "a comma list gives one per size")
    ap.add_argument("--cache", default="", help="directory to keep built shards in and reuse them from")
    ap.add_argument("--build-only", action="store_true", help="only build (and --cache) the shards")
    ap.add_argument("--out", default=str(REPO / "bench" / "rounds.json"))
    a = ap.parse_args(argv)
    sizes = [20_000] if a.quick else [int(x) for x in a.sizes.split(",") if x.strip()]
    steady = 1 if a.quick else a.steady
    cache = Path(a.cache) if a.cache else None
    mach = machine()
    res: dict = {"command": " ".join(shlex.quote(x) for x in ["python", "-m", "bench.rounds"]
                                     + list(argv if argv is not None else sys.argv[1:])),
                 "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": mach,
                 "note": "one process, BLAS threads at their default; a shared 2-core machine: absolute times move "
                         "with other load (see machine.load_average_*)",
                 "sizes": {}}
    say(f"sizes {sizes}; {mach['cpu']}, {mach['cores']} cores, {mach['ram_gib']} GiB; load {mach['load_average_at_start']}")
    threads = [int(x) for x in a.build_threads.split(",")]
    for i, n in enumerate(sizes):
        efc = a.ef_construction_1m if n >= 1_000_000 else a.ef_construction
        res["sizes"][str(n)] = run_size(n, efc=efc, m=a.m, steady=steady, cache=cache,
                                        build_threads=threads[min(i, len(threads) - 1)], build_only=a.build_only)
        res["sizes"][str(n)]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")   # partial results survive
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["duration_s"] = round(time.monotonic() - T0, 1)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    if not a.build_only:
        print(table(res), flush=True)
    say(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

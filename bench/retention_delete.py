"""A sliding retention window in hnswlib: ``mark_deleted`` alone, ``allow_replace_deleted``, or whole segments (#13).

``python bench/retention_delete.py [--quick] [--window W] [--windows 5] [--offset N] [--vectors drifting|uniform]``

Standalone (not in ``bench/run.py``): ``--quick`` takes about 5 minutes, most of it ``replace_deleted``.

A stream of ``--windows`` × W posts goes through each strategy in micro-batches of ``--batch``; the window is
the newest W posts (post i has event time i):

* ``mark_deleted``: one index; each batch marks the posts that left the window deleted, then adds (the
  capacity doubles as ``PostIndex`` does: ``resize_index``). Deleted posts keep their memory.
* ``replace_deleted``: one index of fixed capacity W + batch with ``allow_replace_deleted=True``; each batch
  marks the expired posts deleted, then ``add_items(..., replace_deleted=True)`` writes the new posts into
  their slots.
* ``segments``: a new index every W / ``--segments`` posts; a segment is dropped whole once its newest post
  left the window (so up to one segment of posts older than the window stays searchable); a search asks every
  live segment for its top k and merges. Raw hnswlib with integer labels, as the two above.
* ``SegmentedIndex``: the same through the project's class (``synapse_stream/segments.py``: string ids, one
  ``PostIndex`` per segment, ``expirable`` + ``drop`` after each batch), to show what its Python tables add.

Each strategy runs in a fresh process (``--child``), so resident memory (RSS above a warmed-up baseline) is
comparable. After each window of posts (``--offset`` posts later: with 0 a checkpoint falls on a segment
boundary, where the segments hold exactly the window; half a segment later they hold their average overflow):
RSS (and RSS after glibc ``malloc_trim``), then ``--queries`` queries one at a time (k = 10, ef = 64: the
worker's ``hnsw_ef_search``), their p50 latency, recall@10 against brute force over the posts the strategy
holds at that moment, and the share of returned posts older than the window.
Add throughput counts only the index calls (adds, ``mark_deleted``, segment drops), not generating vectors.

Vectors (``--vectors drifting``, the default): 384-d unit vectors around topics that come and go, as a stream's
do: at any time 32 topics are live, one new topic starts every W/32 posts and lives for W posts; a post is
its topic's centre plus Gaussian noise (cosine ≈ 0.6 to the centre). Queries are drawn the same way at a random
time inside the window. ``--vectors uniform``: uniform random unit vectors (no structure, HNSW's hardest case).
Build parameters are the worker's defaults: M = 16, ef_construction = 200 (``stream_app/worker/settings.py``).

The table goes to stdout, progress to stderr, numbers and the machine to ``bench/retention_delete.json``.
A shared 2-core machine: compare strategies within one run, not absolute speeds across runs.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/retention_delete.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

import numpy as np  # noqa: E402

from .common import REPO, machine  # noqa: E402

STRATEGIES = ("mark_deleted", "replace_deleted", "segments", "SegmentedIndex")
TOPICS_LIVE, NOISE_COS = 32, 0.6
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[retention {time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------------- the stream
class Stream:
    """Post i's vector, regenerated on demand from batch-seeded generators (the process never holds the stream)."""

    def __init__(self, kind: str, dim: int, window: int, batch: int, total: int, seed: int = 0) -> None:
        self.kind, self.dim, self.window, self.batch, self.seed = kind, dim, window, batch, seed
        self.period = max(1, window // TOPICS_LIVE)          # a new topic every `period` posts
        n_topics = total // self.period + TOPICS_LIVE + 1
        c = np.random.default_rng((seed, 1)).standard_normal((n_topics, dim), dtype=np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.sigma = float(np.sqrt((1 / NOISE_COS ** 2 - 1) / dim))

    def _draw(self, rng, times: np.ndarray) -> np.ndarray:
        g = rng.standard_normal((len(times), self.dim), dtype=np.float32)
        if self.kind == "drifting":
            topic = times // self.period + rng.integers(0, TOPICS_LIVE, len(times))
            g = self.centres[topic] + self.sigma * g
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    def batch_vectors(self, b: int) -> np.ndarray:
        """Posts [b·batch, (b+1)·batch)."""
        t = np.arange(b * self.batch, (b + 1) * self.batch)
        return self._draw(np.random.default_rng((self.seed, 2, b)), t)

    def range(self, lo: int, hi: int) -> np.ndarray:
        """Posts [lo, hi) (regenerated)."""
        b0, b1 = lo // self.batch, -(-hi // self.batch)
        X = np.concatenate([self.batch_vectors(b) for b in range(b0, b1)])
        return X[lo - b0 * self.batch: hi - b0 * self.batch]

    def queries(self, now: int, n: int, rep: int) -> np.ndarray:
        """``n`` queries drawn at random times inside the window ending at ``now``."""
        rng = np.random.default_rng((self.seed, 3, rep))
        return self._draw(rng, rng.integers(max(0, now - self.window), now, n))


# ---------------------------------------------------------------------- strategies (in the child)
class Flat:
    """One hnswlib index; expired posts ``mark_deleted`` (``replace``: their slots reused by new posts)."""

    def __init__(self, dim, window, batch, m, efc, ef, replace: bool) -> None:
        import hnswlib

        self.replace = replace
        self.p = hnswlib.Index(space="cosine", dim=dim)
        cap = window + batch if replace else 1024
        self.p.init_index(max_elements=cap, M=m, ef_construction=efc, random_seed=100,
                          allow_replace_deleted=replace)
        self.p.set_ef(ef)
        self.p.set_num_threads(1)
        self.window, self.expired_to = window, 0

    def add(self, X: np.ndarray, lo: int) -> None:
        for lab in range(self.expired_to, max(self.expired_to, lo + len(X) - self.window)):
            self.p.mark_deleted(lab)
        self.expired_to = max(self.expired_to, lo + len(X) - self.window)
        if not self.replace:
            need = self.p.get_current_count() + len(X)
            if need > self.p.get_max_elements():
                self.p.resize_index(max(need, 2 * self.p.get_max_elements()))
        self.p.add_items(X, np.arange(lo, lo + len(X)), num_threads=1, replace_deleted=self.replace)

    def live(self, now: int) -> tuple[int, int]:
        return max(0, now - self.window), now

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.p.knn_query(q[None, :], k=k, num_threads=1)[0][0]

    def describe(self) -> dict:
        return {"elements_in_graph": self.p.get_current_count(), "capacity": self.p.get_max_elements()}


class Segments:
    """A list of hnswlib indexes of ``seg`` posts each; dropped whole once their newest post left the window."""

    def __init__(self, dim, window, batch, m, efc, ef, seg: int) -> None:
        self.dim, self.window, self.seg, self.m, self.efc, self.ef = dim, window, seg, m, efc, ef
        self.segs: list[list] = []         # [index, first label, end label (exclusive)]

    def _open(self, lo: int):
        import hnswlib

        p = hnswlib.Index(space="cosine", dim=self.dim)
        p.init_index(max_elements=self.seg, M=self.m, ef_construction=self.efc, random_seed=100)
        p.set_ef(self.ef)
        p.set_num_threads(1)
        self.segs.append([p, lo, lo])
        return self.segs[-1]

    def add(self, X: np.ndarray, lo: int) -> None:
        i = 0
        while i < len(X):
            s = self.segs[-1] if self.segs and self.segs[-1][2] - self.segs[-1][1] < self.seg else self._open(lo + i)
            take = min(self.seg - (s[2] - s[1]), len(X) - i)
            s[0].add_items(X[i:i + take], np.arange(lo + i, lo + i + take), num_threads=1)
            s[2] += take
            i += take
        floor = lo + len(X) - self.window
        self.segs = [s for s in self.segs if s[2] > floor]       # newest post (end - 1) older than the window: drop

    def live(self, now: int) -> tuple[int, int]:
        return (self.segs[0][1] if self.segs else now), now

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        labs, dists = [], []
        for p, lo, hi in self.segs:
            lab, d = p.knn_query(q[None, :], k=min(k, hi - lo), num_threads=1)
            labs.append(lab[0])
            dists.append(d[0])
        lab, d = np.concatenate(labs), np.concatenate(dists)
        return lab[np.argsort(d, kind="stable")[:k]]

    def describe(self) -> dict:
        return {"segments": len(self.segs), "elements_in_graph": sum(hi - lo for _, lo, hi in self.segs)}


class Project:
    """``synapse_stream.segments.SegmentedIndex`` with event time = post number; expiry after every batch."""

    def __init__(self, dim, window, batch, m, efc, ef, seg: int) -> None:
        from synapse_stream.segments import Retention, SegmentedIndex

        # a post with ts >= watermark - (W - 1) is inside: the window is the newest W posts
        self.idx = SegmentedIndex(dim, Retention(seconds=window - 1, segment_posts=seg, segment_seconds=1e18),
                                  m=m, ef_construction=efc, ef_search=ef)
        self.window = window

    def add(self, X: np.ndarray, lo: int) -> None:
        labels = range(lo, lo + len(X))
        self.idx.add([str(i) for i in labels], X, ts=[float(i) for i in labels])
        due = self.idx.expirable()
        if due:
            self.idx.drop(due.segments)

    def live(self, now: int) -> tuple[int, int]:
        segs = self.idx.segments
        return (int(segs[0].min_ts) if segs else now), now

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return np.asarray([int(x) for x in self.idx.knn(q[None, :], k)[0][0]], dtype=np.int64)

    def describe(self) -> dict:
        return {"segments": len(self.idx.segments), "elements_in_graph": len(self.idx),
                "capacity": self.idx.capacity}


def child(a) -> dict:
    seg = a.window // a.segments
    total = a.window * a.windows + a.offset
    st = Stream(a.vectors, a.dim, a.window, a.batch, total)
    make = {"mark_deleted": lambda: Flat(a.dim, a.window, a.batch, a.m, a.ef_construction, a.ef, replace=False),
            "replace_deleted": lambda: Flat(a.dim, a.window, a.batch, a.m, a.ef_construction, a.ef, replace=True),
            "segments": lambda: Segments(a.dim, a.window, a.batch, a.m, a.ef_construction, a.ef, seg),
            "SegmentedIndex": lambda: Project(a.dim, a.window, a.batch, a.m, a.ef_construction, a.ef, seg)}[a.child]
    # warm-up: hnswlib's code, numpy's and the allocator's pools, before the baseline
    w = make()
    w.add(st.batch_vectors(0), 0)
    w.search(st.batch_vectors(0)[0], a.k)
    del w
    gc.collect()
    malloc_trim()
    base = rss()
    s = make()
    add_s, checkpoints, win_s = 0.0, [], 0.0
    for b in range(total // a.batch):
        X = st.batch_vectors(b)
        t = time.perf_counter()
        s.add(X, b * a.batch)
        dt = time.perf_counter() - t
        add_s += dt
        win_s += dt
        now = (b + 1) * a.batch
        if now <= a.offset or (now - a.offset) % a.window:
            continue
        # a checkpoint: memory first (before anything the evaluation allocates), then searches
        gc.collect()
        grown = rss() - base
        malloc_trim()
        trimmed = rss() - base
        lo, hi = s.live(now)
        Q = st.queries(now, a.queries, rep=now)
        lat, found = [], []
        for q in Q:
            t = time.perf_counter()
            found.append(s.search(q, a.k))
            lat.append(time.perf_counter() - t)
        L = st.range(lo, hi)                       # brute force over what the strategy holds
        truth = np.argsort(-(Q @ L.T), axis=1)[:, : a.k] + lo
        del L
        recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / a.k for f, t in zip(found, truth)]))
        expired = sum(int((f < now - a.window).sum()) for f in found)
        cp = {"posts_seen": now, "windows": (now - a.offset) // a.window, "rss_bytes": grown, "rss_bytes_after_malloc_trim": trimmed,
              "live_from": lo, "search_ms_p50": float(np.percentile(lat, 50) * 1e3),
              "search_ms_p99": float(np.percentile(lat, 99) * 1e3), "recall_at_k": recall,
              "expired_returned": expired, "expired_returned_share": expired / (a.k * len(Q)),
              "window_add_s": win_s, "window_add_posts_per_s": a.window / win_s, **s.describe()}
        checkpoints.append(cp)
        win_s = 0.0
        say(f"{a.child}: {now:,} posts, rss +{grown / 2**20:.1f} MiB (trimmed +{trimmed / 2**20:.1f}), "
            f"{cp['window_add_posts_per_s']:.0f} posts/s, search p50 {cp['search_ms_p50']:.3f} ms, "
            f"recall@{a.k} {recall:.3f}, expired returned {expired}")
    later = sum(cp["window_add_s"] for cp in checkpoints[1:])
    return {"strategy": a.child, "add_posts_per_s": total / add_s, "add_s": add_s,
            "add_posts_per_s_first_window": (a.window + a.offset) / checkpoints[0]["window_add_s"],
            "add_posts_per_s_after_first_window": (total - a.window - a.offset) / later if later else None,
            "checkpoints": checkpoints,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# ---------------------------------------------------------------------- the parent
def empty_index_rss(dim: int, m: int, efc: int, n: int = 8) -> float:
    """Resident bytes of one empty hnswlib index (0.8.0 allocates 65,536 label mutexes per index): the fixed
    cost of each segment."""
    import hnswlib

    def one():
        p = hnswlib.Index(space="cosine", dim=dim)
        p.init_index(max_elements=16, M=m, ef_construction=efc)
        return p

    one()
    gc.collect()
    base = rss()
    keep = [one() for _ in range(n)]
    out = (rss() - base) / n
    del keep
    return out


def _at(r: dict, w: int, key: str):
    for cp in r["checkpoints"]:
        if cp["windows"] == w:
            return cp[key]
    return None


def table(res: dict) -> str:
    W = res["params"]["window"]
    last = res["params"]["windows"]
    mid = 2 if last >= 2 else 1
    head = ("strategy", f"RSS MiB @1x/{mid}x/{last}xW", "add posts/s 1st W/after", f"search p50 ms @{last}xW",
            f"recall@{res['params']['k']} @1x/{last}xW", "expired returned", "graph elements")
    rows = [head]
    for name, r in res["strategies"].items():
        mib = "/".join(f"{(_at(r, w, 'rss_bytes') or 0) / 2**20:.1f}" for w in (1, mid, last))
        rec = f"{_at(r, 1, 'recall_at_k'):.3f}/{_at(r, last, 'recall_at_k'):.3f}"
        exp = sum(cp["expired_returned"] for cp in r["checkpoints"])
        n = len(r["checkpoints"]) * res["params"]["queries"] * res["params"]["k"]
        after = r["add_posts_per_s_after_first_window"]
        rows.append((name, mib, f"{r['add_posts_per_s_first_window']:.0f}/{after or 0:.0f}", f"{_at(r, last, 'search_ms_p50'):.3f}", rec,
                     f"{exp}/{n}", f"{_at(r, last, 'elements_in_graph'):,}"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    p = res["params"]
    off = f" + {p['offset']:,}" if p["offset"] else ""
    lines.append(f"W={W:,} posts, checkpoints at k x W{off} posts, {p['vectors']} {p['dim']}-d vectors, batch {p['batch']}, "
                 f"segments of W/{p['segments']}, M={p['m']} ef_construction={p['ef_construction']} ef={p['ef']}, "
                 f"{p['queries']} queries per checkpoint; RSS above a warmed-up baseline, one process per strategy; "
                 f"an empty hnswlib index costs {res['empty_index_rss_bytes'] / 2**20:.2f} MiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="W = 10,000 (about 5 minutes, most of it replace_deleted)")
    ap.add_argument("--window", type=int, help="W, posts in the window (default 50,000; --quick 10,000)")
    ap.add_argument("--windows", type=int, default=5, help="stream length in windows (default 5)")
    ap.add_argument("--segments", type=int, default=8, help="a segment is W / this many posts (default 8)")
    ap.add_argument("--batch", type=int, default=250, help="posts per add call (W must be a multiple)")
    ap.add_argument("--offset", type=int, default=0,
                    help="measure this many posts past each k x W (a multiple of --batch; with the default 0 a "
                         "checkpoint falls on a segment boundary, where segments hold exactly the window)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--vectors", choices=("drifting", "uniform"), default="drifting")
    ap.add_argument("--queries", type=int, default=200, help="queries per checkpoint")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma list of {', '.join(STRATEGIES)}")
    ap.add_argument("--out", default=str(REPO / "bench" / "retention_delete.json"))
    ap.add_argument("--child", choices=STRATEGIES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.window = a.window or (10_000 if a.quick else 50_000)
    if a.window % a.batch or a.offset % a.batch or a.window // a.segments < 1:
        ap.error(f"--window ({a.window}) and --offset ({a.offset}) must be multiples of --batch ({a.batch})")
    if a.child:
        Path(a.out).write_text(json.dumps(child(a)), encoding="utf-8")
        return 0

    argv = list(argv if argv is not None else sys.argv[1:])
    res = {"command": " ".join(shlex.quote(x) for x in ["python", "bench/retention_delete.py"] + argv),
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
           "params": {k: getattr(a, k) for k in ("window", "windows", "offset", "segments", "batch", "dim", "vectors",
                                                   "queries", "k", "m", "ef_construction", "ef")},
           "note": "each strategy in a fresh process, one after the other; RSS is above a warmed-up baseline; "
                   "compare strategies within this run (a shared 2-core machine)",
           "strategies": {}}
    res["empty_index_rss_bytes"] = empty_index_rss(a.dim, a.m, a.ef_construction)
    names = [s.strip() for s in a.strategies.split(",") if s.strip()]
    for name in names:
        if name not in STRATEGIES:
            ap.error(f"unknown strategy {name!r}")
        say(f"{name}: {a.windows} x {a.window:,} posts in a fresh process...")
        with tempfile.NamedTemporaryFile("r", suffix=".json") as fh:
            cmd = [sys.executable, "-m", "bench.retention_delete", "--child", name, "--out", fh.name,
                   *(f"--{k.replace('_', '-')}={v}" for k, v in res["params"].items())]
            subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, timeout=3600)
            res["strategies"][name] = json.loads(Path(fh.name).read_text())
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["table"] = table(res)
    print(res["table"])
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

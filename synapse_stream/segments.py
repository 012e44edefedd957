"""A shard as time segments: the bounded window over an endless stream.

A :class:`SegmentedIndex` holds one partition's posts in :class:`~synapse_stream.index.PostIndex` segments:
one *growing* segment takes new posts; it is *sealed* when it holds ``segment_posts`` posts or spans
``segment_seconds`` of event time, and a new one opens. A sealed segment whose newest post is older than the
window (``Retention.seconds`` behind the newest event time the shard has seen, its *watermark*), or the oldest
sealed segments while the shard holds more than ``Retention.max_posts``, is dropped whole: its memory is
released at once (hnswlib's ``mark_deleted`` frees nothing; ``allow_replace_deleted`` keeps memory flat but,
measured, inserts 16x slower once slots are reused; segments cost a fan-out search; see docs/retention.md). Posts older than the window when they arrive (a replay from an old offset) are not
indexed (``add`` counts them in :attr:`late`).

It has the :class:`~synapse_stream.index.PostIndex` interface (``add``, ``search``, ``knn``, ``get_vectors``,
``vectors_into``, ``ids``, ``payload``, ``save``/``load``, ``meta``): searches fan out over the segments and
merge, which returns exactly what one index holding the window's posts would (up to HNSW's recall).
Expiry is in two steps so that whatever is keyed by post elsewhere (Redis) is cleaned before the posts go:
:meth:`expirable` names the segments due and their posts, :meth:`drop` drops them; a crash between the two
finds the same segments due again.

Snapshots are per segment: a sealed segment is written once (it never changes); the shard's manifest lists
the segments and is replaced atomically, the commit point; files of dropped segments are removed after it.

Cost: ``add`` as ``PostIndex.add`` (into one segment); a search O(s · ef log(n/s)) for s segments; memory
O(window), never O(stream).

>>> import numpy as np
>>> idx = SegmentedIndex(2, Retention(seconds=10, segment_posts=2, segment_seconds=100))
>>> idx.add(["a", "b", "c"], np.array([[1, 0], [1, .1], [0, 1]], np.float32), ts=[0, 1, 2])
3
>>> idx.add(["d"], np.array([[1, 0]], np.float32), ts=[30]), idx.late
(1, 0)
>>> due = idx.expirable(); sorted(due.ids)
['a', 'b']
>>> idx.drop(due.segments), sorted(idx.ids())
(2, ['c', 'd'])
>>> idx.add(["e"], np.array([[1, 0]], np.float32), ts=[5]), idx.late   # older than the window
(0, 1)
"""
from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._rwlock import RWLock
from .embedders.base import l2_normalise
from .exceptions import ConfigError, PostIndexError
from .index import Exclude, PostIndex, _read_manifest

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | float | int | None) -> float | None:
    """``"7d"``, ``"12h"``, ``"90m"``, ``"600s"``, ``"3600"`` or a number of seconds; None/""/"0"/"off": no limit.

    >>> parse_duration("7d"), parse_duration("1.5h"), parse_duration(90), parse_duration("off")
    (604800.0, 5400.0, 90.0, None)
    """
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "0", "off", "none")):
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) if text > 0 else None
    m = _DURATION.match(str(text).lower())
    if not m:
        raise ConfigError(f"not a duration: {text!r} (e.g. 7d, 12h, 90m, 600s)")
    value = float(m.group(1)) * _UNIT[m.group(2)]
    return value if value > 0 else None


@dataclass(frozen=True)
class Retention:
    """What a shard keeps. ``seconds``: the window by event time (None: no time limit); ``max_posts``: at most
    this many posts per shard, oldest segments first (None: no cap); ``segment_posts`` / ``segment_seconds``:
    when the growing segment seals (by default an eighth of the window, so a shard holds the window plus at
    most one segment's worth)."""

    seconds: float | None = None
    max_posts: int | None = None
    segment_posts: int | None = None
    segment_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("seconds", "max_posts", "segment_posts", "segment_seconds"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"retention {name} must be > 0, got {v!r}")

    @property
    def bounded(self) -> bool:
        return self.seconds is not None or self.max_posts is not None

    @property
    def seal_posts(self) -> int:
        if self.segment_posts:
            return int(self.segment_posts)
        if self.max_posts:
            return max(1, math.ceil(self.max_posts / 8))
        return 100_000

    @property
    def seal_seconds(self) -> float:
        if self.segment_seconds:
            return float(self.segment_seconds)
        return self.seconds / 8 if self.seconds else math.inf


@dataclass
class Segment:
    """One HNSW segment and the event-time range of its posts."""

    name: str
    index: PostIndex
    sealed: bool = False
    min_ts: float = math.inf
    max_ts: float = -math.inf
    saved: bool = False            # a sealed segment written to disk (it never changes again)

    def doc(self) -> dict:
        return {"name": self.name, "sealed": self.sealed, "count": len(self.index),
                "min_ts": None if self.min_ts == math.inf else self.min_ts,
                "max_ts": None if self.max_ts == -math.inf else self.max_ts}


@dataclass
class Expiry:
    """Segments due to be dropped and their posts (:meth:`SegmentedIndex.expirable`)."""

    segments: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.segments)


class SegmentedIndex:
    """One shard as time segments (see the module docstring)."""

    def __init__(self, dim: int, retention: Retention | None = None, **index_options) -> None:
        self.dim = int(dim)
        self.retention = retention or Retention()
        self.index_options = index_options
        self.segments: list[Segment] = []
        self.watermark = -math.inf           # the newest event time seen
        self.late = 0                         # posts not indexed: older than the window when they arrived
        self.seals = 0                        # segments sealed so far (a seal is when an old one may be due)
        self.meta: dict = {}
        self._lock = RWLock()                 # structure (segments added / dropped); each segment locks itself
        self._legacy: list[Path] = []         # files of a pre-segment snapshot, removed after the first save

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return sum(len(s.index) for s in list(self.segments))

    def __contains__(self, post_id: object) -> bool:
        return any(post_id in s.index for s in list(self.segments))

    @property
    def capacity(self) -> int:
        return sum(s.index.capacity for s in list(self.segments))

    @property
    def floor(self) -> float:
        """Event time below which a post is outside the window (-inf: no time window)."""
        if self.retention.seconds is None or self.watermark == -math.inf:
            return -math.inf
        return self.watermark - self.retention.seconds

    def ids(self) -> list[str]:
        with self._lock.read():
            return [pid for s in self.segments for pid in s.index.ids()]

    def _new_segment(self) -> Segment:
        seg = Segment(uuid.uuid4().hex[:12], PostIndex(self.dim, **self.index_options))
        self.segments.append(seg)
        return seg

    def _growing(self) -> Segment:
        if not self.segments or self.segments[-1].sealed:
            return self._new_segment()
        return self.segments[-1]

    # ------------------------------------------------------------------ writing
    def add(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[str | None] | None = None,
            ts: Sequence[float] | None = None) -> int:
        """Add posts (``ts``: their event times; None: now) to the growing segment, sealing it as it fills;
        ids already held are skipped, posts older than the window are not indexed (:attr:`late`)."""
        vectors = l2_normalise(vectors)
        if vectors.shape[1] != self.dim:
            raise PostIndexError(f"vectors have dimension {vectors.shape[1]}, the index {self.dim}")
        if len(ids) != len(vectors):
            raise PostIndexError(f"{len(ids)} ids for {len(vectors)} vectors")
        now = time.time()
        times = [now if t is None else float(t) for t in (ts if ts is not None else [None] * len(ids))]
        if len(times) != len(ids):
            raise PostIndexError(f"{len(ids)} ids for {len(times)} event times")
        with self._lock.write():
            if times:
                self.watermark = max(self.watermark, max(times))
            floor = self.floor
            rows, seen = [], set()
            for i, pid in enumerate(ids):
                pid = str(pid)
                if pid in seen or any(pid in s.index for s in self.segments):
                    continue
                seen.add(pid)
                if times[i] < floor:
                    self.late += 1
                    continue
                rows.append(i)
            added = 0
            while rows:
                seg = self._growing()
                if seg.min_ts != math.inf and times[rows[0]] - seg.min_ts >= self.retention.seal_seconds:
                    seg.sealed = True
                    self.seals += 1
                    continue
                room = self.retention.seal_posts - len(seg.index)
                take, rows = rows[:room], rows[room:]
                added += seg.index.add([str(ids[i]) for i in take], vectors[take],
                                       [payloads[i] for i in take] if payloads is not None else None)
                seg.min_ts = min(seg.min_ts, min(times[i] for i in take))
                seg.max_ts = max(seg.max_ts, max(times[i] for i in take))
                if len(seg.index) >= self.retention.seal_posts:
                    seg.sealed = True
                    self.seals += 1
            return added

    def expirable(self) -> Expiry:
        """The sealed segments due to go (newest post older than the window; then the oldest while the
        shard holds more than ``max_posts``) and their posts. Nothing is dropped yet: :meth:`drop`."""
        with self._lock.read():
            floor, cap = self.floor, self.retention.max_posts
            due: list[Segment] = []
            total = sum(len(s.index) for s in self.segments)
            for seg in self.segments:
                if not seg.sealed:
                    break                      # the growing segment is the newest; it is never dropped
                if seg.max_ts < floor or (cap is not None and total > cap):
                    due.append(seg)
                    total -= len(seg.index)
                else:
                    break                      # segments are in arrival order: later ones are newer
            return Expiry([s.name for s in due], [pid for s in due for pid in s.index.ids()])

    def drop(self, names: Iterable[str]) -> int:
        """Drop these segments (their memory goes with them); returns the posts dropped."""
        names = set(names)
        with self._lock.write():
            gone = [s for s in self.segments if s.name in names]
            self.segments = [s for s in self.segments if s.name not in names]
        return sum(len(s.index) for s in gone)

    # ------------------------------------------------------------------ reading
    def _holding(self, post_id: str) -> PostIndex:
        for s in list(self.segments):
            if post_id in s.index:
                return s.index
        raise PostIndexError(f"unknown post id {post_id!r}")

    def payload(self, post_id: str) -> str | None:
        return self._holding(str(post_id)).payload(post_id)

    def get_vectors(self, ids: Iterable[str]) -> np.ndarray:
        ids = [str(i) for i in ids]
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        todo = dict(enumerate(ids))
        for s in list(self.segments):
            rows = [i for i, pid in todo.items() if pid in s.index]
            if rows:
                out[rows] = s.index.get_vectors([ids[i] for i in rows])
                for i in rows:
                    del todo[i]
        if todo:
            raise PostIndexError(f"unknown post id {next(iter(todo.values()))!r}")
        return out

    def vectors_into(self, out: np.ndarray, n: int) -> list[str]:
        """The first ``n`` posts (segments oldest first) into ``out`` [n, dim]; returns their ids."""
        if out.shape != (n, self.dim) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise PostIndexError(f"vectors_into needs a C-contiguous float32 array of shape ({n}, {self.dim})")
        ids: list[str] = []
        with self._lock.read():
            start = 0
            for s in self.segments:
                if start >= n:
                    break
                c = min(len(s.index), n - start)
                ids += s.index.vectors_into(out[start:start + c], c)
                start += c
            if start < n:
                raise PostIndexError(f"the shard holds {start} posts, not {n}")
        return ids

    def parts(self) -> list[tuple[PostIndex, int]]:
        """Each segment and how many posts it holds now, oldest first: a reader copies them one by one without
        holding the shard (a segment dropped meanwhile is still whole; new posts only append)."""
        with self._lock.read():
            return [(s.index, len(s.index)) for s in self.segments]

    def vectors(self) -> tuple[list[str], np.ndarray]:
        n = len(self)
        out = np.empty((n, self.dim), dtype=np.float32)
        return self.vectors_into(out, n), out

    def knn(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """As :meth:`PostIndex.knn`: every segment's top ``k`` merged (best first, ties by id)."""
        q = l2_normalise(queries)
        segs = list(self.segments)
        kk = min(int(k), sum(len(s.index) for s in segs))
        if kk <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))], np.zeros((len(q), 0), dtype=np.float32)
        merged: list[list[tuple[str, float]]] = [[] for _ in range(len(q))]
        for s in segs:
            ids, sims = s.index.knn(q, k)
            for row in range(len(q)):
                merged[row].extend(zip(ids[row], sims[row].tolist()))
        rows = [sorted(m, key=lambda t: (-t[1], t[0]))[:kk] for m in merged]
        return [[p for p, _ in r] for r in rows], np.asarray([[s for _, s in r] for r in rows], np.float32)

    def knn_parts(self, queries: np.ndarray, k: int, ef: int | None = None):
        """As :meth:`PostIndex.knn_parts`: one ``(ids, labels, cosines)`` per segment, oldest first."""
        q = l2_normalise(queries)
        return [s.index.knn_labels(q, k, ef) for s in list(self.segments)]

    def search(self, queries: np.ndarray, k: int, *, exclude: Exclude = None, min_sim: float | None = None):
        """As :meth:`PostIndex.search`, over every segment, merged."""
        q = l2_normalise(queries)
        merged: list[list[tuple[str, float]]] = [[] for _ in range(len(q))]
        for s in list(self.segments):
            for row, found in enumerate(s.index.search(q, k, exclude=exclude, min_sim=min_sim)):
                merged[row].extend(found)
        return [sorted(m, key=lambda t: (-t[1], t[0]))[:k] for m in merged]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Save to ``path`` (the shard's manifest) and one snapshot per segment beside it; a sealed segment
        already written is not written again. Atomic: the manifest is replaced last."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            segs = list(self.segments)
            watermark, late = self.watermark, self.late
        for seg in segs:
            if seg.saved:
                continue
            sealed = seg.sealed                # read before writing: a segment sealed meanwhile is written again
            seg.index.save(path.parent / f"segment-{seg.name}.json")
            seg.saved = sealed
        old = _read_json(path)
        manifest = {"version": 2, "kind": "segmented", "dim": self.dim, "segments": [s.doc() for s in segs],
                    "watermark": None if watermark == -math.inf else watermark, "late": late, "meta": self.meta,
                    "retention": {"seconds": self.retention.seconds, "max_posts": self.retention.max_posts}}
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)                  # commit point
        keep = {s.name for s in segs}
        stale = [d["name"] for d in (old or {}).get("segments", []) if d["name"] not in keep]
        for name in stale:                     # dropped segments: their snapshot files
            _remove_snapshot(path.parent / f"segment-{name}.json")
        for f in self._legacy:
            try:
                f.unlink()
            except OSError:
                pass
        self._legacy = []

    @classmethod
    def load(cls, path: str | os.PathLike, retention: Retention | None = None, *,
             ef_search: int | None = None) -> "SegmentedIndex":
        """Load a shard saved by :meth:`save`; a snapshot of one :class:`PostIndex` (before segments) becomes one
        growing segment. ``retention``: this deployment's (the manifest's is informational)."""
        path = Path(path)
        man = _read_manifest(path) if not path.exists() or _version(path) == 1 else _read_v2(path)
        if man.get("version") == 1:
            flat = PostIndex.load(path, ef_search=ef_search)
            obj = cls(flat.dim, retention, m=flat.m, ef_construction=flat.ef_construction,
                      ef_search=flat.ef_search)
            seg = Segment(uuid.uuid4().hex[:12], flat)
            seg.min_ts = seg.max_ts = float(flat.meta.get("saved_at", 0.0)) or -math.inf
            if seg.min_ts == -math.inf:
                seg.min_ts = math.inf
            obj.segments = [seg] if len(flat) else []
            obj.meta = dict(flat.meta)
            obj._legacy = [path.parent / man["graph"], path.parent / man["ids"]]
            return obj
        try:
            segs = []
            for d in man["segments"]:
                idx = PostIndex.load(path.parent / f"segment-{d['name']}.json", ef_search=ef_search)
                if len(idx) != d["count"]:
                    raise PostIndexError(f"segment {d['name']} holds {len(idx)} posts, the manifest says {d['count']}")
                segs.append(Segment(d["name"], idx, bool(d["sealed"]),
                                    math.inf if d["min_ts"] is None else float(d["min_ts"]),
                                    -math.inf if d["max_ts"] is None else float(d["max_ts"]), saved=bool(d["sealed"])))
            opts = ({"m": segs[0].index.m, "ef_construction": segs[0].index.ef_construction,
                     "ef_search": segs[0].index.ef_search} if segs else {})
            obj = cls(int(man["dim"]), retention, **opts)
            obj.segments = segs
            obj.watermark = -math.inf if man.get("watermark") is None else float(man["watermark"])
            obj.late = int(man.get("late", 0))
            obj.meta = man.get("meta", {})
            return obj
        except PostIndexError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PostIndexError(f"cannot load shard {path}: {type(exc).__name__}: {exc}") from exc


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _version(path: Path):
    return (_read_json(path) or {}).get("version")


def _read_v2(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            man = json.load(fh)
    except (OSError, ValueError) as exc:
        raise PostIndexError(f"cannot read shard manifest {path}: {exc}") from exc
    if not isinstance(man, dict) or man.get("version") != 2:
        raise PostIndexError(f"{path}: unsupported shard manifest version {getattr(man, 'get', dict().get)('version')!r}")
    return man


def _remove_snapshot(manifest: Path) -> None:
    """A segment's snapshot: its manifest and the two files it names."""
    try:
        man = _read_manifest(manifest)
    except PostIndexError:
        man = {}
    extras = list(manifest.parent.glob(f"{manifest.stem}.graph-*.npz"))   # the kNN graph's shares (graph.GraphShares)
    for f in [manifest.parent / man[k] for k in ("graph", "ids") if k in man] + [manifest] + extras:
        try:
            f.unlink()
        except OSError:
            pass

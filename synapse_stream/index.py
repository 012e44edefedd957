"""The post index: one incremental hnswlib shard (cosine), keyed by post id.

* grows its own capacity (doubling), so adding never fails with "exceeds the specified number of
  elements";
* ``search`` clamps k to what the shard holds, can exclude ids (e.g. posts already labelled) and
  can stop at a similarity floor (IBG's τ);
* adding an id that is already present is a no-op, so at-least-once replays do not duplicate;
* ``save``/``load`` are atomic: the graph and the id table are written under a new generation
  name, then a small manifest is renamed over the old one (the commit point);
* one writer and any number of concurrent readers are safe (a readers-writer lock; hnswlib
  releases the GIL, so readers really run in parallel).

Cost: insert O(M log n) expected, query O(ef log n); memory about ``4 d + 8 M`` bytes per post
plus the id table (hnswlib stores the vectors, they are not kept twice).

>>> import numpy as np
>>> idx = PostIndex(dim=3)
>>> idx.add(["a", "b", "c"], np.eye(3, dtype=np.float32))
3
>>> [pid for pid, _ in idx.search(np.array([1, 0.1, 0], dtype=np.float32), k=10)[0]][:1]
['a']
>>> idx.search(np.array([1, 0.1, 0], dtype=np.float32), k=2, exclude={"a"})[0][0][0]
'b'
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterable, Sequence

import hnswlib
import numpy as np

from ._rwlock import RWLock
from .embedders.base import l2_normalise
from .exceptions import PostIndexError

Exclude = Callable[[str], bool] | set | frozenset | dict | None


_BULK = 4096         # more new rows than this are read from hnswlib's serialised state, fewer through get_items
_UNIT_BLOCK = 4096   # rows normalised at a time into the unit vectors a PostIndex keeps for its snapshots


def _unit_rows(x: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = l2_normalise(x)`` for a C-contiguous float32 block, without a second copy."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    np.divide(x, norms, out=out)


class PostIndex:
    def __init__(
        self,
        dim: int,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        initial_capacity: int = 1024,
        seed: int = 100,
        insert_threads: int = 1,
    ) -> None:
        self.dim = int(dim)
        self.insert_threads = max(1, int(insert_threads))   # hnswlib threads per add (not saved: a runtime choice)
        self.m = int(m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.seed = int(seed)
        self._index = hnswlib.Index(space="cosine", dim=self.dim)
        self._index.init_index(
            max_elements=max(16, int(initial_capacity)), ef_construction=self.ef_construction, M=self.m,
            random_seed=self.seed,
        )
        self._index.set_ef(self.ef_search)
        self._ids: list[str] = []
        self._payload: list[str | None] = []   # optional text per post (e.g. for candidate messages)
        self._label: dict[str, int] = {}
        self._lock = RWLock()
        self._unit_lock = threading.Lock()     # the kept unit vectors (filled by whichever reader comes first)
        self._units = np.zeros((0, self.dim), np.float32)   # the first _units_n posts' unit vectors
        self._units_n = 0
        self.meta: dict = {}                   # saved with the index (e.g. the stream offset it covers)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, post_id: object) -> bool:
        return post_id in self._label

    @property
    def capacity(self) -> int:
        return self._index.get_max_elements()

    def ids(self) -> list[str]:
        with self._lock.read():
            return list(self._ids)

    # ------------------------------------------------------------------ writing
    def add(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[str | None] | None = None) -> int:
        """Add posts; ids already present (or repeated within the call) are skipped. Returns how many were new.

        ``payloads``: an optional string per post kept beside it (the streaming layer keeps the text).
        """
        vectors = l2_normalise(vectors)
        if vectors.shape[1] != self.dim:
            raise PostIndexError(f"vectors have dimension {vectors.shape[1]}, the index {self.dim}")
        if len(ids) != len(vectors):
            raise PostIndexError(f"{len(ids)} ids for {len(vectors)} vectors")
        with self._lock.write():
            fresh, rows, seen = [], [], set()
            for i, pid in enumerate(ids):
                pid = str(pid)
                if pid in self._label or pid in seen:
                    continue
                seen.add(pid)
                fresh.append(pid)
                rows.append(i)
            if not fresh:
                return 0
            need = len(self._ids) + len(fresh)
            if need > self._index.get_max_elements():
                self._index.resize_index(max(need, 2 * self._index.get_max_elements()))
            labels = np.arange(len(self._ids), need, dtype=np.int64)
            self._index.add_items(vectors[rows], labels, num_threads=self.insert_threads)
            for pid, lab in zip(fresh, labels):
                self._label[pid] = int(lab)
            self._ids.extend(fresh)
            self._payload.extend(payloads[i] if payloads is not None else None for i in rows)
            return len(fresh)

    # ------------------------------------------------------------------ reading
    def payload(self, post_id: str) -> str | None:
        with self._lock.read():
            lab = self._label.get(str(post_id))
            if lab is None:
                raise PostIndexError(f"unknown post id {post_id!r}")
            return self._payload[lab]

    def get_vectors(self, ids: Iterable[str]) -> np.ndarray:
        ids = list(ids)
        with self._lock.read():
            try:
                labels = [self._label[str(i)] for i in ids]
            except KeyError as exc:
                raise PostIndexError(f"unknown post id {exc.args[0]!r}") from None
            if not labels:
                return np.zeros((0, self.dim), dtype=np.float32)
            return l2_normalise(np.asarray(self._index.get_items(labels), dtype=np.float32))

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """Every post id and its unit vector (row i of the matrix is post ``ids[i]``), as a copy.

        hnswlib's ``get_items`` costs ~50 µs per item (a Python object per vector); this reads the
        level-0 data block of the index's serialised state instead (one memcpy, ~0.5 µs per post)
        and checks the labels stored beside each vector, falling back to ``get_items`` if the layout
        is not the expected one.
        """
        n = len(self._ids)
        out = np.empty((n, self.dim), dtype=np.float32)
        return self.vectors_into(out, n), out

    def parts(self) -> list[tuple["PostIndex", int]]:
        """The indexes holding the posts and how many each holds now (one: this one; see ``SegmentedIndex``)."""
        return [(self, len(self._ids))]

    def vectors_into(self, out: np.ndarray, n: int) -> list[str]:
        """Write the unit vectors of the first ``n`` posts into ``out`` [n, dim] float32; returns their ids.

        Posts only ever append, so the first ``n`` rows do not change: each row is read from hnswlib and
        normalised once (``_UNIT_BLOCK`` rows at a time) into a matrix kept beside the index (4 · dim bytes a post), and a
        later call copies them (a round's snapshot no longer serialises every segment's whole HNSW state:
        docs/live-rounds.md, "A steady round at a 200 k window"). The values are those of :func:`l2_normalise`
        of the stored vectors (each row's norm is its own reduction).
        """
        if out.shape != (n, self.dim) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise PostIndexError(f"vectors_into needs a C-contiguous float32 array of shape ({n}, {self.dim})")
        with self._lock.read():
            if n > len(self._ids):
                raise PostIndexError(f"the shard holds {len(self._ids)} posts, not {n}")
            ids = self._ids[:n]
            if n == 0:
                return ids
            with self._unit_lock:
                self._fill_units(n)
                out[:] = self._units[:n]
        return ids

    def rows(self, lo: int, hi: int) -> tuple[list[str], np.ndarray]:
        """The ids and unit vectors (a copy) of rows ``lo .. hi``: posts only append, so a reader that took the
        first ``lo`` rows gets exactly the next ones (the kNN graph grows by them between rounds)."""
        with self._lock.read():
            if not 0 <= lo <= hi <= len(self._ids):
                raise PostIndexError(f"rows {lo}..{hi} of a shard holding {len(self._ids)} posts")
            ids = self._ids[lo:hi]
            with self._unit_lock:
                self._fill_units(hi)
                return ids, self._units[lo:hi].copy()

    def _fill_units(self, n: int) -> None:
        """The unit vectors of rows ``_units_n .. n`` into the kept matrix (the caller holds both locks). Its
        capacity follows hnswlib's (``max_elements``), so it wastes no more than the index itself."""
        have = self._units_n
        if have >= n:
            return
        if len(self._units) < n:
            grown = np.empty((max(n, self._index.get_max_elements()), self.dim), np.float32)
            grown[:have] = self._units[:have]
            self._units = grown
        rows = self._stored_rows(have, n)
        for lo in range(have, n, _UNIT_BLOCK):
            hi = min(n, lo + _UNIT_BLOCK)
            _unit_rows(np.ascontiguousarray(rows[lo - have:hi - have]), self._units[lo:hi])
        self._units_n = n

    def _stored_rows(self, lo: int, hi: int) -> np.ndarray:
        """The vectors hnswlib stores for rows ``lo .. hi`` (float32): a few through ``get_items``; many (a loaded
        or new segment) straight from its serialised level-0 data, which is cheaper per row."""
        if hi - lo <= _BULK:
            return np.asarray(self._index.get_items(np.arange(lo, hi)), dtype=np.float32)
        try:
            st = self._index.__getstate__()[0]
            size, off, loff = st["size_data_per_element"], st["offset_data"], st["label_offset"]
            raw = np.asarray(st["data_level0"])[lo * size: hi * size].reshape(hi - lo, size)
            labels = raw[:, loff:loff + 8].copy().view("<u8").ravel()
            if int(st["cur_element_count"]) < hi or not np.array_equal(labels, np.arange(lo, hi, dtype=np.uint64)):
                raise ValueError("unexpected hnswlib layout")
            return raw[:, off:off + 4 * self.dim].copy().view("<f4")
        except (KeyError, ValueError, TypeError, IndexError):
            return np.asarray(self._index.get_items(np.arange(lo, hi)), dtype=np.float32)

    def knn(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """Batch top-``k`` search (no exclusion, no floor): ``(ids per query, cosines [q, k'])``, k' = min(k, n).

        One ``knn_query`` call for all rows, so it is much cheaper per query than :meth:`search`
        (which widens per row); used to build kNN graphs.
        """
        q = l2_normalise(queries)
        with self._lock.read():
            n = len(self._ids)
            kk = min(int(k), n)
            if kk <= 0 or len(q) == 0:
                return [[] for _ in range(len(q))], np.zeros((len(q), 0), dtype=np.float32)
            self._index.set_ef(max(self.ef_search, kk))
            labels, dists = self._index.knn_query(q, k=kk, num_threads=1)
            self._index.set_ef(self.ef_search)
            ids = [[self._ids[int(x)] for x in row] for row in labels]
        return ids, (1.0 - dists).astype(np.float32)

    def knn_labels(self, queries: np.ndarray, k: int, ef: int | None = None
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """:meth:`knn` as arrays, without turning labels into ids: ``(ids, labels [q, k'], cosines [q, k'])``, where
        ``ids[labels[i, j]]`` is the post; ``ids`` is the index's own append-only list (read it, never change it).
        ``ef``: the search's ef for this call (at least k'; by default the index's ``ef_search``)."""
        q = l2_normalise(queries)
        with self._lock.read():
            n = len(self._ids)
            kk = min(int(k), n)
            if kk <= 0 or len(q) == 0:
                return self._ids, np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
            self._index.set_ef(max(int(ef) if ef else self.ef_search, kk))
            labels, dists = self._index.knn_query(q, k=kk, num_threads=1)
            self._index.set_ef(self.ef_search)
        return self._ids, labels.astype(np.int64, copy=False), (1.0 - dists).astype(np.float32)

    def knn_parts(self, queries: np.ndarray, k: int, ef: int | None = None
                  ) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
        """One :meth:`knn_labels` per part of the index (here: one)."""
        return [self.knn_labels(queries, k, ef)]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Exclude = None,
        min_sim: float | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-k most similar posts for each query row, as ``(post_id, cosine)`` best first.

        ``exclude``: ids to leave out (a set/dict, or a predicate ``id -> bool``); the search widens
        (doubling k) until it has k admissible results, reaches ``min_sim``, or exhausts the shard.
        ``min_sim``: keep only results with cosine strictly greater than it (IBG's ``sim > τ``).
        """
        q = l2_normalise(queries)
        if q.shape[1] != self.dim:
            raise PostIndexError(f"query has dimension {q.shape[1]}, the index {self.dim}")
        if exclude is None:
            excluded = None
        elif callable(exclude):
            excluded = exclude
        else:
            excluded = exclude.__contains__
        with self._lock.read():
            n = len(self._ids)
            k = int(k)
            if n == 0 or k <= 0:
                return [[] for _ in range(len(q))]
            return [self._search_one(row, min(k, n), n, excluded, min_sim) for row in q]

    def _search_one(self, row, k, n, excluded, min_sim) -> list[tuple[str, float]]:
        want = k
        while True:
            kk = min(want, n)
            self._index.set_ef(max(self.ef_search, kk))
            labels, dists = self._index.knn_query(row[None, :], k=kk, num_threads=1)
            out: list[tuple[str, float]] = []
            floor_hit = False
            for lab, dist in zip(labels[0], dists[0]):
                sim = 1.0 - float(dist)
                if min_sim is not None and not sim > min_sim:
                    floor_hit = True
                    break
                pid = self._ids[int(lab)]
                if excluded is not None and excluded(pid):
                    continue
                out.append((pid, sim))
                if len(out) == k:
                    break
            if len(out) >= k or floor_hit or kk >= n:
                self._index.set_ef(self.ef_search)
                return out[:k]
            want = kk * 2

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Atomically save to ``path`` (a manifest) plus two generation files beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        gen = uuid.uuid4().hex[:12]
        graph = path.with_name(f"{path.name}.{gen}.hnsw")
        idfile = path.with_name(f"{path.name}.{gen}.ids.json")
        with self._lock.read():
            self._index.save_index(str(graph))
            ids = list(self._ids)
            payloads = list(self._payload)
            cap = self._index.get_max_elements()
        with open(idfile, "w", encoding="utf-8") as fh:
            json.dump({"ids": ids, "payloads": payloads}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        manifest = {
            "version": 1, "dim": self.dim, "m": self.m, "ef_construction": self.ef_construction,
            "ef_search": self.ef_search, "count": len(ids), "capacity": cap,
            "graph": graph.name, "ids": idfile.name, "meta": self.meta,
        }
        old = _read_manifest(path) if path.exists() else None
        tmp = path.with_name(f"{path.name}.{gen}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # commit point
        if old:
            for key in ("graph", "ids"):
                try:
                    (path.parent / old[key]).unlink()
                except (OSError, KeyError):
                    pass

    @classmethod
    def load(cls, path: str | os.PathLike, *, ef_search: int | None = None) -> "PostIndex":
        path = Path(path)
        man = _read_manifest(path)
        try:
            return cls._load(path, man, ef_search)
        except PostIndexError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            # a missing or damaged generation file, or a manifest without the expected keys
            raise PostIndexError(f"cannot load index {path}: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def _load(cls, path: Path, man: dict, ef_search: int | None) -> "PostIndex":
        obj = cls(man["dim"], m=man["m"], ef_construction=man["ef_construction"],
                  ef_search=ef_search or man["ef_search"], initial_capacity=16)
        with open(path.parent / man["ids"], encoding="utf-8") as fh:
            table = json.load(fh)
        ids, payloads = table["ids"], table["payloads"]
        if len(ids) != man["count"]:
            raise PostIndexError(f"{path}: id table has {len(ids)} rows, manifest says {man['count']}")
        obj._index = hnswlib.Index(space="cosine", dim=obj.dim)
        obj._index.load_index(str(path.parent / man["graph"]), max_elements=max(man["capacity"], 16))
        obj._index.set_ef(obj.ef_search)
        obj._ids = [str(i) for i in ids]
        obj._payload = payloads
        obj.meta = man.get("meta", {})
        obj._label = {pid: i for i, pid in enumerate(obj._ids)}
        return obj


def _read_manifest(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            man = json.load(fh)
    except (OSError, ValueError) as exc:
        raise PostIndexError(f"cannot read index manifest {path}: {exc}") from exc
    if not isinstance(man, dict):
        raise PostIndexError(f"{path}: index manifest is not a JSON object")
    if man.get("version") != 1:
        raise PostIndexError(f"{path}: unsupported index manifest version {man.get('version')!r}")
    return man


class ShardedIndex:
    """Several :class:`PostIndex` shards (one per stream partition) searched as one.

    ``search`` asks every shard for its top k and merges: with exclusions and the similarity floor
    applied per shard, the merged top k is exactly what one index holding all posts would return.
    A post lives in exactly one shard; ``add`` skips ids already held by any shard.

    >>> import numpy as np
    >>> s = ShardedIndex(dim=2)
    >>> s.add(0, ["a"], np.array([[1, 0]], np.float32)); s.add(1, ["b", "a"], np.array([[0.9, 0.1], [1, 0]], np.float32))
    1
    1
    >>> [p for p, _ in s.search(np.array([1, 0], np.float32), k=5)[0]], len(s)
    (['a', 'b'], 2)
    """

    def __init__(self, dim: int, retention=None, **index_options) -> None:
        from .segments import Retention
        self.dim = int(dim)
        self.retention = retention or Retention()
        self.index_options = index_options
        self.shards: dict[object, PostIndex] = {}

    def shard(self, key):
        """The shard for ``key`` (a :class:`~synapse_stream.segments.SegmentedIndex` under this index's
        retention), created empty if there is none."""
        if key not in self.shards:
            from .segments import SegmentedIndex
            self.shards[key] = SegmentedIndex(self.dim, self.retention, **self.index_options)
        return self.shards[key]

    def attach(self, key, index: PostIndex) -> None:
        if index.dim != self.dim:
            raise PostIndexError(f"shard {key!r} has dimension {index.dim}, expected {self.dim}")
        threads = self.index_options.get("insert_threads")
        if threads is not None:   # a loaded snapshot inserts with this deployment's thread count (not saved)
            if isinstance(index, PostIndex):
                index.insert_threads = max(1, int(threads))
            else:
                index.index_options["insert_threads"] = threads
                for seg in list(index.segments):
                    seg.index.insert_threads = max(1, int(threads))
        self.shards[key] = index

    def drop(self, key) -> PostIndex | None:
        return self.shards.pop(key, None)

    def __len__(self) -> int:
        return sum(len(s) for s in list(self.shards.values()))

    def __contains__(self, post_id: object) -> bool:
        return any(post_id in s for s in list(self.shards.values()))

    def locate(self, post_id: str):
        for key, s in list(self.shards.items()):
            if post_id in s:
                return key
        return None

    def add(self, key, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[str | None] | None = None,
            ts: Sequence[float | None] | None = None) -> int:
        """Add posts to shard ``key`` (``ts``: their event times, for the retention window); ids held by any
        shard are skipped. Returns how many were new."""
        vectors = l2_normalise(vectors)
        others = [s for k, s in list(self.shards.items()) if k != key]
        keep = [i for i, pid in enumerate(ids) if not any(str(pid) in s for s in others)]
        if not keep:
            return 0
        shard = self.shard(key)
        args = ([ids[i] for i in keep], vectors[keep], [payloads[i] for i in keep] if payloads is not None else None)
        if isinstance(shard, PostIndex):      # a plain shard attached by hand: no window
            return shard.add(*args)
        return shard.add(*args, ts=[ts[i] for i in keep] if ts is not None else None)

    def seals(self) -> int:
        """Segments sealed by this worker's shards so far (a shard revoked takes its count with it): a change
        is when a segment may have become due, sooner than the next periodic check."""
        return sum(getattr(s, "seals", 0) for s in list(self.shards.values()))

    def expirable(self) -> dict:
        """Per shard key, the segments due to leave the window and their posts (only shards with some)."""
        out = {}
        for key, s in list(self.shards.items()):
            if hasattr(s, "expirable"):
                due = s.expirable()
                if due:
                    out[key] = due
        return out

    def segment_count(self) -> int:
        return sum(len(getattr(s, "segments", [s])) for s in list(self.shards.values()))

    def payload(self, post_id: str) -> str | None:
        key = self.locate(str(post_id))
        if key is None:
            raise PostIndexError(f"unknown post id {post_id!r}")
        return self.shards[key].payload(post_id)

    def get_vectors(self, ids: Iterable[str]) -> np.ndarray:
        ids = [str(i) for i in ids]
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        todo = dict(enumerate(ids))
        for s in list(self.shards.values()):      # one bulk read per shard
            rows = [i for i, pid in todo.items() if pid in s]
            if rows:
                out[rows] = s.get_vectors([ids[i] for i in rows])
                for i in rows:
                    del todo[i]
        if todo:
            raise PostIndexError(f"unknown post id {next(iter(todo.values()))!r}")
        return out

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """Every post of every shard (shards in key order) and its unit vector.

        Each shard writes its rows straight into one matrix (no per-shard copies to stack); a shard
        that grows meanwhile contributes the posts it held when the read started.
        """
        ids, out, _ = self.vectors_parts()
        return ids, out

    def parts(self) -> list[tuple[PostIndex, int]]:
        """Every part (a shard, or a segment of one; shards in key order, a shard's segments oldest first) and how
        many posts it holds now."""
        shards = [self.shards.get(key) for key in sorted(self.shards, key=str)]   # another thread may drop one
        return [p for s in shards if s is not None for p in s.parts()]

    def newest_parts(self, count: int = 1) -> list[PostIndex]:
        """Each shard's ``count`` newest parts (the segment being written and the last sealed ones, or the shard
        itself), in key order."""
        shards = [self.shards.get(key) for key in sorted(self.shards, key=str)]
        return [part for s in shards if s is not None for part, _ in s.parts()[-count:]]

    def vectors_parts(self, upto: dict | None = None, alloc: Callable[[int], np.ndarray] | None = None
                      ) -> tuple[list[str], np.ndarray, list[tuple["PostIndex", int, int]]]:
        """:meth:`vectors` and where each part (a shard, or a segment of one) is: ``(part, first row, rows)``. A
        part only ever appends, so a reader that saw its first ``rows`` posts knows the next ones are new.
        ``upto``: at most this many first rows of each part (a part not in it: none). ``alloc``: gives the array
        to write ``n`` rows into (C-contiguous float32 ``[n, dim]``, e.g. the front of a buffer kept between calls);
        by default a new one."""
        parts = self.parts()
        if upto is not None:
            parts = [(s, min(c, upto.get(s, 0))) for s, c in parts]
        n = sum(c for _, c in parts)
        out = alloc(n) if alloc is not None else np.empty((n, self.dim), dtype=np.float32)
        ids: list[str] = []
        where = []
        start = 0
        for s, c in parts:     # each part locked only while it is copied (a write waits for one segment at most)
            ids += s.vectors_into(out[start:start + c], c)
            where.append((s, start, c))
            start += c
        return ids, out, where

    def knn(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Batch top-``k`` over all shards, merged (best first, ties by id)."""
        q = l2_normalise(queries)
        merged: list[list[tuple[str, float]]] = [[] for _ in range(len(q))]
        for s in list(self.shards.values()):
            ids, sims = s.knn(q, k)
            for row in range(len(q)):
                merged[row].extend(zip(ids[row], sims[row].tolist()))
        return [sorted(m, key=lambda t: (-t[1], t[0]))[:k] for m in merged]

    def knn_parts(self, queries: np.ndarray, k: int, ef: int | None = None
                  ) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
        """Every part's (shard's, or segment's) top ``k`` as arrays, unmerged (:meth:`PostIndex.knn_labels`): the
        kNN graph merges them with numpy instead of sorting Python tuples (``KNNGraph.update``)."""
        q = l2_normalise(queries)
        return [part for s in list(self.shards.values()) for part in s.knn_parts(q, k, ef)]

    def search(self, queries: np.ndarray, k: int, *, exclude: Exclude = None, min_sim: float | None = None):
        q = l2_normalise(queries)
        merged: list[list[tuple[str, float]]] = [[] for _ in range(len(q))]
        for s in list(self.shards.values()):
            for row, found in enumerate(s.search(q, k, exclude=exclude, min_sim=min_sim)):
                merged[row].extend(found)
        return [sorted(m, key=lambda t: (-t[1], t[0]))[:k] for m in merged]

"""Micro-clusters with fading weights: the dense groups of the stream, one small interface, two engines.

:class:`FadingMicroClusters` (the default) is DBSTREAM's online step (Hahsler & Bolaños 2016) on unit
vectors with numpy: a post joins the nearest micro-cluster whose centre is within cosine ``radius`` of it
(the centre moves toward the post, the weight is faded by ``2 ** (-(t - last) / half_life)`` and gains 1),
else it founds a new one. Micro-clusters whose faded weight falls below ``min_weight`` are dropped at each
cleanup (every ``cleanup_every`` posts), and so are, with a ``horizon``, those no post joined for ``horizon``
seconds of event time; at most ``max_clusters`` are kept (the weakest is evicted to make room): memory is
O(max_clusters · d) whatever the stream. One post costs one ``[max_clusters, d]`` matrix-vector product.

:class:`RiverDBSTREAM` wraps ``river.cluster.DBSTREAM`` behind the same interface. River works on Python
dicts one post at a time, and its neighbour search visits every micro-cluster in Python: measured here
(``bench/trends_clusterers.py``, 384-d vectors, one BLAS thread) it took 8.2 ms a post holding 159
micro-clusters against 0.13 ms for the numpy engine (4000 slots), and its cost grows with the number of
micro-clusters (a real window holds thousands): too slow for the worker's post rate. It is kept behind the
same interface for comparison and for low-dimensional inputs.

>>> import numpy as np
>>> mc = FadingMicroClusters(dim=2, radius=0.9, half_life=100.0)
>>> v = np.array([[1, 0], [0.99, 0.1], [0, 1]], np.float32)
>>> ids = mc.learn(v / np.linalg.norm(v, axis=1, keepdims=True), ts=[0.0, 1.0, 2.0])
>>> ids[0] == ids[1], ids[0] == ids[2], len(mc)
(True, False, 2)
"""
from __future__ import annotations

import bisect
import math
from typing import Protocol, Sequence

import numpy as np


class MicroClusterer(Protocol):
    """Assigns each post to a micro-cluster (an id that stays the same while the cluster lives)."""

    def learn(self, vecs: np.ndarray, ts: Sequence[float]) -> list[int]: ...

    def centre(self, cid: int) -> np.ndarray | None: ...

    def weight(self, cid: int, now: float) -> float: ...

    def __len__(self) -> int: ...


class FadingMicroClusters:
    """DBSTREAM-style leader micro-clusters on unit vectors (see the module docstring)."""

    def __init__(self, dim: int, *, radius: float = 0.6, half_life: float = 6 * 3600.0,
                 max_clusters: int = 4000, min_weight: float = 0.05, cleanup_every: int = 1000,
                 horizon: float | None = None) -> None:
        self.dim, self.radius, self.half_life = int(dim), float(radius), float(half_life)
        self.max_clusters, self.min_weight, self.cleanup_every = int(max_clusters), float(min_weight), int(cleanup_every)
        self.horizon = None if horizon is None else float(horizon)
        self._c = np.zeros((self.max_clusters, self.dim), np.float32)   # centres (unit rows); unused rows zero
        self._w = np.zeros(self.max_clusters, np.float64)               # weight at _t
        self._t = np.zeros(self.max_clusters, np.float64)               # last update (event time)
        self._id = np.full(self.max_clusters, -1, np.int64)             # cluster id per slot, -1 free
        self._mask = np.full(self.max_clusters, -4.0, np.float32)       # 0 for a used slot, -4 for a free one
        self._free = list(range(self.max_clusters - 1, -1, -1))       # free slots, lowest last
        self._slot: dict[int, int] = {}
        self._hw = 0                      # slots [0, _hw) hold every live micro-cluster
        self._next_id = 0
        self._seen = 0

    def __len__(self) -> int:
        return len(self._slot)

    def _faded(self, slots, now: float) -> np.ndarray:
        return self._w[slots] * np.exp2(-np.maximum(0.0, now - self._t[slots]) / self.half_life)

    def weight(self, cid: int, now: float) -> float:
        s = self._slot.get(cid)
        return 0.0 if s is None else float(self._faded(s, now))

    def centre(self, cid: int) -> np.ndarray | None:
        s = self._slot.get(cid)
        return None if s is None else self._c[s].copy()

    def alive(self, cid: int) -> bool:
        return cid in self._slot

    #: posts per product: a row recomputes the slots changed earlier in its chunk (a gather of up to ``chunk``
    #: centres), so a long chunk costs more per post than its one product saves (bench/trends_core.py)
    chunk = 64

    def learn(self, vecs: np.ndarray, ts: Sequence[float]) -> list[int]:
        vecs = np.asarray(vecs, np.float32)
        ts = list(ts)
        out: list[int] = []
        for s in range(0, len(vecs), self.chunk):
            out += self._learn(vecs[s:s + self.chunk], ts[s:s + self.chunk])
        return out

    def _learn(self, vecs: np.ndarray, ts: Sequence[float]) -> list[int]:
        out: list[int] = []
        if len(self._slot) < self._hw // 2 and self._hw > 64:
            self._compact()
        # a post founds at most one micro-cluster, in the lowest free slot (at most _hw): the batch's slots are
        # below _hw + len(vecs)
        n = min(self.max_clusters, self._hw + len(vecs))
        sims_all = vecs @ self._c[:n].T                               # one product for the batch
        sims_all += self._mask[:n]                                    # free slots never win
        touched: list[int] = []                                       # slots changed inside this batch
        for row, (x, t) in enumerate(zip(vecs, ts)):
            t = float(t)
            sims = sims_all[row]                                      # this row's, used once: no copy
            if touched:                                               # centres moved, born or freed in this batch
                sims[touched] = self._c[touched] @ x + self._mask[touched]
            s = int(np.argmax(sims))
            if float(sims[s]) >= self.radius:
                last = float(self._t[s])                              # _faded(s, t) in Python floats (the hot path)
                w = float(self._w[s]) * 2.0 ** (-max(0.0, t - last) / self.half_life) + 1.0
                c = self._c[s] + (x - self._c[s]) / w
                self._c[s] = c / (math.sqrt(float(c @ c)) or 1.0)
                self._w[s], self._t[s] = w, max(t, last)
                out.append(int(self._id[s]))
            else:
                s = self._free_slot(t)
                cid = self._next_id
                self._next_id += 1
                self._c[s], self._w[s], self._t[s], self._id[s], self._mask[s] = x, 1.0, t, cid, 0.0
                self._slot[cid] = s
                self._hw = max(self._hw, s + 1)
                out.append(cid)
            if s not in touched:
                touched.append(s)
            self._seen += 1
            if self._seen % self.cleanup_every == 0:
                # the rows below see the freed slots free
                touched += [f for f, _ in self._cleanup(t) if f not in touched]
        return out

    def _free_slot(self, now: float) -> int:
        if self._free:
            return self._free.pop()                                   # the lowest free slot
        s = int(np.argmin(self._faded(slice(None), now)))            # full: evict the weakest
        self._release(s)
        return self._free.pop()

    def _release(self, s: int) -> None:
        self._slot.pop(int(self._id[s]), None)
        self._id[s] = -1
        self._c[s] = 0.0
        self._w[s] = 0.0
        self._mask[s] = -4.0
        bisect.insort(self._free, s, key=lambda f: -f)                # kept highest first: pop() gives the lowest

    def _compact(self) -> None:
        """Move the live micro-clusters to the lowest slots (their ids stay), so the product covers them only."""
        used = np.flatnonzero(self._id >= 0)
        k = len(used)
        for arr in (self._c, self._w, self._t, self._id, self._mask):
            arr[:k] = arr[used]
        self._c[k:self._hw] = 0.0
        self._w[k:self._hw] = 0.0
        self._t[k:self._hw] = 0.0
        self._id[k:self._hw] = -1
        self._mask[k:self._hw] = -4.0
        self._slot = {int(c): s for s, c in enumerate(self._id[:k])}
        self._free = list(range(self.max_clusters - 1, k - 1, -1))
        self._hw = k

    def cleanup(self, now: float) -> list[int]:
        """Drop micro-clusters whose faded weight is below ``min_weight`` (or, with a ``horizon``, that no post
        joined since ``now - horizon``); returns their ids."""
        return [cid for _, cid in self._cleanup(now)]

    def _cleanup(self, now: float) -> list[tuple[int, int]]:
        """:meth:`cleanup`, returning (slot, id) of each cluster dropped."""
        used = np.flatnonzero(self._id >= 0)
        gone = self._faded(used, now) < self.min_weight
        if self.horizon is not None:
            gone |= self._t[used] < now - self.horizon
        out = [(int(s), int(self._id[s])) for s in used[gone]]
        for s, _ in out:
            self._release(s)
        return out


class RiverDBSTREAM:
    """``river.cluster.DBSTREAM`` behind :class:`MicroClusterer`.

    River does not say which micro-cluster a point updated, so the id returned is that of the micro-cluster
    whose centre is nearest the post after ``learn_one`` (read from ``DBSTREAM._micro_clusters``). River
    fades per post, not per second: ``fading_factor`` is per post here. Distances are Euclidean on unit
    vectors: ``clustering_threshold = sqrt(2 - 2 · radius)`` matches a cosine radius.
    """

    def __init__(self, dim: int, *, radius: float = 0.6, fading_factor: float = 0.001,
                 cleanup_interval: int = 1000, **kw) -> None:
        from river.cluster import DBSTREAM

        self.dim = int(dim)
        self.model = DBSTREAM(clustering_threshold=math.sqrt(max(0.0, 2 - 2 * radius)),
                              fading_factor=fading_factor, cleanup_interval=cleanup_interval, **kw)

    def __len__(self) -> int:
        return len(self.model._micro_clusters)

    def learn(self, vecs: np.ndarray, ts: Sequence[float]) -> list[int]:
        out = []
        for x in np.asarray(vecs, np.float64):
            d = dict(enumerate(x.tolist()))
            self.model.learn_one(d)
            best, cid = math.inf, -1
            for i, mc in self.model._micro_clusters.items():
                dist = sum((mc.center[j] - v) ** 2 for j, v in d.items())
                if dist < best:
                    best, cid = dist, i
            out.append(int(cid))
        return out

    def centre(self, cid: int) -> np.ndarray | None:
        mc = self.model._micro_clusters.get(cid)
        if mc is None:
            return None
        v = np.array([mc.center[j] for j in range(self.dim)], np.float32)
        return v / (np.linalg.norm(v) or 1.0)

    def weight(self, cid: int, now: float) -> float:
        mc = self.model._micro_clusters.get(cid)
        return 0.0 if mc is None else float(mc.weight)

"""First-story novelty against the recent window, with the index's own nearest-neighbour search.

A post is *novel* when nothing already in the window (the HNSW index: a :class:`~synapse_stream.segments.
SegmentedIndex` or the worker's :class:`~synapse_stream.index.ShardedIndex`: anything with their ``knn``) is within cosine ``novelty_sim`` of it, leaving out the
post itself and the posts of its own group (they are the wave, not what came before it). A group is *new*
when most of its first ``probes`` posts were novel when they arrived: a topic the window already holds
plenty of is not an emerging trend even if a fresh micro-cluster forms around it.

Cost: one batched ``knn`` over the window's segments per batch (``k`` neighbours a post).

>>> import numpy as np
>>> from synapse_stream.segments import SegmentedIndex
>>> idx = SegmentedIndex(2)
>>> idx.add(["old"], np.array([[1.0, 0.0]], np.float32), ts=[0])
1
>>> probe = WindowNovelty(idx, novelty_sim=0.9, k=4)
>>> probe.prior_similarity(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32), [set(), set(), {"old"}])
[1.0, 0.0, -1.0]
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class WindowNovelty:
    def __init__(self, index, *, novelty_sim: float = 0.6, k: int = 8) -> None:
        self.index = index
        self.novelty_sim = float(novelty_sim)
        self.k = int(k)

    def prior_similarity(self, vecs: np.ndarray, exclude: Sequence[set[str] | Callable[[str], bool]]) -> list[float]:
        """Per post, the best cosine to a window post outside ``exclude[i]`` (-1.0 when there is none among the
        ``k`` nearest)."""
        if len(vecs) == 0 or len(self.index) == 0:
            return [-1.0] * len(vecs)
        found = self.index.knn(vecs, self.k)
        if isinstance(found, tuple):        # SegmentedIndex / PostIndex: (ids per row, cosines [q, k])
            rows = [list(zip(nn, ss.tolist())) for nn, ss in zip(*found)]
        else:                               # ShardedIndex: [(id, cosine)] per row
            rows = found
        out = []
        for row, pairs in enumerate(rows):
            ex = exclude[row]
            skip = ex if callable(ex) else ex.__contains__
            best = -1.0
            for pid, s in pairs:
                if not skip(pid):
                    best = s
                    break
            out.append(float(best))
        return out

    def is_novel(self, prior_sim: float) -> bool:
        return prior_sim < self.novelty_sim

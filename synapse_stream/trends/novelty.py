"""First-story novelty against the recent window, with the index's own nearest-neighbour search.

A post is *novel* when nothing already in the window (the HNSW index: a :class:`~synapse_stream.segments.
SegmentedIndex` or the worker's :class:`~synapse_stream.index.ShardedIndex`: anything with their ``knn``) is within cosine ``novelty_sim`` of it, leaving out the
post itself and the posts of its own group (they are the wave, not what came before it). A group is *new*
when most of its first ``probes`` posts were novel when they arrived: a topic the window already holds
plenty of is not an emerging trend even if a fresh micro-cluster forms around it.

Cost: one batched search per part of the window (segment or shard: ``knn_parts``, ``k`` neighbours a post at
``ef``; None: the index's ``ef_search``), each part's rows scanned best first for the first post not excluded:
no merge of the parts' lists. The probe only asks whether anything is within ``novelty_sim``, so it can search
with a smaller ``ef`` than the rounds' kNN graph (:class:`~synapse_stream.trends.stage.TrendParams`
``novelty_ef``; its agreement with an exact search is measured in docs/trends.md).

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
    def __init__(self, index, *, novelty_sim: float = 0.6, k: int = 8, ef: int | None = None) -> None:
        self.index = index
        self.novelty_sim = float(novelty_sim)
        self.k = int(k)
        self.ef = None if ef is None else int(ef)

    def prior_similarity(self, vecs: np.ndarray, exclude: Sequence[set[str] | Callable[[str], bool]]) -> list[float]:
        """Per post, the best cosine to a window post outside ``exclude[i]`` among each part's ``k`` nearest
        (-1.0 when there is none)."""
        if len(vecs) == 0 or len(self.index) == 0:
            return [-1.0] * len(vecs)
        best = [-1.0] * len(vecs)
        skips = [ex if callable(ex) else ex.__contains__ for ex in exclude]
        for ids, labels, sims in self.index.knn_parts(vecs, self.k, self.ef):
            for row, (labs, ss) in enumerate(zip(labels.tolist(), sims.tolist())):
                b, skip = best[row], skips[row]
                for lab, s in zip(labs, ss):          # best first
                    if s <= b:
                        break
                    if not skip(ids[lab]):
                        best[row] = s
                        break
        return [float(b) for b in best]

    def is_novel(self, prior_sim: float) -> bool:
        return prior_sim < self.novelty_sim

"""An example candidate source in one file: the posts most similar to the centroid of the known positives.

Registering it is the last line; ``SYNAPSE_SOURCE_PLUGINS=tests.core.centroid_source`` (or importing this module)
makes ``centroid`` a name for ``eval --policy-sources``, for the policy and for a worker's ``candidates``.
"""
from __future__ import annotations

import numpy as np

from synapse_stream.embedders.base import l2_normalise
from synapse_stream.methods.base import LoopState, top_rows
from synapse_stream.sources import CandidateSource, SourceParams, SourceSpec, register


class CentroidSource(CandidateSource):
    """Cosine to the mean of the seeds and the confirmed rows. Cost O(n d) per proposal."""

    name = "centroid"

    def propose(self, state: LoopState, k: int) -> list[tuple[int, float]]:
        P = np.vstack([state.S, state.X[state.positive_rows()]])
        if not len(P) or state.n == 0:
            return []
        c = l2_normalise(P.mean(axis=0, keepdims=True))[0]
        return top_rows(state.X @ c, np.flatnonzero(state.unlabelled_mask()), k)


def _make(params: SourceParams) -> CentroidSource:
    return CentroidSource()


register(SourceSpec("centroid", batch=_make, live=_make, summary="nearest to the positives' centroid"))

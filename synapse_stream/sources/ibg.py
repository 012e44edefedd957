"""IBG as a candidate source: the top of the round's Algorithm-2 batch, by strongest kept edge.

The same :class:`~synapse_stream.methods.ibg.IBG` object serves both forms: on a live round's state its V_P is
the seeds and positives outside the worker's shards (``state.S``) plus every confirmed row of the snapshot.
"""
from __future__ import annotations

from ..methods.ibg import IBG
from .base import SourceParams
from .registry import SourceSpec, register


def _ibg(p: SourceParams) -> IBG:
    return IBG(tau=p.tau, d_max=p.d_max)


register(SourceSpec("ibg", batch=_ibg, live=_ibg,
                    summary="Algorithm 2's batch: unlabelled posts with cos > tau to a positive, d_max per positive"))

"""The classifier as a candidate source (and the policy's ranker).

* batch: :class:`~synapse_stream.methods.model.ModelGuided` (a logistic regression refitted every round on the
  seeds, the labels so far and provisional negatives);
* live: :class:`LiveModel`, the detector's current shared classifier version (trained on every worker's
  verdicts by the streaming layer, handed over through :meth:`~.base.CandidateSource.use_model`).

Cost of a live proposal: O(U · d) to score the U unlabelled posts.
"""
from __future__ import annotations

import numpy as np

from ..methods.base import LoopState, top_rows
from ..methods.model import ModelGuided
from .base import CandidateSource, SourceParams
from .registry import SourceSpec, register


class LiveModel(CandidateSource):
    """Scores every unlabelled post with the detector's shared classifier; nothing before the first version."""

    name = "model"
    ranks = True
    uses_model = True

    def __init__(self) -> None:
        self.model = None   # a synapse_stream.classifier.ModelVersion
        self.last_scores: np.ndarray | None = None

    def use_model(self, model: object) -> None:
        self.model = model

    def propose(self, state: LoopState, k: int) -> list[tuple[int, float]]:
        self.last_scores = None
        if self.model is None:
            return []
        unl = np.flatnonzero(state.unlabelled_mask())
        scores = np.zeros(state.n, np.float32)
        if len(unl):
            scores[unl] = self.model.predict_proba(state.X[unl])
        self.last_scores = scores
        return top_rows(scores, unl, k)


def _batch(p: SourceParams) -> ModelGuided:
    return ModelGuided(k0=p.k0, seed=p.seed)


register(SourceSpec("model", batch=_batch, live=lambda p: LiveModel(),
                    summary="the classifier trained on the seeds and the verdicts (also ranks the others)"))

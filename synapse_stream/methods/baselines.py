"""Baselines: nearest neighbours to the seeds, the paper's LR active learner, and random.

* :class:`KNNSearch`: rank every post by its highest cosine to any seed and query down the list
  (``k0`` per round). Time O(n · m · d) once, memory O(n).
* :class:`LRBaseline`: logistic regression (scikit-learn defaults) on the embeddings, trained on
  the seeds plus as many known negatives, retrained every round; it scores ``budget`` random
  unlabelled posts (all of them when ``budget`` is None) and queries the top ``K = K0 / p_prev``.
  The "known negatives" are found honestly: random posts are sent to the oracle until there are
  as many negatives as seeds, and those queries count. Time per round O(B · d) inference plus the
  fit, O(L · d · iters) on the L labelled rows.
* :func:`random_curve`: the analytic random baseline (recall = query ratio, precision = prevalence).
"""
from __future__ import annotations

import numpy as np

from ..exceptions import ConfigError
from ..sources.base import CandidateSource
from .base import ActiveMethod, LoopState, dynamic_k, top_rows


def max_sim_to(S: np.ndarray, X: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each row of X, its highest cosine to any row of S."""
    out = np.full(len(X), -np.inf, dtype=np.float32)
    for start in range(0, len(X), chunk):
        out[start:start + chunk] = (X[start:start + chunk] @ S.T).max(axis=1)
    return out


class KNNSearch(ActiveMethod, CandidateSource):
    """Nearest neighbours of the seeds; also the ``knn`` candidate source."""

    name = "knn"

    def __init__(self, k0: int = 100, **kw) -> None:
        super().__init__(**kw)
        self.k0 = int(k0)
        self._score = None

    def _prepare(self, state: LoopState) -> None:
        self._score = max_sim_to(state.S, state.X)

    def _select(self, state: LoopState):
        return top_rows(self._score, np.flatnonzero(state.unlabelled_mask()), self.k0)

    def propose(self, state: LoopState, k: int):
        return top_rows(self._score, np.flatnonzero(state.unlabelled_mask()), k)


class LRBaseline(ActiveMethod):
    name = "lr"

    def __init__(self, k0: int = 100, budget: int | None = None, k_max: int | None = None, **kw) -> None:
        super().__init__(**kw)
        if budget is not None and budget < 1:
            raise ConfigError("LR inference budget must be >= 1 (or None for the whole pool)")
        self.k0 = int(k0)
        self.budget = budget
        self.k_max = int(k_max) if k_max else 10 * self.k0
        self._bootstrapping = True
        self._first_model_round = 0

    def params(self) -> dict:
        return {"K0": self.k0, "B": self.budget if self.budget else "full"}

    def _prepare(self, state: LoopState) -> None:
        self._bootstrapping = True

    def _select(self, state: LoopState):
        unl = np.flatnonzero(state.unlabelled_mask())
        if self._bootstrapping:
            negatives = int((state.labels == 0).sum())
            if negatives < len(state.S) and len(unl):
                # one random post at a time, until there are as many known negatives as seeds
                return [(int(state.rng.choice(unl)), 0.0)]
            self._bootstrapping = False
            self._first_model_round = len(state.rounds)
        from sklearn.linear_model import LogisticRegression

        known = np.flatnonzero(state.labels >= 0)
        Xtr = np.vstack([state.S, state.X[known]])
        ytr = np.concatenate([np.ones(len(state.S), np.int8), state.labels[known]])
        if len(np.unique(ytr)) < 2:
            return []
        model = LogisticRegression().fit(Xtr, ytr)
        cand = unl
        if self.budget is not None and len(unl) > self.budget:
            cand = np.sort(state.rng.choice(unl, size=self.budget, replace=False))
        scores = np.zeros(state.n, dtype=np.float32)
        scores[cand] = model.predict_proba(state.X[cand])[:, 1]
        # p_prev of the first model round is undefined (the bootstrap rounds were random): start at 1
        p_prev = 1.0 if len(state.rounds) == self._first_model_round else state.last_precision()
        return top_rows(scores, cand, dynamic_k(self.k0, p_prev, self.k_max))


def random_curve(n: int, positives: int, max_query_ratio: float, points: int = 200) -> list[list[float]]:
    """Expected (query_ratio, recall, precision) of querying uniformly at random."""
    prevalence = positives / n
    return [[q, q, prevalence] for q in np.linspace(0, max_query_ratio, points + 1)[1:].tolist()]

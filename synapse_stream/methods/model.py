"""Model-guided candidates: a classifier on the embeddings, trained on the seeds and the ledger.

Each round a logistic regression (scikit-learn, ``C`` = 1 by default) is fitted on

* positives: the synthetic seeds and every post confirmed positive so far (whoever queried it);
* negatives: every post labelled negative so far, plus ``provisional`` *provisional negatives*:
  unlabelled posts drawn uniformly at random once (a fixed sample; a drawn post that later gets a
  verdict counts with its real label instead). At cold start no negative is known, and the rare
  class is rare, so a random unlabelled post is a negative with probability 1 − prevalence: this
  is the positive-unlabelled ("PU") assumption, and it costs no oracle query, unlike
  :class:`~.baselines.LRBaseline`, which pays for its first negatives with random queries. With
  ``keep_provisional=False`` the provisional negatives are dropped as soon as as many real
  negatives are known.

It then scores every unlabelled post and proposes the ``K = K0 / p_prev`` most probable
(``p_prev``: precision of the previous batch, 1 at first; K capped at ``k_max``).

The fit itself is :func:`synapse_stream.classifier.train_model` (the same rows in the same order,
without cross-validation), so a model trained here and one trained for a live detector are the same
object (:class:`~synapse_stream.classifier.ModelVersion`).

Complexity per round: the fit is O(L · d · iterations) on the L = seeds + labelled + provisional
rows; scoring is O(U · d) for the U unlabelled posts; memory O((L + U) · d) for the feature copies.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import ConfigError
from ..sources.base import CandidateSource
from .base import ActiveMethod, LoopState, dynamic_k, top_rows


class ModelGuided(ActiveMethod, CandidateSource):
    """The model-guided method; also the ``model`` candidate source and ranker on a fixed pool."""

    name = "model"
    ranks = True

    def __init__(self, k0: int = 100, k_max: int | None = None, provisional: int | None = None,
                 keep_provisional: bool = True, C: float = 1.0, seed_weight: float = 1.0, lexical: bool = False,
                 **kw) -> None:
        super().__init__(**kw)
        if k0 < 1:
            raise ConfigError("model K0 must be >= 1")
        if provisional is not None and provisional < 0:
            raise ConfigError("provisional negatives must be >= 0")
        if C <= 0 or seed_weight <= 0:
            raise ConfigError("C and seed_weight must be > 0")
        self.k0 = int(k0)
        self.k_max = int(k_max) if k_max else 10 * self.k0
        self.provisional = provisional
        self.keep_provisional = bool(keep_provisional)
        self.C = float(C)
        self.seed_weight = float(seed_weight)
        self._prov = np.zeros(0, dtype=np.int64)
        self.last_scores: np.ndarray | None = None
        self.last_model = None            # the last fitted ModelVersion (synapse_stream.classifier)
        self.lexical = None               # a synapse_stream.lexical.LexicalFeatures when lexical=True
        self._lex_pool = self._lex_seeds = None
        if lexical:
            from ..lexical import LexicalFeatures

            self.lexical = LexicalFeatures()

    def params(self) -> dict:
        return {"K0": self.k0, **({"lexical": True} if self.lexical is not None else {})}

    def _prepare(self, state: LoopState) -> None:
        self.last_scores = None
        self.last_model = None
        u = len(state.S) if self.provisional is None else self.provisional
        u = min(u, state.n)
        self._prov = np.sort(state.rng.choice(state.n, size=u, replace=False)) if u else np.zeros(0, np.int64)

    def _rows(self, state: LoopState) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the labelled posts and of the provisional negatives of this round's fit."""
        known = np.flatnonzero(state.labels >= 0)
        prov = self._prov[state.labels[self._prov] < 0]
        if not self.keep_provisional and int((state.labels == 0).sum()) >= len(self._prov):
            prov = prov[:0]
        return known, prov

    def training_parts(self, state: LoopState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(seeds, X_labelled, y_labelled, X_provisional)`` of this round's fit (:func:`~..classifier.train_model`'s input)."""
        known, prov = self._rows(state)
        return state.S, state.X[known], state.labels[known], state.X[prov]

    def use_texts(self, pool_texts, seed_texts) -> None:
        """The texts of the pool's rows and of the seeds, for the lexical view (``lexical=True``; batch runs)."""
        if self.lexical is None:
            return
        self._lex_pool = self.lexical.transform(list(pool_texts))
        self._lex_seeds = self.lexical.transform(list(seed_texts))

    def _lexical_scores(self, state: LoopState) -> np.ndarray | None:
        """Fit on [embedding | hashed n-grams] (same rows, labels and weights as the embedding-only fit)."""
        from sklearn.linear_model import LogisticRegression

        from ..classifier import training_rows
        from ..lexical import hstack_features
        from scipy import sparse

        known, prov = self._rows(state)
        _, y, w = training_rows(state.S, state.X[known], state.labels[known], state.X[prov], self.seed_weight)
        if len(np.unique(y)) < 2:
            return None
        rows = np.concatenate([known, prov])
        F = sparse.vstack([hstack_features(state.S, self._lex_seeds),
                           hstack_features(state.X[rows], self._lex_pool[rows])], format="csr")
        est = LogisticRegression(C=self.C, max_iter=500).fit(F, y, sample_weight=w)
        unl = np.flatnonzero(state.unlabelled_mask())
        out = np.zeros(state.n, dtype=np.float32)
        if len(unl):
            out[unl] = est.predict_proba(hstack_features(state.X[unl], self._lex_pool[unl]))[:, 1]
        self.last_scores = out
        return out

    def training_set(self, state: LoopState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, y, sample_weight)`` of this round's fit: seeds, labelled posts, provisional negatives, in that order."""
        from ..classifier import training_rows

        S, X_lab, y_lab, X_prov = self.training_parts(state)
        return training_rows(S, X_lab, y_lab, X_prov, self.seed_weight)

    def scores(self, state: LoopState) -> np.ndarray | None:
        """Fit on the current labels; the positive-class probability of every unlabelled post (else 0).

        The fit is :func:`~synapse_stream.classifier.train_model` without cross-validation
        (``folds=0``: the loop retrains every round and does not pay for CV); the fitted
        :class:`~synapse_stream.classifier.ModelVersion` is kept in ``last_model``.
        """
        from ..classifier import train_model

        if self.lexical is not None:
            if self._lex_pool is None or self._lex_pool.shape[0] != state.n:
                raise ConfigError("the lexical model source needs the pool's texts: call use_texts() before run()")
            return self._lexical_scores(state)
        S, X_lab, y_lab, X_prov = self.training_parts(state)
        model = train_model(self.name, len(state.rounds) + 1, S, X_lab, y_lab, X_prov, C=self.C,
                            seed_weight=self.seed_weight, folds=0)
        if model is None:
            return None
        self.last_model = model
        unl = np.flatnonzero(state.unlabelled_mask())
        out = np.zeros(state.n, dtype=np.float32)
        if len(unl):
            out[unl] = model.predict_proba(state.X[unl])
        self.last_scores = out
        return out

    def propose(self, state: LoopState, k: int):
        s = self.scores(state)
        if s is None:
            return []
        return top_rows(s, np.flatnonzero(state.unlabelled_mask()), k)

    def _select(self, state: LoopState):
        return self.propose(state, dynamic_k(self.k0, state.last_precision(), self.k_max))

"""Graph-Based Label Expansion (GBLE), the paper's Algorithm 3 inside its active loop.

Once: a symmetric kNN similarity graph over the pool *and* the synthetic seeds (each node linked
to its ``k`` most similar nodes, then A ∪ Aᵀ), row-normalised: ``W_ij = 1/deg(i)``.

Each round: labels ``Y`` (seeds and confirmed posts 1, known negatives 0, the rest 0 at first,
warm-started from the last round) are propagated ``Y ← W·Y`` for ``iterations`` steps, with every
known label clamped back after each step. The ``K = K0 / p_prev`` unlabelled posts with the highest
``Y`` go to the oracle (``p_prev`` = precision of the previous round's batch, 1 at first; K is
capped at ``k_max``).

Complexity: the graph costs O(N² d) time once (exact, chunked; N = pool + seeds) and O(N k)
memory; each round costs O(iterations · N k) for propagation plus O(N) for the top K.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ..exceptions import ConfigError
from ..sources.base import CandidateSource
from .base import ActiveMethod, LoopState, dynamic_k, top_rows


def knn_graph(V: np.ndarray, k: int, chunk: int = 1024) -> sparse.csr_matrix:
    """Exact symmetric kNN graph (binary, no self loops) of unit vectors ``V``."""
    n = len(V)
    k = min(k, n - 1)
    rows, cols = [], []
    for start in range(0, n, chunk):
        sims = V[start:start + chunk] @ V.T
        r = np.arange(start, min(start + chunk, n))
        sims[r - start, r] = -np.inf
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(r, k))
        cols.append(idx.ravel())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    A = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
    A = ((A + A.T) > 0).astype(np.float32)
    return A.tocsr()


def row_normalise(A: sparse.csr_matrix) -> sparse.csr_matrix:
    deg = np.asarray(A.sum(axis=1)).ravel()
    deg[deg == 0] = 1.0
    return sparse.diags(1.0 / deg).astype(np.float32) @ A


def propagate(W: sparse.csr_matrix, y0: np.ndarray, clamp_rows: np.ndarray, clamp_vals: np.ndarray,
              iterations: int, y_init: np.ndarray | None = None) -> np.ndarray:
    """Algorithm 3: ``Y ← W·Y`` then reset clamped rows, ``iterations`` times."""
    y = (y0 if y_init is None else y_init).astype(np.float32, copy=True)
    y[clamp_rows] = clamp_vals
    for _ in range(iterations):
        y = W @ y
        y[clamp_rows] = clamp_vals
    return y


class GBLE(ActiveMethod, CandidateSource):
    """Graph-Based Label Expansion; also the ``gble`` candidate source on a fixed pool (:mod:`synapse_stream.sources.gble`)."""

    name = "gble"

    def __init__(self, k: int = 10, k0: int = 100, iterations: int = 20, k_max: int | None = None, **kw) -> None:
        super().__init__(**kw)
        if k < 1 or k0 < 1 or iterations < 1:
            raise ConfigError("GBLE needs k >= 1, k0 >= 1 and iterations >= 1")
        self.k = int(k)
        self.k0 = int(k0)
        self.iterations = int(iterations)
        self.k_max = int(k_max) if k_max else 10 * self.k0
        self._W = None
        self._y = None

    def params(self) -> dict:
        return {"k": self.k, "K0": self.k0}

    def _prepare(self, state: LoopState) -> None:
        V = np.vstack([state.X, state.S])
        self._W = row_normalise(knn_graph(V, self.k))
        self._y = None

    def scores(self, state: LoopState) -> np.ndarray:
        """Propagate the current labels (positives and negatives clamped, seeds 1); the pool's scores."""
        n, m = state.n, len(state.S)
        known = np.flatnonzero(state.labels >= 0)
        clamp_rows = np.concatenate([known, np.arange(n, n + m)])
        clamp_vals = np.concatenate([state.labels[known].astype(np.float32), np.ones(m, np.float32)])
        y0 = np.zeros(n + m, dtype=np.float32)
        self._y = propagate(self._W, y0, clamp_rows, clamp_vals, self.iterations, self._y)
        return self._y[:n]

    def _select(self, state: LoopState):
        y = self.scores(state)
        K = dynamic_k(self.k0, state.last_precision(), self.k_max)
        return top_rows(y, np.flatnonzero(state.unlabelled_mask()), K)

    def propose(self, state: LoopState, k: int):
        """As a candidate source: one propagation of the shared labels, the ``k`` best unlabelled posts."""
        return top_rows(self.scores(state), np.flatnonzero(state.unlabelled_mask()), k)

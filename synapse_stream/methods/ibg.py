"""Iterative Bipartite Graph (IBG), the paper's Algorithm 2.

Each round: the bipartite graph between the known positives ``V_P`` (synthetic seeds plus every
post confirmed so far) and the still-unlabelled posts ``V_U`` gets an edge where cos > τ; each
positive keeps only its ``d_max`` most similar neighbours; every ``V_U`` node left with an edge is
queried; confirmed positives join ``V_P``; the queried posts leave ``V_U``. Note that *every*
positive re-expands each round (line 5 of the algorithm), so run to convergence IBG labels the
closure: every post reachable from a seed through a chain of positives with cos > τ. ``d_max``
sets how fast it gets there, ``T`` (``max_rounds``) where it stops.

Within a round the batch is queried best-first (by its strongest kept edge in G_B), which only
orders the curve; the set is exactly Algorithm 2's.

Complexity per round: time O(|V_P| · |V_U| · d) (exact, chunked matrix products) plus
O(|V_P| · |V_U|) for the τ test (the top-d_max is taken among the columns above τ only); memory
O(chunk · |V_U|) for the similarity block plus O(n) for the scores. Over T rounds multiply by T.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import ConfigError
from ..sources.base import CandidateSource
from ..tau import AutoTau, best_similarity
from .base import ActiveMethod, LoopState


def bipartite_batch(P: np.ndarray, XU: np.ndarray, tau: float, d_max: int, chunk: int = 256):
    """For positives ``P`` and unlabelled ``XU``: (columns of XU with an edge, their best similarity).

    An edge needs cos > τ, and each positive keeps its ``d_max`` most similar columns.

    Only the similarities above τ can make an edge, so each positive's top ``d_max`` is chosen among
    those (usually a handful) rather than by a partition of its whole row: the same edges as a top
    ``d_max`` of the whole row followed by the τ test (a tie at the ``d_max``-th value is resolved
    by partitioning the whole row, exactly as that would), at a fraction of the cost and memory when
    the pool is large (``tests/core/test_rounds.py`` compares both).
    """
    best = np.full(len(XU), -np.inf, dtype=np.float32)
    if len(XU) == 0 or len(P) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    k = min(d_max, len(XU))
    for start in range(0, len(P), chunk):
        sims = P[start:start + chunk] @ XU.T
        r, c = np.nonzero(sims > tau)        # row-major: the entries of one positive are contiguous
        if not len(r):
            continue
        vals = sims[r, c]
        counts = np.bincount(r, minlength=len(sims))
        ends = np.cumsum(counts)
        keep = np.ones(len(r), dtype=bool)
        tied_cols, tied_vals = [], []
        for i in np.flatnonzero(counts > k):     # more than k columns above τ: keep the k most similar
            lo, hi = ends[i] - counts[i], ends[i]
            v = vals[lo:hi]
            part = np.argpartition(-v, k)
            keep[lo:hi] = False
            if v[part[:k]].min() > v[part[k:]].max():
                keep[lo + part[:k]] = True
            else:     # a tie at the k-th value: the whole row's partition decides which tied column stays
                idx = np.argpartition(-sims[i], k - 1)[:k]
                ok = sims[i, idx] > tau
                tied_cols.append(idx[ok])
                tied_vals.append(sims[i, idx[ok]])
        c, vals = c[keep], vals[keep]
        if tied_cols:
            c, vals = np.concatenate([c, *tied_cols]), np.concatenate([vals, *tied_vals])
        np.maximum.at(best, c, vals)
    cols = np.flatnonzero(np.isfinite(best))
    return cols, best[cols]


class IBG(ActiveMethod, CandidateSource):
    """Iterative Bipartite Graph; also the ``ibg`` candidate source (:mod:`synapse_stream.sources.ibg`).

    Parameters: ``tau`` (edge threshold on cosine; ``None`` or ``"auto"``: chosen from the data and adapted
    from the verdicts by :class:`~synapse_stream.tau.AutoTau`), ``d_max`` (neighbours kept per positive),
    ``max_rounds`` (T; None = until no new candidates or the budget is spent).

    With an automatic τ, ``tau`` is the value in use (None before the first round), ``auto`` the chooser.
    """

    name = "ibg"

    def __init__(self, tau: float | str | None = 0.6, d_max: int = 10, **kw) -> None:
        super().__init__(**kw)
        if d_max < 1:
            raise ConfigError(f"d_max must be >= 1, got {d_max}")
        self.d_max = int(d_max)
        self.auto: AutoTau | None = None
        if tau is None or tau == "auto":
            self.auto = AutoTau(self.d_max)
            self._tau: float | None = None
        else:
            if isinstance(tau, str) or not -1 <= tau < 1:
                raise ConfigError(f"tau must be in [-1, 1) or 'auto', got {tau!r}")
            self._tau = float(tau)

    @property
    def tau(self) -> float | None:
        return self.auto.tau if self.auto is not None else self._tau

    def params(self) -> dict:
        p = {"tau": "auto" if self.auto is not None else self._tau, "dmax": self.d_max}
        if self.max_rounds is not None:
            p["T"] = self.max_rounds
        return p

    def run_info(self) -> dict:
        return {"auto_tau": self.auto.summary()} if self.auto is not None else {}

    def _prepare(self, state: LoopState) -> None:
        if self.auto is not None:
            self.auto = AutoTau(self.d_max)

    def _current_tau(self, state: LoopState) -> float:
        """The τ of this round; automatic: (re)started from the seeds and posts while no verdict was booked
        (live, the window changes between rounds)."""
        if self.auto is None:
            assert self._tau is not None
            return self._tau
        if self.auto.tau is None or self.auto.observed == 0:
            self.auto.start(state.S if len(state.S) else state.X[state.positive_rows()], state.X)
        assert self.auto.tau is not None
        return self.auto.tau

    def _select(self, state: LoopState):
        U = np.flatnonzero(state.unlabelled_mask())
        P = np.vstack([state.S, state.X[state.positive_rows()]])
        if len(P) == 0 or len(U) == 0:
            return []
        tau = self._current_tau(state)
        while True:
            cols, best = bipartite_batch(P, state.X[U], tau, self.d_max)
            if len(cols) or self.auto is None or not self.auto.exhausted():
                break
            tau = self.auto.tau      # the closure at τ is labelled: one band lower
        order = np.lexsort((U[cols], -best))
        return [(int(U[cols[i]]), float(best[i])) for i in order]

    def learn(self, state: LoopState, rows, labels) -> None:
        """Automatic τ: book each verdict by its best cosine to the positives other than the verdict rows."""
        if self.auto is None or self.auto.tau is None or not len(rows):
            return
        rows = np.asarray(rows, np.int64)
        pos = np.setdiff1d(state.positive_rows(), rows)
        P = np.vstack([state.S, state.X[pos]])
        self.auto.observe(best_similarity(P, state.X[rows]), labels)

    def _observe(self, state: LoopState, rows: list[int], labels: list[int]) -> None:
        self.learn(state, rows, labels)

    def propose(self, state: LoopState, k: int):
        """As a candidate source: the ``k`` best of the round's Algorithm-2 batch (by strongest kept edge).

        V_P is the seeds plus every positive in the shared state, whoever found it. Same cost as a round.
        """
        return list(self._select(state))[:max(0, k)]

"""One base class for every candidate-selection method: the paper's Algorithm 1.

::

    while budget left:
        batch = self._select(state)        # the hook: which posts to query next, best first
        labels = oracle.label(batch)
        state.record(batch, labels)

Variants differ only in ``_select`` (and an optional ``_prepare`` run once before the loop), as
scikit-learn's ``semi_supervised`` estimators differ by their kernel. The loop owns the budget
(``max_query_ratio`` of the pool, ``max_rounds``), the oracle calls and the bookkeeping, so every
method is measured the same way.
"""
from __future__ import annotations

import abc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..embedders.base import l2_normalise
from ..exceptions import ConfigError
from ..oracles import Oracle

UNLABELLED = -1


@dataclass
class LoopState:
    """What a method may look at: vectors, the seeds, and the labels obtained so far."""

    X: np.ndarray                  # [n, d] unit vectors of the pool
    S: np.ndarray                  # [m, d] unit vectors of the synthetic positive seeds
    ids: list[str]
    labels: np.ndarray             # [n] int8: -1 unlabelled, else 0/1
    order: list[int] = field(default_factory=list)   # rows in the order they were queried
    rounds: list[dict] = field(default_factory=list)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    sources: list[str] = field(default_factory=list)  # which candidate source proposed each row of ``order``
                                                      # (filled only by methods that combine sources)
    pending: np.ndarray | None = None   # [n] bool: sent to the oracle, verdict not in yet (live rounds only):
                                        # not labelled (no training, no clamping) but never proposed again

    @property
    def n(self) -> int:
        return len(self.X)

    def row_of(self, built: dict[str, int] | None = None) -> dict[str, int]:
        """Post id -> row, built once per state (a live round's sources share it: O(n) once, not per source);
        ``built``: that map, already made by the caller, kept as the state's.

        >>> s = LoopState(X=np.zeros((2, 1)), S=np.zeros((0, 1)), ids=["a", "b"], labels=np.full(2, -1))
        >>> s.row_of()["b"], s.row_of() is s.row_of()
        (1, True)
        """
        key = (id(self.ids), len(self.ids))
        cached = self.__dict__.get("_row_of")
        if built is not None or cached is None or cached[0] != key:
            made = built if built is not None else {p: i for i, p in enumerate(self.ids)}
            cached = self.__dict__["_row_of"] = (key, made)
        return cached[1]

    def unlabelled_mask(self) -> np.ndarray:
        """Rows a method may propose: no verdict and not waiting for one."""
        mask = self.labels == UNLABELLED
        return mask if self.pending is None else mask & ~self.pending

    def positive_rows(self) -> np.ndarray:
        return np.flatnonzero(self.labels == 1)

    def last_precision(self, default: float = 1.0) -> float:
        """Precision of the previous round's batch (``p_prev`` of K = K0 / p_prev)."""
        if not self.rounds:
            return default
        r = self.rounds[-1]
        return r["positives"] / r["queried"] if r["queried"] else default


@dataclass
class RunResult:
    method: str
    params: dict
    order: list[int]               # pool rows in query order
    labels: list[int]              # the oracle's answers, same order
    rounds: list[dict]
    seconds: float
    sources: list[str] | None = None  # per queried row, the source that proposed it (the policy only)

    def cumulative_positives(self) -> np.ndarray:
        return np.cumsum(np.asarray(self.labels, dtype=np.int64))


def new_state(X: np.ndarray, S: np.ndarray, ids: Sequence[str], *, seed: int = 0) -> LoopState:
    """A fresh loop state: unit vectors, nothing labelled."""
    return LoopState(X=l2_normalise(X), S=l2_normalise(S) if len(S) else np.zeros((0, X.shape[1]), np.float32),
                     ids=list(ids), labels=np.full(len(X), UNLABELLED, dtype=np.int8),
                     rng=np.random.default_rng(seed))


def dynamic_k(k0: int, p_prev: float, k_max: int) -> int:
    """K = K0 / p_prev, at least K0, at most ``k_max`` (a round with no positive would ask for ∞)."""
    if p_prev <= 0:
        return k_max
    # p_prev is positives / queried, so K0 / p_prev is often an integer that floats overshoot by an ulp
    # (6 / (6 / 47) = 47.00000000000001): drop that before rounding up.
    return int(min(k_max, max(k0, math.ceil(k0 / p_prev - 1e-9))))


class ActiveMethod(abc.ABC):
    """Base of IBG, GBLE and the baselines. Subclasses implement ``_select``.

    ``max_query_ratio``: stop once this fraction of the pool has been queried (the last batch is
    cut to fit, best-scored posts first). ``max_rounds``: at most this many rounds (None: until the
    method has nothing more to propose or the budget is spent).
    """

    name = "method"

    def __init__(self, *, max_query_ratio: float = 0.2, max_rounds: int | None = None, seed: int = 0) -> None:
        if not 0 < max_query_ratio <= 1:
            raise ConfigError(f"max_query_ratio must be in (0, 1], got {max_query_ratio}")
        self.max_query_ratio = max_query_ratio
        self.max_rounds = max_rounds
        self.seed = seed

    # -- naming ---------------------------------------------------------------
    def params(self) -> dict:
        """The parameters that define the variant (used in its name)."""
        return {}

    def run_info(self) -> dict:
        """What a run found out about itself (e.g. an automatic τ): added to the run's params, not its name."""
        return {}

    def label(self) -> str:
        p = self.params()
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in p.items())
        return f"{self.name}[{inner}]" if inner else self.name

    # -- hooks ----------------------------------------------------------------
    def _prepare(self, state: LoopState) -> None:
        """Run once before the first round (build graphs, fit models...)."""

    @abc.abstractmethod
    def _select(self, state: LoopState) -> Sequence[tuple[int, float]]:
        """Return the next batch as ``(row, score)`` pairs, best first; empty to stop."""

    def _observe(self, state: LoopState, rows: list[int], labels: list[int]) -> None:
        """Called after each batch has been labelled (and recorded in ``state``)."""

    def prepare(self, state: LoopState) -> None:
        """Public alias of ``_prepare``: a method that is also a
        :class:`~synapse_stream.sources.base.CandidateSource` is prepared by the policy through it."""
        self._prepare(state)

    # -- the loop -------------------------------------------------------------
    def run(self, X: np.ndarray, S: np.ndarray, ids: Sequence[str], oracle: Oracle, *, progress=None) -> RunResult:
        t0 = time.perf_counter()
        state = new_state(X, S, ids, seed=self.seed)
        budget = int(math.floor(self.max_query_ratio * state.n))
        self._prepare(state)
        out_labels: list[int] = []
        while len(state.order) < budget:
            if self.max_rounds is not None and len(state.rounds) >= self.max_rounds:
                break
            batch = [(int(r), float(s)) for r, s in self._select(state)]
            seen = set()
            batch = [(r, s) for r, s in batch if state.labels[r] == UNLABELLED and not (r in seen or seen.add(r))]
            if not batch:
                break
            batch = batch[: budget - len(state.order)]
            rows = [r for r, _ in batch]
            ys = oracle.label([state.ids[r] for r in rows])
            state.labels[rows] = ys
            state.order.extend(rows)
            out_labels.extend(ys)
            state.rounds.append({"round": len(state.rounds) + 1, "queried": len(rows), "positives": int(sum(ys)),
                                 "total_queried": len(state.order)})
            self._observe(state, rows, ys)
            if progress is not None:
                progress(state)
        return RunResult(self.label(), {**self.params(), **self.run_info()}, list(state.order), out_labels, state.rounds,
                         time.perf_counter() - t0, list(state.sources) if state.sources else None)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def top_rows(scores: np.ndarray, candidates: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best-scored rows among ``candidates`` (a row index array), best first, ties by row."""
    if k <= 0 or len(candidates) == 0:
        return []
    sc = scores[candidates]
    k = min(k, len(candidates))
    part = np.argpartition(-sc, k - 1)[:k]
    # stable order: score desc, then row asc
    part = part[np.lexsort((candidates[part], -sc[part]))]
    return [(int(candidates[i]), float(sc[i])) for i in part]

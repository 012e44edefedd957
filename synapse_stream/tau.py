"""IBG's similarity threshold τ chosen from the data, then adapted online from the verdicts.

The right τ depends on the embedding model (MiniLM's cosines are not Gecko's), on the seeds (LLM-written
seeds sit further from real posts than real seeds do) and on the stream, so no user can know it in
advance. :class:`AutoTau` chooses it from what a worker sees without labels, then moves it from what
the verdicts say.

**Start (no label).** Algorithm 2 keeps, for each positive, the ``d_max`` most similar unlabelled posts
with cos > τ. For one seed, τ above its ``d_max``-th nearest post's similarity means τ binds (the seed
makes fewer than ``d_max`` edges), below it only ``d_max`` binds. The start is the value at which the
*median* seed is exactly at that knee: the median, over the seeds, of each seed's similarity to its
``d_max``-th nearest post. Half the seeds then make their full ``d_max`` edges and half make fewer (the
seeds far from every post, e.g. off-topic or too synthetic, make none rather than ``d_max`` poor ones).
It is clamped to ``[floor, 0.95]``, where ``floor`` is the similarity at which the seeds would connect
half the posts (below it an edge says nothing about the class).

**Online (verdicts).** Every verdict, whoever proposed the post, is booked in a *similarity band* (width
``step``) by its best cosine to the positives known when it was booked (seeds and confirmed posts). Let
``core`` be the precision of the verdicts at or above τ. After each batch of verdicts:

* **lower** τ by one band when the band just below τ has at least ``min_band`` verdicts and a precision
  of at least ``ratio · core`` (the edges just below τ are nearly as good as the ones above it), or when
  IBG has nothing left to propose at τ (:meth:`exhausted`: its closure at τ is labelled);
* **raise** τ by one band when the band just above τ has at least ``min_band`` verdicts and a precision
  below ``ratio / 2 · core`` (hysteresis: raising needs a clearly poorer band), so a start that was too
  low stops flooding the oracle with weak edges;

never below ``floor``, never above 0.95. The precisions are posterior means under a ``Beta(1, 1)``-
strength prior at the core precision, so a band with few verdicts does not move τ on its own.

An explicit τ always wins: :class:`AutoTau` is used only when a detector's (or ``eval``'s) τ is ``auto``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = 32
>>> centre = rng.normal(size=d); centre /= np.linalg.norm(centre)
>>> def unit(a): return a / np.linalg.norm(a, axis=1, keepdims=True)
>>> seeds = unit(centre + 0.35 * rng.normal(size=(20, d)) / np.sqrt(d))
>>> posts = unit(np.vstack([centre + 0.5 * rng.normal(size=(50, d)) / np.sqrt(d),   # the rare class
...                         rng.normal(size=(2000, d))]))                          # the rest
>>> auto = AutoTau(d_max=5)
>>> t0 = auto.start(seeds, posts)
>>> sims = seeds @ posts.T
>>> bool(np.isclose(np.median(np.sort(sims, 1)[:, -5]), t0))   # the median seed's 5th-neighbour similarity
True
>>> bool(sims[:, 50:].max() < t0 < sims[:, :50].max())    # above every background post, inside the class
True
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .exceptions import ConfigError

TAU_MAX = 0.95


def knee_similarity(S: np.ndarray, X: np.ndarray, d_max: int, chunk: int = 256) -> np.ndarray:
    """Each seed's similarity to its ``d_max``-th most similar row of ``X`` (unit vectors): float32 [len(S)].

    Time O(|S| · |X| · d), memory O(chunk · |X|).
    """
    if len(S) == 0 or len(X) == 0:
        return np.zeros(0, np.float32)
    k = min(int(d_max), len(X))
    out = np.empty(len(S), np.float32)
    for start in range(0, len(S), chunk):
        sims = S[start:start + chunk] @ X.T
        out[start:start + chunk] = np.partition(sims, len(X) - k, axis=1)[:, len(X) - k]
    return out


def best_similarity(P: np.ndarray, X: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each row of ``X``'s best cosine to a row of ``P`` (-1 when ``P`` is empty): float32 [len(X)]."""
    best = np.full(len(X), -1.0, np.float32)
    if len(P) == 0 or len(X) == 0:
        return best
    for start in range(0, len(X), chunk):
        best[start:start + chunk] = (X[start:start + chunk] @ P.T).max(axis=1)
    return best


def connected_floor(S: np.ndarray, X: np.ndarray, share: float = 0.5, sample: int = 4096,
                    seed: int = 0) -> float:
    """The similarity at which the seeds connect ``share`` of the posts (their best-seed cosine's quantile).

    On more than ``sample`` posts a fixed random sample is used (the quantile of a sample)."""
    if len(S) == 0 or len(X) == 0:
        return -1.0
    if len(X) > sample:
        X = X[np.random.default_rng(seed).choice(len(X), sample, replace=False)]
    return float(np.quantile(best_similarity(S, X), 1.0 - share))


class AutoTau:
    """τ for one IBG source: a label-free start (:meth:`start`), then moved by the verdicts (:meth:`observe`).

    ``step``: band width and the size of one move; ``ratio``: how good a band must be, relative to the
    precision at or above τ, to lower τ into it (half as good by default; raising needs ``ratio / 2``);
    ``min_band``: verdicts a band needs before it can move τ.
    """

    def __init__(self, d_max: int = 10, *, step: float = 0.025, ratio: float = 0.5, min_band: int = 8,
                 floor_share: float = 0.5) -> None:
        if d_max < 1:
            raise ConfigError(f"d_max must be >= 1, got {d_max}")
        if not 0 < step < 0.5:
            raise ConfigError(f"auto-tau step must be in (0, 0.5), got {step}")
        if not 0 < ratio <= 1:
            raise ConfigError(f"auto-tau ratio must be in (0, 1], got {ratio}")
        self.d_max = int(d_max)
        self.step = float(step)
        self.ratio = float(ratio)
        self.min_band = int(min_band)
        self.floor_share = float(floor_share)
        self.tau: float | None = None
        self.start_tau: float | None = None
        self.floor = -1.0
        self._sims: list[float] = []      # every booked verdict: best cosine to the positives then
        self._labels: list[int] = []
        self.moves: list[tuple[str, float]] = []   # (why, new tau), in order

    # -- the label-free start ---------------------------------------------------------
    def start(self, S: np.ndarray, X: np.ndarray) -> float:
        """Choose τ from the seeds ``S`` and the posts ``X`` (unit vectors); also sets the floor."""
        if len(S) == 0 or len(X) == 0:
            raise ConfigError("automatic tau needs seeds and posts")
        knee = knee_similarity(S, X, self.d_max)
        self.floor = connected_floor(S, X, self.floor_share)
        t = float(np.median(knee))
        self.tau = self.start_tau = float(min(TAU_MAX, max(self.floor, t)))
        self.moves = [("start", self.tau)]
        return self.tau

    @property
    def observed(self) -> int:
        return len(self._sims)

    # -- online --------------------------------------------------------------------------
    def observe(self, sims: Sequence[float], labels: Sequence[int]) -> float:
        """Book verdicts (each post's best cosine to the known positives, its label); move τ at most one band."""
        if self.tau is None:
            raise ConfigError("AutoTau.observe before start")
        self._sims.extend(float(s) for s in sims)
        self._labels.extend(int(y) for y in labels)
        s = np.asarray(self._sims)
        y = np.asarray(self._labels)
        t, w = self.tau, self.step
        core_mask = s >= t
        if not core_mask.any():
            return self.tau
        core = float(y[core_mask].mean())

        def band(lo: float, hi: float) -> tuple[float, int]:
            m = (s >= lo) & (s < hi)
            n = int(m.sum())
            return (float(y[m].sum()) + 2.0 * core) / (n + 2.0), n    # posterior mean, prior at the core

        below, n_below = band(t - w, t)
        at, n_at = band(t, t + w)
        if n_below >= self.min_band and below >= self.ratio * core:
            self._move(-w, "band below as precise")
        elif n_at >= self.min_band and n_at < int(core_mask.sum()) and at < self.ratio / 2 * core:
            self._move(+w, "band above too poor")
        return self.tau

    def exhausted(self) -> bool:
        """IBG has nothing to propose at τ: lower it one band (False when already at the floor)."""
        return self._move(-self.step, "exhausted")

    def _move(self, delta: float, why: str) -> bool:
        assert self.tau is not None
        new = min(TAU_MAX, self.tau + delta)
        if delta < 0:
            if self.tau <= self.floor + 1e-9:
                return False
            new = max(self.floor, new)
        if abs(new - self.tau) < 1e-12:
            return False
        self.tau = float(new)
        self.moves.append((why, round(self.tau, 4)))
        return True

    # -- a restart -------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """What :meth:`load_state` needs to go on where this one is (arrays only: a checkpoint holds no pickle)."""
        nan = float("nan")
        return {"tau": np.float64(nan if self.tau is None else self.tau),
                "start": np.float64(nan if self.start_tau is None else self.start_tau),
                "floor": np.float64(self.floor), "sims": np.asarray(self._sims, np.float64),
                "labels": np.asarray(self._labels, np.int8),
                "moves_why": np.asarray([w for w, _ in self.moves], dtype=str),
                "moves_tau": np.asarray([t for _, t in self.moves], np.float64)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the state :meth:`state` gave (a checkpoint's; raises ``KeyError``/``ValueError`` if it is not one)."""
        sims, labels = np.asarray(arrays["sims"], np.float64), np.asarray(arrays["labels"], np.int64)
        why, taus = np.asarray(arrays["moves_why"]).tolist(), np.asarray(arrays["moves_tau"], np.float64)
        if sims.ndim != 1 or sims.shape != labels.shape or len(why) != len(taus) or not np.isin(labels, (0, 1)).all():
            raise ValueError("not an AutoTau state")
        tau, start = float(arrays["tau"]), float(arrays["start"])
        self.tau = None if math.isnan(tau) else tau
        self.start_tau = None if math.isnan(start) else start
        self.floor = float(arrays["floor"])
        self._sims, self._labels = sims.tolist(), labels.tolist()
        self.moves = [(str(w), float(t)) for w, t in zip(why, taus.tolist())]

    def summary(self) -> dict:
        """What was chosen and why, for logs, ``metrics.json`` and the console."""
        return {"tau": None if self.tau is None else round(self.tau, 4),
                "start": None if self.start_tau is None else round(self.start_tau, 4),
                "floor": round(self.floor, 4), "verdicts": self.observed, "moves": len(self.moves) - 1}

"""Positive seeds and how to choose them.

A :class:`Seed` is a known positive with an origin: ``synthetic`` (written by an LLM), ``confirmed``
(a real post the oracle labelled positive) or ``manual`` (added by a person). A :class:`SeedSet`
keeps their unit vectors in one growing matrix, so comparing a post with every seed is one
matrix-vector product.

Seed selection from a larger synthetic pool:

* :func:`acs_select`: Adaptive Coverage Sampling (Tavakkol et al., arXiv 2504.14508). Build the
  similarity graph ``G_δ`` (edge where cos ≥ δ) over the pool, pick k points by greedy maximum
  coverage of closed neighbourhoods, and binary-search δ for the largest threshold at which the k
  picks still cover a fraction ``c`` of the pool. Large δ means small neighbourhoods, so the picks
  must spread out: the result is diverse *and* representative.
* :func:`random_select`: k picks uniformly at random (the paper's other arm).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> centres = rng.normal(size=(4, 16))
>>> X = np.vstack([c + 0.05 * rng.normal(size=(25, 16)) for c in centres])   # 4 tight clusters
>>> res = acs_select(X, k=4, coverage=0.9)
>>> sorted({i // 25 for i in res.indices})   # one pick in each cluster
[0, 1, 2, 3]
>>> res.coverage >= 0.9
True
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy import sparse

from .embedders.base import l2_normalise
from .exceptions import ConfigError


class SeedOrigin(str, enum.Enum):
    SYNTHETIC = "synthetic"
    CONFIRMED = "confirmed"
    MANUAL = "manual"


@dataclass(frozen=True)
class Seed:
    id: str
    text: str = ""
    origin: SeedOrigin = SeedOrigin.SYNTHETIC


@dataclass
class SeedSet:
    """Seeds with their vectors in one contiguous matrix (amortised O(1) append)."""

    dim: int
    seeds: list[Seed] = field(default_factory=list)
    _mat: np.ndarray | None = None
    _pos: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seeds)

    def __contains__(self, seed_id: object) -> bool:
        return seed_id in self._pos

    @property
    def matrix(self) -> np.ndarray:
        """The ``[len(self), dim]`` unit vectors, a view (do not keep it across ``add``)."""
        if self._mat is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._mat[: len(self.seeds)]

    def add(self, seed: Seed, vector: np.ndarray) -> bool:
        """Add a seed; returns False (and changes nothing) if its id is already present."""
        if seed.id in self._pos:
            return False
        v = l2_normalise(vector)[0]
        if v.shape[0] != self.dim:
            raise ConfigError(f"seed vector has dimension {v.shape[0]}, expected {self.dim}")
        n = len(self.seeds)
        if self._mat is None or n == len(self._mat):
            grown = np.zeros((max(16, 2 * n), self.dim), dtype=np.float32)
            if self._mat is not None:
                grown[:n] = self._mat[:n]
            self._mat = grown
        self._mat[n] = v
        self._pos[seed.id] = n
        self.seeds.append(seed)
        return True

    def position(self, seed_id: str) -> int:
        return self._pos[seed_id]

    def vector(self, seed_id: str) -> np.ndarray:
        return self.matrix[self._pos[seed_id]]

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in SeedOrigin}
        for s in self.seeds:
            out[s.origin.value] += 1
        return out


# ---------------------------------------------------------------------- selection
@dataclass(frozen=True)
class ACSResult:
    indices: list[int]     # picks, in greedy order
    threshold: float       # the similarity threshold δ found by the binary search
    coverage: float        # fraction of the pool covered by the picks' closed neighbourhoods


def random_select(n: int, k: int, *, seed: int = 0) -> list[int]:
    if k > n:
        raise ConfigError(f"cannot pick {k} seeds from a pool of {n}")
    return sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())


def _greedy_cover(adj, k: int) -> tuple[list[int], int]:
    """Greedy max coverage: k rows of the 0/1 matrix ``adj`` whose union of columns is largest."""
    n = adj.shape[0]
    uncovered = np.ones(n, dtype=np.float32)
    picks: list[int] = []
    chosen = np.zeros(n, dtype=bool)
    for _ in range(k):
        gains = np.asarray(adj @ uncovered).ravel()
        gains[chosen] = -1
        j = int(np.argmax(gains))
        picks.append(j)
        chosen[j] = True
        row = adj[j]
        cols = row.indices if sparse.issparse(row) else np.flatnonzero(row)
        uncovered[cols] = 0.0
    return picks, int(n - uncovered.sum())


def acs_select(
    vectors: np.ndarray,
    k: int,
    *,
    coverage: float = 0.5,
    iterations: int = 25,
    dense_limit: int = 6000,
    neighbours: int = 256,
) -> ACSResult:
    """Adaptive Coverage Sampling: k diverse picks that cover a fraction ``coverage`` of the pool.

    Time: O(n² d) for the similarities, then per binary-search step O(k · nnz) for the greedy
    (``nnz`` = edges of G_δ), ``iterations`` steps. Memory: O(n²) while ``n ≤ dense_limit``;
    above it only each point's top ``neighbours`` similarities are kept (O(n · neighbours)),
    which is exact as long as no point has more neighbours than that at the chosen δ.
    """
    X = l2_normalise(vectors)
    n = len(X)
    if not 0 < k <= n:
        raise ConfigError(f"ACS needs 0 < k <= pool size, got k={k}, n={n}")
    if not 0 < coverage <= 1:
        raise ConfigError(f"coverage must be in (0, 1], got {coverage}")
    if n <= dense_limit:
        S = X @ X.T
        np.fill_diagonal(S, 1.0)

        def graph(delta: float):
            return (S >= delta).astype(np.float32)
    else:
        rows, cols, vals = [], [], []
        L = min(neighbours, n)
        for start in range(0, n, 2048):
            block = X[start:start + 2048] @ X.T
            top = np.argpartition(-block, L - 1, axis=1)[:, :L]
            for r in range(len(block)):
                rows.append(np.full(L, start + r))
                cols.append(top[r])
                vals.append(block[r, top[r]])
        rows, cols, vals = (np.concatenate(a) for a in (rows, cols, vals))

        def graph(delta: float):
            keep = (vals >= delta) | (rows == cols)
            m = sparse.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])), shape=(n, n))
            m.data[:] = 1.0
            return m

    target = coverage * n
    lo, hi = -1.0, 1.0          # coverage(lo) is full; coverage rises as δ falls
    best = None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        picks, covered = _greedy_cover(graph(mid), k)
        if covered >= target:
            best = (picks, mid, covered)
            lo = mid
        else:
            hi = mid
    if best is None:  # pragma: no cover - δ = -1 covers everything
        picks, covered = _greedy_cover(graph(-1.0), k)
        best = (picks, -1.0, covered)
    picks, delta, covered = best
    return ACSResult(indices=[int(i) for i in picks], threshold=float(delta), coverage=covered / n)


def seeds_from_texts(texts: Iterable[str], origin: SeedOrigin = SeedOrigin.SYNTHETIC, prefix: str = "seed") -> list[Seed]:
    return [Seed(id=f"{prefix}-{i}", text=t, origin=origin) for i, t in enumerate(texts)]

"""Seed diagnostics: before a detector starts, what the paper's analysis says matters about its seeds.

:func:`diagnose` reports, for seed vectors (and, when given, a sample of the stream's posts):

* **near-duplicates**: seeds at cosine ≥ ``dup_threshold`` to an earlier seed (they add an edge source, not a
  new region), and how many distinct seeds are left;
* **diversity**: the mean pairwise cosine of the distinct seeds and its *effective number* of seeds,
  ``(1 − b) / (mean cos − b)`` clipped to [1, n], ``b`` the mean cosine of two random posts (0 without posts; a
  sentence embedding's cosines are not centred at 0): n seeds all alike count as one, seeds no more alike than
  random posts as n;
* **ACS coverage at τ**: the share of the seeds inside the closed cos ≥ τ neighbourhood of the ACS picks
  (:func:`~synapse_stream.seeds.acs_select`'s greedy cover at δ = τ, k = ``acs_k``): how many regions the set spans;
* with posts: the τ the automatic chooser would start from (:class:`~synapse_stream.tau.AutoTau`, or the given
  one), **how many posts each seed connects** at that τ (cos > τ; the median, the share of seeds connecting
  none) and the share of posts the set connects;

and **warnings** when the set is too narrow (few distinct seeds, an effective number below 5, coverage by one
or two regions) or does not reach the stream (most seeds connect no post at τ).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> c = rng.normal(size=16)
>>> narrow = c + 0.01 * rng.normal(size=(12, 16))            # twelve rewordings of one sentence
>>> rep = diagnose(narrow)
>>> rep.distinct, rep.duplicates
(1, 11)
>>> any("near-duplicates" in w for w in rep.warnings)
True
>>> wide = rng.normal(size=(12, 16))
>>> diagnose(wide).warnings
[]
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .embedders.base import l2_normalise
from .exceptions import ConfigError


@dataclass
class SeedReport:
    seeds: int
    distinct: int                    # after near-duplicates are removed
    duplicates: int
    mean_similarity: float           # mean pairwise cosine of the distinct seeds
    effective_seeds: float           # (1 - b) / (mean cosine - b), clipped to [1, distinct]
    acs_k: int
    acs_coverage: float | None       # share of distinct seeds within τ of the ACS picks (None: no τ)
    tau: float | None = None
    tau_auto: bool = False
    posts: int = 0
    connects_median: float | None = None     # posts a seed connects at τ, median over seeds
    connects_none: float | None = None       # share of seeds that connect no post
    posts_connected: float | None = None     # share of posts within τ of a seed
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable lines (the CLI prints them; the console shows them)."""
        out = [f"{self.seeds} seeds, {self.distinct} distinct ({self.duplicates} near-duplicates removed); "
               f"mean pairwise cosine {self.mean_similarity:.2f}, effective number {self.effective_seeds:.1f}"]
        if self.acs_coverage is not None:
            out.append(f"ACS coverage at τ {self.tau:.3f} with {self.acs_k} picks: {self.acs_coverage:.0%} of the seeds")
        if self.posts:
            out.append(f"τ {self.tau:.3f}{' (automatic)' if self.tau_auto else ''} over {self.posts} posts: a seed "
                       f"connects {self.connects_median:g} posts (median), {self.connects_none:.0%} connect none; "
                       f"the set reaches {self.posts_connected:.1%} of the posts")
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _dedupe(S: np.ndarray, threshold: float) -> np.ndarray:
    keep: list[int] = []
    for i in range(len(S)):
        if not keep or float((S[keep] @ S[i]).max()) < threshold:
            keep.append(i)
    return np.asarray(keep, np.int64)


def diagnose(seed_vectors: np.ndarray, posts: np.ndarray | None = None, *, tau: float | None = None, d_max: int = 10,
             dup_threshold: float = 0.95, acs_k: int | None = None, min_effective: float = 5.0) -> SeedReport:
    """The report for ``seed_vectors`` [m, d] (and a sample of ``posts`` [n, d]); see the module docstring.

    ``tau`` None with posts: the automatic start (:meth:`~synapse_stream.tau.AutoTau.start`). Time O(m² d + m n d).
    """
    S = l2_normalise(np.asarray(seed_vectors, np.float32))
    if len(S) == 0:
        raise ConfigError("no seeds to diagnose")
    keep = _dedupe(S, dup_threshold)
    D = S[keep]
    m = len(D)
    if m > 1:
        G = D @ D.T
        mean = float((G.sum() - np.trace(G)) / (m * (m - 1)))
    else:
        mean = 1.0
    X = None if posts is None or len(posts) == 0 else l2_normalise(np.asarray(posts, np.float32))
    bg = 0.0      # the cosine of two unrelated texts: sentence embeddings are anisotropic (MiniLM: about 0.1-0.2)
    if X is not None and len(X) > 1:
        Z = X[np.random.default_rng(0).choice(len(X), min(len(X), 500), replace=False)]
        G2 = Z @ Z.T
        bg = float(max(0.0, (G2.sum() - np.trace(G2)) / (len(Z) * (len(Z) - 1))))
    eff = float(np.clip((1.0 - bg) / max(mean - bg, 1e-6), 1.0, m))
    warnings: list[str] = []
    if len(keep) < len(S) / 2:
        warnings.append(f"{len(S) - len(keep)} of {len(S)} seeds are near-duplicates (cos >= {dup_threshold}): "
                        "ask for more varied examples")
    if eff < min_effective and m > 1 or m == 1:
        warnings.append(f"the seeds are narrow: effective number {eff:.1f} < {min_effective:g} (mean cosine "
                        f"{mean:.2f}); IBG and the classifier will find only posts like these")
    auto = False
    if tau is None and X is not None:
        from .tau import AutoTau

        tau, auto = AutoTau(d_max).start(S, X), True
    k = int(acs_k) if acs_k else max(1, min(m, 10))
    cov = None
    if tau is not None:
        from .seeds import _greedy_cover

        adj = (D @ D.T >= tau).astype(np.float32)
        np.fill_diagonal(adj, 1.0)
        cov = _greedy_cover(adj, min(k, m))[1] / m
        two = _greedy_cover(adj, 2)[1] / m if m >= 4 else 0.0
        if two >= 0.9:
            warnings.append(f"two seeds' neighbourhoods at τ {tau:.3f} cover {two:.0%} of the set: it spans one or "
                            "two regions only")
    rep = SeedReport(len(S), m, len(S) - m, mean, eff, k, cov, tau, auto, warnings=warnings)
    if X is not None and tau is not None:
        counts = np.zeros(len(S), np.int64)
        reached = np.zeros(len(X), bool)
        for start in range(0, len(S), 256):
            sims = S[start:start + 256] @ X.T > tau
            counts[start:start + 256] = sims.sum(axis=1)
            reached |= sims.any(axis=0)
        rep.posts = len(X)
        rep.connects_median = float(np.median(counts))
        rep.connects_none = float((counts == 0).mean())
        rep.posts_connected = float(reached.mean())
        if rep.connects_none > 0.5:
            warnings.append(f"{rep.connects_none:.0%} of the seeds connect no post at τ {tau:.3f}: they are far "
                            "from this stream (off-topic, or written unlike its posts)")
    return rep

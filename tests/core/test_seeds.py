"""Seeds: the SeedSet container and seed selection (Adaptive Coverage Sampling, random)."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.exceptions import ConfigError
from synapse_stream.seeds import Seed, SeedOrigin, SeedSet, acs_select, random_select


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _sims(X):
    """Cosine similarities of the unit-normalised rows, in float64."""
    U = _unit(X).astype(np.float64)
    return U @ U.T


# The binary search ends on a similarity value of the pool (where coverage changes), computed by the
# library in float32; the independent float64 similarities differ from it by ~1e-7, so thresholds
# returned by the library are read with this tolerance.
EPS = 1e-6


def _coverage(S, picks, delta):
    """Fraction of points in the union of the picks' closed neighbourhoods {j : cos(p, j) >= delta} ∪ {p}."""
    covered = np.zeros(len(S), dtype=bool)
    for p in picks:
        covered |= S[p] >= delta - EPS
        covered[p] = True
    return covered.mean()


def _greedy(S, k, delta):
    """Plain greedy max coverage of closed neighbourhoods, written independently of the library."""
    adj = S >= delta
    np.fill_diagonal(adj, True)
    uncovered = np.ones(len(S), dtype=bool)
    picks = []
    for _ in range(k):
        gains = (adj & uncovered).sum(axis=1)
        gains[picks] = -1
        j = int(np.argmax(gains))
        picks.append(j)
        uncovered &= ~adj[j]
    return picks, 1.0 - uncovered.mean()


# ---------------------------------------------------------------------- SeedSet
def test_seedset_add_grow_and_matrix():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(40, 8)).astype(np.float32)
    ss = SeedSet(8)
    assert len(ss) == 0 and ss.matrix.shape == (0, 8)
    origins = [SeedOrigin.SYNTHETIC, SeedOrigin.CONFIRMED, SeedOrigin.MANUAL]
    for i, v in enumerate(V):
        assert ss.add(Seed(f"s{i}", f"text {i}", origins[i % 3]), v * (i + 1))  # scale must not matter
    assert len(ss) == 40
    assert ss.matrix.shape == (40, 8) and ss.matrix.dtype == np.float32
    np.testing.assert_allclose(ss.matrix, _unit(V), atol=1e-6)  # rows written before growth kept
    assert ss.position("s17") == 17
    np.testing.assert_allclose(ss.vector("s17"), _unit(V[17]), atol=1e-6)
    assert "s3" in ss and "nope" not in ss
    assert ss.counts() == {"synthetic": 14, "confirmed": 13, "manual": 13}


def test_seedset_duplicate_is_ignored():
    ss = SeedSet(3)
    assert ss.add(Seed("a"), np.array([1.0, 0, 0]))
    before = ss.matrix.copy()
    assert not ss.add(Seed("a", origin=SeedOrigin.MANUAL), np.array([0, 1.0, 0]))
    assert len(ss) == 1
    np.testing.assert_array_equal(ss.matrix, before)
    assert ss.counts() == {"synthetic": 1, "confirmed": 0, "manual": 0}


def test_seedset_wrong_dimension():
    ss = SeedSet(3)
    with pytest.raises(ConfigError):
        ss.add(Seed("a"), np.ones(4))
    assert len(ss) == 0 and "a" not in ss


# ---------------------------------------------------------------------- ACS
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k,c", [(1, 0.1), (3, 0.3), (5, 0.5), (8, 0.8), (12, 0.95)])
def test_acs_reaches_target_coverage(make_clusters, seed, k, c):
    rng = np.random.default_rng(seed)
    X, _, _ = make_clusters(rng, 6, [10, 20, 30, 40, 25, 15], 16, 0.5)
    res = acs_select(X, k, coverage=c)
    assert len(res.indices) == k == len(set(res.indices)), "picks must be distinct"
    assert all(0 <= i < len(X) for i in res.indices)
    S = _sims(X)
    achieved = _coverage(S, res.indices, res.threshold)
    assert achieved >= c
    assert res.coverage == pytest.approx(achieved, abs=1.5 / len(X))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k,c", [(2, 0.3), (4, 0.5), (8, 0.8)])
def test_acs_threshold_is_near_the_largest(make_clusters, seed, k, c):
    # Greedy coverage is not monotone in the threshold in general (a larger δ can occasionally let the
    # greedy cover more), so a binary search finds *a* boundary; on moderately tight clusters the
    # curve is monotone near the answer and the boundary found must be the largest one.
    rng = np.random.default_rng(10 + seed)
    X, _, _ = make_clusters(rng, 5, 30, 16, 0.35)
    res = acs_select(X, k, coverage=c)
    S = _sims(X)
    picks, cov = _greedy(S, k, res.threshold - EPS)
    assert cov >= c  # the independent greedy agrees at the returned threshold
    _, cov_up = _greedy(S, k, res.threshold + 0.01)
    assert cov_up < c, "a clearly larger threshold still reaches the target: the search stopped too early"


def test_acs_one_pick_per_well_separated_cluster(make_clusters):
    rng = np.random.default_rng(7)
    n_clusters, per = 6, 25
    X, cluster, _ = make_clusters(rng, n_clusters, per, 32, 0.05)
    res = acs_select(X, n_clusters, coverage=0.9)
    assert sorted(cluster[res.indices].tolist()) == list(range(n_clusters))
    S = _sims(X)
    acs_cov = _coverage(S, res.indices, res.threshold)
    randoms = [_coverage(S, random_select(len(X), n_clusters, seed=s), res.threshold) for s in range(30)]
    assert acs_cov >= max(randoms)
    assert acs_cov > np.mean(randoms)


@pytest.mark.parametrize("seed", [0, 1])
def test_acs_dense_and_sparse_paths_agree(make_clusters, seed):
    rng = np.random.default_rng(20 + seed)
    X, _, _ = make_clusters(rng, 8, 30, 16, 0.3)
    S = _sims(X)
    dense = acs_select(X, 6, coverage=0.7)
    exact_sparse = acs_select(X, 6, coverage=0.7, dense_limit=10, neighbours=len(X))
    assert _coverage(S, dense.indices, dense.threshold) >= 0.7
    assert _coverage(S, exact_sparse.indices, exact_sparse.threshold) >= 0.7
    # with every neighbour kept, the sparse graph is the dense one
    assert exact_sparse.indices == dense.indices
    assert exact_sparse.threshold == pytest.approx(dense.threshold, abs=1e-6)
    # a truncated neighbour list under-counts coverage, so the true coverage is at least the target too
    trunc = acs_select(X, 6, coverage=0.7, dense_limit=10, neighbours=40)
    assert len(set(trunc.indices)) == 6
    assert _coverage(S, trunc.indices, trunc.threshold) >= 0.7


def test_acs_k_equal_n_and_full_coverage():
    X = _unit(np.random.default_rng(3).normal(size=(10, 4)))
    res = acs_select(X, 10, coverage=1.0)
    assert sorted(res.indices) == list(range(10)) and res.coverage == 1.0


@pytest.mark.parametrize("k,c", [(0, 0.5), (-1, 0.5), (11, 0.5), (3, 0.0), (3, -0.2), (3, 1.5)])
def test_acs_invalid_arguments(k, c):
    X = _unit(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(ConfigError):
        acs_select(X, k, coverage=c)


# ---------------------------------------------------------------------- random
def test_random_select():
    a = random_select(1000, 25, seed=3)
    assert len(a) == 25 == len(set(a)) and all(0 <= i < 1000 for i in a)
    assert a == random_select(1000, 25, seed=3)
    assert a != random_select(1000, 25, seed=4)
    assert sorted(random_select(5, 5)) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError):
        random_select(5, 6)

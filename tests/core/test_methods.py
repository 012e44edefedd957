"""Candidate-selection methods: IBG against a naive Algorithm 2, GBLE (Algorithm 3), the baselines."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.sparse import csgraph

from synapse_stream.exceptions import ConfigError
from synapse_stream.methods import (
    GBLE,
    IBG,
    KNNSearch,
    LRBaseline,
    dynamic_k,
    knn_graph,
    propagate,
    random_curve,
)
from synapse_stream.methods.gble import row_normalise
from synapse_stream.oracles import CallbackOracle, ReplayOracle


def reference_ibg(X, S, y, tau, d_max, T):
    """Algorithm 2 of the paper, literally: plain loops over V_P and V_U, one round per iteration.

    Returns the batches B_t as a list of sets of pool rows (the oracle is ``y``).
    """
    vecs = [np.asarray(v, dtype=np.float64) for v in np.vstack([S, X])]   # seeds first, then the pool
    m = len(S)

    def sim(a, b):  # a: a node of V_P (index into vecs: seed i is i, pool row v is m + v); b: a pool row
        return float(np.dot(vecs[a], vecs[m + b]))

    V_P = list(range(m))            # line 1: V_P = D_S
    D_U = list(range(len(X)))
    batches = []
    t = 0
    while T is None or t < T:       # line 2
        t += 1
        V_U = list(D_U)             # line 3
        E_B = set()                 # line 4
        for vi in V_P:              # line 5
            neigh = []
            for vj in V_U:          # line 6
                s = sim(vi, vj)     # line 7
                if s > tau:         # line 8
                    neigh.append((s, vj))   # line 9
            neigh.sort(reverse=True)        # line 12
            for s, vj in neigh[:d_max]:     # line 13
                E_B.add(vj)
        B_t = set(E_B)              # line 15
        if not B_t:                 # nothing left to query: every later round is empty too
            break
        batches.append(B_t)
        V_P += [m + v for v in sorted(B_t) if y[v] == 1]   # line 17
        D_U = [v for v in D_U if v not in B_t]                   # line 19
    return batches


def _run(method, D):
    oracle = ReplayOracle(D.truth)
    res = method.run(D.X, D.S, D.ids, oracle)
    return res, oracle


def _split_rounds(res):
    out, i = [], 0
    for r in res.rounds:
        out.append(set(res.order[i:i + r["queried"]]))
        i += r["queried"]
    assert i == len(res.order)
    return out


# ---------------------------------------------------------------------- IBG
CASES = [(seed, tau, d_max, T) for seed, (tau, d_max, T) in enumerate(
    [(0.5, 3, None), (0.6, 5, None), (0.7, 10, None), (0.4, 2, None), (0.5, 3, 2), (0.6, 1, 4),
     (0.65, 4, 1), (0.45, 6, 3), (0.55, 20, None), (0.3, 3, 5)])]


@pytest.mark.parametrize("seed,tau,d_max,T", CASES)
def test_ibg_matches_naive_algorithm_2(make_detection_data, seed, tau, d_max, T):
    D = make_detection_data(seed, n_seeds=3 + seed % 4)
    res, oracle = _run(IBG(tau=tau, d_max=d_max, max_rounds=T, max_query_ratio=1.0), D)
    want = reference_ibg(D.X, D.S, D.y, tau, d_max, T)
    got = _split_rounds(res)
    assert [len(b) for b in got] == [len(b) for b in want]
    assert got == want
    assert len(want) >= 1
    assert set(res.order) == set().union(*want)
    assert [D.y[r] for r in res.order] == res.labels
    assert oracle.calls == len(res.order)


def test_reference_is_not_trivial(make_detection_data):
    """Guard for the comparison above: on these data d_max binds and IBG needs several rounds."""
    D = make_detection_data(0)
    batches = reference_ibg(D.X, D.S, D.y, 0.5, 3, None)
    assert len(batches) >= 4
    loose = reference_ibg(D.X, D.S, D.y, 0.5, 10_000, None)
    assert len(batches[0]) < len(loose[0])


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.2])
def test_ibg_respects_budget(make_detection_data, ratio):
    D = make_detection_data(3)
    full, _ = _run(IBG(tau=0.5, d_max=3, max_query_ratio=1.0), D)
    cut, oracle = _run(IBG(tau=0.5, d_max=3, max_query_ratio=ratio), D)
    budget = math.floor(ratio * len(D.X))
    assert len(full.order) > budget
    assert len(cut.order) == budget == oracle.calls
    # rounds before the cut are identical; the last batch is cut best first
    assert cut.order == full.order[:budget]


def test_ibg_within_round_order_is_best_first(make_detection_data):
    """A round's batch is queried by its best edge in G_B (highest kept similarity to a positive)."""
    D = make_detection_data(1)
    tau, d_max = 0.5, 4
    res, _ = _run(IBG(tau=tau, d_max=d_max, max_query_ratio=1.0), D)
    P = [np.asarray(v, np.float64) for v in D.S]
    labelled: set[int] = set()
    i = 0
    for r in res.rounds:
        rows = res.order[i:i + r["queried"]]
        U = [v for v in range(len(D.X)) if v not in labelled]
        edge = {}
        for p in P:
            sims = sorted(((float(p @ D.X[v]), v) for v in U), reverse=True)
            for s, v in [t for t in sims if t[0] > tau][:d_max]:
                edge[v] = max(edge.get(v, -2.0), s)
        assert set(rows) == set(edge)
        got = [edge[v] for v in rows]
        assert all(a >= b - 1e-6 for a, b in zip(got, got[1:])), got
        P += [np.asarray(D.X[v], np.float64) for v in rows if D.y[v] == 1]
        labelled |= set(rows)
        i += r["queried"]


def test_ibg_names_and_config():
    assert IBG(tau=0.6, d_max=10).label() == "ibg[tau=0.6,dmax=10]"
    assert IBG(tau=0.55, d_max=3, max_rounds=2).label() == "ibg[tau=0.55,dmax=3,T=2]"
    for bad in [dict(tau=1.0), dict(tau=-1.5), dict(d_max=0), dict(max_query_ratio=0), dict(max_query_ratio=1.5)]:
        with pytest.raises(ConfigError):
            IBG(**bad)


# ---------------------------------------------------------------------- GBLE
def test_dynamic_k():
    assert dynamic_k(10, 1.0, 100) == 10
    assert dynamic_k(10, 0.5, 100) == 20
    assert dynamic_k(10, 0.3, 100) == 34          # ceil(33.3)
    assert dynamic_k(10, 0.05, 100) == 100        # capped
    assert dynamic_k(10, 0.0, 100) == 100         # no positive last round
    assert dynamic_k(7, 7 / 10, 100) == 10        # 7 positives of 10: K = 7 / 0.7 = 10 exactly
    assert dynamic_k(3, 3 / 5, 100) == 5
    # p_prev = positives / queried of the last batch; K = K0 * queried / positives must not gain a
    # spurious +1 from float rounding when it is an integer (e.g. 6 positives of 47: K = 47)
    for k0, q, p in [(7, 10, 7), (3, 5, 3), (10, 30, 10), (6, 70, 42), (9, 100, 9), (100, 300, 7),
                     (6, 47, 6), (7, 55, 7), (6, 376, 48)]:
        assert dynamic_k(k0, p / q, 10 * k0) == min(10 * k0, max(k0, math.ceil(Fraction(k0 * q, p)))), (k0, q, p)


def test_knn_graph_properties(make_clusters):
    X, _, _ = make_clusters(np.random.default_rng(0), 5, 20, 8, 0.4)
    for k in (1, 3, 7):
        A = knn_graph(X, k, chunk=17)  # a chunk that does not divide n
        assert A.shape == (100, 100)
        assert (A != A.T).nnz == 0, "not symmetric"
        assert A.diagonal().sum() == 0, "self loops"
        assert set(np.unique(A.data).tolist()) == {1.0}
        deg = np.asarray((A > 0).sum(axis=1)).ravel()
        assert deg.min() >= k
        sims = X @ X.T
        np.fill_diagonal(sims, -np.inf)
        for i in range(0, 100, 9):
            nearest = np.argsort(-sims[i])[:k]
            assert all(A[i, j] for j in nearest)


def test_propagate_matches_dense_iteration_and_clamps():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = row_normalise(knn_graph(X, 4))
    clamp_rows = np.array([0, 5, 9, 30])
    clamp_vals = np.array([1, 0, 1, 0], np.float32)
    y = propagate(W, np.zeros(40, np.float32), clamp_rows, clamp_vals, iterations=15)
    Wd = W.toarray().astype(np.float64)
    assert np.allclose(Wd.sum(axis=1), 1.0)
    ref = np.zeros(40)
    ref[clamp_rows] = clamp_vals
    for _ in range(15):
        ref = Wd @ ref
        ref[clamp_rows] = clamp_vals
    np.testing.assert_allclose(y, ref, atol=1e-5)
    np.testing.assert_array_equal(y[clamp_rows], clamp_vals)
    assert y.min() >= 0 and y.max() <= 1
    # warm start: continuing from y equals running longer from scratch
    y2 = propagate(W, np.zeros(40, np.float32), clamp_rows, clamp_vals, iterations=5, y_init=y)
    y20 = propagate(W, np.zeros(40, np.float32), clamp_rows, clamp_vals, iterations=20)
    np.testing.assert_allclose(y2, y20, atol=1e-5)


def test_propagate_reaches_the_seed_component_only(make_clusters):
    X, cluster, _ = make_clusters(np.random.default_rng(2), 2, 25, 32, 0.05)
    A = knn_graph(X, 3)
    n_comp, comp = csgraph.connected_components(A, directed=False)
    assert n_comp >= 2 and len(set(comp[cluster == 0]) & set(comp[cluster == 1])) == 0
    seed_row = int(np.flatnonzero(cluster == 0)[0])
    other = int(np.flatnonzero(cluster == 1)[0])
    hops = csgraph.shortest_path(A, unweighted=True, indices=seed_row)
    reach = np.isfinite(hops)
    y = propagate(row_normalise(A), np.zeros(len(X), np.float32), np.array([seed_row, other]),
                  np.array([1.0, 0.0], np.float32), iterations=int(hops[reach].max()) + 1)
    assert np.all(y[reach] > 0)
    assert np.all(y[~reach] == 0)
    assert y[seed_row] == 1.0 and y[other] == 0.0
    assert y.max() <= 1


@pytest.mark.parametrize("seed,k0", [(0, 5), (1, 10), (2, 7)])
def test_gble_batches_follow_k0_over_p_prev(make_detection_data, seed, k0):
    D = make_detection_data(seed)
    ratio = 0.6
    res, _ = _run(GBLE(k=5, k0=k0, iterations=10, max_query_ratio=ratio), D)
    budget = math.floor(ratio * len(D.X))
    k_max = 10 * k0
    done = 0
    assert len(res.rounds) >= 3
    for i, r in enumerate(res.rounds):
        if i == 0:
            K = k0
        else:
            prev = res.rounds[i - 1]
            K = k_max if prev["positives"] == 0 else min(
                k_max, max(k0, math.ceil(Fraction(k0 * prev["queried"], prev["positives"]))))
        assert r["queried"] == min(K, budget - done, len(D.X) - done), (i, res.rounds)
        done += r["queried"]
        assert r["positives"] == sum(D.y[v] for v in res.order[done - r["queried"]:done])
    assert done == len(res.order) <= budget


def test_gble_finds_positives_before_random(make_detection_data):
    D = make_detection_data(4)
    res, _ = _run(GBLE(k=5, k0=10, max_query_ratio=0.2), D)
    prevalence = D.y.mean()
    assert np.mean(res.labels) > 2 * prevalence
    assert GBLE(k=10, k0=100).label() == "gble[k=10,K0=100]"
    for bad in [dict(k=0), dict(k0=0), dict(iterations=0)]:
        with pytest.raises(ConfigError):
            GBLE(**bad)


# ---------------------------------------------------------------------- baselines
def test_knn_queries_in_descending_max_similarity(make_detection_data):
    D = make_detection_data(5)
    res, _ = _run(KNNSearch(k0=7, max_query_ratio=0.5), D)
    score = (D.X.astype(np.float64) @ D.S.astype(np.float64).T).max(axis=1)
    got = score[res.order]
    assert np.all(np.diff(got) <= 1e-6)
    budget = math.floor(0.5 * len(D.X))
    assert len(res.order) == budget
    assert set(res.order) == set(np.argsort(-score)[:budget].tolist())
    assert [r["queried"] for r in res.rounds[:-1]] == [7] * (len(res.rounds) - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lr_bootstrap_queries_random_posts_until_enough_negatives(make_detection_data, seed):
    # positives are half the pool here, so the bootstrap needs a few tries
    D = make_detection_data(seed, n_pos_clusters=4, n_neg_clusters=4, noise=0, n_seeds=6)
    asked = []
    truth = D.truth
    oracle = CallbackOracle(lambda ids: (asked.extend(ids), [truth[i] for i in ids])[1])
    res = LRBaseline(k0=10, max_query_ratio=0.5, seed=seed).run(D.X, D.S, D.ids, oracle)
    m = len(D.S)
    negatives = np.cumsum([1 - y for y in res.labels])
    b = int(np.argmax(negatives >= m)) + 1          # queries until the m-th negative
    assert negatives[b - 1] == m
    assert [r["queried"] for r in res.rounds[:b]] == [1] * b
    assert res.rounds[b]["queried"] == 10             # the first model round: p_prev = 1
    p_prev = res.rounds[b]["positives"] / 10
    assert res.rounds[b + 1]["queried"] == dynamic_k(10, p_prev, 100)
    # all queries count, bootstrap included
    assert oracle.calls == len(asked) == len(res.order) == len(set(res.order))
    assert asked == [D.ids[r] for r in res.order]


def test_lr_bootstrap_is_random(make_detection_data):
    D = make_detection_data(0, n_pos_clusters=4, n_neg_clusters=4, noise=0)
    firsts = {LRBaseline(k0=10, max_query_ratio=0.1, seed=s).run(D.X, D.S, D.ids, ReplayOracle(D.truth)).order[0]
              for s in range(8)}
    assert len(firsts) >= 4
    assert LRBaseline(k0=5, budget=50).label() == "lr[K0=5,B=50]"
    assert LRBaseline().label() == "lr[K0=100,B=full]"
    with pytest.raises(ConfigError):
        LRBaseline(budget=0)


def test_random_curve_is_analytic():
    curve = random_curve(1000, 50, 0.2, points=10)
    assert len(curve) == 10
    for i, (q, r, p) in enumerate(curve, 1):
        assert q == pytest.approx(0.02 * i)
        assert r == pytest.approx(q)
        assert p == pytest.approx(0.05)


@pytest.mark.parametrize("make_method", [
    lambda: IBG(tau=0.3, d_max=5, max_query_ratio=1.0),
    lambda: GBLE(k=4, k0=15, max_query_ratio=1.0),
    lambda: KNNSearch(k0=20, max_query_ratio=1.0),
    lambda: LRBaseline(k0=20, max_query_ratio=1.0, seed=3),
    lambda: LRBaseline(k0=20, budget=30, max_query_ratio=1.0, seed=3),
], ids=["ibg", "gble", "knn", "lr", "lr-budget"])
def test_no_method_queries_a_post_twice(make_detection_data, make_method):
    D = make_detection_data(6)
    res, oracle = _run(make_method(), D)
    assert len(res.order) == len(set(res.order)) == oracle.calls
    assert res.labels == [int(D.y[r]) for r in res.order]
    assert sum(r["queried"] for r in res.rounds) == len(res.order)
    assert res.rounds[-1]["total_queried"] == len(res.order)
    assert res.cumulative_positives()[-1] == sum(res.labels)

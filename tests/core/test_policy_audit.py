"""Audit-based recall estimation, the model-guided source and the candidate policy."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from synapse_stream.audit import (
    AuditSampler,
    RecallEstimator,
    naive_recall_interval,
    proportion_interval,
    stratified_recall,
)
from synapse_stream.exceptions import ConfigError
from synapse_stream.methods import (
    GBLE,
    IBG,
    LRBaseline,
    ModelGuided,
    Policy,
    new_state,
)
from synapse_stream.sources.base import CandidateSource
from synapse_stream.methods.base import top_rows
from synapse_stream.oracles import ReplayOracle

Z95 = 1.959963984540054


def _three_sigma(p: float, n: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------- proportion intervals
@pytest.mark.parametrize("x,m", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 200), (0, 57), (57, 57), (40, 90)])
def test_wilson_is_the_inverted_score_test(x, m):
    """Wilson = every p whose score test |x/m − p| ≤ z·sqrt(p(1−p)/m) accepts (checked on a fine grid)."""
    lo, hi = proportion_interval(x, m, 0.95, "wilson")
    grid = np.linspace(0, 1, 200_001)
    ok = np.abs(x / m - grid) <= Z95 * np.sqrt(grid * (1 - grid) / m)
    assert lo == pytest.approx(grid[ok].min(), abs=1e-5)
    assert hi == pytest.approx(grid[ok].max(), abs=1e-5)


@pytest.mark.parametrize("m", [20, 80, 300])
def test_interval_exact_coverage(m):
    """Exact binomial coverage over a grid of p: Clopper–Pearson never below the level; Wilson and
    Jeffreys near it on average (their known behaviour)."""
    from scipy.stats import binom

    ps = np.linspace(0.01, 0.5, 60)
    xs = np.arange(m + 1)
    for method in ("wilson", "jeffreys", "clopper-pearson"):
        bounds = np.array([proportion_interval(int(x), m, 0.95, method) for x in xs])
        cov = np.array([binom.pmf(xs, m, p)[(bounds[:, 0] <= p) & (p <= bounds[:, 1])].sum() for p in ps])
        if method == "clopper-pearson":
            assert cov.min() >= 0.95 - 1e-9
        else:
            assert abs(cov.mean() - 0.95) < 0.02, (method, cov.mean())
            assert cov.min() > 0.80


def test_interval_errors_and_edges():
    assert proportion_interval(0, 10, 0.95, "jeffreys")[0] == 0.0
    assert proportion_interval(10, 10, 0.95, "clopper-pearson")[1] == 1.0
    with pytest.raises(ValueError):
        proportion_interval(3, 0)
    with pytest.raises(ValueError):
        proportion_interval(5, 4)
    with pytest.raises(ConfigError):
        proportion_interval(1, 4, method="wald")
    with pytest.raises(ConfigError):
        RecallEstimator(confidence=1.0)
    with pytest.raises(ConfigError):
        RecallEstimator(method="exact")


# ---------------------------------------------------------------------- the recall estimator
def _synthetic_stream(rng, n, prevalence, queried, precision, audit_rate):
    """A stream of ``n`` posts (Bernoulli(prevalence) labels); a detector that queried ``queried``
    posts with about the given precision (chosen without looking at the audit); a Bernoulli audit."""
    y = (rng.random(n) < prevalence).astype(np.int8)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k_pos = min(len(pos), int(round(queried * precision)))
    q = np.concatenate([rng.choice(pos, k_pos, replace=False), rng.choice(neg, queried - k_pos, replace=False)])
    in_q = np.zeros(n, bool)
    in_q[q] = True
    audited = rng.random(n) < audit_rate
    return y, in_q, audited


def _estimate(y, in_q, audited, confidence=0.95, method="wilson"):
    est = RecallEstimator(confidence, method)
    est.set_posts(len(y))
    est.set_detector(int(in_q.sum()), int(y[in_q].sum()))
    for i in np.flatnonzero(audited):
        est.update_audit(f"p{i}", int(y[i]), queried_by_detector=bool(in_q[i]))
    return est.get()


@pytest.mark.parametrize("confidence,method", [(0.95, "wilson"), (0.9, "wilson"), (0.95, "jeffreys"),
                                               (0.95, "clopper-pearson")])
def test_estimator_covers_true_recall_at_the_stated_level(confidence, method):
    """Many independent synthetic streams (varying prevalence, detector size and precision, audit rate):
    the share of intervals holding the true recall is the nominal level within sampling error."""
    rng = np.random.default_rng(0)
    reps, hits = 600, 0
    for _ in range(reps):
        prevalence = rng.uniform(0.02, 0.15)
        n = 20_000
        y, in_q, audited = _synthetic_stream(rng, n, prevalence, int(rng.integers(200, 1500)),
                                             rng.uniform(0.3, 0.9), rng.choice([0.005, 0.01, 0.02]))
        g = _estimate(y, in_q, audited, confidence, method)
        true = y[in_q].sum() / y.sum()
        assert g["lower"] <= g["estimate"] <= g["upper"]
        hits += g["lower"] <= true <= g["upper"]
    coverage = hits / reps
    # sampling error of the coverage itself, plus the binomial intervals' known discreteness (≤ 2 points)
    tol = _three_sigma(confidence, reps) + 0.02
    if method == "clopper-pearson":
        assert coverage >= confidence - _three_sigma(confidence, reps)
    else:
        assert abs(coverage - confidence) <= tol, (coverage, confidence, tol)


def test_interval_tightens_as_the_audit_grows():
    rng = np.random.default_rng(1)
    rates = [0.0025, 0.005, 0.01, 0.02, 0.04]
    widths = {a: [] for a in rates}
    for _ in range(60):
        y = (rng.random(30_000) < 0.08).astype(np.int8)
        pos = np.flatnonzero(y == 1)
        in_q = np.zeros(len(y), bool)
        in_q[rng.choice(pos, 700, replace=False)] = True
        in_q[rng.choice(np.flatnonzero(y == 0), 800, replace=False)] = True
        u = rng.random(len(y))                      # nested audits: a bigger rate includes the smaller
        for a in rates:
            g = _estimate(y, in_q, u < a)
            widths[a].append(g["upper"] - g["lower"])
    mean = [float(np.mean(widths[a])) for a in rates]
    assert all(b < a for a, b in zip(mean, mean[1:])), mean
    # about 1/sqrt(audit size): doubling the audit shrinks the width by roughly 1/sqrt(2)
    ratios = [b / a for a, b in zip(mean, mean[1:])]
    assert all(0.6 < r < 0.8 for r in ratios), ratios


def test_stratified_is_narrower_than_naive():
    rng = np.random.default_rng(2)
    y, in_q, audited = _synthetic_stream(rng, 30_000, 0.1, 2000, 0.7, 0.01)
    g = _estimate(y, in_q, audited)
    _, nlo, nhi = naive_recall_interval(int(y[in_q].sum()), len(y), int(y[audited].sum()), int(audited.sum()))
    assert g["upper"] - g["lower"] < nhi - nlo


def test_estimator_edge_cases_and_bookkeeping():
    est = RecallEstimator()
    g = est.get()
    assert g["estimate"] is None and g["lower"] is None and g["audit_size"] == 0 and g["audit_share"] == 0.0
    est.set_posts(1000)
    est.set_detector(100, 40)
    assert est.get()["estimate"] is None                    # no audit outside Q yet
    for i in range(50):                                     # 50 audits outside Q, none positive
        est.update_audit(f"a{i}", 0)
    g = est.get()
    assert g["estimate"] == 1.0 and g["upper"] == 1.0 and 0 < g["lower"] < 1
    assert g["detector_precision"] == pytest.approx(0.4) and g["prevalence"] == 0.0
    assert g["audit_share"] == pytest.approx(50 / 150)
    # a verdict replaced: a0 was in fact positive
    est.update_audit("a0", 1)
    g = est.get()
    assert g["audit_size"] == 50 and g["rest_audit_positives"] == 1
    assert g["estimate"] == pytest.approx(40 / (40 + 900 * 1 / 50))
    assert g["prevalence"] == pytest.approx(1 / 50)
    # the detector later queries the audited post: it moves from R to Q (found 41 of 101)
    est.update_detector(1, post_id="a0")
    g = est.get()
    assert (g["rest_audit_size"], g["rest_audit_positives"], g["detector_found"]) == (49, 0, 41)
    assert g["audit_positives"] == 1 and g["estimate"] == 1.0
    est.mark_queried("a0")                                  # idempotent
    est.mark_queried("never-audited")
    assert est.get()["rest_audit_size"] == 49
    # the detector labelled everything: recall is exactly 1
    est.set_posts(101)
    assert est.get()["estimate"] == est.get()["lower"] == 1.0
    # nothing found
    assert stratified_recall(0, 500, 3, 20) == (0.0, 0.0, 0.0)
    assert stratified_recall(0, 500, 0, 20) == (None, 0.0, 1.0)
    with pytest.raises(ValueError):
        est.update_audit("x", 2)
    with pytest.raises(ValueError):
        est.set_detector(3, 4)


def test_audit_sampler_is_uniform_deterministic_and_nested():
    ids = [f"post-{i}" for i in range(200_000)]
    s = AuditSampler(0.005, salt="k1")
    picked = [p for p in ids if s.should_audit(p)]
    assert abs(len(picked) / len(ids) - 0.005) <= _three_sigma(0.005, len(ids))
    assert picked == [p for p in ids if AuditSampler(0.005, salt="k1").should_audit(p)]
    other = {p for p in ids if AuditSampler(0.005, salt="k2").should_audit(p)}
    assert len(other & set(picked)) < 0.05 * len(picked)           # another salt: another sample
    assert set(picked) <= {p for p in ids if AuditSampler(0.02, salt="k1").should_audit(p)}
    with pytest.raises(ConfigError):
        AuditSampler(1.5)


# ---------------------------------------------------------------------- the model-guided source
def test_model_guided_needs_no_bootstrap_queries(make_detection_data):
    D = make_detection_data(0, n_pos_clusters=2, n_neg_clusters=8, per_cluster=40)
    oracle = ReplayOracle(D.truth)
    res = ModelGuided(k0=10, max_query_ratio=0.2, seed=1).run(D.X, D.S, D.ids, oracle)
    assert res.rounds[0]["queried"] == 10               # a full model round at once: no random bootstrap
    assert len(set(res.order)) == len(res.order) == oracle.calls
    assert np.mean(res.labels) > 2 * D.y.mean()
    lr = LRBaseline(k0=10, max_query_ratio=0.2, seed=1).run(D.X, D.S, D.ids, ReplayOracle(D.truth))
    assert lr.rounds[0]["queried"] == 1                  # LR pays for its first negatives
    assert ModelGuided().label() == "model[K0=100]"
    for bad in [dict(k0=0), dict(provisional=-1), dict(C=0)]:
        with pytest.raises(ConfigError):
            ModelGuided(**bad)


def test_model_guided_training_set_uses_provisional_negatives(make_detection_data):
    D = make_detection_data(1)
    m = ModelGuided(provisional=15)
    state = new_state(D.X, D.S, D.ids, seed=0)
    m.prepare(state)
    X, y, w = m.training_set(state)
    assert len(X) == len(D.S) + 15 and y.sum() == len(D.S)
    # a provisional negative that gets a verdict counts once, with its real label
    r = int(m._prov[0])
    state.labels[r] = 1
    X, y, w = m.training_set(state)
    assert len(X) == len(D.S) + 15 and y.sum() == len(D.S) + 1


@pytest.mark.parametrize("make", [lambda: IBG(tau=0.3, d_max=5), lambda: GBLE(k=5, k0=10),
                                  lambda: ModelGuided(k0=10)], ids=["ibg", "gble", "model"])
def test_sources_propose_without_querying(make_detection_data, make):
    D = make_detection_data(2)
    src = make()
    state = new_state(D.X, D.S, D.ids, seed=0)
    src.prepare(state)
    props = src.propose(state, 7)
    assert 0 < len(props) <= 7
    rows = [r for r, _ in props]
    assert len(set(rows)) == len(rows) and all(state.labels[r] == -1 for r in rows)
    scores = [s for _, s in props]
    assert scores == sorted(scores, reverse=True)
    assert (state.labels == -1).all() and not state.order      # nothing was labelled


# ---------------------------------------------------------------------- the policy
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_never_queries_a_post_twice(make_detection_data, seed):
    D = make_detection_data(seed)
    oracle = ReplayOracle(D.truth)
    pol = Policy(tau=0.3, d_max=5, gble_k=5, k0=10, max_query_ratio=1.0, seed=seed)
    res = pol.run(D.X, D.S, D.ids, oracle)
    assert len(res.order) == len(set(res.order)) == oracle.calls
    assert res.labels == [int(D.y[r]) for r in res.order]
    assert res.sources is not None and len(res.sources) == len(res.order)
    assert set(res.sources) <= {"ibg", "gble", "model"}
    assert len(res.order) == len(D.X)               # run to the end: every post exactly once
    assert res.method == "policy[sources=ibg+gble+model,tau=0.3,dmax=5,K0=10]"


class _FakeSource(CandidateSource):
    """Proposes unlabelled posts in a fixed random order; ``good`` ones put the positives first with
    probability ``quality`` per slot."""

    name = "fake"

    def __init__(self, y, quality, seed):
        self.y, self.quality, self.rng = y, quality, np.random.default_rng(seed)
        self.asked: list[int] = []

    def propose(self, state, k):
        self.asked.append(k)
        unl = np.flatnonzero(state.labels < 0)
        pos, neg = unl[self.y[unl] == 1], unl[self.y[unl] == 0]
        self.rng.shuffle(pos)
        self.rng.shuffle(neg)
        out, ip, ineg = [], 0, 0
        while len(out) < min(k, len(unl)):
            if (self.rng.random() < self.quality and ip < len(pos)) or ineg >= len(neg):
                out.append(int(pos[ip]))
                ip += 1
            else:
                out.append(int(neg[ineg]))
                ineg += 1
        return [(r, float(len(out) - i)) for i, r in enumerate(out)]


def test_bandit_shifts_budget_to_the_more_precise_source():
    rng = np.random.default_rng(0)
    n = 20_000
    y = (rng.random(n) < 0.2).astype(np.int8)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    ids = [f"p{i}" for i in range(n)]
    good, bad = _FakeSource(y, 0.9, 1), _FakeSource(y, 0.1, 2)
    pol = Policy({"bad": bad, "good": good}, k0=50, floor=0.05, max_query_ratio=0.25, seed=0)
    res = pol.run(X, X[:3], ids, ReplayOracle(dict(zip(ids, y.tolist()))))
    src = np.array(res.sources)
    labels = np.array(res.labels)
    assert len(res.order) == len(set(res.order))
    first = pol.history[0]["alloc"]
    assert abs(first["good"] - first["bad"]) <= 1                   # equal priors: an even first split
    late = [h["alloc"] for h in pol.history[3:]]
    assert late and all(a["good"] > 0.8 * sum(a.values()) for a in late)
    assert all(a["bad"] >= 1 for a in late)                          # the exploration floor
    assert labels[src == "good"].mean() > 0.8 > 0.3 > labels[src == "bad"].mean()
    assert (src == "good").mean() > 0.85


class _FakeRanker(CandidateSource):
    """A 'model' with fixed scores: proposes its top rows and exposes ``last_scores``."""

    name = "ranker"
    ranks = True

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)
        self.last_scores = None

    def propose(self, state, k):
        self.last_scores = self.scores.copy()
        return top_rows(self.scores, np.flatnonzero(state.labels < 0), k)


class _FixedOrder(CandidateSource):
    name = "fixed"

    def __init__(self, rows):
        self.rows = list(rows)

    def propose(self, state, k):
        return [(r, 0.0) for r in self.rows if state.labels[r] < 0][:k]


def test_policy_ranker_reorders_the_other_sources_candidates():
    n = 200
    scores = np.linspace(1, 0, n)                       # the ranker likes low rows best
    X = np.eye(n, 8, dtype=np.float32) + 0.01
    ids = [f"p{i}" for i in range(n)]
    gen = _FixedOrder(range(n - 1, -1, -1))             # the generator proposes high rows first
    pol = Policy({"gen": gen, "model": _FakeRanker(scores)}, k0=20, floor=0.2, max_query_ratio=0.1,
                 max_rounds=1)
    assert list(pol.sources) == ["model", "gen"] and pol.label().startswith("policy[sources=gen+model")
    res = pol.run(X, X[:2], ids, ReplayOracle({i: 0 for i in ids}))
    gen_rows = [r for r, s in zip(res.order, res.sources) if s == "gen"]
    model_rows = [r for r, s in zip(res.order, res.sources) if s == "model"]
    # the generator's top-K candidates are rows 199..180; the ranker picks the lowest of them first
    assert gen_rows and gen_rows == sorted(gen_rows) and min(gen_rows) >= n - 20
    assert gen_rows[0] == n - 20
    assert model_rows == list(range(len(model_rows)))
    # without a ranker the generator's own order stands
    pol = Policy({"gen": _FixedOrder(range(n - 1, -1, -1)), "model": _FakeRanker(scores)}, ranker=None, k0=20,
                 floor=0.2, max_query_ratio=0.1, max_rounds=1)
    res = pol.run(X, X[:2], ids, ReplayOracle({i: 0 for i in ids}))
    gen_rows = [r for r, s in zip(res.order, res.sources) if s == "gen"]
    assert gen_rows[0] == n - 1
    with pytest.raises(ConfigError):
        Policy({"gen": _FixedOrder([]), "x": _FixedOrder([])}, ranker="x")


def test_policy_split_respects_floor_capacity_and_caps():
    pol = Policy({"a": _FakeSource(np.zeros(1), 0, 0), "b": _FakeSource(np.zeros(1), 0, 0),
                  "c": _FakeSource(np.zeros(1), 0, 0)}, floor=0.1, overflow="spread")
    pol.counts = {"a": [900.0, 100.0], "b": [100.0, 900.0], "c": [500.0, 500.0]}
    rng = np.random.default_rng(0)
    alloc = pol.split(100, {"a": 1000, "b": 1000, "c": 1000}, rng)
    assert sum(alloc.values()) == 100 and alloc["b"] == alloc["c"] == 10 and alloc["a"] == 80
    alloc = pol.split(100, {"a": 30, "b": 1000, "c": 1000}, rng)          # a runs out: c (better mean) fills
    assert sum(alloc.values()) == 100 and alloc["a"] == 30 and alloc["c"] > alloc["b"]
    alloc = pol.split(100, {"a": 1000, "b": 1000, "c": 1000}, rng, caps={"a": 40})
    assert sum(alloc.values()) == 100 and alloc["a"] == 40                 # capped: the rest to b and c
    alloc = pol.split(100, {"a": 1000, "b": 1000, "c": 1000}, rng, caps={"a": 40, "b": 20, "c": 20})
    assert alloc["a"] > alloc["c"] >= alloc["b"] and sum(alloc.values()) == 100   # all capped: caps give way
    alloc = pol.split(100, {"a": 1000, "b": 5, "c": 5}, rng, caps={"a": 40, "b": 5, "c": 5})
    assert alloc == {"a": 90, "b": 5, "c": 5}
    alloc = pol.split(2, {"a": 10, "b": 10, "c": 10}, rng)
    assert sum(alloc.values()) == 2 and alloc["b"] == 0
    assert pol.split(10, {"a": 0, "b": 0, "c": 0}, rng) == {}
    for bad in [dict(floor=1.0), dict(discount=1.5), dict(prior_strength=0), dict(k0=0), dict(growth=0.5)]:
        with pytest.raises(ConfigError):
            Policy(**bad)


def test_policy_overflow_hold_keeps_a_capped_best_sources_slots_for_later():
    """With ``overflow="hold"`` the slots a capped source cannot take are not handed to worse sources: the round
    is smaller; a source out of proposals still passes its share on; without caps both modes agree."""
    srcs = {k: _FakeSource(np.zeros(1), 0, 0) for k in "abc"}
    hold, spread = Policy(dict(srcs), floor=0.1, overflow="hold"), Policy(dict(srcs), floor=0.1, overflow="spread")
    for pol in (hold, spread):
        pol.counts = {"a": [900.0, 100.0], "b": [100.0, 900.0], "c": [500.0, 500.0]}
    many = {"a": 1000, "b": 1000, "c": 1000}
    caps = {"a": 40, "b": 1000, "c": 1000}
    got = hold.split(100, many, np.random.default_rng(0), caps)
    assert got == {"a": 40, "b": 10, "c": 10}                      # a's other 40 slots wait
    assert sum(spread.split(100, many, np.random.default_rng(0), caps).values()) == 100
    assert hold.split(100, many, np.random.default_rng(0)) == spread.split(100, many, np.random.default_rng(0))
    dry = hold.split(100, {"a": 30, "b": 1000, "c": 1000}, np.random.default_rng(0))
    assert sum(dry.values()) == 100 and dry["a"] == 30            # out of proposals: its share goes on
    with pytest.raises(ConfigError):
        Policy(dict(srcs), overflow="later")


def test_policy_pooled_prior():
    """An untried source is assumed as good as the pool is now (not ½): with low precisions
    everywhere, a barely-tried source does not outbid a measured one."""
    pol = Policy({"a": _FakeSource(np.zeros(1), 0, 0), "b": _FakeSource(np.zeros(1), 0, 0)}, prior_strength=2)
    pol.counts = {"a": [0.0, 0.0], "b": [0.0, 0.0]}
    assert pol.posterior_means() == {"a": 0.5, "b": 0.5}
    pol.counts = {"a": [5.0, 95.0], "b": [0.0, 0.0]}
    means = pol.posterior_means()
    assert means["b"] == pytest.approx(5.5 / 101) and means["a"] == pytest.approx((2 * 5.5 / 101 + 5) / 102)


def test_policy_credits_each_post_to_its_proposer(make_detection_data):
    D = make_detection_data(3)
    pol = Policy(tau=0.3, d_max=5, gble_k=5, k0=10, max_query_ratio=0.5, seed=0)
    res = pol.run(D.X, D.S, D.ids, ReplayOracle(D.truth))
    # the counts are the discounted per-source tallies of the run's verdicts: recompute them
    counts = {s: [0.0, 0.0] for s in pol.sources}
    i = 0
    for r in res.rounds:
        for c in counts.values():
            c[0] *= pol.discount
            c[1] *= pol.discount
        for s, yv in zip(res.sources[i:i + r["queried"]], res.labels[i:i + r["queried"]]):
            counts[s][0] += yv
            counts[s][1] += 1 - yv
        i += r["queried"]
    for s in counts:
        assert pol.counts[s] == pytest.approx(counts[s])
    assert max(h["K"] for h in pol.history) <= 2 * 10                     # default k_max = 2 K0


# ---------------------------------------------------------------------- the eval command
def test_eval_cli_runs_policy_model_gble(tmp_path, capsys):
    from stream_app.cli import main

    rnd = random.Random(0)
    words = {"pos": "crypto giveaway airdrop token wallet free claim bonus coin".split(),
             "neg": "rain sunny cloud wind storm match goal team recipe bake oven train bus".split()}

    def text(kind):
        return " ".join(rnd.sample(words[kind], 5))

    rows = [(text("pos"), 1) for _ in range(40)] + [(text("neg"), 0) for _ in range(360)]
    rnd.shuffle(rows)
    pool = tmp_path / "pool.tsv"
    pool.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(text("pos") for _ in range(5)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["eval", "--pool", str(pool), "--seeds", str(seeds), "--embedder", "hashing", "--method",
               "policy,model,gble", "--tau", "0.3", "--dmax", "5", "--k0", "10", "--max-query-ratio", "0.3",
               "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "metrics.json").read_text())
    names = set(doc["methods"])
    assert names == {"policy[sources=ibg+gble+model,tau=0.3,dmax=5,K0=10]", "model[K0=10]", "gble[k=10,K0=10]"}
    pol = doc["methods"]["policy[sources=ibg+gble+model,tau=0.3,dmax=5,K0=10]"]
    assert pol["queried"] == math.floor(0.3 * 400)
    assert sum(s["queried"] for s in pol["sources"].values()) == pol["queried"]
    assert sum(s["positives"] for s in pol["sources"].values()) == pol["positives_found"]
    assert "sources" not in doc["methods"]["model[K0=10]"]
    for rep in doc["methods"].values():
        assert rep["recall_at"]["0.1"] > 0.1        # better than random (recall = query ratio) on this easy pool
    assert (out / "curves.png").exists()
    # bad source names end with one error line
    capsys.readouterr()
    rc = main(["eval", "--pool", str(pool), "--seeds", str(seeds), "--embedder", "hashing", "--method", "policy",
               "--policy-sources", "ibg,svm", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and len(err.splitlines()) == 1

"""The automatic τ (synapse_stream.tau.AutoTau) and IBG with ``tau="auto"``."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.exceptions import ConfigError
from synapse_stream.methods.ibg import IBG
from synapse_stream.oracles import ReplayOracle
from synapse_stream.sources import SourceParams, registry
from synapse_stream.tau import AutoTau, knee_similarity


def unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def planted(spread_pos: float, n_pos=60, n_neg=3000, d=48, seed=0):
    """Seeds around a centre; the rare class around it with ``spread_pos``; the rest isotropic."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=d)
    c /= np.linalg.norm(c)
    S = unit(c + 0.3 * rng.normal(size=(20, d)) / np.sqrt(d))
    P = unit(c + spread_pos * rng.normal(size=(n_pos, d)) / np.sqrt(d))
    N = unit(rng.normal(size=(n_neg, d)))
    X = np.vstack([P, N])
    y = np.r_[np.ones(n_pos, np.int8), np.zeros(n_neg, np.int8)]
    return S, X, y


@pytest.mark.parametrize("spread", [0.6, 1.0, 1.6])
def test_start_lies_between_the_class_and_the_background(spread):
    S, X, y = planted(spread)
    auto = AutoTau(d_max=5)
    t = auto.start(S, X)
    sims = S @ X.T
    # the median seed keeps 5 edges: above the background's best similarity, inside the class's band
    assert sims[:, y == 0].max() < t
    assert np.quantile(sims[:, y == 1].max(axis=0), 0.1) < t < sims[:, y == 1].max()
    assert t == pytest.approx(float(np.median(knee_similarity(S, X, 5))))


def test_start_follows_the_class_spread():
    """A looser class (further from the seeds) gets a lower τ: the chooser reads the data, not a constant."""
    taus = [AutoTau(d_max=5).start(*planted(s)[:2]) for s in (0.6, 1.0, 1.6)]
    assert taus[0] > taus[1] > taus[2]


def test_online_lowers_tau_when_the_band_below_is_as_precise():
    auto = AutoTau(d_max=5, step=0.05, min_band=5)
    auto.tau, auto.floor = 0.6, 0.2
    auto.observe([0.7] * 20, [1] * 10 + [0] * 10)        # core precision 0.5
    assert auto.tau == 0.6
    auto.observe([0.57] * 10, [1] * 5 + [0] * 5)         # the band just below: 0.5 too
    assert auto.tau == pytest.approx(0.55)


def test_online_keeps_tau_when_the_band_below_is_poor_and_raises_it_above_a_poor_band():
    auto = AutoTau(d_max=5, step=0.05, min_band=5)
    auto.tau, auto.floor = 0.6, 0.2
    auto.observe([0.8] * 20 + [0.57] * 20, [1] * 16 + [0] * 4 + [0] * 20)
    assert auto.tau == 0.6                               # below τ nothing was found: stay
    auto.observe([0.62] * 20, [0] * 20)                  # the band just above τ finds nothing either: raise
    assert auto.tau == pytest.approx(0.65)


def test_exhausted_lowers_to_the_floor_and_stops():
    auto = AutoTau(d_max=5, step=0.05)
    auto.tau, auto.floor = 0.6, 0.48
    assert auto.exhausted() and auto.tau == pytest.approx(0.55)
    assert auto.exhausted() and auto.tau == pytest.approx(0.5)
    assert auto.exhausted() and auto.tau == pytest.approx(0.48)
    assert not auto.exhausted() and auto.tau == pytest.approx(0.48)


def test_explicit_tau_wins_and_auto_is_the_registry_default_when_asked():
    assert IBG(tau=0.55).tau == 0.55 and IBG(tau=0.55).auto is None
    ibg = registry.build(["ibg"], SourceParams(tau="auto", d_max=5))["ibg"]
    assert ibg.auto is not None and ibg.params()["tau"] == "auto"
    with pytest.raises(ConfigError):
        IBG(tau="0.5")
    with pytest.raises(ConfigError):
        AutoTau(d_max=5).observe([0.5], [1])              # no start yet


def test_auto_ibg_goes_on_where_a_too_high_fixed_tau_converges():
    S, X, y = planted(1.0)
    ids = [str(i) for i in range(len(X))]
    truth = {str(i): int(v) for i, v in enumerate(y)}
    high = IBG(tau=0.9, d_max=5, max_query_ratio=0.05).run(X, S, ids, ReplayOracle(truth))
    auto_m = IBG(tau="auto", d_max=5, max_query_ratio=0.05)
    auto = auto_m.run(X, S, ids, ReplayOracle(truth))
    assert sum(auto.labels) > sum(high.labels)
    assert auto.params["tau"] == "auto" and auto.params["auto_tau"]["verdicts"] == len(auto.labels)
    assert sum(auto.labels) / len(auto.labels) > 5 * y.mean()      # and it is still precise


def test_live_rounds_with_auto_tau_equal_the_core_rounds():
    """The automatic τ is computed from what the worker holds (seeds, the window's posts, the verdicts): the live
    rounds choose the same τ and the same batches as the core policy on the same posts."""
    from test_rounds import clustered, live_setup, lockstep

    from synapse_stream.methods.base import new_state
    from synapse_stream.methods.policy import Policy

    X, S, y = clustered()
    ids, index, eng, rounds = live_setup(X, S, parts=1, tau="auto", sources=("ibg",), k0=20, seed=3)
    assert rounds.tau is None and rounds.tau_info["tau"] is None
    policy = Policy({"ibg": IBG(tau="auto", d_max=5)}, k0=20, seed=3)

    def same(core, live):
        assert [ids[r] for r, _ in core] == [c.post_id for c in live]
        assert rounds.tau == pytest.approx(policy.sources["ibg"].tau)

    rows = lockstep(policy, new_state(X, S, ids, seed=3), rounds, eng, ids, y, check=same)
    # live, a round's verdicts are booked when the next round is planned (the sources' learn): all but the last round's
    assert rounds.tau_info["verdicts"] == policy.sources["ibg"].auto.observed - len(rows) > 0

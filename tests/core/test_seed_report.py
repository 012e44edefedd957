"""Seed diagnostics (synapse_stream.seed_report.diagnose)."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.exceptions import ConfigError
from synapse_stream.seed_report import diagnose


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_near_duplicates_are_counted_and_a_narrow_set_warned():
    rng = np.random.default_rng(0)
    c = rng.normal(size=32)
    S = np.vstack([c + 0.01 * rng.normal(size=(30, 32)), rng.normal(size=(3, 32))])
    rep = diagnose(S)
    assert rep.seeds == 33 and rep.distinct == 4 and rep.duplicates == 29
    assert any("near-duplicates" in w for w in rep.warnings)


def test_diverse_seeds_have_a_large_effective_number_and_no_warning():
    rng = np.random.default_rng(1)
    S = rng.normal(size=(40, 64))
    X = rng.normal(size=(500, 64))
    rep = diagnose(S, X, tau=0.4, d_max=5)
    assert rep.effective_seeds > 20 and rep.acs_coverage < 0.5
    assert not [w for w in rep.warnings if "narrow" in w or "near-duplicates" in w]


def test_connections_per_seed_and_far_seeds_warned():
    rng = np.random.default_rng(2)
    d = 32
    c = unit(rng.normal(size=(1, d)))[0]
    X = unit(np.vstack([c + 0.2 * rng.normal(size=(50, d)) / np.sqrt(d), rng.normal(size=(950, d))]))
    near = unit(c + 0.2 * rng.normal(size=(10, d)) / np.sqrt(d))
    rep = diagnose(near, X, d_max=5)
    assert rep.tau_auto and rep.connects_median >= 5 and rep.connects_none == 0
    assert rep.posts_connected == pytest.approx(((near @ X.T) > rep.tau).any(axis=0).mean())
    far = unit(rng.normal(size=(10, d)))          # seeds unlike the stream: at the near seeds' τ they connect nothing
    rep_far = diagnose(far, X, tau=rep.tau)
    assert rep_far.connects_none > 0.5 and any("connect no post" in w for w in rep_far.warnings)
    assert any("a seed connects" in line for line in rep.lines())


def test_no_seeds_is_an_error():
    with pytest.raises(ConfigError):
        diagnose(np.zeros((0, 8)))

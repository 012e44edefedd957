"""The policy's ranker must earn its ranking role (issue #16, part 0): a chance-level ranker does not re-order a
good source, and the policy's regret against the best source in hindsight stays bounded."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.methods.base import LoopState, top_rows
from synapse_stream.methods.policy import Policy
from synapse_stream.oracles import ReplayOracle
from synapse_stream.sources.base import CandidateSource


class Oracle(CandidateSource):
    """Proposes the rows of a planted ranking: positives first with probability ``quality``."""

    def __init__(self, name: str, y: np.ndarray, quality: float, seed: int) -> None:
        self.name = name
        rng = np.random.default_rng(seed)
        noise = rng.random(len(y))
        self.score = np.where(y == 1, noise * quality + (1 - quality) * rng.random(len(y)), noise)
        self.score = self.score + quality * y

    def propose(self, state: LoopState, k: int):
        return top_rows(self.score, np.flatnonzero(state.unlabelled_mask()), k)


class ChanceRanker(CandidateSource):
    """A 'classifier' whose scores carry no information (it learnt synthetic versus real)."""

    name = "model"
    ranks = True

    def __init__(self, n: int, seed: int) -> None:
        self.scores = np.random.default_rng(seed).random(n).astype(np.float32)
        self.last_scores = None

    def propose(self, state: LoopState, k: int):
        self.last_scores = self.scores
        return top_rows(self.scores, np.flatnonzero(state.unlabelled_mask()), k)


class GoodRanker(ChanceRanker):
    """A ranker that knows the class well."""

    def __init__(self, y: np.ndarray, seed: int) -> None:
        super().__init__(len(y), seed)
        self.scores = (self.scores + 2.0 * y).astype(np.float32)


def world(n=20000, prevalence=0.06, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int8)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    return X, y


def run(policy: Policy, X, y, ratio=0.1):
    ids = [str(i) for i in range(len(X))]
    policy.max_query_ratio = ratio
    return policy.run(X, X[:1], ids, ReplayOracle({str(i): int(v) for i, v in enumerate(y)}))


def sources(y, ranker):
    return {"model": ranker, "ibg": Oracle("ibg", y, 0.5, 1), "gble": Oracle("gble", y, 0.2, 4)}


def test_chance_ranker_does_not_rerank_a_good_source():
    X, y = world()
    best_alone = sum(run(Policy({"ibg": Oracle("ibg", y, 0.5, 1)}, k0=100, ranker=None), X, y).labels)
    old = sum(run(Policy(sources(y, ChanceRanker(len(y), 2)), k0=100, rerank="always"), X, y).labels)
    pol = Policy(sources(y, ChanceRanker(len(y), 2)), k0=100)
    new = sum(run(pol, X, y).labels)
    assert new > old                       # re-ordered by noise, the good source's slots go to worse posts
    assert new >= best_alone               # and the policy is not worse than its best source alone
    late = pol.history[len(pol.history) // 3:]
    assert not any("ibg" in h["reranked"] for h in late)     # demoted once the evidence is in
    assert pol.history[0]["reranked"]                         # (it ranked while nothing was known)


def test_a_good_ranker_still_ranks():
    X, y = world()
    pol = Policy(sources(y, GoodRanker(y, 3)), k0=100)
    run(pol, X, y)
    assert all("ibg" in h["reranked"] and "gble" in h["reranked"] for h in pol.history)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regret_against_the_best_source_is_bounded(seed):
    """Three sources of planted quality: the policy finds at least 90 % of what the best one finds alone (its
    exploration floor and the first rounds' even split are the regret; 2,000 queries here)."""
    X, y = world(seed=seed)
    qualities = {"a": 0.2, "b": 0.45, "c": 0.8}
    best = max(sum(run(Policy({s: Oracle(s, y, q, 10 + i)}, k0=100, ranker=None), X, y).labels)
               for i, (s, q) in enumerate(qualities.items()))
    pol = Policy({s: Oracle(s, y, q, 10 + i) for i, (s, q) in enumerate(qualities.items())}, k0=100, ranker=None,
                 seed=seed)
    got = sum(run(pol, X, y).labels)
    assert got >= 0.9 * best


def test_prob_better_and_rerank_modes():
    X, y = world(n=300)
    pol = Policy({"model": ChanceRanker(300, 0), "ibg": Oracle("ibg", y, 0.5, 0)}, k0=10)
    pol.reset()
    assert pol.prob_better("model", "ibg") == pytest.approx(0.5)
    assert pol.ranker_earns("ibg")                      # no evidence yet: the ranker ranks
    pol.counts = {"model": [1.0, 30.0], "ibg": [15.0, 15.0]}
    assert pol.prob_better("model", "ibg") < 0.01 and not pol.ranker_earns("ibg")
    pol.rerank = "always"
    assert pol.ranker_earns("ibg")
    with pytest.raises(Exception):
        Policy({"ibg": Oracle("ibg", y, 0.5, 0)}, rerank="sometimes")

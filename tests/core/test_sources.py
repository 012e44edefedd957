"""One check suite over every registered candidate source, batch and live forms (as River's estimator checks).

Every source, for a fixed state: at most ``k`` proposals, best first; each row at most once; never a labelled
row nor a pending one; the same proposals again for the same state and seed. Then the example source
(``tests/core/centroid_source.py``, one file plus its registration) through ``eval``'s policy, the live rounds,
the CLI (as a plug-in named in ``SYNAPSE_SOURCE_PLUGINS``) and the worker's settings.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import centroid_source  # noqa: F401  (registers "centroid", as SYNAPSE_SOURCE_PLUGINS would)
import numpy as np
import pytest

from synapse_stream.books import DetectorBooks
from synapse_stream.classifier import train_model
from synapse_stream.exceptions import ConfigError
from synapse_stream.graph import KNNGraph
from synapse_stream.index import ShardedIndex
from synapse_stream.methods.base import LoopState, new_state
from synapse_stream.methods.policy import Policy
from synapse_stream.oracles import ReplayOracle
from synapse_stream.rounds import LiveRounds
from synapse_stream.seeds import Seed, SeedOrigin
from synapse_stream.sources import LiveView, SourceParams, registry

REPO = Path(__file__).resolve().parents[2]
PARAMS = SourceParams(tau=0.3, d_max=8, k0=20, gble_k=6, seed=7)


def pool(n=240, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d))
    y = (rng.random(n) < 0.2).astype(np.int8)
    X = centres[rng.integers(1, 4, n)] + 0.6 * rng.normal(size=(n, d))
    X[y == 1] = centres[0] + 0.6 * rng.normal(size=(int(y.sum()), d))
    S = centres[0] + 0.4 * rng.normal(size=(6, d))
    return X.astype(np.float32), S.astype(np.float32), y


def labelled_state(X, S, y, seed=0) -> LoopState:
    """Some rows answered (both labels), some sent and waiting."""
    state = new_state(X, S, [f"p{i}" for i in range(len(X))], seed=seed)
    rng = np.random.default_rng(1)
    rows = rng.choice(len(X), 40, replace=False)
    state.labels[rows[:30]] = y[rows[:30]]
    state.pending = np.zeros(len(X), bool)
    state.pending[rows[30:]] = True
    return state


def check_proposals(props, state: LoopState, k: int) -> None:
    rows = [r for r, _ in props]
    assert len(props) <= k
    assert len(set(rows)) == len(rows), "a row proposed twice"
    assert all(0 <= r < state.n for r in rows)
    assert all(state.labels[r] < 0 for r in rows), "a labelled row proposed"
    assert not any(state.pending[r] for r in rows), "a pending row proposed"
    scores = [s for _, s in props]
    assert scores == sorted(scores, reverse=True), "not best first"
    assert all(np.isfinite(scores))


def batch_proposals(name, k, seed=0):
    X, S, y = pool()
    state = labelled_state(X, S, y, seed=seed)
    src = registry.build([name], PARAMS)[name]
    src.prepare(state)
    return src.propose(state, k), state


def live_proposals(name, k):
    X, S, y = pool()
    ids = [f"p{i}" for i in range(len(X))]
    index = ShardedIndex(X.shape[1], ef_search=200, ef_construction=200)
    index.add(0, ids[::2], X[::2])
    index.add(1, ids[1::2], X[1::2])
    ids_now, V = index.vectors()
    state = labelled_state(V, S, y[[int(p[1:]) for p in ids_now]])
    state.ids = ids_now
    external = {f"s{j}": state.S[j] for j in range(len(S))}
    graph = KNNGraph(PARAMS.gble_k)
    graph.update(index, ids_now, external, V)
    src = registry.build([name], PARAMS, live=True)[name]
    src.refresh(LiveView(index, ids_now, V, external, frozenset(), graph))
    if src.uses_model:
        lab = np.flatnonzero(state.labels >= 0)
        src.use_model(train_model("d", 1, state.S, V[lab], state.labels[lab], V[:6], folds=0))
    rows = np.flatnonzero(state.labels >= 0)
    src.learn(state, rows.tolist(), state.labels[rows].tolist())
    return src.propose(state, k), state


@pytest.mark.parametrize("name", registry.names())
@pytest.mark.parametrize("k", [1, 7, 500])
def test_batch_source_contract(name, k):
    props, state = batch_proposals(name, k)
    assert props, f"{name} proposed nothing on a pool with positives near the seeds"
    check_proposals(props, state, k)
    again, _ = batch_proposals(name, k)
    assert again == props, "not deterministic for a fixed seed"


@pytest.mark.parametrize("name", registry.live_names())
@pytest.mark.parametrize("k", [1, 7, 500])
def test_live_source_contract(name, k):
    props, state = live_proposals(name, k)
    assert props, f"{name} proposed nothing live"
    check_proposals(props, state, k)
    assert live_proposals(name, k)[0] == props


@pytest.mark.parametrize("name", registry.names())
def test_source_proposes_nothing_when_everything_is_labelled(name):
    X, S, y = pool(n=60)
    state = new_state(X, S, [f"p{i}" for i in range(len(X))])
    state.labels[:] = y
    src = registry.build([name], PARAMS)[name]
    src.prepare(state)
    assert src.propose(state, 10) == []


def test_the_checks_catch_a_source_that_breaks_the_contract():
    X, S, y = pool()
    state = labelled_state(X, S, y)
    labelled, pending = int(np.flatnonzero(state.labels >= 0)[0]), int(np.flatnonzero(state.pending)[0])
    free = np.flatnonzero(state.unlabelled_mask())
    for bad in ([(labelled, 1.0)], [(pending, 1.0)], [(int(free[0]), 1.0), (int(free[0]), 0.5)],
                [(int(free[0]), 0.1), (int(free[1]), 0.9)], [(int(r), 0.0) for r in free[:3]]):
        with pytest.raises(AssertionError):
            check_proposals(bad, state, 2)


def test_registry_rejects_unknown_duplicate_and_taken_names():
    with pytest.raises(ConfigError, match="unknown candidate source"):
        registry.spec("nope")
    with pytest.raises(ConfigError, match="distinct"):
        registry.build(["ibg", "ibg"])
    with pytest.raises(ConfigError, match="live"):
        registry.build(["knn"], live=True)          # knn has no live form
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(registry.SourceSpec("ibg", batch=lambda p: None))


# ---------------------------------------------------------------------------------------------- the example


def test_example_source_in_the_policy_of_eval():
    X, S, y = pool()
    ids = [f"p{i}" for i in range(len(X))]
    pol = Policy(registry.build(["ibg", "centroid"], PARAMS), k0=20, max_query_ratio=0.3, seed=0)
    res = pol.run(X, S, ids, ReplayOracle(dict(zip(ids, y.tolist()))))
    assert "centroid" in set(res.sources) and len(res.order) == len(set(res.order))
    found = np.asarray(res.labels)[np.asarray(res.sources) == "centroid"]
    assert found.mean() > y.mean()          # better than random on a pool whose positives sit near the seeds


def test_example_source_in_the_live_rounds():
    X, S, y = pool()
    ids = [f"p{i}" for i in range(len(X))]
    index = ShardedIndex(X.shape[1])
    index.add(0, ids, X)
    books = DetectorBooks(X.shape[1])
    for j, s in enumerate(S):
        books.seeds.add(Seed(f"s{j}", "", SeedOrigin.SYNTHETIC), s)
    rounds = LiveRounds(books, index, name="d", sources=("centroid",), params=PARAMS, k0=15)
    first = rounds.plan()
    assert len(first) == 15 and {c.reason for c in first} == {"centroid"}
    assert all(c.post_id in books.queried for c in first)
    rounds.touch()
    assert not {c.post_id for c in first} & {c.post_id for c in rounds.plan()}    # pending: never again


def test_example_source_as_a_plugin_of_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    pool_file = tmp_path / "pool.tsv"
    words = ["scam", "wallet", "seed", "phrase", "cat", "dog", "sun", "rain", "tea", "book"]
    lines = ["text\tlabel"]
    for i in range(150):
        pos = i % 10 == 0
        w = rng.choice(words[:4] if pos else words[4:], 5)
        lines.append(" ".join(w) + f" n{i}\t{int(pos)}")
    pool_file.write_text("\n".join(lines) + "\n")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("scam wallet seed phrase\nwallet seed scam\n")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'core'}",
           "SYNAPSE_SOURCE_PLUGINS": "centroid_source"}
    cmd = [sys.executable, "-m", "stream_app.cli", "eval", "--pool", str(pool_file), "--seeds", str(seeds),
           "--method", "policy", "--policy-sources", "ibg,centroid", "--embedder", "hashing-64", "--tau", "0.2",
           "--k0", "5", "--max-query-ratio", "0.2", "--out", str(tmp_path / "out"), "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sources=ibg+centroid" in (tmp_path / "out" / "metrics.json").read_text()
    env.pop("SYNAPSE_SOURCE_PLUGINS")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False)
    assert out.returncode == 2 and "centroid" in out.stderr      # without the plug-in: one clear error


def test_example_source_is_a_valid_detector_setting():
    from stream_app.worker.settings import DetectorSettings

    assert DetectorSettings(name="d", candidates="centroid").candidates == "centroid"
    with pytest.raises(ValueError, match="live source"):
        DetectorSettings(name="d", candidates="knn")

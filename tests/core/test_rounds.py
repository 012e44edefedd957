"""Live rounds (synapse_stream.rounds) against the core methods on the same data."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.classifier import train_model
from synapse_stream.exceptions import ConfigError
from synapse_stream.index import ShardedIndex
from synapse_stream.methods.base import new_state
from synapse_stream.methods.gble import GBLE, knn_graph
from synapse_stream.methods.ibg import IBG
from synapse_stream.methods.policy import Policy
from synapse_stream.online import DetectorConfig, OnlineIBG
from synapse_stream.rounds import KNNGraph, LiveRounds
from synapse_stream.sources import SourceParams
from synapse_stream.sources.model import LiveModel
from synapse_stream.seeds import Seed, SeedOrigin


def clustered(n=400, d=24, seed=0, pos_frac=0.15):
    rng = np.random.default_rng(seed)
    centre_pos, centre_neg = rng.normal(size=d), rng.normal(size=d)
    y = (rng.random(n) < pos_frac).astype(np.int8)
    X = np.where(y[:, None] == 1, centre_pos, centre_neg) + rng.normal(scale=1.1, size=(n, d))
    S = centre_pos + rng.normal(scale=0.8, size=(6, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    S /= np.linalg.norm(S, axis=1, keepdims=True)
    return X.astype(np.float32), S.astype(np.float32), y


def live_setup(X, S, parts=2, tau=0.5, d_max=5, **kw):
    ids = [f"p{i}" for i in range(len(X))]
    index = ShardedIndex(X.shape[1], ef_search=400, ef_construction=400)
    for p in range(parts):
        rows = list(range(p, len(X), parts))
        index.add(p, [ids[i] for i in rows], X[rows])
    eng = OnlineIBG(DetectorConfig("d", tau if tau != "auto" else 0.6, d_max, online=False), index)
    for j, s in enumerate(S):
        eng.on_seed(Seed(f"s{j}", "", SeedOrigin.SYNTHETIC), s)
    params = SourceParams(tau=tau, d_max=d_max, k0=kw.get("k0", 100), seed=kw.get("seed", 0))
    return ids, index, eng, LiveRounds(eng.books, index, name="d", params=params, **kw)


def test_engine_offline_emits_nothing_but_keeps_books():
    X, S, y = clustered()
    ids, index, eng, _ = live_setup(X, S)
    assert eng.on_posts(ids[:5], X[:5]) == []
    out = eng.on_verdict(ids[0], 1)
    assert out.candidates == [] and eng.labels[ids[0]] == 1 and ids[0] in eng.seeds


def test_graph_equals_core_knn_graph():
    X, S, _ = clustered(n=300)
    ids, index, eng, _ = live_setup(X, S)
    g = KNNGraph(k=5)
    g.update(index, ids, {f"s{j}": s for j, s in enumerate(S)})
    core = knn_graph(np.vstack([X, S]), 5)
    names = ids + [f"seed:s{j}" for j in range(len(S))]
    perm = np.asarray([g.node_of[n] for n in names])
    live = g.adjacency()[perm][:, perm]
    assert (live != core).nnz == 0


def test_incremental_graph_keeps_new_nodes_knn():
    X, S, _ = clustered(n=200)
    ids, index, eng, _ = live_setup(X, S)
    g = KNNGraph(k=4)
    g.update(index, ids[:100], {})      # posts 100.. are in the index but not yet nodes
    assert len(g) == 100
    g.update(index, ids, {"s0": S[0]})
    assert len(g) == 201
    V = np.vstack([X, S[:1]])
    for name, row in (("p150", 150), ("seed:s0", 200)):
        sims = V @ V[row]
        sims[row] = -np.inf
        exact = {(ids + ["seed:s0"])[i] for i in np.argsort(-sims)[:4]}
        assert exact <= g.neighbours(name)


def test_graph_from_snapshot_vectors_equals_graph_from_index():
    """KNNGraph.update with the round's snapshot vectors (no read-back from the index) builds the same graph."""
    X, S, _ = clustered(n=300)
    _, index, _, _ = live_setup(X, S)
    snap_ids, V = index.vectors()
    assert np.array_equal(V, index.get_vectors(snap_ids))
    seeds = {f"s{j}": s for j, s in enumerate(S)}
    a, b = KNNGraph(k=5), KNNGraph(k=5)
    a.update(index, snap_ids, seeds)
    b.update(index, snap_ids, seeds, V)
    assert a.names == b.names and (a.adjacency() != b.adjacency()).nnz == 0
    # incrementally: part of the posts first, the rest (a subset of the snapshot's rows) later
    a, b = KNNGraph(k=5), KNNGraph(k=5)
    a.update(index, snap_ids[:120], {})
    b.update(index, snap_ids[:120], {}, V[:120])
    a.update(index, snap_ids, {"s0": S[0]})
    b.update(index, snap_ids, {"s0": S[0]}, V)
    assert a.names == b.names and (a.adjacency() != b.adjacency()).nnz == 0
    with pytest.raises(ConfigError):
        KNNGraph(k=5).update(index, snap_ids, {}, V[:10])


def _vectors_reference(index: ShardedIndex):
    """ShardedIndex.vectors as it was first written: each shard's whole matrix normalised, then stacked."""
    from synapse_stream.embedders.base import l2_normalise

    ids, mats = [], []
    for key in sorted(index.shards, key=str):
        for seg in index.shards[key].segments:     # each shard's segments, oldest first
            shard = seg.index
            n = len(shard)
            st = shard._index.__getstate__()[0]
            size, off = st["size_data_per_element"], st["offset_data"]
            raw = np.asarray(st["data_level0"])[: n * size].reshape(n, size)
            ids += shard.ids()
            mats.append(l2_normalise(raw[:, off:off + 4 * shard.dim].copy().view("<f4")))
    return ids, np.vstack(mats)


@pytest.mark.parametrize("block,bulk", [(7, 0), (7, 4096), (4096, 0), (4096, 4096)])
def test_snapshot_vectors_equal_stacked_normalised_shards(monkeypatch, block, bulk):
    """ShardedIndex.vectors writes every shard into one matrix from the unit vectors each segment keeps (filled
    in blocks, from hnswlib's serialised state or through get_items, as posts arrive): the same bits as
    normalising each shard's whole matrix and stacking them, and as reading the vectors back one by one."""
    import synapse_stream.index as index_mod

    monkeypatch.setattr(index_mod, "_UNIT_BLOCK", block)
    monkeypatch.setattr(index_mod, "_BULK", bulk)
    X, S, _ = clustered(n=300)
    X[5] *= 3.0                       # not unit length on the way in
    _, index, _, _ = live_setup(X[:200], S, parts=3)
    for more in (None, 1, 99):        # the kept vectors, then rows added since, across block boundaries
        if more:
            n = sum(len(sh) for sh in index.shards.values())
            rows = list(range(n, n + more))
            index.add(rows[0] % 3, [f"x{i}" for i in rows], X[rows])
        got_ids, V = index.vectors()
        ref_ids, R = _vectors_reference(index)
        assert got_ids == ref_ids and V.dtype == np.float32 and V.flags.c_contiguous
        assert np.array_equal(V, R)
        assert np.array_equal(V, index.get_vectors(got_ids))
    one_ids, one = index.shards[1].vectors()
    assert one_ids == index.shards[1].ids() and np.array_equal(one, index.get_vectors(one_ids))
    empty = ShardedIndex(X.shape[1])
    assert empty.vectors()[0] == [] and empty.vectors()[1].shape == (0, X.shape[1])
    empty.shard(0)
    assert empty.vectors()[1].shape == (0, X.shape[1])


def _bipartite_reference(P, XU, tau, d_max, chunk=256):
    """IBG's edge selection as it was written first: a top-d_max partition of every whole row, then τ."""
    best = np.full(len(XU), -np.inf, dtype=np.float32)
    k = min(d_max, len(XU))
    for start in range(0, len(P), chunk):
        sims = P[start:start + chunk] @ XU.T
        idx = (np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(XU)
               else np.broadcast_to(np.arange(len(XU)), sims.shape))
        vals = np.take_along_axis(sims, idx, axis=1)
        ok = vals > tau
        np.maximum.at(best, idx[ok], vals[ok])
    cols = np.flatnonzero(np.isfinite(best))
    return cols, best[cols]


def test_ibg_edges_equal_whole_row_selection_with_ties():
    """bipartite_batch picks each positive's top d_max among the columns above τ only; the edges are
    exactly those of a whole-row top d_max, including exact ties (duplicated posts) at the d_max-th value."""
    from synapse_stream.methods.ibg import bipartite_batch

    rng = np.random.default_rng(0)
    for trial in range(12):
        n, d = int(rng.integers(50, 1500)), int(rng.integers(4, 32))
        X = rng.standard_normal((n, d)).astype(np.float32)
        X[: n // 5] = X[0] + 0.3 * rng.standard_normal((n // 5, d)).astype(np.float32)   # a dense cluster
        dup = rng.choice(n, n // 10)
        X[dup] = X[rng.choice(n, len(dup))]                                              # exact duplicates
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        P = X[rng.choice(n, int(rng.integers(1, 400)))]
        for tau in (-0.2, 0.3, 0.6, 0.9):
            for d_max in (1, 5, 10, 5000):
                a, b = _bipartite_reference(P, X, tau, d_max), bipartite_batch(P, X, tau, d_max)
                assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), (trial, tau, d_max)


@pytest.mark.parametrize("sources", [("ibg",), ("ibg", "gble")])
def test_live_round_equals_core_round(sources):
    X, S, y = clustered()
    ids, index, eng, rounds = live_setup(X, S, parts=1, sources=sources, k0=20, seed=3)
    core_sources = {"ibg": IBG(tau=0.5, d_max=5)}
    if "gble" in sources:
        core_sources["gble"] = GBLE(k=10, k0=20)
    policy = Policy(core_sources, k0=20, seed=3)

    def same(core, live):
        assert [ids[r] for r, _ in core] == [c.post_id for c in live]
        assert [policy._owner[r] for r, _ in core] == [c.reason for c in live]

    lockstep(policy, new_state(X, S, ids, seed=3), rounds, eng, ids, y, check=same)


def lockstep(policy, state, rounds, eng, ids, y, *, check, n_rounds: int = 3) -> list[int]:
    """The core policy and the live rounds side by side, every verdict answered before the next round (as in
    eval); ``check(core_batch, live_batch)`` after each round. Returns the last round's rows."""
    policy._prepare(state)
    rows: list[int] = []
    for _ in range(n_rounds):
        core = policy._select(state)
        live = rounds.plan()
        check(core, live)
        rows = [r for r, _ in core]
        labels = [int(y[r]) for r in rows]
        state.labels[rows] = labels
        state.order.extend(rows)
        state.rounds.append({"round": len(state.rounds) + 1, "queried": len(rows), "positives": sum(labels)})
        policy._observe(state, rows, labels)
        for c in live:
            prev = eng.labels.get(c.post_id)
            eng.on_verdict(c.post_id, int(y[ids.index(c.post_id)]))
            rounds.observe(c.post_id, int(y[ids.index(c.post_id)]), first=prev is None)
    return rows


def test_pending_posts_are_never_proposed_again():
    X, S, y = clustered()
    ids, index, eng, rounds = live_setup(X, S, sources=("ibg", "gble"), k0=15)
    first = {c.post_id for c in rounds.plan()}
    assert first
    rounds.touch()
    second = {c.post_id for c in rounds.plan()}     # nothing answered: all of the first round is pending
    assert not first & second


def test_model_source_and_ranker():
    X, S, y = clustered()
    ids, index, eng, rounds = live_setup(X, S, sources=("ibg", "gble", "model"), k0=20)
    first = rounds.plan()     # no model version yet: only IBG and GBLE propose
    assert first and {c.reason for c in first} <= {"ibg", "gble"}
    rng = np.random.default_rng(0)
    prov = X[rng.choice(len(X), len(S), replace=False)]
    lab = [ids.index(p) for p in rounds.rounds[-1].sent]
    mv = train_model("d", 1, S, X[lab], y[lab], prov, folds=0)
    assert rounds.uses_model and isinstance(rounds.policy.sources["model"], LiveModel)
    rounds.use_model(mv)
    for pid in rounds.rounds[-1].sent:
        prev = eng.labels.get(pid)
        eng.on_verdict(pid, int(y[ids.index(pid)]))
        rounds.observe(pid, int(y[ids.index(pid)]), first=prev is None)
    cands = rounds.plan()
    assert {c.reason for c in cands} <= {"ibg", "gble", "model"} and "model" in {c.reason for c in cands}
    # the model source proposes the highest-probability unlabelled posts
    mine = [c for c in cands if c.reason == "model"]
    assert all(c.score >= 0 for c in mine)
    assert len({c.post_id for c in cands}) == len(cands)


def test_observe_credits_first_verdict_once():
    X, S, y = clustered()
    ids, index, eng, rounds = live_setup(X, S, sources=("ibg",), k0=5)
    c = rounds.plan()[0]
    assert rounds.observe(c.post_id, 1, first=True) == "ibg"
    rounds.observe(c.post_id, 0, first=False)
    assert rounds.credit.fresh["ibg"] == [1.0, 0.0]
    assert rounds.rounds[-1].answered == 1


def test_due_waits_for_the_previous_round():
    X, S, y = clustered()
    ids, index, eng, rounds = live_setup(X, S, sources=("ibg",), k0=5)
    rounds.touch()
    assert rounds.due(0.0, min_interval=1, timeout=100, outstanding=0)
    cands = rounds.plan(now=0.0)
    rounds.touch()
    assert not rounds.due(5.0, min_interval=1, timeout=100, outstanding=0)    # nothing answered
    for c in cands:
        rounds.observe(c.post_id, 0, first=True)
    assert rounds.due(5.0, min_interval=1, timeout=100, outstanding=0)
    assert not rounds.due(0.5, min_interval=1, timeout=100, outstanding=0)    # too soon
    rounds.rounds[-1].answered = 0
    assert rounds.due(200.0, min_interval=1, timeout=100, outstanding=0)      # timed out
    rounds.seed_added(199.5)                                                  # seeds still arriving
    assert not rounds.due(200.0, min_interval=1, timeout=100, outstanding=0, settle=2.0)
    assert rounds.due(202.0, min_interval=1, timeout=100, outstanding=0, settle=2.0)


def test_share_scales_k0():
    X, S, y = clustered()
    ids, index, eng, rounds = live_setup(X, S, sources=("ibg",), k0=20, tau=0.0, d_max=50)
    assert len(rounds.plan(share=0.5)) == 10


def test_rounds_through_the_kept_buffer_equal_rounds_with_fresh_arrays():
    """The rounds write their snapshots into one buffer kept between rounds (``RoundSnapshot._rows_buffer``) while
    posts arrive in every shard between them (each round's rows move); the batches are those of rounds given a
    new array each time, and what the sources keep (IBG's positive vectors) is no view of the buffer."""
    X, S, y = clustered(n=600)
    runs = []
    for fresh in (False, True):
        ids, index, eng, rounds = live_setup(X[:300], S, parts=2, sources=("ibg", "gble", "model"), k0=20)
        if fresh:
            rounds.snap._rows_buffer = lambda n: np.empty((n, X.shape[1]), np.float32)
        got, bufs = [], []
        for step in range(4):
            batch = rounds.plan()
            got.append([(c.post_id, c.reason) for c in batch])
            bufs.append(rounds.snap._buf)
            for c in batch:
                i = int(c.post_id[1:])
                eng.on_verdict(c.post_id, int(y[i]))
                rounds.observe(c.post_id, int(y[i]), first=True)
            rows = list(range(300 + 75 * step, 375 + 75 * step))
            for p in range(2):
                mine = [i for i in rows if i % 2 == p]
                index.add(p, [f"p{i}" for i in mine], X[mine])
        runs.append(got)
        if not fresh:
            assert all(b is bufs[0] for b in bufs[1:])    # one buffer: the window grew within its headroom
            ibg = rounds.policy.sources["ibg"]
            assert ibg._vecs and not any(np.shares_memory(v, rounds.snap._buf) for v in ibg._vecs.values())
    assert runs[0] == runs[1] and all(runs[0])

"""The kNN graph grown between rounds (``LiveRounds.advance``): it takes exactly the posts indexed since it last
grew, part by part, as the same updates called by hand would; a round after it searches only the seeds; the limit,
a drop, a rebalance and the sealed segments' shares. The upkeep starts on an empty window (``advance`` then) or after
the first round, which builds the graph over its posts in one update as the core does."""
from __future__ import annotations

import numpy as np
from test_round_steps import DIM, counting, data, edges_by_name, rounds_for

from synapse_stream.graph import GraphShares, KNNGraph
from synapse_stream.index import ShardedIndex
from synapse_stream.segments import Retention


def arriving(X, batches=4, parts=2, seal=40):
    """A segmented index and a function that adds the next batch of posts (round-robin over the shards)."""
    index = ShardedIndex(DIM, Retention(segment_posts=seal), ef_search=200, ef_construction=200)
    ids = [f"p{i}" for i in range(len(X))]
    edges = np.linspace(0, len(X), batches + 1).astype(int)

    def add(b):
        for p in range(parts):
            rows = [i for i in range(edges[b], edges[b + 1]) if i % parts == p]
            index.add(p, [ids[i] for i in rows], X[rows], ts=[float(i) for i in rows])
    return ids, index, add


def upkept(n=240, batches=4, store=None, sources=("gble",)):
    """``arriving`` posts and rounds whose upkeep started on the empty window."""
    X, S = data(n=n)
    ids, index, add = arriving(X, batches=batches)
    _, r = rounds_for(index, S, store, sources=sources)
    r.advance()                                    # on the empty window: the upkeep starts
    return ids, index, add, r, S


def test_advance_takes_the_new_rows_of_each_part_as_the_same_updates_by_hand():
    ids, index, add, r, S = upkept(240, 4)
    ref = KNNGraph(r.graph.k, r.graph.ef)
    done: dict = {}
    for b in range(4):
        add(b)
        assert r.advance(limit=10_000) > 0 and r.live.lag == 0
        for part, count in index.parts():          # the reference: each part's new rows, oldest part first
            lo = done.get(part, 0)
            if count > lo:
                new_ids, vecs = part.rows(lo, count)
                ref.update(index, new_ids, {}, vecs)
                done[part] = count
    assert set(r.graph.node_of) == set(ids) and r.graph.names == ref.names
    assert (r.graph.adjacency() != ref.adjacency()).nnz == 0
    assert r.advance() == 0                        # nothing new: nothing searched


def test_after_the_upkeep_a_round_searches_only_the_seeds():
    ids, index, add, r, S = upkept(240, 4)
    for b in range(4):
        add(b)
        r.advance()
    searched = counting(index)
    first = r.plan()
    assert first and sum(searched) == len(S)       # the posts were all in the graph already
    _, alone = rounds_for(index, S)                # the same round without the upkeep searches every post
    searched.clear()
    alone.plan()
    assert sum(searched) == len(ids) + len(S)


def test_the_limit_leaves_a_lag_the_next_calls_take():
    ids, index, add, r, S = upkept(200, 1)
    add(0)
    assert r.advance(limit=70) == 70 and r.live.lag == len(ids) - 70
    assert r.advance(limit=70) == 70 and r.live.lag == len(ids) - 140
    assert r.advance(limit=70) == 60 and r.live.lag == 0
    assert set(r.graph.node_of) == set(ids)


def test_a_drop_and_a_rebalance_between_rounds():
    ids, index, add, r, S = upkept(240, 2)
    add(0)
    r.advance()
    shard = index.shards[0]
    oldest = shard.segments[0]
    gone = oldest.index.ids()
    shard.drop([oldest.name])                      # as retention does: the segment, then the rounds are told
    r.expire(gone)
    add(1)
    r.advance()
    assert not set(gone) & set(r.graph.node_of)
    assert set(r.graph.node_of) == {p for p in ids if p in index} and r.live.lag == 0
    assert oldest.index not in r.live.grown            # no reference kept to a dropped segment
    index.drop(1)                                  # a rebalance took shard 1
    r.forget()
    assert r.advance() == 0 and r.live.lag == len(index)   # after a reset the next round builds it whole
    r.touch()
    r.plan()
    assert {p for p in r.graph.node_of if not p.startswith("seed:")} == set(index.shards[0].ids())
    add_more = r.advance()
    assert add_more == 0 and r.live.lag == 0


def test_the_upkeep_saves_the_shares_of_sealed_segments_and_a_restart_loads_them(tmp_path):
    X, S = data(n=240)
    ids, index, add = arriving(X)
    store = GraphShares(tmp_path)
    _, r = rounds_for(index, S, store)
    r.advance()
    for b in range(4):
        add(b)
        r.advance()
    sealed = [(k, s.name) for k, sh in index.shards.items() for s in sh.segments if s.sealed]
    assert len(sorted(tmp_path.rglob("*.npz"))) == len(sealed) > 0   # saved without any round
    _, again = rounds_for(index, S, store)
    searched = counting(index)
    assert again.advance() == 0                    # a restart: the first round loads the shares, searches the rest
    again.plan()
    growing = sum(len(s.index) for sh in index.shards.values() for s in sh.segments if not s.sealed)
    assert sum(searched) == growing + len(S) and again.advance() == 0 and again.live.lag == 0
    held = {p for sh in index.shards.values() for s in sh.segments if s.sealed for p in s.index.ids()}

    def sealed_edges(g):   # the sealed segments' rows came from their shares: the same edges among their posts
        return {e for e in edges_by_name(g) if e[0] in held and e[1] in held}
    assert sealed_edges(again.graph) == sealed_edges(r.graph) and sealed_edges(r.graph)


def test_graph_first_rounds_plan_over_the_posts_the_graph_has_taken():
    X, S = data(n=240)
    ids, index, add = arriving(X, batches=2)
    _, r = rounds_for(index, S, sources=("ibg", "gble"))
    r.graph_first = True
    assert r.plan() == []                          # no posts yet: the graph over none is built, the upkeep starts
    add(0)
    r.advance()
    taken = set(r.graph.node_of)
    add(1)                                         # indexed after the upkeep: the next round's
    searched = counting(index)
    r.touch()
    inp = r.gather()
    out = r.compute(inp)
    assert set(out.ids) == {p for p in taken if not p.startswith("seed:")} and len(out.ids) == 120
    assert sum(searched) == len(S)                 # the round searched the seeds only
    assert {out.ids[row] for row, _, _ in out.batch} <= set(out.ids)
    r.commit(out)
    r.advance()
    r.touch()
    assert len(r.compute(r.gather()).ids) == len(ids)


def test_rounds_without_the_upkeep_keep_no_reference_to_a_dropped_segment():
    X, S = data(n=240)
    ids, index, add = arriving(X, batches=1)
    _, r = rounds_for(index, S)
    add(0)
    r.plan()
    shard = index.shards[0]
    oldest = shard.segments[0]
    assert oldest.index in r.live.grown
    r.expire(oldest.index.ids())
    shard.drop([oldest.name])
    r.touch()
    r.plan()
    assert oldest.index not in r.live.grown and len(r.live.grown) == len(index.parts())


def test_a_short_upkeep_is_shared_by_the_shards_not_taken_by_the_first():
    X, S = data(n=240)
    ids, index, add = arriving(X, batches=1)     # 120 posts a shard, 3 segments each
    _, r = rounds_for(index, S)
    r.advance()
    add(0)
    r.advance(limit=60)
    per_shard = {key: sum(1 for p in sh.ids() if p in r.graph.node_of) for key, sh in index.shards.items()}
    assert per_shard == {0: 30, 1: 30} and r.live.lag == 180
    r.advance(limit=10_000)
    assert r.live.lag == 0 and set(r.graph.node_of) == set(ids)

"""The kNN graph's scope (``KNNGraph(scope=...)``): with ``"recent"`` a new post's neighbours are searched in its
own segment and the two newest segments of every shard only (the growing one and the last sealed one), so its cost
does not grow with the sealed segments; with at most two parts per shard it is the ``"window"`` graph, edge for
edge; the seeds search every part either way."""
from __future__ import annotations

import pytest
from test_round_steps import DIM, data, edges_by_name, segmented

from synapse_stream.exceptions import ConfigError
from synapse_stream.graph import RECENT_PARTS, KNNGraph
from synapse_stream.index import ShardedIndex


def searches(index) -> list[tuple[object, int]]:
    """Records every part search (part, rows) the graph makes, per part and through ``knn_parts``."""
    seen: list[tuple[object, int]] = []
    for part, _ in index.parts():
        real = part.knn_labels

        def knn_labels(q, k, ef=None, _real=real, _part=part):
            seen.append((_part, len(q)))
            return _real(q, k, ef)
        part.knn_labels = knn_labels
    return seen


def built(index, scope, S):
    ids, X, parts = index.vectors_parts()
    g = KNNGraph(k=5, ef=200, scope=scope)
    g.update(index, ids, {f"s{j}": s for j, s in enumerate(S)}, X, parts)
    return g, ids, parts


def test_one_part_per_shard_gives_the_window_graph():
    X, S = data(n=300)
    index = ShardedIndex(DIM, ef_search=200, ef_construction=200)
    ids = [f"p{i}" for i in range(len(X))]
    for p in range(3):
        rows = list(range(p, len(X), 3))
        index.add(p, [ids[i] for i in rows], X[rows])
    recent, _, _ = built(index, "recent", S)
    window, _, _ = built(index, "window", S)
    assert recent.names == window.names and edges_by_name(recent) == edges_by_name(window)


def test_two_parts_per_shard_give_the_window_graph():
    X, S = data(n=300)
    ids, index = segmented(X, parts=2, seal=100)     # 150 posts a shard: one sealed segment and a growing one
    assert [len(s.segments) for s in index.shards.values()] == [RECENT_PARTS] * 2
    recent, _, _ = built(index, "recent", S)
    window, _, _ = built(index, "window", S)
    assert edges_by_name(recent) == edges_by_name(window)


def test_recent_searches_the_own_and_the_newest_segments_only():
    X, S = data(n=400)
    ids, index = segmented(X, parts=2, seal=50)      # 200 posts a shard: 3 sealed segments and a growing one each
    parts = index.parts()
    newest = index.newest_parts(RECENT_PARTS)
    assert len(parts) == 8 and len(newest) == 4 and all(p is not q for p in newest for q in parts[:2])
    seen = searches(index)
    g, ids, where = built(index, "recent", S)
    searched = {}
    for part, n in seen:
        searched[id(part)] = searched.get(id(part), 0) + n
    recent = {id(p) for p in newest}
    for part, _f, count in where:                   # every post searches the newest; the seeds every part
        assert searched[id(part)] == (len(ids) if id(part) in recent else count) + len(S)
    # and each post's row holds only posts of its own or a newest segment (or seeds)
    home = {pid: id(p) for p, f, c in where for pid in ids[f:f + c]}
    for R, C in zip(g._rows, g._cols):
        for r, c in zip(R.tolist(), C.tolist()):
            a, b = g.names[r], g.names[c]
            if not (a.startswith("seed:") or b.startswith("seed:")):
                assert home[b] == home[a] or home[b] in recent


def test_recent_cuts_the_searches_and_keeps_most_edges():
    X, S = data(n=400)
    ids, index = segmented(X, parts=2, seal=25)     # 7 sealed segments and a growing one a shard
    seen = searches(index)
    recent, _, _ = built(index, "recent", S)
    n_recent = sum(n for _, n in seen)
    seen.clear()
    window, _, _ = built(index, "window", S)
    n_window = sum(n for _, n in seen)
    assert n_window == (len(ids) + len(S)) * len(index.parts())
    recent_parts = {id(p) for p in index.newest_parts(RECENT_PARTS)}
    older = sum(c for p, c in index.parts() if id(p) not in recent_parts)
    # a post of an older segment: its own and the 4 newest; of a newest one: the 4; a seed: all 16
    assert n_recent == 5 * older + 4 * (len(ids) - older) + len(S) * len(index.parts()) < n_window / 3
    a, b = edges_by_name(recent), edges_by_name(window)
    assert len(a & b) > 0.4 * len(b)                 # a subsample's kNN graph: many edges are the same
    assert recent.names == window.names


def test_an_unknown_scope_is_a_config_error():
    with pytest.raises(ConfigError):
        KNNGraph(k=3, scope="everything")
    g = KNNGraph(k=3, scope="recent")
    g.reset()
    assert g.scope == "recent"


def test_the_rounds_grow_a_recent_graph_between_rounds_with_fewer_searches():
    from test_graph_upkeep import arriving
    from test_round_steps import rounds_for

    from synapse_stream.sources.base import SourceParams

    X, S = data(n=480)
    totals = {}
    for scope in ("window", "recent"):
        ids, index, add = arriving(X, batches=6, seal=20)
        _, r = rounds_for(index, S)
        r.live.graph = KNNGraph(r.graph.k, r.graph.ef, scope)
        r.advance()                                   # the upkeep starts on the empty window
        seen: list[int] = []
        for b in range(6):
            add(b)
            for part, _ in index.parts():
                if not hasattr(part.knn_labels, "counted"):
                    real = part.knn_labels

                    def knn_labels(q, k, ef=None, _real=real):
                        seen.append(len(q))
                        return _real(q, k, ef)
                    knn_labels.counted = True
                    part.knn_labels = knn_labels
            r.advance(limit=10_000)
        assert r.live.lag == 0 and set(r.graph.node_of) >= set(ids)
        totals[scope] = sum(seen)
    assert totals["recent"] < totals["window"] / 2
    built = rounds_for(ShardedIndex(DIM), S)[1]
    assert built.graph.scope == "window" and SourceParams().gble_scope == "window"   # the core's default

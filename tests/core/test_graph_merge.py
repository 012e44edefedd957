"""The kNN graph's numpy merge of every segment's nearest posts equals the merge of one search over one index
(the previous code: ``ShardedIndex.knn``'s (-cosine, id) order cut to k + 1, then seeds, then (-cosine, node)),
tie for tie, with exact duplicate posts whose ids sort in another order than their arrival."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.graph import KNNGraph
from synapse_stream.index import ShardedIndex
from synapse_stream.segments import Retention

DIM = 12


def reference_rows(g: KNNGraph, index: ShardedIndex, names: list[str], queries: np.ndarray) -> set[tuple[str, str]]:
    """Row by row with Python tuples, as ``KNNGraph.update`` did before ``knn_parts``: each node's k best among the
    merged k + 1 nearest posts (ties by id) and the k + 1 nearest seeds, ties by node number."""
    k = g.k
    S = np.vstack(g._seed_vecs) if g._seed_vecs else np.zeros((0, DIM), np.float32)
    found = index.knn(queries, k + 1)
    sims = queries @ S.T if len(S) else np.zeros((len(queries), 0), np.float32)
    out = set()
    for j, name in enumerate(names):
        cand = [(s, pid) for pid, s in found[j] if pid != name and pid in g.node_of]
        cand += [(float(sims[j, c]), g._seed_names[c]) for c in range(len(S)) if g._seed_names[c] != name]
        cand.sort(key=lambda t: (-t[0], g.node_of[t[1]]))
        # only the k + 1 nearest seeds could enter before; taking all of them changes nothing but ties among seeds
        out |= {(name, other) for _, other in cand[:k]}
    return out


def own_rows(g: KNNGraph) -> set[tuple[str, str]]:
    return {(g.names[r], g.names[c]) for R, C in zip(g._rows, g._cols) for r, c in zip(R.tolist(), C.tolist())}


@pytest.mark.parametrize("k", [2, 3, 5])
def test_numpy_merge_equals_one_index_merge_with_duplicates(k, monkeypatch):
    rng = np.random.default_rng(k)
    base = rng.normal(size=(60, DIM)).astype(np.float32)
    X = np.vstack([base, base[:25], base[:25], base[:10]])     # up to 4 exact copies of a post, in other segments
    order = rng.permutation(len(X))                            # copies arrive far apart; ids: p0, p1, ... p9, p10 ...
    X = X[order]
    ids = [f"p{i}" for i in range(len(X))]
    index = ShardedIndex(DIM, Retention(segment_posts=17), ef_search=300, ef_construction=300)
    for start in range(0, len(X), 23):
        index.add(start % 2, ids[start:start + 23], X[start:start + 23], ts=[float(i) for i in range(start, start + 23)])
    assert sum(len(s.segments) for s in index.shards.values()) >= 6
    seeds = {f"s{j}": X[j * 7] for j in range(4)}             # seeds equal to posts: ties between a post and a seed
    cuts = []
    real = KNNGraph._cut_by_id

    def counting(*a):
        cuts.append(1)
        return real(*a)
    monkeypatch.setattr(KNNGraph, "_cut_by_id", staticmethod(counting))
    g = KNNGraph(k)
    _, V = index.vectors()
    all_ids = index.vectors()[0]
    g.update(index, all_ids, seeds, V)
    names = all_ids + ["seed:" + s for s in seeds]
    Q = np.vstack([V, np.vstack([v / np.linalg.norm(v) for v in seeds.values()])]).astype(np.float32)
    assert own_rows(g) == reference_rows(g, index, names, Q)
    assert cuts, "no row tied at the cut: the test does not exercise the tie path"


def test_knn_parts_merged_equal_knn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, DIM)).astype(np.float32)
    index = ShardedIndex(DIM, Retention(segment_posts=40), ef_search=300)
    index.add(0, [f"p{i}" for i in range(200)], X, ts=[float(i) for i in range(200)])
    q = X[:30]
    parts = index.knn_parts(q, 6)
    assert len(parts) == 5
    for j, row in enumerate(index.knn(q, 6)):
        merged = sorted(((ids[int(lab)], float(s)) for ids, L, S in parts for lab, s in zip(L[j], S[j])),
                        key=lambda t: (-t[1], t[0]))[:6]
        assert merged == row


def _same_csr(a, b) -> bool:
    a, b = a.tocsr(), b.tocsr()
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data) and a.data.dtype == b.data.dtype)


def test_kept_adjacency_and_transition_equal_a_whole_rebuild():
    """Through updates, new seeds and a drop, the adjacency kept between rounds (new edges merged in) and its
    transition equal the previous whole rebuild ``((A + Aᵀ) > 0)`` and ``row_normalise`` exactly."""
    from scipy import sparse

    from synapse_stream.methods.gble import row_normalise

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, DIM)).astype(np.float32)
    index = ShardedIndex(DIM, Retention(segment_posts=50), ef_search=200)
    g = KNNGraph(4)
    ids = [f"p{i}" for i in range(300)]
    seeds = {}
    for step, stop in enumerate((60, 61, 130, 200, 300)):
        index.add(0, ids[:stop], X[:stop], ts=[float(i) for i in range(stop)])
        if step == 2:
            seeds["s0"] = X[5] + 0.01
        got_ids, V = index.vectors()
        g.update(index, got_ids, seeds, V)
        if step == 3:
            assert g.drop(ids[:50]) == 50
            index.shards[0].drop([index.shards[0].segments[0].name])
            g.update(index, index.vectors()[0], seeds, index.vectors()[1])
        g._W = None
        r, c = np.concatenate(g._rows), np.concatenate(g._cols)
        n = len(g)
        A0 = sparse.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n))
        A0 = ((A0 + A0.T) > 0).astype(np.float32).tocsr()
        assert _same_csr(g.adjacency(), A0)
        assert _same_csr(g.adjacency(), g.adjacency_full())
        W0 = row_normalise(A0).tocsr()
        W0.sort_indices()
        assert _same_csr(g.transition(), W0)

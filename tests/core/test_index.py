"""PostIndex: growth, search semantics against brute force, duplicates, persistence, concurrency."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from synapse_stream.exceptions import PostIndexError
from synapse_stream.index import PostIndex


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _random(n, d, seed=0):
    return _unit(np.random.default_rng(seed).normal(size=(n, d)))


def _brute(X, ids, q, k, *, exclude=(), min_sim=None):
    """Exact top-k by cosine (float64), as (id, sim) best first."""
    sims = X.astype(np.float64) @ _unit(q).astype(np.float64)
    order = np.argsort(-sims, kind="stable")
    out = []
    for i in order:
        if min_sim is not None and not sims[i] > min_sim:
            break
        if ids[i] in exclude:
            continue
        out.append((ids[i], float(sims[i])))
        if len(out) == k:
            break
    return out


@pytest.fixture
def data():
    X = _random(600, 24, seed=1)
    ids = [f"p{i}" for i in range(len(X))]
    idx = PostIndex(24, ef_search=600, initial_capacity=64)
    assert idx.add(ids, X) == 600
    return idx, X, ids


# ---------------------------------------------------------------------- growth and basics
def test_grows_beyond_initial_capacity():
    X = _random(1000, 16, seed=2)
    idx = PostIndex(16, initial_capacity=16)
    assert idx.capacity == 16
    added = 0
    for start in range(0, 1000, 137):  # uneven batches
        added += idx.add([f"p{i}" for i in range(start, min(start + 137, 1000))], X[start:start + 137])
    assert added == 1000 and len(idx) == 1000
    assert idx.capacity >= 1000
    assert idx.ids() == [f"p{i}" for i in range(1000)]
    # every vector can be found again (self is the nearest neighbour of itself)
    hits = idx.search(X[::50], k=1)
    assert [h[0][0] for h in hits] == [f"p{i}" for i in range(0, 1000, 50)]
    np.testing.assert_allclose(idx.get_vectors(["p0", "p999"]), X[[0, 999]], atol=1e-6)


def test_k_is_clamped_to_size():
    X = _random(5, 8)
    idx = PostIndex(8)
    idx.add(list("abcde"), X)
    res = idx.search(X[0], k=100)[0]
    assert len(res) == 5 and sorted(p for p, _ in res) == list("abcde")
    assert idx.search(X[0], k=0) == [[]]
    assert PostIndex(8).search(X[:2], k=3) == [[], []]


def test_search_matches_brute_force(data):
    idx, X, ids = data
    Q = _random(30, 24, seed=3)
    for q, got in zip(Q, idx.search(Q, k=10)):
        want = _brute(X, ids, q, 10)
        assert [p for p, _ in got] == [p for p, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
        sims = [s for _, s in got]
        assert sims == sorted(sims, reverse=True), "results must be best first"


def test_exclude_set_and_predicate(data):
    idx, X, ids = data
    q = _random(1, 24, seed=4)[0]
    top30 = [p for p, _ in _brute(X, ids, q, 30)]
    banned = set(top30[:20])  # forces the search to widen past its first k
    want = [p for p, _ in _brute(X, ids, q, 5, exclude=banned)]
    assert want == top30[20:25]
    by_set = [p for p, _ in idx.search(q, k=5, exclude=banned)[0]]
    by_dict = [p for p, _ in idx.search(q, k=5, exclude=dict.fromkeys(banned, 1))[0]]
    by_pred = [p for p, _ in idx.search(q, k=5, exclude=lambda pid: pid in banned)[0]]
    assert by_set == by_dict == by_pred == want
    odd = [p for p, _ in idx.search(q, k=7, exclude=lambda pid: int(pid[1:]) % 2 == 1)[0]]
    assert odd == [p for p, _ in _brute(X, ids, q, 7, exclude={i for i in ids if int(i[1:]) % 2})]
    # excluding everything leaves nothing
    assert idx.search(q, k=5, exclude=set(ids)) == [[]]


def test_min_sim_is_strict(data):
    idx, X, ids = data
    q = _random(1, 24, seed=5)[0]
    for floor in (0.0, 0.2, 0.35):
        got = idx.search(q, k=50, min_sim=floor)[0]
        want = _brute(X, ids, q, 50, min_sim=floor)
        assert [p for p, _ in got] == [p for p, _ in want]
        assert all(s > floor for _, s in got)
    # exact cosines: an orthogonal vector has cos exactly 0, so min_sim=0 drops it and a lower floor keeps it
    idx2 = PostIndex(3)
    idx2.add(["x", "y", "z"], np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32))
    q2 = np.array([1, 0, 0], np.float32)
    assert [p for p, _ in idx2.search(q2, k=3, min_sim=0.0)[0]] == ["x"]
    assert sorted(p for p, _ in idx2.search(q2, k=3, min_sim=-1e-6)[0]) == ["x", "y", "z"]
    assert idx2.search(q2, k=3, min_sim=1.0)[0] == []


def test_min_sim_with_exclude(data):
    idx, X, ids = data
    q = _random(1, 24, seed=6)[0]
    top = [p for p, _ in _brute(X, ids, q, 8)]
    floor = 0.25
    got = idx.search(q, k=8, exclude=set(top[:3]), min_sim=floor)[0]
    assert [p for p, _ in got] == [p for p, _ in _brute(X, ids, q, 8, exclude=set(top[:3]), min_sim=floor)]


def test_duplicate_ids_skipped():
    X = _random(7, 8, seed=7)
    idx = PostIndex(8)
    assert idx.add(["a", "b"], X[:2]) == 2
    assert idx.add(["b", "c", "c", "a", "d"], X[2:7]) == 2   # c is X[3] (its first row), d is X[6]
    assert len(idx) == 4 and idx.ids() == ["a", "b", "c", "d"]
    # the first vector given for an id is the one kept
    np.testing.assert_allclose(idx.get_vectors(["b"])[0], X[1], atol=1e-6)
    np.testing.assert_allclose(idx.get_vectors(["c", "d"]), X[[3, 6]], atol=1e-6)
    assert idx.add(["a"], X[:1]) == 0
    assert "a" in idx and "zz" not in idx


def test_wrong_dimension_and_mismatch():
    idx = PostIndex(8)
    with pytest.raises(PostIndexError):
        idx.add(["a"], _random(1, 9))
    idx.add(["a"], _random(1, 8))
    with pytest.raises(PostIndexError):
        idx.search(_random(1, 7)[0], k=1)
    with pytest.raises(PostIndexError):
        idx.add(["b", "c"], _random(1, 8))
    assert len(idx) == 1


def test_get_vectors_unknown_id():
    idx = PostIndex(8)
    idx.add(["a"], _random(1, 8))
    with pytest.raises(PostIndexError, match="nope"):
        idx.get_vectors(["a", "nope"])
    assert idx.get_vectors([]).shape == (0, 8)


# ---------------------------------------------------------------------- persistence
def _files(d):
    return sorted(p.name for p in d.iterdir())


def test_save_load_round_trip(tmp_path, data):
    idx, X, ids = data
    path = tmp_path / "idx" / "posts.json"
    idx.save(path)
    back = PostIndex.load(path)
    assert len(back) == len(idx) and back.ids() == idx.ids() and back.dim == idx.dim
    Q = _random(20, 24, seed=8)
    assert back.search(Q, k=10, min_sim=0.1) == idx.search(Q, k=10, min_sim=0.1)
    np.testing.assert_array_equal(back.get_vectors(ids[:5]), idx.get_vectors(ids[:5]))
    # a loaded index keeps growing
    extra = _random(100, 24, seed=9)
    assert back.add([f"n{i}" for i in range(100)], extra) == 100
    assert back.search(extra[7], k=1)[0][0][0] == "n7"


def test_second_save_replaces_first(tmp_path, data):
    idx, X, ids = data
    path = tmp_path / "posts.json"
    idx.save(path)
    first = _files(tmp_path)
    assert len(first) == 3 and "posts.json" in first
    idx.add(["late"], _random(1, 24, seed=10))
    idx.save(path)
    second = _files(tmp_path)
    assert len(second) == 3 and "posts.json" in second
    assert not (set(first) - {"posts.json"}) & set(second), "old generation files were left behind"
    assert not any(f.endswith(".tmp") for f in second)
    back = PostIndex.load(path)
    assert len(back) == 601 and "late" in back


@pytest.mark.parametrize("content", ["", "{not json", json.dumps({"version": 2}), json.dumps([1, 2])])
def test_load_corrupt_manifest(tmp_path, content):
    path = tmp_path / "posts.json"
    path.write_text(content)
    with pytest.raises(PostIndexError):
        PostIndex.load(path)


def test_load_missing_manifest(tmp_path):
    with pytest.raises(PostIndexError):
        PostIndex.load(tmp_path / "absent.json")


@pytest.mark.parametrize("damage", ["drop_ids", "drop_graph", "truncate_ids", "strip_keys"])
def test_load_damaged_index_files(tmp_path, data, damage):
    idx, _, _ = data
    path = tmp_path / "posts.json"
    idx.save(path)
    man = json.loads(path.read_text())
    if damage == "drop_ids":
        (tmp_path / man["ids"]).unlink()
    elif damage == "drop_graph":
        (tmp_path / man["graph"]).unlink()
    elif damage == "truncate_ids":
        (tmp_path / man["ids"]).write_text('["p0", "p1"')
    else:
        path.write_text(json.dumps({"version": 1, "dim": 24}))
    with pytest.raises(PostIndexError):
        PostIndex.load(path)


# ---------------------------------------------------------------------- concurrency
def test_one_writer_many_readers():
    d, total, batch = 16, 3000, 25
    X = _random(total, d, seed=11)
    Q = _random(50, d, seed=12)
    idx = PostIndex(d, initial_capacity=16, ef_construction=64)
    idx.add(["p0"], X[:1])
    errors: list[BaseException] = []
    done = threading.Event()
    searches = [0] * 4

    def writer():
        try:
            t_end = time.monotonic() + 1.0
            i = 1
            while i < total:
                idx.add([f"p{j}" for j in range(i, min(i + batch, total))], X[i:i + batch])
                i += batch
                # spread the writes over about a second
                time.sleep(max(0.0, (t_end - time.monotonic()) / max(1, (total - i) // batch + 1)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader(r):
        rng = np.random.default_rng(r)
        try:
            while not done.is_set() or searches[r] < 5:
                size = len(idx)
                res = idx.search(Q[rng.integers(len(Q))], k=10, exclude=lambda p: p.endswith("7"))[0]
                assert len(res) <= 10
                sims = [s for _, s in res]
                assert sims == sorted(sims, reverse=True)
                assert all(not p.endswith("7") and int(p[1:]) < total for p, _ in res)
                assert size >= 1
                searches[r] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a thread hung (deadlock?)"
    assert not errors, errors[:3]
    assert len(idx) == total and len(set(idx.ids())) == total
    assert all(s >= 5 for s in searches)
    np.testing.assert_allclose(idx.get_vectors([f"p{total - 1}"])[0], X[-1], atol=1e-6)


# ---------------------------------------------------------------------- payloads and shards
def test_payloads_and_meta_survive_save_load(tmp_path):
    X = _random(5, 8, seed=13)
    idx = PostIndex(8)
    idx.add(list("abc"), X[:3], payloads=["text a", None, 'with "quotes"'])
    idx.add(["d", "e"], X[3:])
    idx.meta["offset"] = 41
    assert idx.payload("a") == "text a" and idx.payload("b") is None and idx.payload("e") is None
    with pytest.raises(PostIndexError):
        idx.payload("zz")
    idx.save(tmp_path / "m.json")
    back = PostIndex.load(tmp_path / "m.json")
    assert [back.payload(p) for p in "abcde"] == ["text a", None, 'with "quotes"', None, None]
    assert back.meta == {"offset": 41}


def test_sharded_index_equals_one_index():
    from synapse_stream.index import ShardedIndex

    X = _random(400, 16, seed=14)
    ids = [f"p{i}" for i in range(400)]
    one = PostIndex(16, ef_search=400)
    one.add(ids, X)
    sharded = ShardedIndex(16, ef_search=400)
    for part in range(3):
        rows = list(range(part, 400, 3))
        assert sharded.add(part, [ids[i] for i in rows], X[rows]) == len(rows)
    assert len(sharded) == 400 and "p7" in sharded and sharded.locate("p7") == 1
    # an id already held by another shard is skipped
    assert sharded.add(0, ["p1", "fresh"], _random(2, 16, seed=15)) == 1 and len(sharded) == 401
    assert sharded.locate("p1") == 1
    Q = _random(10, 16, seed=16)
    banned = {f"p{i}" for i in range(0, 400, 5)} | {"fresh"}
    got = sharded.search(Q, k=12, exclude=banned, min_sim=0.1)
    want = one.search(Q, k=12, exclude=banned, min_sim=0.1)
    assert [[p for p, _ in r] for r in got] == [[p for p, _ in r] for r in want]
    np.testing.assert_allclose(sharded.get_vectors(["p5", "p6"]), X[[5, 6]], atol=1e-6)
    with pytest.raises(PostIndexError):
        sharded.get_vectors(["nope"])


def test_insert_threads_find_every_post_and_reach_loaded_shards(tmp_path):
    """``insert_threads`` (hnswlib's add_items threads): a 2-thread insert still finds every post as its own
    nearest neighbour, and a shard loaded from a snapshot takes the deployment's thread count on attach."""
    from synapse_stream.index import ShardedIndex
    from synapse_stream.segments import SegmentedIndex

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((300, 24)).astype(np.float32)
    ids = [f"p{i}" for i in range(len(vecs))]
    idx = PostIndex(24, insert_threads=2)
    assert idx.insert_threads == 2
    for i in range(0, len(vecs), 64):
        idx.add(ids[i:i + 64], vecs[i:i + 64])
    assert [row[0] for row in idx.knn(vecs, k=1)[0]] == ids

    sharded = ShardedIndex(24, insert_threads=3)
    sharded.add(0, ids[:10], vecs[:10])
    shard = sharded.shard(0)
    assert all(seg.index.insert_threads == 3 for seg in shard.segments)
    shard.save(tmp_path / "s" / "index.json")
    loaded = SegmentedIndex.load(tmp_path / "s" / "index.json")
    assert all(seg.index.insert_threads == 1 for seg in loaded.segments)   # not saved: a runtime choice
    other = ShardedIndex(24, insert_threads=2)
    other.attach(0, loaded)
    assert all(seg.index.insert_threads == 2 for seg in loaded.segments)
    assert loaded.index_options["insert_threads"] == 2

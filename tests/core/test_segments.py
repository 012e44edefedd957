"""A shard as time segments (synapse_stream/segments.py): the same answers as one index over the window,
whole segments dropped by time and by size, late posts refused, per-segment snapshots; the kNN graph and the
online windows letting go of expired posts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from synapse_stream.exceptions import ConfigError, PostIndexError
from synapse_stream.graph import KNNGraph
from synapse_stream.index import PostIndex, ShardedIndex
from synapse_stream.online import DetectorConfig, OnlineIBG
from synapse_stream.segments import Retention, SegmentedIndex, parse_duration
from synapse_stream.seeds import Seed


def unit(rng, n, d=16):
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def filled(n=300, seal=64, seconds=None, cap=None, seed=0):
    rng = np.random.default_rng(seed)
    X = unit(rng, n)
    idx = SegmentedIndex(16, Retention(seconds=seconds, max_posts=cap, segment_posts=seal, segment_seconds=1e9), ef_search=400)
    ids = [f"p{i}" for i in range(n)]
    for lo in range(0, n, 50):           # micro-batches, event time = arrival order
        idx.add(ids[lo:lo + 50], X[lo:lo + 50], [f"t{i}" for i in range(lo, min(n, lo + 50))],
                ts=list(range(lo, min(n, lo + 50))))
    return idx, ids, X


def test_duration_parsing():
    assert parse_duration("7d") == 7 * 86400 and parse_duration("90m") == 5400 and parse_duration("600") == 600
    assert parse_duration(None) is None and parse_duration("off") is None and parse_duration(0) is None
    with pytest.raises(ConfigError):
        parse_duration("a week")
    with pytest.raises(ConfigError):
        Retention(seconds=-1)


def test_segments_seal_by_size_and_searches_merge_like_one_index():
    idx, ids, X = filled(n=300, seal=64)
    assert [len(s.index) for s in idx.segments] == [64, 64, 64, 64, 44]
    assert [s.sealed for s in idx.segments] == [True] * 4 + [False]
    flat = PostIndex(16, ef_search=400)
    flat.add(ids, X)
    q = unit(np.random.default_rng(9), 5)
    for row in range(5):                         # small segments, a wide ef: both exact
        got = idx.search(q[row], 7, exclude={"p3", "p100"}, min_sim=0.1)[0]
        want = flat.search(q[row], 7, exclude={"p3", "p100"}, min_sim=0.1)[0]
        assert [p for p, _ in got] == [p for p, _ in want]
    kid, ksim = idx.knn(q, 4)
    fid, fsim = flat.knn(q, 4)
    assert kid == fid and np.allclose(ksim, fsim, atol=1e-6)
    assert idx.ids() == ids and np.allclose(idx.vectors()[1], flat.get_vectors(ids), atol=1e-6)
    assert idx.payload("p130") == "t130" and np.allclose(idx.get_vectors(["p299", "p0"]), X[[299, 0]], atol=1e-6)
    with pytest.raises(PostIndexError):
        idx.payload("nope")


def test_expiry_by_event_time_drops_whole_sealed_segments_and_refuses_late_posts():
    idx, ids, _ = filled(n=300, seal=64, seconds=100)     # watermark 299: the window is ts >= 199
    due = idx.expirable()
    # sealed segments whose newest post is older than the window: [0..63], [64..127]; [128..191] too
    assert len(due.segments) == 3 and due.ids == ids[:192]
    assert len(idx) == 300                                 # nothing dropped before drop()
    assert idx.drop(due.segments) == 192
    assert idx.ids() == ids[192:] and "p0" not in idx and not idx.expirable()
    late = idx.late
    rng = np.random.default_rng(1)
    assert idx.add(["old", "new"], unit(rng, 2), ts=[150.0, 305.0]) == 1 and idx.late == late + 1
    assert "old" not in idx and "new" in idx


def test_expiry_by_size_cap_keeps_the_window_within_one_segment_of_it():
    idx, ids, _ = filled(n=300, seal=64, cap=130)
    due = idx.expirable()
    idx.drop(due.segments)
    assert 130 - 64 < len(idx) <= 130 and idx.ids() == ids[-len(idx):]


def test_time_sealing_and_the_growing_segment_is_never_dropped():
    idx = SegmentedIndex(16, Retention(seconds=10, segment_seconds=5))
    rng = np.random.default_rng(2)
    idx.add(["a", "b"], unit(rng, 2), ts=[0, 4])
    idx.add(["c"], unit(rng, 1), ts=[6])             # spans >= 5 s from the segment's first post: a new segment
    assert [len(s.index) for s in idx.segments] == [2, 1] and idx.segments[0].sealed
    idx.add(["d"], unit(rng, 1), ts=[100])           # watermark 100: a, b, c all out of the window
    due = idx.expirable()
    assert sorted(due.ids) == ["a", "b", "c"]        # c's segment sealed when d arrived (time span)
    idx.drop(due.segments)
    assert idx.ids() == ["d"] and not idx.segments[-1].sealed


def test_snapshots_per_segment_sealed_written_once_dropped_files_removed(tmp_path):
    idx, ids, X = filled(n=300, seal=64, seconds=1000)
    path = tmp_path / "shard-0" / "index.json"
    idx.meta = {"offset": 41}
    idx.save(path)
    manifests = lambda: [p for p in path.parent.glob("segment-*.json") if p.name.count(".") == 1]  # noqa: E731
    assert len(manifests()) == 5
    stamp = {p.name: p.stat().st_mtime_ns for p in manifests()}
    rng = np.random.default_rng(3)
    idx.add(["x"], unit(rng, 1), ts=[300])
    idx.save(path)
    changed = [n for n, t in stamp.items() if (path.parent / n).stat().st_mtime_ns != t]
    assert changed == [f"segment-{idx.segments[-1].name}.json"]     # only the growing segment again
    back = SegmentedIndex.load(path, Retention(seconds=1000, segment_posts=64, segment_seconds=1e9))
    assert back.ids() == ids + ["x"] and back.meta == {"offset": 41} and back.watermark == 300
    assert [s.sealed for s in back.segments] == [s.sealed for s in idx.segments]
    np.testing.assert_allclose(back.get_vectors(ids[:3]), X[:3], atol=1e-6)
    # drop two segments: after the next save their files are gone
    first = [s.name for s in idx.segments[:2]]
    idx.drop(first)
    idx.save(path)
    names = {p.name for p in path.parent.iterdir()}
    assert not any(n.startswith(f"segment-{f}") for f in first for n in names)
    assert SegmentedIndex.load(path).ids() == ids[128:] + ["x"]


def test_a_snapshot_from_before_segments_loads_as_one_segment(tmp_path):
    rng = np.random.default_rng(4)
    flat = PostIndex(16)
    flat.add(["a", "b", "c"], unit(rng, 3), ["ta", "tb", "tc"])
    flat.meta = {"offset": 7, "saved_at": 1000.0}
    path = tmp_path / "index.json"
    flat.save(path)
    old_files = {p.name for p in tmp_path.iterdir()} - {"index.json"}
    seg = SegmentedIndex.load(path, Retention(seconds=3600))
    assert seg.ids() == ["a", "b", "c"] and seg.meta["offset"] == 7 and seg.payload("b") == "tb"
    seg.save(path)                                    # the old generation files go after the first save
    assert not old_files & {p.name for p in tmp_path.iterdir()}
    assert json.loads(path.read_text())["version"] == 2
    assert SegmentedIndex.load(path).ids() == ["a", "b", "c"]


def test_a_damaged_segment_is_a_clear_error(tmp_path):
    idx, _, _ = filled(n=100, seal=64)
    path = tmp_path / "index.json"
    idx.save(path)
    victim = next(tmp_path.glob("segment-*.json"))
    victim.write_text("{")
    with pytest.raises(PostIndexError):
        SegmentedIndex.load(path)


def test_sharded_index_passes_event_times_and_names_what_is_due():
    rng = np.random.default_rng(5)
    s = ShardedIndex(16, Retention(seconds=10, segment_posts=2))
    s.add(0, ["a", "b", "c"], unit(rng, 3), ts=[0, 1, 2])
    s.add(1, ["d"], unit(rng, 1), ts=[3])
    s.add(0, ["e"], unit(rng, 1), ts=[50])
    due = s.expirable()
    # [a, b] sealed by size; [c] by time (an eighth of the window, 1.25 s, after its first post) when e came
    assert list(due) == [0] and sorted(due[0].ids) == ["a", "b", "c"]
    assert s.segment_count() == 4 and math.isinf(s.shards[1].floor) is False


def test_graph_drop_equals_the_graph_without_those_nodes():
    rng = np.random.default_rng(6)
    X = unit(rng, 120)
    idx = ShardedIndex(16, ef_search=400)
    ids = [f"p{i}" for i in range(120)]
    idx.add(0, ids, X)
    g = KNNGraph(k=5)
    g.update(idx, ids, {"s": X[0] * 0.5 + X[1] * 0.5})
    A = g.adjacency().toarray()
    gone = ids[:30]
    assert g.drop(gone + ["unknown"]) == 30
    assert g._A is not None                                   # the adjacency was up to date: kept, sliced
    keep = [i for i, n in enumerate(ids + ["seed:s"]) if n not in set(gone)]
    assert g.names == [n for n in ids + ["seed:s"] if n not in set(gone)]
    np.testing.assert_array_equal(g.adjacency().toarray(), A[np.ix_(keep, keep)])
    sliced, full = g.adjacency(), g.adjacency_full()            # the kept rows and columns (no rebuild) ...
    assert sliced.has_sorted_indices and full.has_sorted_indices
    for a, b in ((sliced.indptr, full.indptr), (sliced.indices, full.indices), (sliced.data, full.data)):
        np.testing.assert_array_equal(a, b)                     # ... are the canonical adjacency, entry for entry
    assert g.update(idx, ids[30:], {"s": X[0]}) == 0          # nothing new: no search again
    g.transition()                                            # still a valid transition matrix


def test_online_windows_let_go_of_expired_posts_and_refill():
    rng = np.random.default_rng(7)
    seed = unit(rng, 1)[0]
    near = seed + 0.05 * unit(rng, 6)
    idx = SegmentedIndex(16, Retention(segment_posts=3))
    ids = [f"n{i}" for i in range(6)]
    idx.add(ids, near, ts=list(range(6)))
    eng = OnlineIBG(DetectorConfig("d", tau=0.5, d_max=3), idx)
    first = {c.post_id for c in eng.on_seed(Seed("s", "x"), seed)}
    assert len(first) == 3
    due = idx.expirable.__self__.segments[0]              # drop the oldest segment by hand
    idx.drop([due.name])
    gone = set(ids[:3])
    refill = eng.forget_posts(ids[:3])
    window = set(eng._window["s"])
    assert not window & gone and len(window) == 3
    assert {c.post_id for c in refill} == window - first   # only posts never sent before
    assert eng.queried >= first                             # what was sent stays in the books

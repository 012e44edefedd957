"""The trends stage's snapshot: a stage restarted mid-event from its snapshot (and the window's) goes on exactly
as the stage that never stopped (same proposal id, updated, never raised again); a bad file is a clear error."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from synapse_stream.exceptions import DataError
from synapse_stream.segments import Retention, SegmentedIndex
from synapse_stream.trends import TrendParams, TrendStage
from synapse_stream.trends.snapshot import load_stage, save_stage

DIM = 64
WINDOW = Retention(seconds=86400.0)


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def batches(seed=0, quiet=400, event_batches=260, batch=10):
    """Batches (ids, texts, vecs, ts): a post every 36 s, ``quiet`` batches of 60 steady topics, then a wave
    of a new kind (vectors orthogonal to the topics, near-copies of one text) rising to 30 % of the posts."""
    rng = np.random.default_rng(seed)
    topics = unit(rng.normal(size=(60, DIM)))
    q, _ = np.linalg.qr(topics.T)
    v = rng.normal(size=DIM)
    event = unit(v - q @ (q.T @ v))
    words = [f"w{i}" for i in range(500)]
    out, n = [], 0
    for b in range(quiet + event_batches):
        share = 0.0 if b < quiet else min(0.3, (b - quiet) / 400)
        ids, texts, vecs, ts = [], [], [], []
        for _ in range(batch):
            n += 1
            if rng.random() < share:
                ids.append(f"E{n}")
                texts.append(f"claim the free airdrop bonus token today only at our site number {n % 7}")
                vecs.append(unit(event + 0.12 * rng.normal(size=DIM)))
            else:
                ids.append(f"b{n}")
                texts.append(" ".join(rng.choice(words, 8)))
                vecs.append(unit(topics[rng.integers(60)] + 0.12 * rng.normal(size=DIM)))
            ts.append(36.0 * n)
        out.append((ids, texts, np.stack(vecs), ts))
    return out


def feed(index, stage, part):
    raised = []
    for ids, texts, vecs, ts in part:
        index.add(ids, vecs, None, ts=ts)
        index.drop(index.expirable().segments)
        raised += [(p.id, new, p.version, p.size) for p, new in stage.observe(ids, texts, vecs, ts)]
    return raised


def test_a_stage_restarted_mid_event_keeps_its_proposal_id_and_raises_no_duplicate(tmp_path):
    data = batches()
    params = TrendParams()
    index = SegmentedIndex(DIM, WINDOW)
    stage = TrendStage(index, DIM, params)
    before = feed(index, stage, data[:520])                 # the wave raised and under way
    new = [pid for pid, is_new, _, _ in before if is_new]
    assert len(new) == 1, before
    (pid,) = new
    index.save(tmp_path / "index.json")                     # the shard snapshot ...
    save_stage(stage, tmp_path / "stage.npz")               # ... and the stage's, on the same cadence
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob("*.tmp"))

    index2 = SegmentedIndex.load(tmp_path / "index.json", WINDOW)
    restarted = load_stage(TrendStage(index2, DIM, params), tmp_path / "stage.npz")
    assert (restarted.seen, restarted.now, restarted.start) == (stage.seen, stage.now, stage.start)
    assert restarted.group_count() == stage.group_count() and restarted.held_posts() == stage.held_posts()
    assert restarted.dupes.now == stage.dupes.now and list(restarted.dupes._founders) == list(stage.dupes._founders)
    assert list(restarted.dupes._buckets.items()) == list(stage.dupes._buckets.items())   # keys, groups, times
    assert list(restarted.book.proposals) == [pid]

    after_restart = feed(index2, restarted, data[520:])
    went_on = feed(index, stage, data[520:])                # the same posts, never stopped
    assert after_restart == went_on                         # lossless: the restart changes nothing
    assert after_restart and {p for p, _, _, _ in after_restart} == {pid}
    assert not any(is_new for _, is_new, _, _ in after_restart)
    assert restarted.book.get(pid).version == stage.book.get(pid).version > 1

    # without the snapshot, a fresh stage on the same window knows nothing of the wave (what this prevents)
    fresh = TrendStage(SegmentedIndex.load(tmp_path / "index.json", WINDOW), DIM, params)
    assert pid not in fresh.book.proposals and fresh.start == float("inf")


def test_a_rejected_group_stays_muted_after_a_restart(tmp_path):
    data = batches(seed=1)
    index = SegmentedIndex(DIM, WINDOW)
    stage = TrendStage(index, DIM)
    raised = feed(index, stage, data[:520])
    (pid,) = [p for p, new, _, _ in raised if new]
    stage.book.reject(pid)
    save_stage(stage, tmp_path / "s.npz")
    again = load_stage(TrendStage(index, DIM), tmp_path / "s.npz")
    assert again.book.get(pid).status == "rejected" and again.book.is_muted(np.asarray(again.book.get(pid).centre))
    assert feed(index, again, data[520:]) == []


def test_a_bad_snapshot_is_a_clear_error(tmp_path):
    stage = TrendStage(SegmentedIndex(DIM), DIM)
    stage.observe(["a"], ["hello there general kenobi"], unit(np.ones((1, DIM))), [0.0])
    path = tmp_path / "s.npz"
    save_stage(stage, path)
    with pytest.raises(DataError, match="micro-clusters"):
        load_stage(TrendStage(SegmentedIndex(DIM), DIM, TrendParams(max_clusters=10)), path)
    with pytest.raises(DataError, match="off in the stage"):
        load_stage(TrendStage(SegmentedIndex(DIM), DIM, TrendParams(dupes=False)), path)
    # another version
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(arrays["meta"].tobytes())
    doc["version"] = 99
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
    np.savez(tmp_path / "v99.npz", **arrays)
    with pytest.raises(DataError, match="version 99"):
        load_stage(TrendStage(SegmentedIndex(DIM), DIM), tmp_path / "v99.npz")
    # truncated, and not a snapshot at all
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:200])
    (tmp_path / "other.npz").write_bytes(b"not numpy")
    for bad in ("cut.npz", "other.npz"):
        with pytest.raises(DataError, match="not a trends stage snapshot"):
            load_stage(TrendStage(SegmentedIndex(DIM), DIM), tmp_path / bad)
    with zipfile.ZipFile(path) as zf:
        assert "meta.npy" in zf.namelist()


def test_a_snapshot_without_bucket_times_loads_them_as_used_at_its_last_post(tmp_path):
    """Snapshots written before the horizon have no last-use times: the buckets and founders count as used at
    the snapshot's last post (so they age out a horizon later, not at once)."""
    stage = TrendStage(SegmentedIndex(DIM), DIM)
    texts = ["the first rather long text about a budget", "a second long text on the council meeting"]
    stage.observe(["a", "b"], texts, unit(np.eye(DIM)[:2]), [0.0, 50.0])
    save_stage(stage, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as z:
        arrays = {k: z[k] for k in z.files if k not in ("dup_key_ts", "dup_sig_ts")}
    doc = json.loads(arrays["meta"].tobytes())
    del doc["dupes"]["now"]
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    again = load_stage(TrendStage(SegmentedIndex(DIM), DIM), tmp_path / "old.npz")
    assert len(again.dupes) == len(stage.dupes) == 32
    assert {t for _, t in again.dupes._buckets.values()} == {t for _, t in again.dupes._founders.values()} == {50.0}
    assert again.dupes.now == 50.0
    assert {t for _, t in stage.dupes._buckets.values()} == {0.0, 50.0}      # the new snapshot keeps them apart


def test_a_snapshot_signed_by_the_old_hash_family_keeps_its_groups_and_starts_the_near_dup_index_afresh(tmp_path):
    """Signatures of the Mersenne-prime family (snapshots with no ``hash`` tag) match nothing the current family
    signs: the near-duplicate index starts empty, the groups held keep their posts, new groups get new ids."""
    stage = TrendStage(SegmentedIndex(DIM), DIM)
    text = "the first rather long text about a budget"
    stage.observe(["a", "b"], [text, text + "!"], unit(np.eye(DIM)[:2]), [0.0, 50.0])
    assert len(stage._dup_groups) == 1
    save_stage(stage, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(arrays["meta"].tobytes())
    del doc["dupes"]["hash"]
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    again = load_stage(TrendStage(SegmentedIndex(DIM), DIM), tmp_path / "old.npz")
    assert len(again.dupes) == 0 and not again.dupes._founders
    assert [m[0] for g in again._dup_groups.values() for m in g.members] == ["a", "b"]
    again.observe(["c"], [text], unit(np.eye(DIM)[2:3]), [60.0])
    assert sorted(again._dup_groups) == ["d:d0", "d:d1"]       # a new group, not the held one's id again
    same = load_stage(TrendStage(SegmentedIndex(DIM), DIM), tmp_path / "s.npz")
    same.observe(["c"], [text], unit(np.eye(DIM)[2:3]), [60.0])
    assert sorted(same._dup_groups) == ["d:d0"]                 # tagged with the current family: it joins

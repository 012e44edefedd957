"""synapse_stream.checkpoints: a restart goes on from what the rounds learned (IBG's lists, the automatic τ, the
bandit's counts) instead of comparing every positive with the whole window again."""
from __future__ import annotations

import shutil

import numpy as np
from test_round_steps import DIM, data, segmented

from synapse_stream.checkpoints import RoundCheckpoints
from synapse_stream.index import ShardedIndex
from synapse_stream.methods.ibg import IBG
from synapse_stream.online import DetectorConfig, OnlineIBG
from synapse_stream.rounds import LiveRounds
from synapse_stream.seeds import Seed, SeedOrigin
from synapse_stream.segments import Retention
from synapse_stream.sources import SourceParams

TAU = 0.5


def worker(X, S, n, store, verdicts=(), tau=TAU, d_max=5, interval=0.0, order=None):
    """A worker's rounds over the first ``n`` posts (what a restart restores: the segments' snapshots, then the
    topic again in the same order; ``order``: another one), its books holding ``verdicts`` (from Redis after a
    restart)."""
    _, index = segmented(X[:n] if order is None else X[order], parts=1, seal=100)
    if order is not None:        # the same posts under their own ids, in another order
        index = ShardedIndex(DIM, Retention(segment_posts=100), ef_search=200, ef_construction=200)
        index.add(0, [f"p{i}" for i in order], X[order], ts=[float(i) for i in range(len(order))])
    eng = OnlineIBG(DetectorConfig("d", 0.5, d_max, online=False), index)
    for j, s in enumerate(S):
        eng.on_seed(Seed(f"s{j}", "", SeedOrigin.SYNTHETIC), s)
    for pid, y in verdicts:
        eng.on_verdict(pid, y)
    r = LiveRounds(eng.books, index, name="d", sources=("ibg",), params=SourceParams(tau=tau, d_max=d_max, k0=20),
                   k0=20)
    r.keep_checkpoints(store, interval)
    return eng, index, r


def grow(index, X, lo, hi):
    index.add(0, [f"p{i}" for i in range(lo, hi)], X[lo:hi], ts=[float(i) for i in range(lo, hi)])


def answer(eng, r, batch, rng, answered):
    for c in batch:
        y = int(rng.random() < 0.4)
        eng.on_verdict(c.post_id, y)
        r.observe(c.post_id, y, True)
        answered.append((c.post_id, y))


def run(tau, tmp_path, steps=3):
    """Uninterrupted rounds (a checkpoint saved at every compute), then a worker restarted from the checkpoint over
    the same posts and verdicts; both take the same next 100 posts."""
    X, S = data(n=1000, seed=3)
    store = RoundCheckpoints(tmp_path)
    eng, index, r = worker(X, S, 500, store, tau=tau)
    rng = np.random.default_rng(0)
    answered, n = [], 500
    for _ in range(steps):
        r.touch()
        answer(eng, r, r.plan(), rng, answered)
        grow(index, X, n, n + 100)
        n += 100
    assert store.path("d").exists() and r.checkpoint.saves == steps
    after = RoundCheckpoints(tmp_path / "after")    # the worker's disk, as the crash left it
    after.path("d").parent.mkdir(parents=True)
    shutil.copy(store.path("d"), after.path("d"))
    eng2, index2, r2 = worker(X, S, n, after, verdicts=answered, tau=tau)
    for idx in (index, index2):
        grow(idx, X, n, n + 100)
    return X, S, (eng, r), (eng2, r2), n + 100


def test_a_restarted_worker_plans_the_batch_of_uninterrupted_rounds_comparing_only_the_posts_since(tmp_path):
    X, S, (eng, r), (_, r2), n = run(TAU, tmp_path)
    live, live2 = r.policy.sources["ibg"], r2.policy.sources["ibg"]
    _, index3, r3 = worker(X, S, n - 100, RoundCheckpoints(tmp_path / "none"), verdicts=list(eng.labels.items()))
    grow(index3, X, n - 100, n)      # a fresh start on the same state: every positive with the window
    before = live.compared
    state = r2.snapshot()       # the batch is the batch IBG's on the restarted worker's state
    for rr in (r, r2, r3):
        rr.touch()
    batch, batch2, batch3 = r.plan(), r2.plan(), r3.plan()
    assert r2.checkpoint.restored and r2.checkpoint.take_restored() and not r2.checkpoint.take_restored()
    assert not r3.checkpoint.restored and [c.post_id for c in batch3] == [c.post_id for c in batch2]
    # the restarted worker compared what the uninterrupted one did (the posts since the checkpoint with the
    # positives it knew, the window with those confirmed since or whose list ran short), less than a fresh start
    assert live2.compared == live.compared - before
    assert live2.compared < r3.policy.sources["ibg"].compared
    want = IBG(tau=TAU, d_max=5)._select(state)[:len(batch2)]
    assert batch2 and [c.post_id for c in batch2] == [state.ids[row] for row, _ in want]
    np.testing.assert_allclose([c.score for c in batch2], [s for _, s in want], atol=1e-5)
    # the uninterrupted worker's batch (its K follows the precision of a round the restarted one did not see)
    m = min(len(batch), len(batch2))
    assert [c.post_id for c in batch[:m]] == [c.post_id for c in batch2[:m]] and m


def test_a_restarted_worker_keeps_the_automatic_tau_the_verdicts_moved_and_the_bandit_counts(tmp_path):
    X, S, (eng, r), (_, r2), n = run("auto", tmp_path, steps=4)
    live, live2 = r.policy.sources["ibg"], r2.policy.sources["ibg"]
    saved = live.auto.summary()
    assert saved["verdicts"] > 0
    r2.touch()
    r2.plan()
    assert r2.checkpoint.restored and live2.tau == live.tau
    assert live2.auto.summary()["start"] == saved["start"] and live2.auto.moves[:len(live.auto.moves)] == live.auto.moves
    assert live2.auto.observed >= saved["verdicts"]
    # verdicts consumed again after the restart (at least once) are not booked twice; a new one is
    state = r2.snapshot()
    booked = [i for i, p in enumerate(state.ids) if p in eng.labels and p in live._booked]
    before = live2.auto.observed
    live2.learn(state, booked, [eng.labels[state.ids[i]] for i in booked])
    assert booked and live2.auto.observed == before
    fresh = next(i for i, p in enumerate(state.ids) if p not in eng.labels)
    live2.learn(state, [fresh], [1])
    assert live2.auto.observed == before + 1
    # a fresh start (no checkpoint) books no verdict: τ starts again from the seeds
    _, _, r3 = worker(X, S, n, RoundCheckpoints(tmp_path / "none"), tau="auto")
    r3.touch()
    r3.plan()
    assert not r3.checkpoint.restored and r3.policy.sources["ibg"].auto.observed == 0


def test_a_checkpoint_of_another_detector_or_damaged_is_not_used(tmp_path):
    X, S, (eng, _), _, n = run(TAU, tmp_path)
    store = RoundCheckpoints(tmp_path)
    answered = list(eng.labels.items())
    _, _, other = worker(X, S, n, store, verdicts=answered, d_max=6)          # another d_max
    _, _, fresh = worker(X, S, n, store, verdicts=answered[:3])               # fewer verdicts: created again
    for rr in (other, fresh):
        rr.touch()
        rr.plan()
        assert rr.checkpoint.restored is False
    store.path("d").write_bytes(b"not a checkpoint")
    assert store.load("d") is None
    _, _, damaged = worker(X, S, n, store, verdicts=answered)
    damaged.touch()
    assert damaged.plan() and damaged.checkpoint.restored is False
    store.remove("d")
    assert not store.path("d").exists()


def test_a_part_whose_rows_are_not_those_the_checkpoint_saw_is_compared_again(tmp_path):
    """The checkpoint's parts are matched by their first post and the last one compared: posts consumed again in
    another order (or not at all) make the part new."""
    X, S, (eng, _), _, n = run(TAU, tmp_path)
    order = list(range(n - 1, -1, -1))     # the same posts, newest first
    _, _, r2 = worker(X, S, n, RoundCheckpoints(tmp_path), verdicts=list(eng.labels.items()), order=order)
    r2.touch()
    r2.plan()
    live2 = r2.policy.sources["ibg"]
    assert r2.checkpoint.restored
    assert live2.compared >= len(live2.lists) * (n - 100)     # every kept list compared with the window again


def test_a_save_removes_what_a_crash_mid_write_left(tmp_path):
    store = RoundCheckpoints(tmp_path)
    store.save("d", {}, {})
    left = store.path("d").with_name(store.path("d").name + ".0123456789ab.tmp.npz")
    left.write_bytes(b"half a file")
    other = store.path("e").with_name(store.path("e").name + ".0123456789ab.tmp.npz")   # another detector's write
    other.write_bytes(b"in flight")
    store.save("d", {"n": 1}, {"ibg": {"x": np.arange(3)}})
    assert not left.exists() and other.exists() and store.load("d")[0] == {"n": 1}


def test_a_checkpoint_that_cannot_be_written_does_not_stop_the_round(tmp_path):
    X, S = data(n=300, seed=1)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    _, _, r = worker(X, S, 300, RoundCheckpoints(blocked))     # <file>/rounds/ cannot be made
    r.touch()
    assert r.plan() and r.checkpoint.failures == 1 and r.checkpoint.saves == 0

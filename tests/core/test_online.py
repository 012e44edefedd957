"""Online IBG: equivalence with batch IBG, the window rule for late posts, verdict semantics, stats."""
from __future__ import annotations

from collections import Counter, deque

import numpy as np
import pytest

from synapse_stream.exceptions import ConfigError, MessageError
from synapse_stream.index import PostIndex
from synapse_stream.methods import IBG
from synapse_stream.online import DetectorConfig, OnlineIBG
from synapse_stream.oracles import ReplayOracle
from synapse_stream.seeds import Seed, SeedOrigin


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _exact_index(dim, n):
    """An index whose search is exact on small data (ef_search >= n)."""
    return PostIndex(dim, ef_search=max(64, 2 * n), initial_capacity=max(16, n))


def _drain(det, queue, truth, emitted):
    """Instant oracle, FIFO: answer every candidate in arrival order, queue what each verdict releases."""
    while queue:
        c = queue.popleft()
        emitted.append(c)
        out = det.on_verdict(c.post_id, truth[c.post_id])
        assert out.changed and out.previous is None
        queue.extend(out.candidates)


def _online_all_posts_first(D, tau, d_max):
    idx = _exact_index(D.X.shape[1], len(D.X))
    idx.add(D.ids, D.X)
    det = OnlineIBG(DetectorConfig("t", tau=tau, d_max=d_max), idx)
    assert det.on_posts(D.ids, D.X) == []  # no positives yet: nothing to compare with
    queue, emitted = deque(), []
    for j, s in enumerate(D.S):
        queue.extend(det.on_seed(Seed(f"seed-{j}"), s))
    _drain(det, queue, D.truth, emitted)
    return det, emitted


def _batch_labelled(D, tau, d_max):
    res = IBG(tau=tau, d_max=d_max, max_rounds=None, max_query_ratio=1.0).run(D.X, D.S, D.ids, ReplayOracle(D.truth))
    return {D.ids[r] for r in res.order}


EQUIV = [(seed, tau, d_max, opts) for seed, (tau, d_max, opts) in enumerate([
    (0.5, 3, {}), (0.6, 5, {}), (0.7, 10, {}), (0.4, 2, {}), (0.55, 1, {}), (0.65, 4, {"n_seeds": 1}),
    (0.45, 6, {"n_seeds": 8}), (0.5, 20, {}), (0.6, 2, {"spread": 0.25}), (0.75, 3, {"spread": 0.25}),
    (0.35, 3, {"dim": 8}), (0.5, 7, {"dim": 20, "spread": 0.2}), (0.6, 3, {"n_pos_clusters": 3}),
    (0.5, 1, {"n_pos_clusters": 1, "n_seeds": 2}), (0.55, 5, {"per_cluster": 50}), (0.62, 2, {"noise": 80}),
    (0.3, 10, {"dim": 16, "spread": 0.4}), (0.58, 4, {"n_neg_clusters": 10}), (0.52, 2, {"n_seeds": 12}),
    (0.68, 6, {"spread": 0.3}), (0.5, 3, {"per_cluster": 15}), (0.45, 8, {"n_pos_clusters": 4}),
    (0.66, 1, {}), (0.5, 12, {"dim": 10}),
])]


@pytest.mark.parametrize("seed,tau,d_max,opts", EQUIV)
def test_online_equals_batch_ibg(make_detection_data, seed, tau, d_max, opts):
    D = make_detection_data(100 + seed, **opts)
    det, emitted = _online_all_posts_first(D, tau, d_max)
    batch = _batch_labelled(D, tau, d_max)
    assert batch, "degenerate case: batch IBG queried nothing"
    assert set(det.labels) == batch
    counts = Counter(c.post_id for c in emitted)
    assert max(counts.values()) == 1, "a post was sent twice"
    assert set(counts) == det.queried == set(det.labels)
    assert all(c.score > tau and c.matched_seeds for c in emitted)
    assert det.pending() == set()


@pytest.mark.parametrize("seed", range(6))
def test_online_streaming_posts_reach_the_same_fixed_point(make_detection_data, seed):
    """Posts arriving in batches interleaved with verdicts end at batch IBG's labelled set too."""
    D = make_detection_data(200 + seed)
    tau, d_max = [(0.5, 3), (0.6, 2), (0.45, 5)][seed % 3]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(D.X))
    idx = _exact_index(D.X.shape[1], len(D.X))
    det = OnlineIBG(DetectorConfig("t", tau=tau, d_max=d_max), idx)
    queue, emitted = deque(), []
    head, rest = order[:60], order[60:]
    idx.add([D.ids[i] for i in head], D.X[head])
    queue.extend(det.on_posts([D.ids[i] for i in head], D.X[head]))
    for j, s in enumerate(D.S):
        queue.extend(det.on_seed(Seed(f"seed-{j}"), s))
    for chunk in np.array_split(rest, 10):
        ids = [D.ids[i] for i in chunk]
        idx.add(ids, D.X[chunk])
        queue.extend(det.on_posts(ids, D.X[chunk]))
        for _ in range(int(rng.integers(0, 6))):  # answer a few, leave the rest pending
            if queue:
                c = queue.popleft()
                emitted.append(c)
                queue.extend(det.on_verdict(c.post_id, D.truth[c.post_id]).candidates)
    _drain(det, queue, D.truth, emitted)
    assert set(det.labels) == _batch_labelled(D, tau, d_max)
    assert max(Counter(c.post_id for c in emitted).values()) == 1


def test_closure_property(make_detection_data):
    """Independent check of the fixed point: no unlabelled post has cos > τ to a seed or confirmed positive,
    and every labelled post has cos > τ to a seed or to some confirmed positive."""
    D = make_detection_data(7)
    tau = 0.55
    det, _ = _online_all_posts_first(D, tau, 3)
    X64 = D.X.astype(np.float64)
    row = {pid: i for i, pid in enumerate(D.ids)}
    pos = [row[p] for p, y in det.labels.items() if y == 1]
    P = np.vstack([D.S.astype(np.float64), X64[pos]])
    reach = (X64 @ P.T).max(axis=1) > tau
    labelled = np.zeros(len(D.X), bool)
    labelled[[row[p] for p in det.labels]] = True
    assert np.array_equal(reach, labelled)


# ---------------------------------------------------------------------- late posts and windows
def test_late_post_is_candidate_only_if_it_enters_a_window(make_clusters):
    rng = np.random.default_rng(3)
    dim, tau, d_max = 12, 0.6, 3
    X, _, centres = make_clusters(rng, 3, 25, dim, 0.35)
    ids = [f"p{i}" for i in range(len(X))]
    idx = _exact_index(dim, 400)
    idx.add(ids, X)
    det = OnlineIBG(DetectorConfig("t", tau=tau, d_max=d_max), idx)
    lonely = _unit(rng.normal(size=dim))                       # few or no posts above τ: room left
    seeds = np.vstack([_unit(centres[0] + 0.1 * rng.normal(size=dim)), _unit(centres[1]), lonely])
    for j, s in enumerate(seeds):
        det.on_seed(Seed(f"s{j}"), s)
    # the model: no verdicts yet, so each window is its seed's top d_max posts with cos > τ
    S64 = seeds.astype(np.float64)
    windows = []
    for s in S64:
        sims = X.astype(np.float64) @ s
        top = [float(v) for v in sorted(sims[sims > tau], reverse=True)[:d_max]]
        windows.append(top)
    assert any(len(w) == d_max for w in windows) and any(len(w) < d_max for w in windows)
    branches = Counter()
    new = np.vstack([_unit(seeds[rng.integers(3)] + sd * rng.normal(size=dim)) for sd in
                     np.repeat([0.05, 0.2, 0.35, 0.5, 0.8], 12)])
    for i, v in enumerate(new):
        pid = f"new{i}"
        idx.add([pid], v[None])
        sims = S64 @ v.astype(np.float64)
        joined = []
        for j, s in enumerate(sims):
            if not s > tau:
                branches["below_tau"] += 1
                continue
            w = windows[j]
            if len(w) < d_max:
                branches["room"] += 1
            elif s > min(w):
                branches["beats_weakest"] += 1
                w.remove(min(w))
            else:
                branches["too_weak"] += 1
                continue
            w.append(float(s))
            joined.append((float(s), f"s{j}"))
        got = det.on_posts([pid], v[None])
        if joined:
            assert len(got) == 1 and got[0].post_id == pid and got[0].reason == "post", (i, joined)
            assert got[0].score == pytest.approx(max(joined)[0], abs=1e-5)
            assert set(got[0].matched_seeds) == {sid for _, sid in joined}
        else:
            assert got == [], (i, sims)
    assert all(branches[b] > 0 for b in ("below_tau", "room", "beats_weakest", "too_weak")), branches
    # a post that was already sent is never sent again, even when it arrives again
    again = det.on_posts([f"new{i}" for i in range(len(new))], new)
    assert again == []


def test_late_posts_in_one_batch_follow_the_same_rule(make_clusters):
    """One on_posts call with many posts behaves as the posts one by one, in order."""
    rng = np.random.default_rng(5)
    dim = 10
    X, _, centres = make_clusters(rng, 2, 20, dim, 0.3)
    new = np.vstack([_unit(centres[0] + sd * rng.normal(size=dim)) for sd in np.repeat([0.1, 0.3, 0.5], 10)])

    def setup():
        idx = _exact_index(dim, 200)
        idx.add([f"p{i}" for i in range(len(X))], X)
        det = OnlineIBG(DetectorConfig("t", tau=0.6, d_max=4), idx)
        det.on_seed(Seed("s0"), centres[0])
        idx.add([f"n{i}" for i in range(len(new))], new)
        return det

    one = setup()
    singles = [c.post_id for i in range(len(new)) for c in one.on_posts([f"n{i}"], new[i:i + 1])]
    batched = [c.post_id for c in setup().on_posts([f"n{i}" for i in range(len(new))], new)]
    assert singles == batched and 0 < len(singles) < len(new)


# ---------------------------------------------------------------------- verdicts
DIM = 8


def _e(i):
    v = np.zeros(DIM, np.float32)
    v[i] = 1
    return v


# s = e0; A close to s; B close to A but not to s; C (arrives late) close to A but not to s.
VEC = {
    "A": _unit(_e(0) + 0.5 * _e(1)),
    "B": _unit(_e(0) + 2.2 * _e(1)),
    "C": _unit(_e(0) + 2.0 * _e(1) + 0.1 * _e(2)),
    "N1": _e(3), "N2": _e(4), "N3": _unit(_e(5) + _e(6)),
}
TAU = 0.6


def test_geometry_of_the_verdict_scenarios():
    s = _e(0)
    assert VEC["A"] @ s > TAU and VEC["B"] @ s < TAU and VEC["C"] @ s < TAU
    assert VEC["A"] @ VEC["B"] > TAU and VEC["A"] @ VEC["C"] > TAU


def _small_detector(with_c=False):
    idx = _exact_index(DIM, 16)
    names = ["A", "B", "N1", "N2", "N3"] + (["C"] if with_c else [])
    idx.add(names, np.vstack([VEC[n] for n in names]))
    det = OnlineIBG(DetectorConfig("t", tau=TAU, d_max=5), idx)
    first = det.on_seed(Seed("s", "a seed", SeedOrigin.SYNTHETIC), _e(0))
    assert [c.post_id for c in first] == ["A"] and first[0].reason == "backfill"
    return det, idx


def test_duplicate_verdict_is_a_noop():
    det, _ = _small_detector()
    out = det.on_verdict("A", 1)
    assert out.changed and out.previous is None
    assert [c.post_id for c in out.candidates] == ["B"]
    before = (dict(det.labels), set(det.queried), det.stats(), det.seeds.matrix.copy())
    again = det.on_verdict("A", 1)
    assert again.changed is False and again.previous == 1 and again.candidates == []
    assert (dict(det.labels), set(det.queried), det.stats()) == before[:3]
    np.testing.assert_array_equal(det.seeds.matrix, before[3])


def test_zero_then_one_makes_a_confirmed_seed_that_backfills():
    det, _ = _small_detector()
    out = det.on_verdict("A", 0)
    assert out.changed and out.candidates == []
    assert det.seeds.counts()["confirmed"] == 0
    flip = det.on_verdict("A", 1)
    assert flip.changed and flip.previous == 0 and det.labels["A"] == 1
    assert [c.post_id for c in flip.candidates] == ["B"]
    assert flip.candidates[0].matched_seeds == ("A",) and flip.candidates[0].reason == "backfill"
    assert "A" in det.seeds and det.seeds.counts()["confirmed"] == 1
    assert det.stats()["seeds"]["active"] == 2


def test_one_then_zero_retracts_the_confirmed_seed():
    # control: with A confirmed, a late post C near A is a candidate
    ctrl, idx_c = _small_detector()
    ctrl.on_verdict("A", 1)
    idx_c.add(["C"], VEC["C"][None])
    assert [c.post_id for c in ctrl.on_posts(["C"], VEC["C"][None])] == ["C"]

    det, idx = _small_detector()
    det.on_verdict("A", 1)
    det.on_verdict("B", 0)
    out = det.on_verdict("A", 0)
    assert out.changed and out.previous == 1 and det.labels["A"] == 0 and out.candidates == []
    stats = det.stats()
    assert stats["seeds"]["confirmed"] == 1 and stats["seeds"]["active"] == 1
    idx.add(["C"], VEC["C"][None])
    assert det.on_posts(["C"], VEC["C"][None]) == [], "a retracted positive still pulls in candidates"
    # overturned back: A is reinstated and backfills C from the index
    back = det.on_verdict("A", 1)
    assert back.changed and back.previous == 0
    assert [c.post_id for c in back.candidates] == ["C"]
    assert det.stats()["seeds"]["active"] == 2


def test_retracted_seed_does_not_backfill_after_flip():
    det, idx = _small_detector(with_c=True)
    det.on_verdict("A", 1)     # backfills B and C
    assert det.queried == {"A", "B", "C"}
    det.on_verdict("A", 0)
    det.on_verdict("B", 0)     # releases nothing: A no longer has a window to refill
    det.on_verdict("C", 0)
    assert det.pending() == set()


def test_unknown_post_and_bad_labels():
    det, _ = _small_detector()
    with pytest.raises(MessageError) as exc:
        det.on_verdict("never-seen", 1)
    assert exc.value.reason == "unknown_post"
    for bad in (2, -1, "1", None, 0.5, True):
        with pytest.raises(MessageError) as exc:
            det.on_verdict("A", bad)
        assert exc.value.reason == "bad_label", bad
    assert det.labels == {}


def test_detector_config_validation():
    for bad in (dict(name=""), dict(name="x", tau=1.0), dict(name="x", tau=-2), dict(name="x", d_max=0)):
        with pytest.raises(ConfigError):
            DetectorConfig(**bad)


def test_stats_are_consistent(make_detection_data):
    D = make_detection_data(11)
    idx = _exact_index(D.X.shape[1], len(D.X))
    idx.add(D.ids, D.X)
    det = OnlineIBG(DetectorConfig("det-a", tau=0.5, d_max=3), idx)
    queue = deque()
    for j, s in enumerate(D.S):
        queue.extend(det.on_seed(Seed(f"seed-{j}"), s))
    sent, verdicts = [], {}
    confirmed_ever = set()
    for _ in range(40):  # answer 40, leave the rest pending
        c = queue.popleft()
        sent.append(c.post_id)
        y = D.truth[c.post_id]
        verdicts[c.post_id] = y
        confirmed_ever |= {c.post_id} if y else set()
        queue.extend(det.on_verdict(c.post_id, y).candidates)
    sent += [c.post_id for c in queue]
    flip = next(p for p, y in verdicts.items() if y == 1)
    det.on_verdict(flip, 0)
    verdicts[flip] = 0
    st = det.stats()
    positives = sum(verdicts.values())
    assert st["detector"] == "det-a"
    assert st["queried"] == len(sent) == len(set(sent))
    assert st["answered"] == len(verdicts) == 40
    assert st["pending"] == len(sent) - 40 == len(det.pending())
    assert st["confirmed_positives"] == positives
    assert st["precision"] == pytest.approx(positives / 40)
    assert st["seeds"]["synthetic"] == len(D.S)
    assert st["seeds"]["confirmed"] == len(confirmed_ever)
    assert st["seeds"]["active"] == len(D.S) + len(confirmed_ever) - 1
    empty = OnlineIBG(DetectorConfig("e"), _exact_index(4, 4)).stats()
    assert empty["queried"] == empty["answered"] == empty["pending"] == 0 and empty["precision"] is None

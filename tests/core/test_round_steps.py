"""Live rounds in three steps (gather / compute / commit) and the kNN graph's shares of sealed segments."""
from __future__ import annotations

import threading

import numpy as np

from synapse_stream.graph import GraphShares, KNNGraph
from synapse_stream.index import ShardedIndex
from synapse_stream.online import DetectorConfig, OnlineIBG
from synapse_stream.rounds import LiveRounds
from synapse_stream.seeds import Seed, SeedOrigin
from synapse_stream.segments import Retention, SegmentedIndex
from synapse_stream.sources import SourceParams

DIM = 16


def data(n=360, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, DIM))
    X = centres[rng.integers(0, 4, n)] + rng.normal(scale=0.8, size=(n, DIM))
    S = centres[0] + rng.normal(scale=0.5, size=(5, DIM))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    S /= np.linalg.norm(S, axis=1, keepdims=True)
    return X.astype(np.float32), S.astype(np.float32)


def segmented(X, parts=2, seal=50):
    """Posts spread over ``parts`` segmented shards (sealed every ``seal`` posts), event time = row number."""
    index = ShardedIndex(DIM, Retention(segment_posts=seal), ef_search=200, ef_construction=200)
    ids = [f"p{i}" for i in range(len(X))]
    for p in range(parts):
        rows = list(range(p, len(X), parts))
        index.add(p, [ids[i] for i in rows], X[rows], ts=[float(i) for i in rows])
    return ids, index


def rounds_for(index, S, shares=None, sources=("gble",), name="d"):
    eng = OnlineIBG(DetectorConfig(name, 0.5, 5, online=False), index)
    for j, s in enumerate(S):
        eng.on_seed(Seed(f"s{j}", "", SeedOrigin.SYNTHETIC), s)
    r = LiveRounds(eng.books, index, name=name, sources=sources, params=SourceParams(tau=0.5, d_max=5, k0=20),
                   k0=20)
    r.live.shares = shares
    return eng, r


def counting(index) -> list[int]:
    """Counts the rows ``index.knn_parts`` is asked to search (the list it returns grows with each call)."""
    searched: list[int] = []
    real = index.knn_parts

    def knn_parts(q, k, ef=None):
        searched.append(len(q))
        return real(q, k, ef)
    index.knn_parts = knn_parts
    return searched


def edges_by_name(g: KNNGraph) -> set[tuple[str, str]]:
    A = g.adjacency().tocoo()
    return {(g.names[i], g.names[j]) for i, j in zip(A.row.tolist(), A.col.tolist())}


def test_plan_is_gather_compute_commit():
    X, S = data()
    _, index = segmented(X)
    _, a = rounds_for(index, S, sources=("ibg", "gble"))
    _, b = rounds_for(index, S, sources=("ibg", "gble"))
    one = a.plan()
    inp = b.gather()
    two = b.commit(b.compute(inp))
    assert one and [(c.post_id, c.reason, c.score) for c in one] == [(c.post_id, c.reason, c.score) for c in two]


def test_commit_leaves_out_what_changed_meanwhile(tmp_path):
    X, S = data()
    ids, index = segmented(X)
    eng, r = rounds_for(index, S, sources=("ibg",))
    out = r.compute(r.gather())
    chosen = [out.ids[row] for row, _, _ in out.batch]
    assert len(chosen) >= 3
    answered, gone = chosen[0], chosen[1]
    eng.on_verdict(answered, 0)                        # a verdict came in while the round was computed
    shard = index.shards[index.locate(gone)]
    seg = next(s for s in shard.segments if gone in s.index)
    seg.sealed = True
    shard.drop([seg.name])                             # and the post's segment left the window
    sent = [c.post_id for c in r.commit(out)]
    assert answered not in sent and gone not in sent
    assert set(sent) == {p for p in chosen if p in index and p != answered}
    assert set(sent) <= eng.books.queried


def test_expire_and_forget_apply_at_the_next_compute():
    X, S = data()
    ids, index = segmented(X)
    _, r = rounds_for(index, S)
    r.plan()
    n = len(r.graph)
    shard = index.shards[0]
    oldest = shard.segments[0]
    gone = oldest.index.ids()
    shard.drop([oldest.name])           # as retention does: the segment first, then the rounds are told
    r.expire(gone)
    assert len(r.graph) == n            # asked for, not applied: a compute may be reading the graph now
    r.compute(r.gather())
    assert len(r.graph) == n - len(gone) and not set(gone) & set(r.graph.node_of)
    assert r.dropped == len(gone)       # the service trims the allocator after such a round
    r.compute(r.gather())
    assert r.dropped == 0
    r.forget()
    r.expire(ids[10:20])                # after a forget nothing is left to drop
    r._apply_changes()
    assert len(r.graph) == 0


def test_sealed_segment_shares_are_saved_once_and_restore_the_graph(tmp_path):
    X, S = data()
    ids, index = segmented(X)
    store = GraphShares(tmp_path)
    _, r = rounds_for(index, S, store)
    r.plan()
    sealed = [(k, s.name) for k, sh in index.shards.items() for s in sh.segments if s.sealed]
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == len(sealed) > 0
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    r.touch()
    r.plan()
    assert {f: f.stat().st_mtime_ns for f in sorted(tmp_path.rglob("*.npz"))} == mtimes   # written once

    # a restart: the same shards, a new rounds object; only the growing segments' posts are searched again
    _, again = rounds_for(index, S, store)
    real_knn = index.knn_parts
    searched = counting(index)
    try:
        again.plan()
    finally:
        index.knn_parts = real_knn
    growing = sum(len(s.index) for sh in index.shards.values() for s in sh.segments if not s.sealed)
    assert sum(searched) == growing + len(S)
    assert edges_by_name(again.graph) == edges_by_name(r.graph)
    assert again.live.shares_loaded == [len(sealed), sum(len(index.shards[k].segments[[s.name for s in
                                   index.shards[k].segments].index(n)].index) for k, n in sealed)]


def test_shares_of_dropped_segments_are_removed(tmp_path):
    X, S = data()
    ids, index = segmented(X)
    store = GraphShares(tmp_path)
    _, r = rounds_for(index, S, store)
    r.plan()
    shard = index.shards[0]
    oldest = shard.segments[0]
    assert store.path(0, oldest.name, "d", r.graph.k).exists()
    r.expire(oldest.index.ids())
    shard.drop([oldest.name])
    r.touch()
    r.plan()
    assert not store.path(0, oldest.name, "d", r.graph.k).exists()


def test_a_share_with_another_k_or_damaged_is_not_used(tmp_path):
    X, S = data(n=120)
    ids, index = segmented(X, parts=1, seal=40)
    store = GraphShares(tmp_path)
    _, r = rounds_for(index, S, store)
    r.plan()
    seg = index.shards[0].segments[0]
    assert store.load(0, seg.name, "d", r.graph.k) is not None
    assert store.load(0, seg.name, "d", r.graph.k + 1) is None
    store.path(0, seg.name, "d", r.graph.k).write_bytes(b"not a zip")
    assert store.load(0, seg.name, "d", r.graph.k) is None


def test_share_round_trip_keeps_edges_to_nodes_that_come_later():
    X, S = data(n=60)
    _, index = segmented(X, parts=1, seal=30)
    g = KNNGraph(k=4)
    ids = index.shards[0].ids()
    g.update(index, ids, {"s0": S[0]})
    first, second = ids[:30], ids[30:]
    h = KNNGraph(k=4)
    assert h.add_share(*g.share(first))                 # edges into the second half wait for its nodes
    assert h.add_share(*g.share(second))
    h.update(index, ids, {"s0": S[0]})                  # the seed node: searched, and edges to it resolved
    assert edges_by_name(h) == edges_by_name(g)
    assert not h.add_share(*g.share(first))             # already known: nothing added


def test_compute_in_another_thread_while_posts_are_added():
    X, S = data(n=2000)
    ids, index = SegmentedIndexFixture.build(X[:600])
    _, r = rounds_for(index, S, sources=("ibg", "gble"))
    errors: list[BaseException] = []

    def writer():
        try:
            for start in range(600, 2000, 50):
                index.add(0, [f"p{i}" for i in range(start, start + 50)], X[start:start + 50],
                          ts=[float(i) for i in range(start, start + 50)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    planned = 0
    while t.is_alive() or planned == 0:
        r.touch()
        planned += len(r.commit(r.compute(r.gather())))
    t.join()
    assert not errors and planned > 0 and len(index) == 2000


class SegmentedIndexFixture:
    @staticmethod
    def build(X):
        index = ShardedIndex(DIM, Retention(segment_posts=200), ef_search=100, ef_construction=100)
        ids = [f"p{i}" for i in range(len(X))]
        index.add(0, ids, X, ts=[float(i) for i in range(len(X))])
        assert isinstance(index.shards[0], SegmentedIndex)
        return ids, index


class Linear:
    """A stand-in classifier version: a fixed direction's cosine, squashed to (0, 1)."""

    def __init__(self, w):
        self.w = np.asarray(w, np.float32)

    def predict_proba(self, X):
        return 1 / (1 + np.exp(-4 * (np.asarray(X) @ self.w)))


def test_model_source_scores_each_post_once_per_version_and_matches_full_scoring():
    X, S = data(n=1200)
    ids, index = SegmentedIndexFixture.build(X[:600])
    eng, r = rounds_for(index, S, sources=("model",))
    src = r.policy.sources["model"]
    src.keep = 100
    m1 = Linear(S[0])
    r.use_model(m1)

    def expected():
        st = r.snapshot()
        free = np.flatnonzero(st.unlabelled_mask())
        scores = m1.predict_proba(st.X[free])
        return [st.ids[row] for row, _ in sorted(zip(free.tolist(), scores.tolist()), key=lambda t: (-t[1], t[0]))]

    best = expected()
    first = r.plan()
    assert src.scored == 600 and len(first) == 20
    assert [c.post_id for c in first] == best[:20]
    for c in first:                                   # every proposal answered
        eng.on_verdict(c.post_id, 0)
        r.observe(c.post_id, 0, True)
    index.add(0, [f"p{i}" for i in range(600, 800)], X[600:800], ts=[float(i) for i in range(600, 800)])
    r.touch()
    best = expected()
    second = r.plan()
    assert src.scored == 800                          # only the 200 new posts were scored
    assert [c.post_id for c in second] == best[:len(second)]
    m2 = Linear(-S[0])
    r.use_model(m2)
    r.touch()
    r.plan()
    assert src.scored == 800 + 800 - len(first) - len(second)   # a new version scores the open posts once


def test_model_source_rescores_when_its_kept_best_are_answered():
    X, S = data(n=400)
    ids, index = SegmentedIndexFixture.build(X)
    eng, r = rounds_for(index, S, sources=("model",))
    src = r.policy.sources["model"]
    src.keep = 1                                      # at least 4 k are kept: k = K0 = 20 -> 80
    r.use_model(Linear(S[0]))
    seen: set[str] = set()
    for _ in range(6):                                # 6 rounds of 20-40 answered: beyond the 80 kept
        batch = r.plan()
        assert len(batch) >= 20 and not {c.post_id for c in batch} & seen
        for c in batch:
            seen.add(c.post_id)
            eng.on_verdict(c.post_id, 0)
            r.observe(c.post_id, 0, True)
        r.touch()
    assert src.scored > 400                           # the window was scored again once the kept list ran short


def test_live_ibg_is_the_batch_ibg_on_a_growing_window_and_compares_only_what_is_new():
    from synapse_stream.methods.ibg import IBG

    X, S = data(n=900, seed=2)
    ids, index = SegmentedIndexFixture.build(X[:300])
    eng, r = rounds_for(index, S, sources=("ibg",))
    core = IBG(tau=0.5, d_max=5)
    rng = np.random.default_rng(0)
    n = 300
    for step in range(5):
        state = r.snapshot()
        expected = [(state.ids[row], round(s, 5)) for row, s in core._select(state)]
        r.touch()
        batch = r.plan()
        got = [(c.post_id, round(c.score, 5)) for c in batch]
        assert got == expected[:len(got)] and got, step
        for c in batch:                           # answers: some confirmed (new positives), the rest not
            y = int(rng.random() < 0.3)
            eng.on_verdict(c.post_id, y)
            r.observe(c.post_id, y, True)
        index.add(0, [f"p{i}" for i in range(n, n + 100)], X[n:n + 100], ts=[float(i) for i in range(n, n + 100)])
        n += 100


def test_live_ibg_cost_grows_with_the_new_posts_not_the_window():
    X, S = data(n=2400, seed=4)
    ids, index = SegmentedIndexFixture.build(X[:2000])
    eng, r = rounds_for(index, S, sources=("ibg",))
    live = r.policy.sources["ibg"]
    r.plan()
    first = live.compared                         # every seed against the window
    assert first >= len(S) * 1900
    index.add(0, [f"p{i}" for i in range(2000, 2100)], X[2000:2100], ts=[float(i) for i in range(2000, 2100)])
    r.touch()
    before = live.compared
    r.plan()                                      # nothing answered: no new positive, nothing ran short
    assert live.compared - before == len(S) * 100


def test_live_ibg_with_an_automatic_tau_is_the_batch_ibg_with_one():
    from synapse_stream.methods.ibg import IBG
    from synapse_stream.sources.ibg import LiveIBG

    X, S = data(n=900, seed=5)
    ids, index = SegmentedIndexFixture.build(X[:400])
    eng, r = rounds_for(index, S, sources=("ibg",))
    live = r.policy.sources["ibg"] = LiveIBG(tau="auto", d_max=5)
    r.policy.sources = {"ibg": live}
    core = IBG(tau="auto", d_max=5)
    rng = np.random.default_rng(1)
    n, taus, answered = 400, [], []
    for step in range(5):
        state = r.snapshot()
        if step:     # the verdicts of the last round, booked as the live source books them
            rows = [state.ids.index(p) for p in answered]
            core.learn(state, rows, [eng.labels[p] for p in answered])
        expected = [(state.ids[row], round(s, 5)) for row, s in core._select(state)]
        r.touch()
        batch = r.plan()
        assert [(c.post_id, round(c.score, 5)) for c in batch] == expected[:len(batch)] and batch, step
        assert live.tau == core.tau
        taus.append(live.tau)
        answered = [c.post_id for c in batch]
        for c in batch:
            y = int(rng.random() < 0.5)
            eng.on_verdict(c.post_id, y)
            r.observe(c.post_id, y, True)
        index.add(0, [f"p{i}" for i in range(n, n + 100)], X[n:n + 100], ts=[float(i) for i in range(n, n + 100)])
        n += 100
    assert taus[0] is not None and 0 < taus[0] < 1


def test_ibg_and_model_kept_over_an_expiry_give_the_batches_of_a_fresh_start(monkeypatch):
    """Segments expiring between rounds: IBG and the classifier keep what they built (``expired``) and the batches
    are those of sources that forget everything at each expiry (as before), round for round."""
    from synapse_stream.classifier import train_model
    from synapse_stream.sources.ibg import LiveIBG
    from synapse_stream.sources.model import LiveModel

    X, S = data(n=600, seed=4)
    rng = np.random.default_rng(1)
    truth = {f"p{i}": int(rng.random() < 0.3 or X[i] @ S[0] > 0.5) for i in range(len(X))}

    def run(keep_state: bool):
        if not keep_state:
            monkeypatch.setattr(LiveIBG, "expired", LiveIBG.forget)
            monkeypatch.setattr(LiveModel, "expired", LiveModel.forget)
        index = ShardedIndex(DIM, Retention(max_posts=200, segment_posts=40), ef_search=200, ef_construction=200)
        eng, r = rounds_for(index, S, sources=("ibg", "gble", "model"))
        ids = [f"p{i}" for i in range(len(X))]
        index.add(0, ids[:200], X[:200], ts=[float(i) for i in range(200)])
        batches, expired = [], 0
        for step, stop in enumerate(range(240, 600, 40)):
            if step == 1:
                lab = [p for p in eng.labels if p in index]
                r.use_model(train_model("d", 1, S, index.get_vectors(lab) if lab else np.zeros((0, DIM), np.float32),
                                        np.asarray([eng.labels[p] for p in lab], np.int8),
                                        index.get_vectors(index.shards[0].ids()[:20]),
                                        folds=0))
            cands = r.plan()
            batches.append([(c.post_id, round(c.score, 6), c.reason) for c in cands])
            for c in cands:
                eng.on_verdict(c.post_id, truth[c.post_id])
                r.observe(c.post_id, truth[c.post_id], True)
            index.add(0, ids[stop - 40:stop], X[stop - 40:stop], ts=[float(i) for i in range(stop - 40, stop)])
            due = index.expirable()
            for key, e in due.items():
                index.shards[key].drop(e.segments)
                r.expire(e.ids)
                expired += len(e.segments)
            r.touch()
        monkeypatch.undo()
        srcs = r.policy.sources
        return batches, expired, (srcs["model"].scored, srcs["ibg"].compared)

    kept, n_kept, cost_kept = run(True)
    fresh, n_fresh, cost_fresh = run(False)
    assert n_kept == n_fresh > 3
    assert sum(len(b) for b in kept) > 20 and {"model", "ibg"} <= {src for b in kept for _, _, src in b}
    assert cost_kept[0] < cost_fresh[0] and cost_kept[1] < cost_fresh[1]   # the state was kept: less work
    # the same posts from the same sources; scores up to float rounding (a product over fewer rows may differ in its
    # last bit, and a score rounded to 6 places then by one unit)
    assert [[(p, src) for p, _, src in b] for b in kept] == [[(p, src) for p, _, src in b] for b in fresh]
    np.testing.assert_allclose([s for b in kept for _, s, _ in b], [s for b in fresh for _, s, _ in b], atol=2e-6)


def test_a_round_records_the_time_of_each_step_and_source():
    X, S = data()
    _, index = segmented(X)
    _, r = rounds_for(index, S, sources=("ibg", "gble"))
    assert r.plan()
    rec = r.rounds[-1]
    steps = ("changes", "snapshot", "graph+learn", "plan", "shares", "checkpoint")
    assert set(rec.phases) == set(steps) | {"plan:ibg", "plan:gble"}
    assert all(v >= 0 for v in rec.phases.values())
    assert abs(sum(rec.phases[s] for s in steps) - rec.seconds) < 1e-6
    assert rec.phases["plan:ibg"] + rec.phases["plan:gble"] <= rec.phases["plan"] + 1e-6


def test_a_confirmed_post_leaving_the_window_keeps_its_graph_node_and_ibg_list_as_a_seed():
    """A confirmed positive whose segment expires stays a positive (a seed of the registry): the graph renames its
    node ``seed:<id>`` with its edges instead of searching a new seed node in every part, and IBG keeps its list
    instead of scanning the window again; the batch is the one of sources that forget everything."""
    from synapse_stream.sources.ibg import LiveIBG

    X, S = data(n=400, seed=3)

    def run(keep: bool):
        _, index = segmented(X, parts=1, seal=50)
        eng, r = rounds_for(index, S, sources=("ibg", "gble"))
        r.plan()
        shard = index.shards[0]
        oldest = shard.segments[0]
        gone = oldest.index.ids()
        confirmed = gone[:3]
        for p in confirmed:                       # three posts of the oldest segment confirmed
            eng.on_verdict(p, 1)
            r.observe(p, 1, True)
        r.touch()
        r.plan()
        before = edges_by_name(r.graph)
        node_count = len(r.graph)
        shard.drop([oldest.name])
        if not keep:                              # as before: the expiring positives were dropped and searched anew
            r.graph.to_seed = lambda *a: False
            r.policy.sources["ibg"].expired = r.policy.sources["ibg"].forget
        r.expire(gone)
        searched = counting(index)
        ibg: LiveIBG = r.policy.sources["ibg"]
        compared = ibg.compared
        r.touch()
        batch = r.plan()
        return (r, confirmed, gone, before, node_count, sum(searched), ibg.compared - compared,
                [(c.post_id, round(c.score, 5), c.reason) for c in batch])

    r, confirmed, gone, before, n, searched, compared, kept_batch = run(True)
    g = r.graph
    assert all("seed:" + p in g.node_of and p not in g.node_of for p in confirmed)
    assert len(g) == n - len(gone) + len(confirmed)       # the confirmed posts' nodes stayed
    renamed = {p: "seed:" + p for p in confirmed}
    stayed = {(renamed.get(a, a), renamed.get(b, b)) for a, b in before if a not in gone or a in renamed}
    stayed = {(a, b) for a, b in stayed if (b not in gone or b in renamed.values()) and a in g.node_of
              and b in g.node_of}
    assert stayed and stayed <= edges_by_name(g)             # the renamed nodes kept their edges
    assert {"seed:" + p for p in confirmed} <= set(r.policy.sources["ibg"].lists)
    *_, searched_fresh, compared_fresh, fresh_batch = run(False)
    assert searched < searched_fresh       # no new seed node searched in the index
    assert compared < compared_fresh       # and no scan of the window for their IBG lists
    ibg_kept = [b for b in kept_batch if b[2] == "ibg"]
    assert ibg_kept and ibg_kept == [b for b in fresh_batch if b[2] == "ibg"]


def test_live_ibg_compares_at_most_its_cap_with_the_window_a_round_and_catches_up():
    """New positives (all of them at a start) take at most ``rescan_comparisons`` post x positive pairs of whole-window
    comparisons a round; the rest wait, oldest first, and once all are in, the batch is the uncapped one."""
    from synapse_stream.sources.ibg import LiveIBG

    X, S = data(n=400, seed=2)
    _, index = segmented(X, parts=1, seal=100)
    _, r = rounds_for(index, S, sources=("ibg",))       # 5 seeds, no verdicts: the positives stay the seeds
    n = len(index)
    capped = LiveIBG(tau=0.5, d_max=5, rescan_comparisons=2 * n)    # room for two positives a round
    r.policy.sources = {"ibg": capped}
    held, costs = [], []
    for _ in range(3):
        before = capped.compared
        r.touch()
        r.plan()
        costs.append(capped.compared - before)
        held.append(len(capped.lists))
    assert held == [2, 4, 5] and costs[0] <= 2 * n and costs[2] >= n   # the last: a new one (and lists run short)
    state = r.snapshot()
    capped.rescan_comparisons = 10**9          # room for everything waiting: the uncapped batch
    got = capped.propose(state, 50)
    want = LiveIBG(tau=0.5, d_max=5).propose(state, 50)
    assert not capped._waiting and got
    assert [row for row, _ in got] == [row for row, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_live_ibg_in_small_blocks_keeps_the_lists_of_one_product():
    """The new posts compared with the kept lists, and the positives with the window, a block at a time (after a
    restart, the posts since the checkpoint): the same lists, bounds and batch as in one product."""
    from synapse_stream.sources.ibg import LiveIBG

    X, S = data(n=700, seed=6)
    _, index = segmented(X[:400], parts=1, seal=100)
    eng, r = rounds_for(index, S, sources=("ibg",))
    whole, blocks = LiveIBG(tau=0.5, d_max=5), LiveIBG(tau=0.5, d_max=5)
    blocks.block = 37          # a few posts or positives at a time
    rng = np.random.default_rng(3)
    for step, n in enumerate((400, 550, 700)):
        if step:
            index.add(0, [f"p{i}" for i in range(n - 150, n)], X[n - 150:n], ts=[float(i) for i in range(n - 150, n)])
        got = []
        for src in (whole, blocks):
            r.policy.sources = {"ibg": src}
            state = r.snapshot()
            src.refresh(type("V", (), {"parts": r.snap.parts or [], "external": []})())
            got.append(src.propose(state, 30))
        # the same rows and lists; similarities up to float rounding (products of other shapes)
        assert [row for row, _ in got[0]] == [row for row, _ in got[1]] and got[0]
        np.testing.assert_allclose([v for _, v in got[0]], [v for _, v in got[1]], atol=1e-6)
        assert {n: [p for _, p in kept] for n, (kept, _) in whole.lists.items()} == \
            {n: [p for _, p in kept] for n, (kept, _) in blocks.lists.items()}
        np.testing.assert_allclose([b for _, b in whole.lists.values()], [b for _, b in blocks.lists.values()],
                                   atol=1e-6)
        assert whole.compared == blocks.compared
        for row, _ in got[0][:10]:
            pid = state.ids[row]
            y = int(rng.random() < 0.5)
            eng.on_verdict(pid, y)


def test_live_ibg_keeps_its_lists_over_a_rebalance_and_plans_the_batch_ibgs():
    """Partitions given up and taken back (from a snapshot: new objects, the same rows): IBG keeps its lists
    (``rebalanced``), compares again only what it cannot know it has seen, and plans the batch IBG's each time."""
    from synapse_stream.methods.ibg import IBG

    X, S = data(n=600, seed=7)
    ids, index = segmented(X, parts=2, seal=50)
    eng, r = rounds_for(index, S, sources=("ibg",))
    live = r.policy.sources["ibg"]
    rng = np.random.default_rng(2)
    one = list(range(1, len(X), 2))           # shard 1's posts, in its order

    def step():
        state = r.snapshot()
        want = IBG(tau=0.5, d_max=5)._select(state)
        before = live.compared
        r.touch()
        batch = r.plan()
        assert batch and [c.post_id for c in batch] == [state.ids[row] for row, _ in want[:len(batch)]]
        for c in batch[:8]:
            y = int(rng.random() < 0.5)
            eng.on_verdict(c.post_id, y)
            r.observe(c.post_id, y, True)
        return live.compared - before, sum(eng.labels.values()) + len(S), state.n

    def take_back():
        index.add(1, [ids[i] for i in one], X[one], ts=[float(i) for i in one])
        r.forget()

    step()
    index.drop(1)                             # given up: no comparison but for lists run short
    r.forget()
    cost, positives, n = step()
    assert cost < positives * n / 2
    take_back()                               # after a round without it: its posts left the lists, it is new
    cost, positives, n = step()
    assert cost >= (positives - 8) * len(one)
    index.drop(1)                             # given up and taken back before the next round: nothing is new
    r.forget()
    take_back()
    cost, positives, n = step()
    assert cost < positives * n / 2


def test_the_growing_segments_graph_is_saved_at_a_checkpoint_and_a_restart_searches_only_the_posts_after(tmp_path):
    """At each rounds checkpoint the graph rows of the segments still being written are saved too: a restart loads
    them with the sealed segments' shares and searches only the posts that came after (the same graph)."""
    from synapse_stream.checkpoints import RoundCheckpoints

    X, S = data(n=400)
    ids, index = segmented(X[:330], parts=2, seal=50)
    store = GraphShares(tmp_path)
    _, r = rounds_for(index, S, store)
    r.keep_checkpoints(RoundCheckpoints(tmp_path), 0.0)
    r.plan()
    growing = [(k, s) for k, sh in index.shards.items() for s in sh.segments if not s.sealed]
    assert growing and all(store.path(k, s.name, "d", r.graph.k, growing=True).exists() for k, s in growing)
    later = list(range(330, 360))
    for i in later:                                   # posts after the checkpoint (consumed again after the crash)
        index.add(i % 2, [f"p{i}"], X[i:i + 1], ts=[float(i)])
    _, again = rounds_for(index, S, store)            # the restart: only the posts after the checkpoint searched
    real_knn = index.knn_parts
    searched = counting(index)
    try:
        again.plan()
    finally:
        index.knn_parts = real_knn
    assert sum(searched) == len(later) + len(S)       # and the seeds, as after any restart
    r.touch()
    r.plan()                                          # the uninterrupted worker takes the same posts
    posts_only = lambda g: {e for e in edges_by_name(g) if not any(n.startswith("seed:") for n in e)}  # noqa: E731
    assert posts_only(again.graph) == posts_only(r.graph)    # (the seeds are searched again at any restart)
    # a segment whose rows are not those saved (another order after the restart) is searched again
    X2, S2 = data(n=120, seed=9)
    _, idx2 = segmented(X2, parts=1, seal=1000)       # one growing segment
    store2 = GraphShares(tmp_path / "two")
    _, r2 = rounds_for(idx2, S2, store2)
    r2.keep_checkpoints(RoundCheckpoints(tmp_path / "two"), 0.0)
    r2.plan()
    other = ShardedIndex(DIM, Retention(segment_posts=1000), ef_search=200, ef_construction=200)
    back = list(range(len(X2) - 1, -1, -1))           # the same posts, newest first
    other.add(0, [f"p{i}" for i in back], X2[back], ts=[float(i) for i in range(len(back))])
    other.shards[0].segments[0].name = idx2.shards[0].segments[0].name
    _, r3 = rounds_for(other, S2, store2)
    searched = counting(other)
    r3.plan()
    assert sum(searched) == len(X2) + len(S2) and r3.live.shares_loaded == [0, 0]


def test_a_growing_share_waits_for_its_segment_to_be_restored(tmp_path):
    """A restart whose first round comes while the segment is still being consumed again (fewer rows than the saved
    share): the share is kept and used at a later update, for the posts not searched meanwhile."""
    from synapse_stream.checkpoints import RoundCheckpoints

    X, S = data(n=120, seed=9)
    _, index = segmented(X, parts=1, seal=1000)       # one segment, still being written
    store = GraphShares(tmp_path)
    _, r = rounds_for(index, S, store)
    r.keep_checkpoints(RoundCheckpoints(tmp_path), 0.0)
    r.plan()
    name = index.shards[0].segments[0].name
    assert store.path(0, name, "d", r.graph.k, growing=True).exists()
    again = ShardedIndex(DIM, Retention(segment_posts=1000), ef_search=200, ef_construction=200)
    again.add(0, [f"p{i}" for i in range(60)], X[:60], ts=[float(i) for i in range(60)])   # half consumed so far
    again.shards[0].segments[0].name = name
    _, r2 = rounds_for(again, S, store)
    searched = counting(again)
    r2.plan()
    assert sum(searched) == 60 + len(S) and r2.live.shares_loaded == [0, 0]     # not yet
    again.add(0, [f"p{i}" for i in range(60, 120)], X[60:], ts=[float(i) for i in range(60, 120)])
    r2.touch()
    r2.plan()
    assert sum(searched) == 60 + len(S) and r2.live.shares_loaded == [1, 120]   # the rest from the share
    assert len([n for n in r2.graph.names if not n.startswith("seed:")]) == 120

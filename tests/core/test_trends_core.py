"""The trends stage on synthetic vectors: a planted burst is found, a steady background is not, proposals are
deduplicated under a stable id, near-duplicate floods count, c-TF-IDF names the planted terms, memory is capped."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.segments import Retention, SegmentedIndex
from synapse_stream.trends import ProposalBook, TrendParams, TrendStage, stable_id
from synapse_stream.trends.bursts import RateHistory, burst_test
from synapse_stream.trends.clusters import FadingMicroClusters
from synapse_stream.trends.dupes import NearDupIndex
from synapse_stream.trends.proposals import Proposal, ctfidf_terms

DIM = 64


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def far_event(s: "Stream") -> np.ndarray:
    """A unit vector orthogonal to every background topic (a kind of post the window has never held)."""
    v = s.rng.normal(size=DIM)
    q, _ = np.linalg.qr(s.topics.T)
    return unit(v - q @ (q.T @ v))


class Stream:
    """Posts every 36 s (100 an hour): background from ``topics`` steady topics, plus planted events."""

    def __init__(self, seed=0, topics=60, spread=0.12, params=None, window=86400.0):
        self.rng = np.random.default_rng(seed)
        self.topics = unit(self.rng.normal(size=(topics, DIM)))
        self.spread = spread
        self.index = SegmentedIndex(DIM, Retention(seconds=window))
        self.stage = TrendStage(self.index, DIM, params or TrendParams(dupes=False))
        self.t, self.n = 0.0, 0
        self.events: list[tuple[np.ndarray, str]] = []
        self.raised: list[tuple[Proposal, bool, float]] = []

    def post(self, centre, prefix):
        self.t += 36.0
        pid = f"{prefix}{self.n}"
        self.n += 1
        return pid, unit(centre + self.spread * self.rng.normal(size=DIM))

    def run(self, batches, event_share=lambda b: 0.0, event=None, texts=None, batch=10):
        for b in range(batches):
            ids, vecs, ts = [], [], []
            for _ in range(batch):
                if event is not None and self.rng.random() < event_share(b):
                    pid, v = self.post(event, "E")
                else:
                    pid, v = self.post(self.topics[self.rng.integers(len(self.topics))], "b")
                ids.append(pid)
                vecs.append(v)
                ts.append(self.t)
            vecs = np.stack(vecs)
            self.index.add(ids, vecs, None, ts=ts)
            self.index.drop(self.index.expirable().segments)
            tx = texts(ids) if texts else ids
            for prop, new in self.stage.observe(ids, tx, vecs, ts):
                self.raised.append((prop, new, self.t))


def test_a_planted_burst_is_found_with_event_medoids():
    s = Stream()
    s.run(400)                                              # 4000 posts of steady background: the history
    event = far_event(s)
    start_posts = s.n
    s.run(200, event_share=lambda b: min(0.3, b / 400), event=event)
    new = [p for p, is_new, _ in s.raised if is_new]
    assert new, "the planted event raised no proposal"
    first = new[0]
    assert all(m["id"].startswith("E") for m in first.medoids), first.medoids
    assert first.growth > 1 and first.p_value <= TrendParams().alpha
    assert first.size >= TrendParams().min_size
    assert first.first_seen > start_posts * 36.0 - 1


def test_a_steady_background_raises_no_proposal():
    s = Stream(seed=1)
    s.run(1000)                                             # 10 000 posts, rising nowhere
    assert [p.id for p, new, _ in s.raised if new] == []


def test_a_growing_group_updates_one_proposal_with_a_stable_id():
    s = Stream(seed=2)
    s.run(300)
    event = far_event(s)
    s.run(400, event_share=lambda b: min(0.4, b / 300), event=event)
    ours = [(p, new) for p, new, _ in s.raised if any(m["id"].startswith("E") for m in p.medoids)]
    assert sum(new for _, new in ours) == 1, [(p.id, new) for p, new in ours]
    ids = {p.id for p, _ in ours}
    assert len(ids) == 1
    (pid,) = ids
    prop = s.stage.book.get(pid)
    assert prop.version > 1 and len(ours) > 1               # updated, not raised again
    keys = [k for k, v in s.stage.book._alias.items() if v == pid]
    firsts = {s.stage.groups[k].first_id for k in keys if k in s.stage.groups}
    assert pid in {stable_id("cluster", f) for f in firsts}      # the id of the group's first post


def test_same_replay_gives_the_same_ids():
    runs = []
    for _ in range(2):
        s = Stream(seed=3)
        s.run(300)
        event = far_event(s)
        s.run(200, event_share=lambda b: min(0.3, b / 300), event=event)
        runs.append([p.id for p, new, _ in s.raised if new])
    assert runs[0] and runs[0] == runs[1]


def test_a_near_duplicate_flood_is_a_group():
    rng = np.random.default_rng(4)
    index = SegmentedIndex(DIM, Retention(seconds=86400))
    stage = TrendStage(index, DIM, TrendParams(radius=0.99))   # micro-clusters never form: only the dupes can
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma tau".split()
    t, raised = 0.0, []
    for b in range(600):
        ids, texts, ts = [], [], []
        for j in range(10):
            t += 36.0
            i = b * 10 + j
            if b >= 400 and rng.random() < 0.3:
                ids.append(f"F{i}")
                texts.append(f"Claim your FREE prize now at http://x.co/{i} before it expires @user{i}")
            else:
                ids.append(f"b{i}")
                texts.append(" ".join(rng.choice(words, 8)) + f" {i}")
            ts.append(t)
        vecs = unit(rng.normal(size=(len(ids), DIM)))           # vectors say nothing: the texts do
        index.add(ids, vecs, None, ts=ts)
        raised += [(p, new) for p, new in stage.observe(ids, texts, vecs, ts)]
    new = [p for p, is_new in raised if is_new]
    assert len(new) == 1 and new[0].kind == "dupes"
    assert all(m["id"].startswith("F") for m in new[0].medoids)
    assert "free prize" in " ".join(new[0].terms) or "prize" in new[0].terms


def test_near_dup_index_groups_edits_apart_from_other_texts():
    d = NearDupIndex()
    base = "the quick brown fox jumps over the lazy dog near the river bank"
    g = d.assign(base)
    assert d.assign(base.upper() + " http://t.co/abc @someone") == g
    assert d.assign("a completely different sentence about tax returns and budgets") != g
    assert d.assign("ok") is None


def test_ctfidf_gives_the_planted_terms():
    rng = np.random.default_rng(5)
    vocab = "weather match council budget school traffic music film garden coffee".split()
    background = [" ".join(rng.choice(vocab, 6)) for _ in range(300)]
    group = [" ".join(list(rng.choice(vocab, 3)) + ["wallet", "airdrop"]) for _ in range(20)]
    terms = ctfidf_terms(group, background, k=3)
    assert set(terms[:2]) <= {"wallet", "airdrop", "wallet airdrop", "airdrop wallet"}, terms
    assert not set(terms[:2]) & set(vocab)


def test_rejecting_mutes_the_group():
    book = ProposalBook(merge_sim=0.8)
    c = unit(np.ones(DIM))
    p = Proposal("trend-x", "cluster", 0, 0, 0, 10, 5, 3.0, 1e-9, centre=c.tolist())
    assert book.upsert("c1", p)[1] is True
    book.reject("trend-x")
    again = Proposal("trend-y", "cluster", 5, 5, 5, 10, 5, 3.0, 1e-9, centre=(c + 0.01).tolist())
    assert book.upsert("c2", again) is None
    assert book.counts["rejected"] == 1 and book.counts["muted_skips"] == 1


def test_burst_test_tracks_share_not_volume():
    g, total = RateHistory(3600, 24), RateHistory(3600, 24)
    for h in range(24):                                     # volume triples, the group keeps its 2 % share
        n = 100 + 10 * h
        total.add(h * 3600.0, n)
        g.add(h * 3600.0, round(0.02 * n))
    assert burst_test(g, total, now=23 * 3600.0, recent_bins=3, p_floor=0.002).p_value > 0.01


def far_stream(rng, params: TrendParams, window: float, after_batch=None) -> TrendStage:
    """10 000 posts over 10 h of event time (200 batches of 50), every one far from the others, through a stage
    over a ``window``-second index; ``after_batch(stage)`` after each batch. Returns the stage."""
    index = SegmentedIndex(DIM, Retention(seconds=window))
    stage = TrendStage(index, DIM, params)
    t = 0.0
    for b in range(200):
        ids = [f"p{b}-{j}" for j in range(50)]
        texts = [f"message number {b} {j} " + " ".join(rng.choice(list("abcdefghij"), 12)) for j in range(50)]
        ts = [t + 3.6 * j for j in range(50)]
        t += 180.0
        vecs = unit(rng.normal(size=(50, DIM)))
        index.add(ids, vecs, None, ts=ts)
        index.drop(index.expirable().segments)
        stage.observe(ids, texts, vecs, ts)
        if after_batch is not None:
            after_batch(stage)
    return stage


def test_memory_stays_capped_over_a_long_stream():
    params = TrendParams(max_clusters=300, max_dup_groups=200, max_members=8, background=100, dupes=True)
    rng = np.random.default_rng(6)
    sizes = []
    stage = far_stream(rng, params, 3600 * 6, lambda stage: sizes.append((len(stage.clusters), stage.group_count(),
                                                                  stage.held_posts(), len(stage._background),
                                                                  len(stage.dupes))))
    clusters, groups, held, back, buckets = map(max, zip(*sizes))
    assert clusters <= 300 and groups <= 500 and held <= 500 * 8 and back <= 100
    assert buckets <= stage.dupes.max_buckets
    assert len(stage.index) < 10_000 * 0.75                       # the window (6 h of 10 h) forgets too


def test_micro_clusters_fade_and_evict():
    mc = FadingMicroClusters(DIM, radius=0.9, half_life=10.0, max_clusters=5, cleanup_every=5)
    rng = np.random.default_rng(7)
    for i in range(50):
        mc.learn(unit(rng.normal(size=(1, DIM))), [float(i)])
        assert len(mc) <= 5
    far = mc.learn(unit(rng.normal(size=(1, DIM))), [1000.0])[0]
    assert mc.weight(far, 1000.0) == pytest.approx(1.0)
    assert mc.weight(far, 1010.0) == pytest.approx(0.5)


def test_near_dup_index_forgets_buckets_unused_for_its_horizon():
    d = NearDupIndex(horizon=3600.0)
    rng = np.random.default_rng(8)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    texts = [" ".join("".join(rng.choice(letters, 6)) for _ in range(8)) for _ in range(400)]
    for i, text in enumerate(texts):                        # one new text every 60 s: 400 min, the horizon 60
        assert d.assign(text, ts=60.0 * i) is not None
    now = 60.0 * (len(texts) - 1)
    times = [t for _, t in d._buckets.values()]
    assert min(times) >= now - 3600.0                       # only the last hour's buckets are left ...
    assert len(d) == d.bands * 61                           # ... all of them (61 texts at 0, 60, ..., 3600 s ago)
    assert len(d._founders) == 61 and len(d) < d.max_buckets
    assert d.assign(texts[-1], ts=now) == d.assign(texts[-1], ts=now)   # a recent one still groups
    old = d.assign(texts[0], ts=now)                        # an old one founds a new group: forgotten
    assert old == f"d{len(texts)}"


def test_near_dup_index_without_horizon_keeps_buckets_to_the_cap():
    d = NearDupIndex(max_buckets=16 * 50)
    rng = np.random.default_rng(10)
    for i in range(100):
        d.assign(" ".join("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 6)) for _ in range(8)), ts=1e6 * i)
    assert len(d) == 16 * 50                                # the count cap only, whatever the event time


def test_the_stage_forgets_groups_and_buckets_past_its_horizon():
    horizon = 2 * 3600.0
    params = TrendParams(horizon=horizon, dupes=True, min_size=10**6)   # raises nothing: bounds only
    rng = np.random.default_rng(9)
    stage = far_stream(rng, params, horizon)                # 10 000 posts over 10 h
    cut = stage.now - horizon
    assert stage.dupes.horizon == horizon and stage.clusters.horizon == horizon
    assert min(t for _, t in stage.dupes._buckets.values()) >= cut
    assert min(t for _, t in stage.dupes._founders.values()) >= cut
    assert min(g.last_seen for g in stage._dup_groups.values()) >= cut
    assert len(stage._dup_groups) <= 2 * 2000 + 50          # 2 h of posts (+ a batch), not the 4000 cap of 10 000
    assert len(stage.dupes) <= stage.dupes.bands * (2 * 2000 + 50)
    # micro-clusters are checked every 1000 posts: none unused for the horizon plus that much event time
    mc = stage.clusters
    used = mc._id >= 0
    assert mc._t[used].min() >= cut - 1000 * 3.6
    assert len(mc) < params.max_clusters and len(stage.groups) <= len(mc) + 50


def test_trend_params_horizon_defaults_to_the_rate_history():
    assert TrendParams().horizon == 48 * 3600.0
    assert TrendParams(history_bins=10, bin_seconds=60.0).horizon == 600.0
    assert TrendParams(horizon=5.0).horizon == 5.0
    with pytest.raises(ValueError):
        TrendParams(horizon=0.0)


def test_micro_clusters_learn_a_batch_as_one_post_at_a_time_with_cleanups_and_evictions_inside_it():
    """The batch's one product, its mask added once and the rows' recomputed slots (moved, born, evicted or freed
    by a cleanup inside the batch) give what learning one post at a time gives."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, 16))
    ts = np.cumsum(rng.exponential(40.0, size=600))
    x = centres[rng.integers(30, size=600)] + 0.35 * rng.normal(size=(600, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def make():   # few slots (evictions), a short half-life and frequent cleanups (slots freed mid-batch)
        return FadingMicroClusters(16, radius=0.7, half_life=300.0, max_clusters=24, min_weight=0.3, cleanup_every=7)

    one, batch = make(), make()
    ids_one = [one.learn(x[i:i + 1], ts[i:i + 1])[0] for i in range(600)]
    ids_batch = [c for s in range(0, 600, 64) for c in batch.learn(x[s:s + 64], ts[s:s + 64])]
    assert ids_batch == ids_one
    assert len(set(ids_one)) > 24                       # clusters came and went
    assert np.allclose(batch._c, one._c) and np.array_equal(batch._id, one._id)


class FullProductClusters(FadingMicroClusters):
    """The reference: every slot in the product (no high-water mark), never compacted."""

    def _compact(self) -> None:
        pass

    def learn(self, vecs, ts):
        hw, self._hw = self._hw, self.max_clusters      # the product then covers every slot
        try:
            return super().learn(vecs, ts)
        finally:
            self._hw = max(hw, max(self._slot.values(), default=-1) + 1)


def test_micro_clusters_over_the_slots_in_use_learn_as_over_every_slot():
    """The product over the slots below the high-water mark, the live clusters moved down when they fill less
    than half of it: the same ids, centres and weights as the product over every slot (bursts of new topics
    push the high-water mark up; quiet spells let cleanups free most slots, so compactions happen)."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(400, 16))
    n = 4000
    topic = np.where(rng.random(n) < 0.5, rng.integers(400, size=n), rng.integers(8, size=n))   # bursts of new topics
    ts = np.cumsum(np.where(np.arange(n) % 1000 < 500, 1.0, 30.0))        # fast spells and slow ones (fading)
    x = centres[topic] + 0.3 * rng.normal(size=(n, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def make(cls):
        return cls(16, radius=0.8, half_life=200.0, max_clusters=300, min_weight=0.3, cleanup_every=50)

    fast, ref = make(FadingMicroClusters), make(FullProductClusters)
    compactions = []
    orig = fast._compact
    fast._compact = lambda: (compactions.append(fast._hw), orig())[1]
    ids_fast = [c for s in range(0, n, 48) for c in fast.learn(x[s:s + 48], ts[s:s + 48])]
    ids_ref = [c for s in range(0, n, 48) for c in ref.learn(x[s:s + 48], ts[s:s + 48])]
    assert ids_fast == ids_ref
    assert compactions, "no compaction happened: the test would not cover it"
    assert max(ids_ref) > 300                           # clusters came and went past the slot count
    for cid, s in ref._slot.items():
        f = fast._slot[cid]
        assert np.allclose(fast._c[f], ref._c[s]) and fast._w[f] == ref._w[s] and fast._t[f] == ref._t[s]
    assert len(fast._slot) == len(ref._slot) and fast._hw <= max(2 * len(fast._slot), 64 + 48)

"""End-to-end tests of the live loop through the embedded Tansu broker and a real Redis.

Workers run as ``faust -A stream_app worker`` subprocesses; metrics are read from their /metrics
endpoint, results from the topics, never from objects inside the worker.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from pathlib import Path

import pytest

from stream_app.devstack.demo import LiveLoop, gauge, load_demo_posts, load_demo_seeds
from synapse_stream.embedders import HashingEmbedder
from synapse_stream.index import PostIndex
from synapse_stream.online import DetectorConfig, OnlineIBG
from synapse_stream.seeds import Seed
from synapse_stream.segments import SegmentedIndex

pytestmark = pytest.mark.stack


def run(coro):
    return asyncio.run(coro)


async def drive(loop: LiveLoop, detector: str, seeds, posts, truth, *, timeout=300.0):
    stop = asyncio.Event()
    mod = asyncio.create_task(loop.moderate(truth, stop))
    await loop.set_truth(detector, sum(truth.values()))
    await loop.send_seeds(detector, seeds)
    await loop.send_posts(posts)
    metrics = await loop.wait_quiet(detector, len(posts), timeout=timeout)
    stop.set()
    moderated = await mod
    return metrics, moderated


async def registered_seeds(loop: LiveLoop, detector: str) -> list[dict]:
    import redis.asyncio as aioredis

    from stream_app.worker.state import RedisState, vec_from_b64

    r = aioredis.from_url(loop.redis_url, decode_responses=True)
    docs = await RedisState(r, "synapse:").seeds.all(detector)
    await r.aclose()
    for d in docs:
        d["vector"] = vec_from_b64(d["vector"])
    return docs


@pytest.mark.slow
def test_stream_equals_core_engine_on_real_sample(tmp_path):
    """Real SST-2 sample, real MiniLM, replay oracle: the stream queries and confirms exactly what the
    core's OnlineIBG does on the same vectors (the worker's own, read back from its shard snapshots)."""
    det = {"name": "pos", "tau": 0.45, "d_max": 5, "candidates": "ibg"}   # on this sample: ~85 queried, ~9 confirmed
    posts = load_demo_posts()[:800]
    seeds = load_demo_seeds()
    truth = {p["id"]: p["label"] for p in posts}
    loop = LiveLoop(tmp_path, detectors=[det], embedder="minilm-onnx", partitions=2,
                    extra_env={"SYNAPSE_HNSW_EF_SEARCH": "2000", "SYNAPSE_EMBED_BATCH_SIZE": "32"})
    with loop:
        metrics, moderated = run(drive(loop, det["name"], seeds, posts, truth))
        seed_docs = run(registered_seeds(loop, det["name"]))
        dead = run(loop.read_topic(loop.topics.dead_letters))
        run(loop.close())
        assert loop.workers[0].stop() == 0          # graceful stop writes the shard snapshots

    sent = [c["post_id"] for c in moderated.candidates]
    assert len(sent) == len(set(sent)), "a post was sent to the oracle twice"
    assert dead == []

    # the core engine on the worker's own vectors
    shards = [SegmentedIndex.load(p) for p in sorted(Path(tmp_path).glob("worker-0/shard-*/index.json"))]
    assert sum(len(s) for s in shards) == len(posts)
    index = PostIndex(shards[0].dim, ef_search=2000)
    for s in shards:
        ids = s.ids()
        index.add(ids, s.get_vectors(ids))
    eng = OnlineIBG(DetectorConfig(det["name"], det["tau"], det["d_max"]), index)
    queue = deque()
    synthetic = [d for d in seed_docs if d["origin"] == "synthetic"]
    assert len(synthetic) == len(seeds)
    for d in synthetic:
        queue.extend(eng.on_seed(Seed(d["id"], d["text"]), d["vector"]))
    while queue:
        c = queue.popleft()
        queue.extend(eng.on_verdict(c.post_id, truth[c.post_id]).candidates)

    assert set(sent) == eng.queried
    confirmed_stream = {d["id"] for d in seed_docs if d["origin"] == "confirmed"}
    confirmed_core = {p for p, y in eng.labels.items() if y == 1}
    assert confirmed_stream == confirmed_core
    assert len(confirmed_core) > 0, "the sample should yield some confirmed positives"

    # metrics, as scraped from /metrics
    n_pos = sum(truth.values())
    assert gauge(metrics, "synapse_posts_indexed") == len(posts)
    assert gauge(metrics, "synapse_queried", detector="pos") == len(sent)
    assert gauge(metrics, "synapse_confirmed_positives", detector="pos") == len(confirmed_core)
    assert gauge(metrics, "synapse_precision", detector="pos") == pytest.approx(len(confirmed_core) / len(sent))
    assert gauge(metrics, "synapse_recall", detector="pos") == pytest.approx(len(confirmed_core) / n_pos)
    assert gauge(metrics, "synapse_query_ratio", detector="pos") == pytest.approx(len(sent) / len(posts))
    assert gauge(metrics, "synapse_seeds", detector="pos", origin="confirmed") == len(confirmed_core)


# ---------------------------------------------------------------------- two workers, hashing embedder
def _tau_for(texts):
    """A threshold with seed~a0 and a0~a1 above it and seed~a1 below it (checked with the real embedder)."""
    e = HashingEmbedder(64)
    v = e.encode(texts)
    s_a0, a0_a1, s_a1 = float(v[0] @ v[1]), float(v[1] @ v[2]), float(v[0] @ v[2])
    lo, hi = s_a1, min(s_a0, a0_a1)
    assert lo < hi, (s_a0, a0_a1, s_a1)
    return (lo + hi) / 2


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    texts = ["urgent wallet recovery scam alert",
             "urgent wallet recovery scam alert send seed phrase now",
             "send seed phrase now to claim airdrop bonus today"]
    tau = _tau_for(texts)
    det = {"name": "scam", "tau": round(tau, 4), "d_max": 5, "candidates": "ibg"}
    loop = LiveLoop(tmp_path_factory.mktemp("two"), detectors=[det], embedder="hashing-64", partitions=4, workers=2,
                    extra_env={"SYNAPSE_LABEL_HOLD_SECONDS": "2"})   # a label for a post never sent: dead-lettered soon
    loop.start()
    # wait until both workers hold shards (the second join triggers a rebalance)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        shards = [set(loop.health(i)["shards"]) for i in range(2)]
        if all(shards) and not (shards[0] & shards[1]) and len(shards[0] | shards[1]) == 4:
            break
        time.sleep(1)
    else:
        loop.stop()
        pytest.fail(f"workers never split the 4 partitions: {shards}")
    yield loop, det, texts, shards
    run(loop.close())
    loop.stop()


def test_confirmed_positive_backfills_on_the_other_workers_shard(two_workers):
    loop, det, texts, shards = two_workers
    pa, pb = min(shards[0]), min(shards[1])   # a0 on worker 0's shard, a1 on worker 1's

    async def go_collect():
        # read candidates continuously while the moderator answers
        stop = asyncio.Event()
        truth = {"a0": 1, "a1": 1}
        await loop.send_raw(loop.topics.posts, json.dumps({"id": "a0", "text": texts[1]}).encode(), b"a0", pa)
        await loop.send_raw(loop.topics.posts, json.dumps({"id": "a1", "text": texts[2]}).encode(), b"a1", pb)
        for _ in range(60):
            if sum(loop.health(i)["index_size"] for i in range(2)) >= 2:
                break
            await asyncio.sleep(0.5)
        mod = asyncio.create_task(loop.moderate(truth, stop))
        await loop.send_seeds(det["name"], [texts[0]])
        cands = []
        for _ in range(120):
            cands = [json.loads(m.value) for m in await loop.read_topic(loop.topics.candidates)]
            if {c["post_id"] for c in cands} >= {"a0", "a1"}:
                break
            await asyncio.sleep(0.5)
        stop.set()
        await mod
        return cands

    cands = run(go_collect())
    by_post = {c["post_id"]: c for c in cands}
    assert "a0" in by_post and by_post["a0"]["reason"] == "backfill"      # found from the synthetic seed
    assert "a1" in by_post, f"a1 (on the other worker's shard) was never proposed: {cands}"
    assert by_post["a1"]["reason"] == "backfill" and by_post["a1"]["matched_seeds"] == ["a0"]
    sizes = [loop.health(i)["index_size"] for i in range(2)]
    assert sizes == [1, 1], f"each worker should hold one of the two posts, got {sizes}"


def test_malformed_messages_go_to_dead_letters_and_the_workers_keep_going(two_workers):
    loop, det, texts, shards = two_workers
    T = loop.topics
    bad = [
        (T.posts, b"\xff\xfe not utf-8", "not_utf8"),
        (T.posts, b"{not json", "not_json"),
        (T.posts, b'["a list"]', "not_object"),
        (T.posts, json.dumps({"text": "no id"}).encode(), "missing_field:id"),
        (T.posts, json.dumps({"id": "e1", "text": "   "}).encode(), "empty_text"),
        (T.posts, json.dumps({"id": "e2", "text": 42}).encode(), "wrong_type:text"),
        (T.posts, b"[" * 100 + b"]" * 100, "too_deep"),
        (T.seeds, json.dumps({"detector": "nope", "text": "x"}).encode(), "unknown_detector"),
        (T.seeds, json.dumps({"detector": det["name"], "text": "x", "origin": "alien"}).encode(), "bad_origin"),
        (T.labels, json.dumps({"detector": det["name"], "post_id": "never-seen", "label": 1,
                               "labeler": "x"}).encode(), "unknown_post"),
        (T.labels, json.dumps({"detector": det["name"], "post_id": "a0", "label": 7, "labeler": "x"}).encode(),
         "bad_label"),
        (T.labels, json.dumps({"detector": det["name"], "post_id": "a0", "label": True, "labeler": "x"}).encode(),
         "bad_label"),
    ]

    async def go():
        before = len(await loop.read_topic(T.dead_letters))
        for topic, value, _ in bad:
            await loop.send_raw(topic, value, b"k")
        await loop.send_raw(T.posts, json.dumps({"id": "good-after-bad", "text": "a fine post"}).encode(), b"g")
        dl = []
        for _ in range(60):
            dl = [json.loads(m.value) for m in await loop.read_topic(T.dead_letters)][before:]
            if len(dl) >= len(bad):
                break
            await asyncio.sleep(0.5)
        return dl

    dl = run(go())
    assert sorted(d["reason"] for d in dl) == sorted(r for _, _, r in bad)
    for d in dl:
        assert d["raw_b64"] is not None and d["source_topic"] in (T.posts, T.seeds, T.labels)
        assert d["offset"] is not None and d["partition"] is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(loop.health(i)["index_size"] for i in range(2)) >= 3:
            break
        time.sleep(0.5)
    assert sum(loop.health(i)["index_size"] for i in range(2)) >= 3, "the good post after the bad ones was not indexed"
    assert all(w.running for w in loop.workers)
    metrics = [loop.scrape(i) for i in range(2)]
    total_dl = sum(v for m in metrics for k, v in m.items() if k.startswith("synapse_dead_letters_total"))
    assert total_dl == len(bad)
    # every worker times its garbage-collector passes (after freezing the model's objects at start)
    for m in metrics:
        assert sum(v for k, v in m.items() if k.startswith("synapse_gc_pause_seconds_count")) > 0

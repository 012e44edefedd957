"""Candidate rounds in the live loop: GBLE rounds give the core's answers through Kafka; the policy mixes
IBG, GBLE and the classifier under a budget, never sends a post twice, versions its classifier and
publishes detections."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from stream_app.devstack.demo import LiveLoop, gauge, load_demo_posts, load_demo_seeds
from synapse_stream.embedders import make_embedder
from synapse_stream.methods.gble import GBLE
from synapse_stream.methods.policy import Policy
from synapse_stream.oracles import ReplayOracle

pytestmark = pytest.mark.stack


async def wait_for(loop, cond, timeout=120.0):
    t0 = time.monotonic()
    while True:
        try:
            m = await asyncio.to_thread(loop.scrape)
            if cond(m):
                return m
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.5)


def run_loop(loop, posts, seeds, detector, truth, *, seeds_first=False, between=None):
    async def go():
        stop = asyncio.Event()
        mod = asyncio.create_task(loop.moderate(truth, stop))
        if seeds_first:
            await loop.send_seeds(detector, seeds)
            half = len(posts) // 2
            await loop.send_posts(posts[:half])
            if between:
                await between()
            await loop.send_posts(posts[half:])
        else:
            await loop.send_posts(posts)
            await wait_for(loop, lambda m: (gauge(m, "synapse_posts_indexed") or 0) >= len(posts))
            await loop.send_seeds(detector, seeds)
        # the first round comes once the seeds have settled: quiet before it means nothing
        await wait_for(loop, lambda m: (gauge(m, "synapse_queried", detector=detector) or 0) > 0, timeout=180)
        m = await loop.wait_quiet(detector, len(posts), timeout=400, settle=6.0)
        stop.set()
        await mod
        cands = [json.loads(x.value) for x in await loop.read_topic(loop.topics.candidates)]
        dets = [json.loads(x.value) for x in await loop.read_topic(loop.topics.detections)]
        return m, cands, dets
    return asyncio.run(go())


def test_gble_rounds_through_kafka_equal_the_core(tmp_path):
    posts = load_demo_posts()[:400]
    seeds = load_demo_seeds()[:10]
    truth = {p["id"]: p["label"] for p in posts}
    det = {"name": "g", "tau": 0.3, "d_max": 5, "candidates": "gble", "k0": 15, "max_query_ratio": 0.15,
           "detect_threshold": None}
    # MiniLM, not the hashing embedder: hashing vectors of short texts tie exactly (127 of these 410 nodes
    # have a tie at their 10th neighbour), so "the" kNN graph would not be defined; MiniLM's smallest gap
    # there is 3.5e-6, and the core's answer is the same with any batching of the embedder
    loop = LiveLoop(tmp_path, detectors=[det], embedder="minilm-onnx", partitions=1,
                    extra_env={"SYNAPSE_HNSW_EF_SEARCH": "500", "SYNAPSE_GBLE_EF": "500",   # exact, as the core
                               "SYNAPSE_ROUND_MIN_INTERVAL": "0.5",
                               "SYNAPSE_ROUND_SETTLE": "3"})   # the first round sees all 10 seeds
    with loop:
        metrics, cands, _ = run_loop(loop, posts, seeds, "g", truth)

    emb = make_embedder("minilm-onnx")
    X, S = emb.encode([p["text"] for p in posts]), emb.encode(seeds)
    ids = [p["id"] for p in posts]
    core = Policy({"gble": GBLE(k=10, k0=15, iterations=20)}, k0=15, max_query_ratio=0.15)
    res = core.run(X, S, ids, ReplayOracle(truth))
    assert [c["post_id"] for c in cands] == [ids[r] for r in res.order]
    assert {c["reason"] for c in cands} == {"gble"}
    assert gauge(metrics, "synapse_queried", detector="g") == len(res.order) == int(0.15 * len(posts))
    assert gauge(metrics, "synapse_confirmed_positives", detector="g") == sum(res.labels)


def test_policy_rounds_classifier_versions_and_detections(tmp_path):
    posts = load_demo_posts()[:700]
    seeds = load_demo_seeds()[:20]
    truth = {p["id"]: p["label"] for p in posts}
    det = {"name": "pol", "tau": 0.3, "d_max": 5, "k0": 20, "max_query_ratio": 0.2,
           # low: the hashing embedder's classifier is weak (its CV precision is often 0 here), and what is tested
           # is the detections path (scored with the version current at indexing, filtered by the threshold)
           "detect_threshold": 0.05}
    loop = LiveLoop(tmp_path, detectors=[det], embedder="hashing-256", partitions=2,
                    extra_env={"SYNAPSE_ROUND_MIN_INTERVAL": "0.5", "SYNAPSE_MODEL_CV_FOLDS": "3",
                                   "SYNAPSE_MODEL_RETRAIN_SECONDS": "5"})

    async def model_ready():
        # a version trained on verdicts, not only on the seeds: seeds against provisional negatives alone may
        # separate "synthetic" from "real" and score no real post above the threshold
        await wait_for(loop, lambda m: (gauge(m, "synapse_model_training_rows", detector="pol", kind="positives")
                                        or 0) >= 5, timeout=180)

    with loop:
        metrics, cands, dets = run_loop(loop, posts, seeds, "pol", truth, seeds_first=True, between=model_ready)
        import redis.asyncio as aioredis

        async def redis_state():
            r = aioredis.from_url(loop.redis_url, decode_responses=True)
            try:
                return (await r.hgetall("synapse:pol:sources"), await r.lrange("synapse:pol:models", 0, -1),
                        await r.hlen("synapse:pol:labelled-vectors"))
            finally:
                await r.aclose()
        sources, history, n_vectors = asyncio.run(redis_state())

    ids = [c["post_id"] for c in cands]
    assert len(ids) == len(set(ids)), "a post went to the oracle twice"
    reasons = {c["reason"] for c in cands}
    assert reasons <= {"ibg", "gble", "model"} and len(reasons) >= 2
    assert len(cands) <= int(0.2 * len(posts))                          # the budget
    assert gauge(metrics, "synapse_queried", detector="pol") == len(cands)
    assert sources == {c["post_id"]: c["reason"] for c in cands}       # every source recorded, for restarts
    assert n_vectors == len(cands)                                      # every verdict's vector: training rows
    for src in reasons:   # per-source precision, from the verdicts of that source's posts
        mine = [truth[c["post_id"]] for c in cands if c["reason"] == src]
        assert gauge(metrics, "synapse_source_precision", detector="pol", source=src) == pytest.approx(
            sum(mine) / len(mine))

    # versioned classifier: one summary per version, increasing, CV on the ledger once it is big enough
    versions = [json.loads(h) for h in history]
    assert [v["version"] for v in versions] == sorted(v["version"] for v in versions) and len(versions) >= 2
    last = versions[-1]
    assert gauge(metrics, "synapse_model_version", detector="pol") == last["version"]
    assert last["n_positives"] + last["n_negatives"] <= len(cands) and last["n_seeds"] == len(seeds)
    assert last["cv_folds"] >= 2 and 0 <= last["cv_precision"] <= 1
    assert gauge(metrics, "synapse_model_cv_precision", detector="pol") == pytest.approx(last["cv_precision"])

    # detections: new posts (the second half, sent once a version existed) at or above the threshold
    assert dets, "no detections"
    second_half = {p["id"] for p in posts[len(posts) // 2:]}
    assert all(d["detector"] == "pol" and d["probability"] >= 0.05 and d["model_version"] >= 1 for d in dets)
    assert {d["post_id"] for d in dets} <= second_half
    assert gauge(metrics, "synapse_detections_total", detector="pol") == len(dets)

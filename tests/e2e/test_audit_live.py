"""Audit sampling in the live loop: uniform, detector-independent audits with reason "audit", never a post
twice to the oracle, audit verdicts kept out of the detector's precision, and the recall estimate exported
on /metrics equal to the core estimator on the same verdicts."""
from __future__ import annotations

import asyncio
import json

import pytest

from stream_app.devstack.demo import LiveLoop, gauge, load_demo_posts, load_demo_seeds
from synapse_stream.audit import AuditSampler, RecallEstimator

pytestmark = pytest.mark.stack


def test_audit_in_the_live_loop(tmp_path):
    rate = 0.05
    det = {"name": "aud", "tau": 0.3, "d_max": 5, "audit_rate": rate, "candidates": "ibg"}
    posts = load_demo_posts()[:600]
    seeds = load_demo_seeds()[:20]
    truth = {p["id"]: p["label"] for p in posts}
    loop = LiveLoop(tmp_path, detectors=[det], embedder="hashing-256", partitions=2,
                    extra_env={"SYNAPSE_AUDIT_SALT": "test-salt"})
    with loop:
        async def go():
            stop = asyncio.Event()
            mod = asyncio.create_task(loop.moderate(truth, stop))
            await loop.send_seeds("aud", seeds)
            await loop.send_posts(posts)
            m = await loop.wait_quiet("aud", len(posts), timeout=300)
            stop.set()
            await mod
            import redis.asyncio as aioredis

            r = aioredis.from_url(loop.redis_url, decode_responses=True)
            queried = set(await r.smembers("synapse:aud:queried"))   # the detector's claims, from Redis
            await r.aclose()
            return m, [json.loads(x.value) for x in await loop.read_topic(loop.topics.candidates)], queried
        metrics, cands, queried = asyncio.run(go())

    ids = [c["post_id"] for c in cands]
    assert len(ids) == len(set(ids)), "a post went to the oracle twice"
    sampler = AuditSampler(rate, "test-salt")
    chosen = {p["id"] for p in posts if sampler.should_audit(p["id"])}
    audits = {c["post_id"] for c in cands if c["reason"] == "audit"}
    detector = {c["post_id"]: c for c in cands if c["reason"] != "audit"}
    assert audits and audits <= chosen                      # only posts the sampler chose
    assert chosen <= audits | set(detector)                 # every chosen post reached the oracle once
    assert len(chosen) == pytest.approx(rate * len(posts), abs=4 * (rate * len(posts)) ** 0.5)

    # the detector's precision counts only its own queries: its candidates, plus audited posts it wanted
    # too, whose audit verdict it re-used instead of asking the oracle again
    assert set(detector) <= queried and queried - set(detector) <= audits
    answered = len(queried)
    positives = sum(truth[p] for p in queried)
    assert gauge(metrics, "synapse_answered", detector="aud") == answered
    assert gauge(metrics, "synapse_precision", detector="aud") == pytest.approx(positives / answered)

    # the exported estimate is the core estimator on the same verdicts
    est = RecallEstimator(0.95)
    est.set_posts(len(posts))
    est.set_detector(answered, positives)
    for pid in audits:   # chosen posts the detector had already queried on arrival are in its stratum anyway
        est.update_audit(pid, truth[pid], queried_by_detector=pid in queried)
    want = est.get()
    assert gauge(metrics, "synapse_audit_size", detector="aud") == want["audit_size"] == len(audits)
    assert gauge(metrics, "synapse_audit_share", detector="aud") == pytest.approx(want["audit_share"])
    if want["estimate"] is not None:
        got = [gauge(metrics, n, detector="aud") for n in
               ("synapse_recall_estimate_lower", "synapse_recall_estimate", "synapse_recall_estimate_upper")]
        assert got == pytest.approx([want["lower"], want["estimate"], want["upper"]])
        assert got[0] <= got[1] <= got[2]

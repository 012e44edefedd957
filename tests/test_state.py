"""The Redis state store against a real redis-server: verdict precedence, claims, in-flight records."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from stream_app.devstack.embedded import RedisServer
from stream_app.worker.state import RedisState
from synapse_stream.messages import LabelMsg


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with RedisServer(data_dir=tmp_path_factory.mktemp("redis")) as srv:
        yield srv.url


def run(redis_url, fn):
    import redis.asyncio as aioredis

    async def go():
        r = aioredis.from_url(redis_url, decode_responses=True)
        try:
            return await fn(RedisState(r, prefix=f"t-{uuid.uuid4().hex}:"))   # a fresh namespace per test
        finally:
            await r.aclose()
    return asyncio.run(go())


def test_a_human_verdict_beats_an_llm_verdict_and_the_ledger_keeps_both(redis_url):
    async def go(st):
        out = [await st.record_verdict(LabelMsg("d", "p1", 1, "llm:gpt", None)),     # LLM first
               await st.record_verdict(LabelMsg("d", "p1", 0, "moderator:ana", None)),  # human overrides
               await st.record_verdict(LabelMsg("d", "p1", 1, "llm:gpt", None)),     # a later LLM does not
               await st.record_verdict(LabelMsg("d", "p1", 1, "moderator:bo", None))]   # a later human does
        return out, await st.ledger("d"), await st.verdict_history("d"), await st.counters("d")

    out, ledger, history, counters = run(redis_url, go)
    assert out == [(None, 1), (1, 0), (0, 0), (0, 1)]
    assert ledger == {"p1": 1}
    assert [h["labeler"] for h in history] == ["llm:gpt", "moderator:ana", "llm:gpt", "moderator:bo"]
    assert counters["answered"] == 1 and counters["positives"] == 1 and counters["llm_after_human"] == 1


def test_claims_are_first_wins_and_in_flight_until_sent(redis_url):
    async def go(st):
        first = await st.claim_many([("d", "a"), ("d", "b")], "w1", [b'{"x":1}', b'{"x":2}'])
        again = await st.claim_many([("d", "a"), ("d", "c")], "w2", [b'{"x":1}', b'{"x":3}'])
        inflight = await st.inflight("d")
        await st.sent([("d", "a"), ("d", "b")])
        return first, again, inflight, await st.inflight("d"), await st.counters("d")

    first, again, inflight, after, counters = run(redis_url, go)
    assert first == [True, True] and again == [False, True]
    assert inflight == {"a": ("w1", '{"x":1}'), "b": ("w1", '{"x":2}'), "c": ("w2", '{"x":3}')}
    assert after == {"c": ("w2", '{"x":3}')} and counters["queried"] == 3


def test_orphans_are_in_flight_claims_of_workers_without_a_heartbeat(redis_url):
    async def go(st):
        await st.heartbeat("alive", ttl=30)
        await st.claim_many([("d", "a"), ("d", "b")], "alive", [b"m1", b"m2"])
        await st.claim_many([("d", "c")], "dead", [b"m3"])
        return await st.orphans("d", me="me")

    assert run(redis_url, go) == {"c": "m3"}


def test_round_sources_and_per_source_counters(redis_url):
    async def go(st):
        await st.record_sources("d", {"a": "gble", "b": "model", "c": "model"})
        await st.count_source_verdict("d", "model", 1)
        await st.count_source_verdict("d", "model", 0)
        await st.count_source_verdict("d", "gble", 1)
        return await st.sources("d"), await st.source_of("d", "b"), await st.source_counters("d")

    sources, b, counters = run(redis_url, go)
    assert sources == {"a": "gble", "b": "model", "c": "model"} and b == "model"
    assert counters == {"gble": {"queried": 1, "answered": 1, "positives": 1},
                        "model": {"queried": 2, "answered": 2, "positives": 1}}


def test_classifier_versions_never_go_back_and_keep_a_history(redis_url):
    import numpy as np

    async def go(st):
        v1, v2 = await st.next_model_version("d"), await st.next_model_version("d")
        await st.store_labelled_vectors("d", {"p": np.array([0.6, 0.8], np.float32)})
        await st.publish_model("d", {"version": v2, "w": 2}, {"version": v2}, key=[3, 1, 0, 5])
        await st.publish_model("d", {"version": v1, "w": 1}, {"version": v1})   # late, older: ignored
        return ((v1, v2), await st.model("d"), await st.model_history("d"), await st.model_key("d"),
                await st.labelled_vectors("d"))

    (v1, v2), doc, history, key, vecs = run(redis_url, go)
    assert (v1, v2) == (1, 2) and doc == {"version": 2, "w": 2} and history == [{"version": 2}]

    assert key == [3, 1, 0, 5] and np.allclose(vecs["p"], [0.6, 0.8])

"""The service's error boundary, over a real Redis and over the in-memory state: one hostile message never stops a partition.

Every message is either processed or dead-lettered exactly once (validation reasons, or
``internal_error`` for any other exception while handling it); only transient errors leave the service,
for the runtime to retry. Also: labels for posts not seen yet are held and applied when the post
arrives, and dead letters are keyed by their source coordinates.
"""
from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest
import redis.exceptions as rexc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import service_settings
from strategies import messages

from stream_app.worker.service import DetectionService, RawMsg, dead_letter_key
from stream_app.worker.state import MemoryState, RedisState

POSTS, LABELS, SEEDS, VERDICTS = "synapse.posts", "synapse.labels", "synapse.seeds", "synapse.verdicts"
BAD_POST = rb'{"id": "bad-\ud800", "text": "a post whose id holds a lone surrogate"}'
BAD_LABEL = rb'{"detector": "scam", "post_id": "bad-\ud800", "label": 1, "labeler": "x"}'
BAD_SEED = rb'{"detector": "scam", "text": "double your bitcoin", "id": "seed-\ud800"}'


def run(store, fn, **kw):
    """``fn(service)`` on a started service with shards 0 and 1, over Redis (``store`` a URL) or memory (None)."""
    from stream_app.devstack.redis_cluster import connect

    async def go():
        r = connect(store) if store else None
        state = RedisState(r, prefix=f"t-{uuid.uuid4().hex}:") if r else MemoryState()
        svc = DetectionService(service_settings(**kw), state)
        try:
            await svc.start()
            await svc.assign([0, 1])
            return await fn(svc)
        finally:
            await svc.stop()
            if r is not None:
                await r.aclose()
    return asyncio.run(go())


class Offsets:
    """Raw messages with increasing offsets per (topic, partition), as a consumer would see them."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def __call__(self, topic: str, value: bytes, partition: int = 0, key: bytes | None = b"k") -> RawMsg:
        off = self.next.get((topic, partition), 0)
        self.next[(topic, partition)] = off + 1
        return RawMsg(topic, partition, off, key, value, 1.7e9)


def post(pid: str, text: str | None = None) -> bytes:
    return json.dumps({"id": pid, "text": text or f"an ordinary post number {pid}"}).encode()


def label(pid: str, y: int = 1) -> bytes:
    return json.dumps({"detector": "scam", "post_id": pid, "label": y, "labeler": "ann"}).encode()


def reasons(out) -> list[str]:
    return [json.loads(v)["reason"] for _, v in out.dead_letters]


# ---------------------------------------------------------------------- the reported case
def test_the_lone_surrogate_post_label_and_seed_are_dead_lettered_and_the_partition_goes_on(store):
    msg = Offsets()

    async def go(svc):
        posts = [msg(POSTS, post(f"v{i}")) for i in range(5)] + [msg(POSTS, BAD_POST)] + \
                [msg(POSTS, post(f"v{i}")) for i in range(5, 25)]
        out_posts = await svc.handle_posts(posts)
        labels = [msg(LABELS, label("v0")), msg(LABELS, BAD_LABEL), msg(LABELS, label("v7", 0))]
        out_labels = await svc.handle_labels(labels)
        seeds = [msg(SEEDS, BAD_SEED), msg(SEEDS, json.dumps({"detector": "scam", "text": "free crypto"}).encode())]
        out_seeds = await svc.handle_seeds(seeds)
        out_verdicts = await svc.handle_verdicts([RawMsg(VERDICTS, p, i, k, v)
                                                  for i, (p, k, v) in enumerate(out_labels.verdicts)])
        return (out_posts, out_labels, out_seeds, out_verdicts, len(svc.index), dict(svc.offsets),
                await svc.state.verdicts.ledger("scam"), await svc.state.seeds.all("scam"))

    out_posts, out_labels, out_seeds, out_verdicts, size, offsets, ledger, seeds = run(store, go)
    assert reasons(out_posts) == ["not_utf8:id"] and size == 25 and offsets[0] == 25
    assert reasons(out_labels) == ["not_utf8:post_id"] and [k for _, k, _ in out_labels.verdicts] == [b"v0", b"v7"]
    assert reasons(out_seeds) == ["not_utf8:id"] and [s["text"] for s in seeds if s["origin"] == "synthetic"] == ["free crypto"]
    assert reasons(out_verdicts) == [] and ledger == {"v0": 1, "v7": 0}
    dl = json.loads(out_posts.dead_letters[0][1])
    assert base64.b64decode(dl["raw_b64"]) == BAD_POST and dl["offset"] == 5
    assert out_posts.dead_letters[0][0] == b"synapse.posts/0/5"   # keyed by its source coordinates


# ---------------------------------------------------------------------- anything else that raises
class Boom(Exception):
    """An unexpected failure with a message that must not reach the dead letter or the log."""


def test_an_embedder_failure_dead_letters_only_the_post_at_fault(store, caplog):
    msg = Offsets()

    async def go(svc):
        real = svc.embedder.encode

        def encode(texts):
            if any("poison" in t for t in texts):
                raise Boom("secret text of the post: poison")
            return real(texts)
        svc.embedder.encode = encode
        out = await svc.handle_posts([msg(POSTS, post("a")), msg(POSTS, post("b", "poison pill")),
                                      msg(POSTS, post("c"))])
        return out, sorted(svc.index.shards[0].ids()), svc.metrics.exposition().decode()

    out, ids, metrics = run(store, go)
    assert reasons(out) == ["internal_error"] and ids == ["a", "c"]
    detail = json.loads(out.dead_letters[0][1])["detail"]
    assert detail.startswith("index: Boom at ") and "poison" not in detail
    assert 'synapse_internal_errors_total{error="Boom",stage="index",topic="synapse.posts"} 1.0' in metrics
    assert "poison" not in caplog.text and "Boom" in caplog.text


def test_a_model_thread_failure_and_a_redis_encoding_failure_are_internal_errors(store):
    msg = Offsets()

    async def go(svc):
        eng = svc.engines["scam"]
        real_on_posts = eng.on_posts

        def on_posts(ids, vecs):
            if "m-bad" in ids:
                raise Boom("model thread")
            return real_on_posts(ids, vecs)
        eng.on_posts = on_posts
        real_record = svc.state.posts.record

        async def record_posts(parts):
            if "r-bad" in parts:
                raise rexc.DataError("cannot encode")   # what redis-py raises for an unencodable value
            return await real_record(parts)
        svc.state.posts.record = record_posts
        out = await svc.handle_posts([msg(POSTS, post(p)) for p in ("m-ok", "m-bad", "r-bad", "r-ok")])
        return out, await svc.state.posts.partition_of("r-ok"), await svc.state.posts.partition_of("r-bad")

    out, ok_part, bad_part = run(store, go)
    dls = [json.loads(v) for _, v in out.dead_letters]
    assert sorted((d["reason"], d["detail"].split(" at ")[0], d["offset"]) for d in dls) == [
        ("internal_error", "index: Boom", 1), ("internal_error", "record: DataError", 2)]
    assert ok_part == 0 and bad_part is None


def test_a_transient_error_is_not_a_dead_letter_but_leaves_for_the_runtime_to_retry(store):
    msg = Offsets()

    async def go(svc):
        async def down(*a, **k):
            raise rexc.ConnectionError("redis is down")
        svc.state.posts.partition_of = down
        with pytest.raises(rexc.ConnectionError):
            await svc.handle_labels([msg(LABELS, label("p"))])
        return True
    assert run(store, go)


def test_a_verdict_whose_handling_raises_is_dead_lettered_and_the_next_one_applied(store):
    msg = Offsets()

    async def go(svc):
        await svc.handle_posts([msg(POSTS, post("x")), msg(POSTS, post("y"))])
        real = svc.state.verdicts.record

        async def record_verdict(lab):
            if lab.post_id == "x":
                raise KeyError("x")
            return await real(lab)
        svc.state.verdicts.record = record_verdict
        out = await svc.handle_verdicts([msg(VERDICTS, label("x")), msg(VERDICTS, label("y"))])
        return out, await svc.state.verdicts.ledger("scam")

    out, ledger = run(store, go)
    assert reasons(out) == ["internal_error"] and ledger == {"y": 1}


# ---------------------------------------------------------------------- labels that arrive before their post
def test_a_label_before_its_post_is_held_then_routed_when_the_post_arrives(store):
    msg = Offsets()

    async def go(svc):
        early = await svc.handle_labels([msg(LABELS, label("late-post")), msg(LABELS, label("never"))])
        nothing_yet = await svc.release_held_labels()
        held = await svc.state.held.count()
        await svc.handle_posts([msg(POSTS, post("late-post"))])
        routed = await svc.release_held_labels()
        again = await svc.release_held_labels()   # leased: not taken twice while the first taker publishes
        await svc.state.held.drop(routed.released)
        expired = await svc.release_held_labels(now=1e12)
        await svc.state.held.drop(expired.released)
        return early, nothing_yet, held, routed, again, expired, await svc.state.held.count()

    early, nothing_yet, held, routed, again, expired, left = run(store, go, label_hold_seconds=60)
    assert early.dead_letters == [] and early.verdicts == [] and held == 2
    assert nothing_yet.verdicts == [] and nothing_yet.dead_letters == []
    assert [(p, k) for p, k, _ in routed.verdicts] == [(0, b"late-post")] and json.loads(routed.verdicts[0][2])["label"] == 1
    assert again.verdicts == [] and again.dead_letters == []
    assert reasons(expired) == ["unknown_post"] and json.loads(expired.dead_letters[0][1])["offset"] == 1
    assert left == 0


def test_with_no_hold_an_unknown_post_is_dead_lettered_at_once(store):
    msg = Offsets()

    async def go(svc):
        return await svc.handle_labels([msg(LABELS, label("nobody"))])
    assert reasons(run(store, go, label_hold_seconds=0)) == ["unknown_post"]


def test_a_dead_letter_key_is_the_same_on_every_replay():
    m = RawMsg(POSTS, 3, 41, b"user-key", b"{")
    assert dead_letter_key(m) == dead_letter_key(RawMsg(POSTS, 3, 41, None, b"{")) == b"synapse.posts/3/41"


# ---------------------------------------------------------------------- the fuzzer, one layer up
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_service_never_raises_and_dead_letters_each_rejected_message_once(store, data):
    """Any mix of generated messages on posts, labels, verdicts and seeds: the service returns, with one
    dead letter for each message the validator rejects (or that fails inside), and valid posts after
    hostile ones are indexed."""
    from synapse_stream.exceptions import MessageError
    from synapse_stream.messages import parse_label, parse_post, parse_seed

    msg = Offsets()
    topic_msgs = {t: [msg(t, data.draw(messages(k))) for _ in range(data.draw(st.integers(1, 12)))]
                  for t, k in ((POSTS, "posts"), (LABELS, "labels"), (VERDICTS, "labels"), (SEEDS, "seeds"))}
    tail = [msg(POSTS, post(f"tail-{i}")) for i in range(3)]

    def rejected(parse, ms):
        n = 0
        for m in ms:
            try:
                parse(m.value)
            except MessageError:
                n += 1
        return n

    async def go(svc):
        out = {POSTS: await svc.handle_posts(topic_msgs[POSTS] + tail),
               LABELS: await svc.handle_labels(topic_msgs[LABELS]),
               VERDICTS: await svc.handle_verdicts(topic_msgs[VERDICTS]),
               SEEDS: await svc.handle_seeds(topic_msgs[SEEDS])}
        return out, set(svc.index.shards[0].ids())

    out, ids = run(store, go)
    for t, parse in ((POSTS, parse_post), (LABELS, parse_label), (SEEDS, parse_seed)):
        dls = [json.loads(v) for _, v in out[t].dead_letters]
        keys = [k for k, _ in out[t].dead_letters]
        assert len(keys) == len(set(keys)), "a message dead-lettered twice"
        assert all(d["reason"] != "internal_error" for d in dls), dls
        n_bad = rejected(parse, topic_msgs[t] + (tail if t == POSTS else []))
        assert len(dls) >= n_bad   # seeds/labels may also name an unknown detector
    assert {f"tail-{i}" for i in range(3)} <= ids

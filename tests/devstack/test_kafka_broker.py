"""The embedded Apache Kafka broker (``stream_app.devstack.kafka``): KRaft, one node, real semantics.

What Tansu gets wrong is checked here on real Kafka: batched produce with exact end offsets, an
idempotent producer, a consumer group splitting partitions. Needs ``java`` (17+); the Kafka jars are
installed on first use (``ensure_kafka()``, Maven) if ``make kafka`` has not run.
"""
from __future__ import annotations

import asyncio
import shutil
import socket

import pytest

from stream_app.devstack.embedded import EmbeddedStackError, broker_kind
from stream_app.devstack.kafka import (
    KAFKA_VERSION,
    _metadata_request,
    _parse_metadata,
    ApacheKafkaBroker,
    ensure_kafka,
    kafka_libs,
    kafka_metadata,
    random_cluster_id,
)
from stream_app.worker.kafka_admin import create_topics, topic_partitions_sync

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def kafka_jars():
    if shutil.which("java") is None:
        pytest.skip("java (17+) is not installed: no Apache Kafka broker")
    return ensure_kafka()


@pytest.fixture(scope="module")
def kafka(kafka_jars, tmp_path_factory, request):
    b = ApacheKafkaBroker(log_dir=tmp_path_factory.mktemp("kafka-logs"))
    request.addfinalizer(b.stop)
    b.start()
    return b


def _create(kafka: ApacheKafkaBroker, topics: dict[str, int]) -> None:
    asyncio.run(create_topics(kafka.bootstrap, topics))
    kafka.wait_for_leaders(list(topics))


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_ensure_kafka_is_idempotent(kafka_jars):
    assert kafka_libs() == kafka_jars
    assert (kafka_jars / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert any(kafka_jars.glob("log4j-core-*.jar")) and any(kafka_jars.glob("slf4j-api-2.*.jar"))
    assert ensure_kafka() == kafka_jars  # the marker: instant, nothing re-downloaded


def test_cluster_id_shape():
    ids = {random_cluster_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_broker_is_up(kafka):
    assert kafka.running and kafka.pid
    assert kafka.bootstrap == f"127.0.0.1:{kafka.port}" and kafka.url == f"kafka://127.0.0.1:{kafka.port}"
    assert kafka.description == f"Apache Kafka {KAFKA_VERSION} (KRaft, 1 node)"
    md = kafka_metadata("127.0.0.1", kafka.port)
    assert md is not None and md[0] == [1] and md[1] == 1
    assert kafka.data_dir is not None and (kafka.data_dir / "metadata" / "meta.properties").is_file()
    assert kafka.log_path is not None and "Kafka Server started" in kafka.log_path.read_text()
    rss = kafka.rss_bytes()
    assert rss is not None and rss < 1_000_000_000


def test_topic_with_partitions_right_after_start(kafka):
    # CreateTopics answers 10-100 ms before the broker's metadata shows the topics, so what
    # create_topics() describes right after may still lack them: wait for the leaders, then check
    got = asyncio.run(create_topics(kafka.bootstrap, {"kf-parts": 6, "kf-one": 1}))
    assert set(got) <= {"kf-parts", "kf-one"} and all(got[t] == n for t, n in (("kf-parts", 6), ("kf-one", 1))
                                                     if t in got)
    kafka.wait_for_leaders(["kf-parts", "kf-one"], timeout=15)
    assert topic_partitions_sync(kafka.bootstrap, ["kf-parts", "kf-one"]) == {"kf-parts": 6, "kf-one": 1}
    _, _, leaders = _parse_metadata(_metadata_request("127.0.0.1", kafka.port, ["kf-parts", "kf-one"], 2.0))
    assert leaders == {"kf-parts": [1] * 6, "kf-one": [1]}
    with pytest.raises(EmbeddedStackError, match="no partition leaders"):
        kafka.wait_for_leaders(["kf-missing"], timeout=0.5)


def test_no_auto_created_topics(kafka):
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, request_timeout_ms=3000)
        await p.start()
        try:
            with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
                await asyncio.wait_for(p.send_and_wait("kf-never-created", b"x"), 10)
        finally:
            await p.stop()

    asyncio.run(run())


def test_batched_produce_reads_back_with_exact_end_offsets(kafka):
    """Default batching with linger: many records per batch, end offsets = record counts (Tansu: wrong)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic, parts, n = "kf-batch", 4, 1000
    _create(kafka, {topic: parts})

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=20)
        await p.start()
        try:
            futs = [await p.send(topic, b"v%d" % i, partition=i % parts) for i in range(n)]
            metas = await asyncio.gather(*futs)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            tps = [TopicPartition(topic, i) for i in range(parts)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            got: dict[int, list[int]] = {i: [] for i in range(parts)}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while sum(map(len, got.values())) < n and loop.time() < deadline:
                for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                    got[tp.partition] += [m.offset for m in msgs]
        finally:
            await c.stop()
        return metas, ends, got

    metas, ends, got = asyncio.run(run())
    per = n // parts
    assert {tp.partition: off for tp, off in ends.items()} == {i: per for i in range(parts)}
    assert all(got[i] == list(range(per)) for i in range(parts))
    assert sorted(m.offset for m in metas if m.partition == 0) == list(range(per))


def test_idempotent_producer(kafka):
    from aiokafka import AIOKafkaProducer

    topic = "kf-idem"
    _create(kafka, {topic: 2})

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all")
        await p.start()
        try:
            futs = [await p.send(topic, b"i%d" % i, key=b"k%d" % (i % 7)) for i in range(200)]
            return await asyncio.gather(*futs)
        finally:
            await p.stop()

    metas = asyncio.run(run())
    assert len(metas) == 200
    by_part: dict[int, list[int]] = {}
    for m in metas:
        by_part.setdefault(m.partition, []).append(m.offset)
    assert all(sorted(v) == list(range(len(v))) for v in by_part.values())


def test_consumer_group_splits_partitions(kafka):
    from aiokafka import AIOKafkaConsumer

    topic, group = "kf-group", "kf-group-1"
    _create(kafka, {topic: 4})

    async def run():
        members = [AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, group_id=group,
                                    session_timeout_ms=10000, heartbeat_interval_ms=1000,
                                    enable_auto_commit=False) for _ in range(2)]
        for m in members:
            await m.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 40
            while loop.time() < deadline:
                await asyncio.gather(*(m.getmany(timeout_ms=300) for m in members))
                sets = [{tp.partition for tp in m.assignment()} for m in members]
                if all(len(s) == 2 for s in sets) and not (sets[0] & sets[1]):
                    return sets
            return [{tp.partition for tp in m.assignment()} for m in members]
        finally:
            for m in members:
                await m.stop()

    sets = asyncio.run(run())
    assert sets[0] | sets[1] == {0, 1, 2, 3}
    assert not (sets[0] & sets[1]) and len(sets[0]) == len(sets[1]) == 2


def test_stop_frees_port_and_deletes_data(kafka_jars, tmp_path):
    b = ApacheKafkaBroker(log_dir=tmp_path)
    with b:
        port, cport, data = b.port, b.controller_port, b.data_dir
        assert data is not None and data.is_dir() and not _port_free(port)
    assert not b.running and b.pid is None
    assert not data.exists()
    assert _port_free(port) and _port_free(cport)
    assert (tmp_path / f"kafka-{port}.log").is_file()
    assert b.startup_seconds is not None and b.format_seconds is not None


def test_missing_jars_without_install_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNAPSE_KAFKA_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EmbeddedStackError, match="make kafka"):
        ApacheKafkaBroker(install=False, java="java")


def test_broker_kind_setting(monkeypatch):
    monkeypatch.delenv("SYNAPSE_DEV_BROKER", raising=False)
    assert broker_kind() == "tansu"
    monkeypatch.setenv("SYNAPSE_DEV_BROKER", "kafka")
    assert broker_kind() == "kafka" and broker_kind("tansu") == "tansu"
    with pytest.raises(ValueError, match="unknown dev broker"):
        broker_kind("rabbitmq")


def test_live_loop_on_kafka_has_no_tansu_quirks(tmp_path):
    from stream_app.devstack.demo import LiveLoop

    assert LiveLoop(tmp_path / "a", broker_kind="tansu").tansu_quirks
    assert not LiveLoop(tmp_path / "b", broker_kind="kafka").tansu_quirks
    assert not LiveLoop(tmp_path / "c", broker_kind="tansu", external_broker="kafka://h:9092").tansu_quirks


def test_live_loop_worker_on_kafka(kafka_jars, tmp_path):
    """A real worker on Apache Kafka: the idempotent producer (no Tansu settings), every post indexed."""
    from stream_app.devstack.demo import LiveLoop, gauge

    det = {"name": "kf", "tau": 0.9, "d_max": 5, "candidates": "ibg"}
    loop = LiveLoop(tmp_path, detectors=[det], embedder="hashing-64", partitions=2, broker_kind="kafka")
    try:
        loop.start(timeout=120)
        assert loop.worker_env(0)["SYNAPSE_EMBEDDED_BROKER"] == "0"
        assert loop.broker_description.startswith("Apache Kafka ")
        posts = [{"id": f"p{i}", "text": f"post number {i} about topic {i % 5}"} for i in range(60)]

        async def go():
            stop = asyncio.Event()
            mod = asyncio.create_task(loop.moderate({}, stop))
            await loop.send_seeds(det["name"], ["post about topic 3"])
            await loop.send_posts(posts)
            m = await loop.wait_quiet(det["name"], len(posts), timeout=120, settle=2)
            stop.set()
            await mod
            await loop.close()
            return m

        m = asyncio.run(go())
        assert gauge(m, "synapse_posts_indexed") == len(posts)
        assert loop.health(0)["index_size"] == len(posts)
        log = loop.workers[0].log_text()
        assert "synapse-kafka://" in log and "IdempotentProducer" in log
    finally:
        loop.stop()


def test_read_to_end_on_kafka(kafka):
    """Found by this broker: ``AIOKafkaConsumer.topics()`` returns fresh metadata without updating the consumer's own
    cluster view, so ``partitions_for_topic()`` was None and nothing was read (Tansu's answers hid it)."""
    from aiokafka import AIOKafkaProducer

    from stream_app.worker.kafka_admin import read_to_end

    _create(kafka, {"kf-read": 2})

    async def go():
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await p.start()
        try:
            for i in range(10):
                await p.send("kf-read", b"r%d" % i, partition=i % 2)
        finally:
            await p.stop()
        return await read_to_end(kafka.bootstrap, "kf-read", timeout=20)

    assert sorted(m.value for m in asyncio.run(go())) == sorted(b"r%d" % i for i in range(10))


def test_created_topics_are_reported_at_once_on_kafka(kafka):
    """Apache Kafka answers CreateTopics before its metadata shows the topics: create_topics waits for them."""
    from stream_app.worker.kafka_admin import create_topics

    names = {f"kf-new-{i}": 1 + i % 3 for i in range(8)}
    assert asyncio.run(create_topics(kafka.bootstrap, names)) == names

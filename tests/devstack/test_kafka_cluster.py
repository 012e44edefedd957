"""The three-node Apache Kafka cluster of the dev stack (``stream_app.devstack.kafka.KafkaCluster``): a static
three-voter KRaft quorum, replication 3 and ``min.insync.replicas`` 2; an ``acks=all`` idempotent producer
loses nothing and writes nothing twice while the leader of its partition is killed with SIGKILL and restarted.
Skips without ``java`` or the Kafka jars (``make kafka``)."""
from __future__ import annotations

import asyncio
import shutil

import pytest

from stream_app.devstack.kafka import KafkaCluster, kafka_libs, kafka_metadata
from stream_app.worker.kafka_admin import create_topics_sync

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    if shutil.which("java") is None or kafka_libs() is None:
        pytest.skip("needs java (17+) and the Apache Kafka jars (`make kafka`)")
    c = KafkaCluster(tmp_path_factory.mktemp("kcluster-logs"), data_dir=tmp_path_factory.mktemp("kcluster-data"))
    request.addfinalizer(c.stop)
    return c.start()


def test_three_nodes_one_quorum(cluster):
    assert cluster.description.startswith("Apache Kafka 4.4.0 (KRaft, 3 nodes, replication 3, min.insync.replicas 2")
    assert len(cluster.bootstrap.split(",")) == 3 and cluster.url.count("kafka://") == 3
    controllers = set()
    for n in cluster.nodes:
        md = kafka_metadata("127.0.0.1", n.port)
        assert md is not None and sorted(md[0]) == [1, 2, 3]
        controllers.add(md[1])
        props = (n.data_dir / "config" / "server.properties").read_text()
        assert "min.insync.replicas=2\n" in props and "default.replication.factor=3\n" in props
        assert "offsets.topic.replication.factor=3\n" in props
        assert f"node.id={n.node_id}\n" in props and props.count("@127.0.0.1:") == 3   # the same three voters
    # (in KRaft, Metadata names any live broker as the "controller": clients send admin requests there)
    assert controllers <= {1, 2, 3}


def test_topic_min_insync_replicas(cluster):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    create_topics_sync(cluster.bootstrap, {"kc-conf": 2}, replication=3)
    cluster.wait_for_leaders(["kc-conf"])

    async def run():
        a = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await a.start()
        try:
            res = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kc-conf")])
        finally:
            await a.close()
        return {e[0]: e[1] for r in res for t in r.resources for e in t[4]}

    conf = asyncio.run(run())
    assert conf["min.insync.replicas"] == "2"


def test_acks_all_through_a_leader_killed_and_restarted(cluster):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic, n = "kc-kill", 300
    create_topics_sync(cluster.bootstrap, {topic: 3}, replication=3)
    leaders = cluster.wait_for_leaders([topic])[topic]
    assert all(x in (1, 2, 3) for x in leaders)

    async def produce(p, lo, hi):
        futs = [await p.send(topic, b"v%d" % i, partition=i % 3) for i in range(lo, hi)]
        return await asyncio.gather(*futs)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True,
                             request_timeout_ms=60000)
        await p.start()
        try:
            await produce(p, 0, n)
            victim = cluster.leader_of(topic, 0)
            await asyncio.to_thread(cluster.kill, victim)
            after_kill = await asyncio.wait_for(produce(p, n, 2 * n), 120)   # two replicas left: still accepted
            moved = await asyncio.to_thread(cluster.wait_for_leaders, [topic], 60.0, [victim])
            await asyncio.to_thread(cluster.restart, victim)
            await produce(p, 2 * n, 3 * n)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False)
        await c.start()
        got: list[bytes] = []
        try:
            tps = [TopicPartition(topic, i) for i in range(3)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            deadline = asyncio.get_running_loop().time() + 60
            while len(got) < 3 * n and asyncio.get_running_loop().time() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    got += [m.value for m in msgs]
        finally:
            await c.stop()
        return victim, after_kill, moved, got

    victim, after_kill, moved, got = asyncio.run(run())
    assert len(after_kill) == n
    assert victim not in moved[topic], "every partition led by a live node after the kill"
    assert sorted(got) == sorted(b"v%d" % i for i in range(3 * n)), "nothing lost, nothing twice"
    assert cluster.broker_kills == 1 and cluster.broker_restarts == 1 and cluster.node(victim).running
    assert cluster.ready()

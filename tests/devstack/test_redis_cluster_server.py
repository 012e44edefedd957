"""The dev stack's three-master Redis Cluster: three cluster-enabled redis-server processes joined by redis-cli,
every slot served, and nothing left running after stop."""
from __future__ import annotations

import asyncio

import pytest

from stream_app.devstack.embedded import EmbeddedStackError, redis_ping


def test_three_masters_share_every_slot_and_stop_cleanly(tmp_path):
    from stream_app.devstack.redis_cluster import RedisClusterServer, cluster_state, connect

    try:
        cluster = RedisClusterServer(data_dir=tmp_path)
    except EmbeddedStackError as exc:
        pytest.skip(str(exc))

    async def info(url):
        r = connect(url)
        try:
            nodes = await r.cluster_nodes()
            await r.set("a", "1"), await r.set("b", "2"), await r.set("c", "3")
            return nodes, [await r.get(k) for k in "abc"]
        finally:
            await r.aclose()

    with cluster:
        addresses = cluster.addresses
        assert all(cluster_state(h, p) == "ok" for h, p in addresses)
        nodes, values = asyncio.run(info(cluster.url))
    masters = [n for n in nodes.values() if "master" in n["flags"]]
    assert len(masters) == 3
    assert sum(hi - lo + 1 for m in masters for lo, hi in (map(int, s) for s in m["slots"])) == 16384
    assert values == ["1", "2", "3"]
    assert not any(redis_ping(h, p) for h, p in addresses)

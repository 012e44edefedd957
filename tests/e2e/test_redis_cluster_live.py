"""The live loop with its state on a three-master Redis Cluster: a real Faust worker (``SYNAPSE_REDIS_CLUSTER=true``)
on the embedded broker claims candidates, applies the moderator's verdicts and keeps its books on the cluster,
under the hash-tagged key names."""
from __future__ import annotations

import asyncio
import pytest

from stream_app.devstack.demo import LiveLoop, gauge

pytestmark = pytest.mark.stack

SEED = "free crypto giveaway send one coin get two back"


def test_a_worker_keeps_its_state_on_a_redis_cluster(tmp_path, redis_cluster_url):
    from stream_app.devstack.redis_cluster import connect
    from stream_app.worker.state import RedisState

    det = {"name": "scam", "tau": 0.9, "d_max": 20, "candidates": "ibg"}
    loop = LiveLoop(tmp_path, detectors=[det], embedder="hashing-64", partitions=2, external_redis=redis_cluster_url,
                    extra_env={"SYNAPSE_REDIS_CLUSTER": "true"})
    posts = [{"id": f"p{i}", "text": SEED} for i in range(6)] + [{"id": "q0", "text": "mild weather in the valley"}]
    truth = {f"p{i}": int(i % 2 == 0) for i in range(6)}
    loop.start(timeout=240)
    try:
        async def go():
            stop = asyncio.Event()
            mod = asyncio.create_task(loop.moderate(truth, stop))
            await loop.send_seeds("scam", [SEED])
            await asyncio.sleep(3)
            await loop.send_posts(posts)
            metrics = await loop.wait_quiet("scam", len(posts), timeout=180, min_queried=6)
            stop.set()
            await mod
            await loop.close()
            r = connect(redis_cluster_url)
            try:
                st = RedisState(r, "synapse:")
                keys = sorted([k async for k in r.scan_iter(match="synapse:*")])
                return metrics, await st.verdicts.ledger("scam"), await st.claims.queried("scam"), keys
            finally:
                await r.aclose()

        metrics, ledger, queried, keys = asyncio.run(go())
    finally:
        loop.stop()
    assert queried == set(truth) and ledger == truth
    assert "synapse:{scam}:ledger" in keys and "synapse:{posts}:post-partition" in keys
    assert not any(k.startswith("synapse:scam:") for k in keys)   # no single-node names on the cluster
    assert gauge(metrics, "synapse_queried", detector="scam") == 6 == gauge(metrics, "synapse_answered", detector="scam")
    assert gauge(metrics, "synapse_confirmed_positives", detector="scam") == 3

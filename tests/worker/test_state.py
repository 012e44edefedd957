"""The State contract, run over both implementations (a real redis-server and memory): verdict precedence,
claims, in-flight records, orphans, round sources, classifier versions, held labels, the seed log, locks."""
from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np

from stream_app.worker.state import MemoryState, RedisState
from synapse_stream.messages import LabelMsg


def run(store, fn):
    from stream_app.devstack.redis_cluster import connect

    async def go():
        if store is None:
            return await fn(MemoryState())
        r = connect(store)
        try:
            return await fn(RedisState(r, prefix=f"t-{uuid.uuid4().hex}:"))   # a fresh namespace per test
        finally:
            await r.aclose()
    return asyncio.run(go())


def test_a_human_verdict_beats_an_llm_verdict_and_the_ledger_keeps_both(store):
    async def go(st):
        out = [await st.verdicts.record(LabelMsg("d", "p1", 1, "llm:gpt", None)),     # LLM first
               await st.verdicts.record(LabelMsg("d", "p1", 0, "moderator:ana", None)),  # human overrides
               await st.verdicts.record(LabelMsg("d", "p1", 1, "llm:gpt", None)),     # a later LLM does not
               await st.verdicts.record(LabelMsg("d", "p1", 1, "moderator:bo", None))]   # a later human does
        return out, await st.verdicts.ledger("d"), await st.verdicts.history("d"), await st.verdicts.counters("d")

    out, ledger, history, counters = run(store, go)
    assert out == [(None, 1), (1, 0), (0, 0), (0, 1)]
    assert ledger == {"p1": 1}
    assert [h["labeler"] for h in history] == ["llm:gpt", "moderator:ana", "llm:gpt", "moderator:bo"]
    assert counters["answered"] == 1 and counters["positives"] == 1 and counters["llm_after_human"] == 1


def test_claims_are_first_wins_and_in_flight_until_sent(store):
    async def go(st):
        first = await st.claims.claim_many([("d", "a"), ("d", "b")], "w1", [b'{"x":1}', b'{"x":2}'])
        again = await st.claims.claim_many([("d", "a"), ("d", "c")], "w2", [b'{"x":1}', b'{"x":3}'])
        inflight = await st.claims.inflight("d")
        await st.claims.sent([("d", "a"), ("d", "b")])
        return first, again, inflight, await st.claims.inflight("d"), await st.verdicts.counters("d")

    first, again, inflight, after, counters = run(store, go)
    assert first == [True, True] and again == [False, True]
    assert inflight == {"a": ("w1", '{"x":1}'), "b": ("w1", '{"x":2}'), "c": ("w2", '{"x":3}')}
    assert after == {"c": ("w2", '{"x":3}')} and counters["queried"] == 3


def test_orphans_are_in_flight_claims_of_workers_without_a_heartbeat(store):
    async def go(st):
        await st.workers.heartbeat("alive", ttl=30)
        await st.claims.claim_many([("d", "a"), ("d", "b")], "alive", [b"m1", b"m2"])
        await st.claims.claim_many([("d", "c")], "dead", [b"m3"])
        return await st.claims.orphans("d", me="me")

    assert run(store, go) == {"c": "m3"}


def test_round_sources_and_per_source_counters(store):
    async def go(st):
        await st.rounds.record("d", {"a": "gble", "b": "model", "c": "model"})
        await st.rounds.count_verdict("d", "model", 1)
        await st.rounds.count_verdict("d", "model", 0)
        await st.rounds.count_verdict("d", "gble", 1)
        return await st.rounds.all("d"), await st.rounds.source_of("d", "b"), await st.rounds.counters("d")

    sources, b, counters = run(store, go)
    assert sources == {"a": "gble", "b": "model", "c": "model"} and b == "model"
    assert counters == {"gble": {"queried": 1, "answered": 1, "positives": 1},
                        "model": {"queried": 2, "answered": 2, "positives": 1}}


def test_the_rate_budget_grants_what_is_left_of_the_hour_and_forgets_older_minutes(store):
    t = 1_700_000_000.0

    async def go(st):
        first = await st.rate.reserve("d", 30, 50, now=t)
        second = await st.rate.reserve("d", 30, 50, now=t + 600)      # only 20 left this hour
        none = await st.rate.reserve("d", 5, 50, now=t + 1200)
        await st.rate.refund("d", 8, now=t + 1200)                  # 8 of the grants were not sent
        back = await st.rate.reserve("d", 10, 50, now=t + 1300)
        spent = await st.rate.spent("d", now=t + 1300)
        other = await st.rate.spent("e", now=t + 1300)
        later = await st.rate.spent("d", now=t + 3600 + 60)         # the first minute left the hour
        much_later = await st.rate.reserve("d", 70, 50, now=t + 3 * 3600)
        return first, second, none, back, spent, other, later, much_later

    assert run(store, go) == (30, 20, 0, 8, 50, 0, 20, 50)


def test_classifier_versions_never_go_back_and_keep_a_history(store):
    import numpy as np

    async def go(st):
        v1, v2 = await st.models.next_version("d"), await st.models.next_version("d")
        await st.models.store_vectors("d", {"p": np.array([0.6, 0.8], np.float32)})
        await st.models.publish("d", {"version": v2, "w": 2}, {"version": v2}, key=[3, 1, 0, 5])
        await st.models.publish("d", {"version": v1, "w": 1}, {"version": v1})   # late, older: ignored
        return ((v1, v2), await st.models.current("d"), await st.models.history("d"), await st.models.key("d"),
                await st.models.vectors("d"))

    (v1, v2), doc, history, key, vecs = run(store, go)
    assert (v1, v2) == (1, 2) and doc == {"version": 2, "w": 2} and history == [{"version": 2}]

    assert key == [3, 1, 0, 5] and np.allclose(vecs["p"], [0.6, 0.8])


def test_held_labels_are_leased_to_one_taker_and_dropped_once_sent(store):
    doc = {"id": "synapse.labels/0/7", "post_id": "late", "topic": "synapse.labels", "partition": 0, "offset": 7,
           "key": None, "value": "e30=", "timestamp": None}

    async def go(st):
        held = [await st.held.hold(doc, 1000.0, 10), await st.held.hold(doc, 1000.0, 10),
                await st.held.hold({**doc, "id": "x", "post_id": "other"}, 1000.0, 2),
                await st.held.hold({**doc, "id": "y"}, 1000.0, 2)]   # full
        before = await st.held.take(now=10.0)                  # no post yet, not expired
        await st.posts.record({"late": 3})
        taken = await st.held.take(now=10.0)
        again = await st.held.take(now=20.0)                   # leased (60 s)
        after_lease = await st.held.take(now=71.0)             # the taker died: another takes it
        await st.held.drop([d["id"] for d, _ in after_lease])
        expired = await st.held.take(now=2000.0)
        return held, before, taken, again, after_lease, expired, await st.held.count()

    held, before, taken, again, after_lease, expired, left = run(store, go)
    assert held == [True, True, True, False] and before == [] and again == []
    assert [(d["post_id"], p, d["expires"]) for d, p in taken] == [("late", 3, 1000.0)]
    assert [d["id"] for d, _ in after_lease] == [doc["id"]]
    assert [(d["post_id"], p) for d, p in expired] == [("other", None)] and left == 1


def test_the_seed_log_is_read_in_order_after_the_last_id_and_waits_for_new_entries(store):
    async def go(st):
        v = np.ones(4, np.float32) / 2
        assert await st.seeds.register("d", "s1", "synthetic", "one", v)
        assert not await st.seeds.register("d", "s1", "synthetic", "one", v)   # once per id
        await st.seeds.register("d", "s2", "manual", "two", v)
        first = await st.seeds.read_log("0", block_ms=None)
        t0 = time.monotonic()
        empty = await st.seeds.read_log(first[-1][0], block_ms=200)

        async def later():
            await asyncio.sleep(0.1)
            await st.seeds.register("d", "s3", "confirmed", "three", v)
        task = asyncio.ensure_future(later())
        woke = await st.seeds.read_log(first[-1][0], block_ms=5000)
        await task
        return first, empty, time.monotonic() - t0, woke, sorted(s["id"] for s in await st.seeds.all("d"))

    first, empty, waited, woke, ids = run(store, go)
    assert [d["id"] for _, d in first] == ["s1", "s2"] and np.allclose(first[0][1]["vector"], 0.5)
    assert empty == [] and [d["id"] for _, d in woke] == ["s3"] and waited < 4.0
    assert ids == ["s1", "s2", "s3"]


def test_locks_expire_and_only_their_owner_unlocks(store):
    async def go(st):
        got = [await st.workers.lock("train:d", "w1", ttl=0.2), await st.workers.lock("train:d", "w2", ttl=0.2)]
        await st.workers.unlock("train:d", "w2")                 # not the owner: still locked
        still = await st.workers.lock("train:d", "w2", ttl=0.2)
        await asyncio.sleep(0.3)
        expired = await st.workers.lock("train:d", "w2", ttl=5)
        await st.workers.unlock("train:d", "w2")
        free = await st.workers.lock("train:d", "w3", ttl=5)
        await st.seeds.arriving("d", 0.2)
        settling = await st.seeds.settled("d")
        await asyncio.sleep(0.3)
        return got, still, expired, free, settling, await st.seeds.settled("d")

    assert run(store, go) == ([True, False], False, True, True, False, True)


# ---------------------------------------------------------------------- Redis Cluster
def _exercise(st) -> list:
    """Every multi-key script and transaction of the Redis state, once."""
    async def go():
        out = [await st.claims.claim_many([("d", "a"), ("e", "b"), ("d", "c")], "w1", [b"1", b"2", b""],
                                          sets=["queried", "queried", "audited"])]
        await st.verdicts.record(LabelMsg("d", "a", 1, "moderator:ana", None))
        await st.verdicts.record_audit(LabelMsg("d", "c", 0, "moderator:ana", None))
        await st.posts.record({"a": 0, "b": 1})
        out.append(await st.held.hold({"id": "h1", "post_id": "zz", "detector": "d"}, time.time() + 60, 10))
        out.append(len(await st.held.take(time.time())))
        await st.held.drop(["h1"])
        out.append(await st.rate.reserve("d", 5, 3))
        await st.models.publish("d", {"version": 1}, {"version": 1}, key=[1])
        await st.rounds.record("d", {"a": "ibg"})
        return out
    return go()


def test_on_a_cluster_every_script_and_transaction_stays_in_one_slot_thanks_to_the_hash_tags(redis_cluster_url):
    from redis.exceptions import RedisClusterException, ResponseError

    from stream_app.devstack.redis_cluster import connect
    from stream_app.worker.state.keys import RedisKeys

    async def go():
        r = connect(redis_cluster_url)
        try:
            prefix = f"t-{uuid.uuid4().hex}:"
            st = RedisState(r, prefix)
            assert st.keys.tags and st.verdicts.dk("d", "ledger") == prefix + "{d}:ledger"
            ok = await _exercise(st)
            slots = {await r.cluster_keyslot(k) for k in [k async for k in r.scan_iter(match=prefix + "*")]}
            # the same calls with the single-node names: the cluster refuses them (the test can fail)
            untagged = RedisState(r, f"u-{uuid.uuid4().hex}:", keys=RedisKeys(f"u-{uuid.uuid4().hex}:", tags=False))
            try:
                await _exercise(untagged)
                refused = None
            except (RedisClusterException, ResponseError) as exc:
                refused = exc
            await st.wipe(["d", "e"])
            left = [k async for k in r.scan_iter(match=prefix + "*")]
            return ok, slots == {r.keyslot("{d}"), r.keyslot("{e}"), r.keyslot("{posts}")}, refused, left
        finally:
            await r.aclose()

    ok, three_slots, refused, left = asyncio.run(go())
    assert ok == [[True, True, True], True, 0, 3]
    assert three_slots             # one slot per detector and one for the post group, whatever the key

    assert refused is not None and "slot" in str(refused).lower()
    assert left == []              # wipe found the keys on every master and deleted them across slots


def test_the_cluster_setting_builds_a_cluster_client_and_one_redis_keeps_the_old_key_names(redis_cluster_url,
                                                                                          redis_url):
    from redis.asyncio.cluster import RedisCluster

    from stream_app.worker.settings import Settings

    async def go(url, cluster):
        prefix = f"t-{uuid.uuid4().hex}:"
        st = RedisState.from_settings(Settings(_env_file=None, redis_url=url, redis_cluster=cluster,
                                               redis_prefix=prefix))
        try:
            await st.verdicts.record(LabelMsg("d", "p1", 1, "moderator:ana", None))
            await st.posts.record({"p1": 2})
            keys = sorted([k async for k in st.r.scan_iter(match=prefix + "*")])
            return isinstance(st.r, RedisCluster), [k[len(prefix):] for k in keys]
        finally:
            await st.close()

    assert asyncio.run(go(redis_cluster_url, True)) == (
        True, ["{d}:counters", "{d}:ledger", "{d}:verdicts", "{posts}:post-partition", "{posts}:posts-seen"])
    assert asyncio.run(go(redis_url, False)) == (
        False, ["d:counters", "d:ledger", "d:verdicts", "post-partition", "posts-seen"])

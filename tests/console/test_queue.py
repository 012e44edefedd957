"""The review queue's contract, over both implementations (a real redis-server and memory): leases are exclusive
and expire, a moderator's own leases come back first, skip, decide removes the candidate for everyone, undo
within the grace period, due decisions go to one publisher, answered elsewhere, never queued twice."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from stream_app.console.items import Decision, ReviewItem, item_key
from stream_app.console.queue import MemoryReviewQueue
from stream_app.console.queue_redis import RedisReviewQueue
from synapse_stream.exceptions import MessageError
from synapse_stream.messages import candidate_message, dumps, parse_label

T0 = 1_700_000_000.0


def items(n: int, det: str = "scam") -> list[ReviewItem]:
    return [ReviewItem(det, f"p{i}", candidate_message(det, f"p{i}", f"text {i}", 0.7, [], "ibg", T0))
            for i in range(n)]


def run(store, fn, lease: float = 60.0, grace: float = 10.0):
    from stream_app.devstack.redis_cluster import connect

    async def go():
        if store is None:
            return await fn(MemoryReviewQueue(lease, grace))
        r = connect(store)
        try:
            return await fn(RedisReviewQueue(r, prefix=f"t-{uuid.uuid4().hex}:", lease_seconds=lease,
                                             grace_seconds=grace))
        finally:
            await r.aclose()
    return asyncio.run(go())


def keys(leases) -> list[str]:
    return [lease.item.post_id for lease in leases]


def test_two_moderators_never_hold_the_same_candidate(store):
    async def go(q):
        await q.add(items(5), T0)
        a = await q.lease("ana", 2, T0)
        b = await q.lease("bo", 2, T0)
        c = await q.lease("cy", 2, T0)
        return a, b, c

    a, b, c = run(store, go)
    assert keys(a) == ["p0", "p1"] and keys(b) == ["p2", "p3"] and keys(c) == ["p4"]


def test_candidates_come_in_their_order_of_arrival(store):
    async def go(q):
        await q.add(items(12), T0)
        return await q.lease("ana", 12, T0)

    assert keys(run(store, go)) == [f"p{i}" for i in range(12)]


def test_a_moderator_gets_their_own_leases_back_first_renewed(store):
    async def go(q):
        await q.add(items(4), T0)
        first = await q.lease("ana", 2, T0)
        again = await q.lease("ana", 2, T0 + 50)        # reload of the page: the same two, renewed
        other = await q.lease("bo", 4, T0 + 100)        # 50 + 60 > 100: still ana's
        return first, again, other

    first, again, other = run(store, go, lease=60)
    assert keys(first) == keys(again) == ["p0", "p1"]
    assert again[0].expires == pytest.approx(T0 + 50 + 60)
    assert keys(other) == ["p2", "p3"]


def test_an_expired_lease_returns_the_candidate_to_the_queue(store):
    async def go(q):
        await q.add(items(2), T0)
        await q.lease("ana", 1, T0)
        taken = await q.lease("bo", 2, T0 + 61)          # ana's lease ran out: bo gets p0 too
        back = await q.lease("ana", 1, T0 + 62)          # ana's own is gone to bo: nothing for her
        late = await q.decide("ana", item_key("scam", "p0"), 1, T0 + 63)
        return taken, back, late

    taken, back, late = run(store, go, lease=60)
    assert sorted(keys(taken)) == ["p0", "p1"] and back == [] and late is None


def test_a_decision_removes_the_candidate_for_everyone_and_it_never_comes_back(store):
    async def go(q):
        await q.add(items(2), T0)
        (lease, _) = await q.lease("ana", 2, T0)
        d = await q.decide("ana", lease.item.key, 1, T0 + 1)
        twice = await q.decide("ana", lease.item.key, 0, T0 + 2)
        readded = await q.add(items(2), T0 + 3)           # a worker re-sends its candidates after a crash
        bo = await q.lease("bo", 5, T0 + 200)             # every lease of ana's expired by now
        return d, twice, readded, bo, await q.stats(T0 + 200)

    d, twice, readded, bo, stats = run(store, go)
    assert isinstance(d, Decision) and d.label == 1 and d.due == pytest.approx(T0 + 11) and twice is None
    assert readded == 0 and keys(bo) == ["p1"]
    assert stats.queued == {"scam": 1} and stats.leased == {"scam": 1} and stats.held == 1


def test_only_the_lease_holder_can_decide(store):
    async def go(q):
        await q.add(items(1), T0)
        await q.lease("ana", 1, T0)
        return await q.decide("bo", item_key("scam", "p0"), 1, T0 + 1)

    assert run(store, go) is None


def test_skip_gives_the_candidate_to_the_others_but_not_back_to_the_skipper(store):
    async def go(q):
        await q.add(items(2), T0)
        await q.lease("ana", 1, T0)
        ok = await q.skip("ana", item_key("scam", "p0"), T0 + 1)
        ana = await q.lease("ana", 2, T0 + 2)
        bo = await q.lease("bo", 2, T0 + 2)
        return ok, ana, bo

    ok, ana, bo = run(store, go)
    assert ok and keys(ana) == ["p1"] and keys(bo) == ["p0"]


def test_undo_within_the_grace_period_puts_the_candidate_first_again(store):
    async def go(q):
        await q.add(items(3), T0)
        a = await q.lease("ana", 2, T0)
        await q.decide("ana", a[0].item.key, 1, T0 + 1)
        await q.decide("ana", a[1].item.key, 0, T0 + 2)
        back = await q.undo("ana", T0 + 3)                 # the last one: p1
        leases = await q.lease("ana", 2, T0 + 3)
        due = await q.due(T0 + 20)
        return back, leases, due

    back, leases, due = run(store, go)
    assert back.post_id == "p1" and back.doc["text"] == "text 1" and back.doc["matched_seeds"] == []
    assert keys(leases) == ["p1", "p2"]
    assert [(d.item.post_id, d.label) for d in due] == [("p0", 1)]


def test_undo_after_the_grace_period_is_refused(store):
    async def go(q):
        await q.add(items(1), T0)
        (a,) = await q.lease("ana", 1, T0)
        await q.decide("ana", a.item.key, 1, T0)
        return await q.undo("ana", T0 + 10.5), await q.undo("bo", T0 + 1)

    late, other = run(store, go, grace=10)
    assert late is None and other is None


def test_due_decisions_go_to_one_publisher_at_a_time_then_are_gone(store):
    async def go(q):
        await q.add(items(2), T0)
        for lease in await q.lease("ana", 2, T0):
            await q.decide("ana", lease.item.key, 1, T0)
        early = await q.due(T0 + 5)
        first = await q.due(T0 + 11)
        second = await q.due(T0 + 12)                     # leased to the first publisher
        await q.published([first[0].key])
        retry = await q.due(T0 + 11 + 31)                 # the first publisher died before the second one
        return early, first, second, retry, await q.stats(T0 + 100)

    early, first, second, retry, stats = run(store, go)
    assert early == [] and len(first) == 2 and second == []
    assert [d.key for d in retry] == [first[1].key] and stats.held == 1
    msg = first[0].label_message()
    assert parse_label(dumps(msg)).labeler == "moderator:ana" and msg["ts"] == T0


def test_answered_elsewhere_leaves_every_queue_but_not_a_held_decision(store):
    async def go(q):
        await q.add(items(3), T0)
        a = await q.lease("ana", 2, T0)
        await q.decide("ana", a[1].item.key, 1, T0)
        n = await q.answered([a[0].item.key, a[1].item.key, item_key("scam", "p2"), item_key("scam", "zz")])
        left = await q.lease("bo", 5, T0 + 1)
        mine = await q.lease("ana", 5, T0 + 1)
        readded = await q.add(items(3), T0 + 2)
        return n, left, mine, readded, await q.undo("ana", T0 + 3)

    n, left, mine, readded, undone = run(store, go)
    assert n == 2 and left == [] and mine == [] and readded == 0
    assert undone.post_id == "p1"     # its own decision was still in its grace period


def test_lease_by_detector(store):
    async def go(q):
        await q.add(items(2, "scam") + items(2, "hate"), T0)
        return await q.lease("ana", 5, T0, detectors=["hate"]), await q.lease("bo", 5, T0)

    hate, rest = run(store, go)
    assert [lease.item.detector for lease in hate] == ["hate", "hate"]
    assert [lease.item.detector for lease in rest] == ["scam", "scam"]


def test_release_on_log_out(store):
    async def go(q):
        await q.add(items(2), T0)
        await q.lease("ana", 2, T0)
        n = await q.release("ana", T0 + 1)
        return n, await q.lease("bo", 2, T0 + 1)

    n, bo = run(store, go)
    assert n == 2 and keys(bo) == ["p0", "p1"]


def test_items_keep_the_whole_candidate_message():
    doc = candidate_message("scam", "p1", "<script>alert(1)</script>", 0.5, ["s1"], "gble", T0)
    doc["why"] = {"seeds": [["s1", 0.81]], "probability": 0.9, "model_version": 3}
    it = ReviewItem.from_message(json.dumps(doc).encode())
    assert it.key == "scam\np1" and it.text == doc["text"] and ReviewItem.from_json(it.to_json()).doc == it.doc
    assert ReviewItem.from_message(json.dumps({**doc, "human_audit": False})).for_humans() is False
    with pytest.raises(MessageError) as e:
        ReviewItem.from_message(b'{"detector": "scam", "text": "x"}')
    assert e.value.reason == "missing_field:post_id"

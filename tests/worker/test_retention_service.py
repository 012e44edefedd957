"""The retention window through the service, with the in-memory state (no broker, no Redis server).

Posts carry event times; once newer posts push the watermark a window past a sealed segment, the segment
is dropped: its posts leave the index, the routing of posts nobody sent is forgotten, a candidate still
waiting for its verdict is parked, and that late verdict still counts (ledger, precision, a new seed).
"""
from __future__ import annotations

import asyncio
import json

from service_helpers import seeded_service, service_settings

from stream_app.worker.service import RawMsg

SEED = "urgent wallet recovery scam alert"
NEAR = "urgent wallet recovery scam alert send seed phrase now"
T0 = 1_700_000_000.0


def post(pid: str, text: str, ts: float, part: int = 0, off: int = 0) -> RawMsg:
    return RawMsg("synapse.posts", part, off, pid.encode(), json.dumps({"id": pid, "text": text, "ts": ts}).encode())


def label(pid: str, y: int) -> RawMsg:
    return RawMsg("synapse.labels", 0, 0, pid.encode(), json.dumps(
        {"detector": "scam", "post_id": pid, "label": y, "labeler": "moderator:ann"}).encode())


def unrelated(i: int) -> str:
    return f"weekend football results number {i} and the weather in town {i * 7}"


async def _verdict(svc, pid: str, y: int):
    routed = await svc.handle_labels([label(pid, y)])
    assert routed.dead_letters == [], routed.dead_letters
    return await svc.handle_verdicts([RawMsg("synapse.verdicts", p, 0, k, v) for p, k, v in routed.verdicts])


def test_window_drops_old_segments_parks_unanswered_candidates_and_late_verdicts_count():
    settings = service_settings(retention="1h", segment_posts=3)

    async def go():
        svc = await seeded_service(settings, seed=SEED)
        try:
            # an hour's first segment: the candidate (sent, no verdict yet) and two posts nobody sent
            old = await svc.handle_posts([post("c0", NEAR, T0), post("u1", unrelated(1), T0 + 1, off=1),
                                          post("u2", unrelated(2), T0 + 2, off=2)])
            await svc.confirm(old.claims)
            sent = [json.loads(v)["post_id"] for _, v in old.candidates]
            # two hours later: the watermark moves on and the first segment is due
            await svc.handle_posts([post(f"n{i}", unrelated(10 + i), T0 + 7200 + i, off=3 + i) for i in range(3)])
            before = len(svc.index)
            await svc.expire_window()
            after = sorted(svc.index.shards[0].ids())
            routing = {pid: await svc.state.posts.partition_of(pid) for pid in ("c0", "u1", "n0")}
            parked = await svc.state.posts.parked("scam", "c0")
            # a replay from an old offset: older than the window, not indexed, counted
            late = await svc.handle_posts([post("z", NEAR, T0 + 5, off=10)])
            # the moderator answers the candidate that left the window: it counts and makes a seed
            applied = await _verdict(svc, "c0", 1)
            return (sent, before, after, routing, parked, late, applied, await svc.state.verdicts.ledger("scam"),
                    await svc.state.verdicts.counters("scam"), await svc.state.seeds.all("scam"),
                    await svc.state.posts.parked("scam", "c0"), await svc.state.posts.total(),
                    svc.engines["scam"].seeds)
        finally:
            await svc.stop()

    (sent, before, after, routing, parked, late, applied, ledger, counters, seeds, parked_after, total,
     engine_seeds) = asyncio.run(go())
    assert sent == ["c0"]
    assert before == 6 and after == ["n0", "n1", "n2"]
    assert routing == {"c0": 0, "u1": None, "n0": 0}   # a sent post keeps its routing: a verdict may still come
    assert parked is not None and parked[1] == NEAR and parked[0].shape == (64,)
    assert late.candidates == [] and "z" not in after
    assert applied.dead_letters == []
    assert ledger == {"c0": 1} and counters["positives"] == 1 and counters["queried"] == 1
    assert sorted(s["origin"] for s in seeds) == ["confirmed", "synthetic"]
    assert "c0" in engine_seeds and parked_after is None
    assert total == 7   # posts ever seen: the query-ratio denominator does not shrink with the window


def test_a_negative_late_verdict_counts_and_makes_no_seed():
    settings = service_settings(retention="1h", segment_posts=2)

    async def go():
        svc = await seeded_service(settings, seed=SEED)
        try:
            out = await svc.handle_posts([post("c0", NEAR, T0), post("u1", unrelated(1), T0 + 1, off=1)])
            await svc.confirm(out.claims)
            await svc.handle_posts([post("n0", unrelated(5), T0 + 9000, off=2), post("n1", unrelated(6), T0 + 9001, off=3)])
            await svc.expire_window()
            applied = await _verdict(svc, "c0", 0)
            return (applied, await svc.state.verdicts.ledger("scam"), await svc.state.seeds.all("scam"),
                    await svc.state.posts.parked("scam", "c0"), sorted(svc.index.shards[0].ids()))
        finally:
            await svc.stop()

    applied, ledger, seeds, parked, ids = asyncio.run(go())
    assert applied.dead_letters == [] and ledger == {"c0": 0}
    assert [s["origin"] for s in seeds] == ["synthetic"] and parked is None
    assert ids == ["n0", "n1"]


def test_a_crash_while_a_segment_is_dropped_leaves_it_due_and_the_retry_finishes_the_job(monkeypatch):
    """Expiry cleans Redis first, then drops: a failure in the drop (a crash, here an exception in the model
    thread) leaves the same segments due, and the next check does the whole job once (parking is idempotent)."""
    from synapse_stream.segments import SegmentedIndex

    settings = service_settings(retention="1h", segment_posts=2)

    async def go():
        svc = await seeded_service(settings, seed=SEED)
        try:
            out = await svc.handle_posts([post("c0", NEAR, T0), post("u1", unrelated(1), T0 + 1, off=1)])
            await svc.confirm(out.claims)
            await svc.handle_posts([post("n0", unrelated(5), T0 + 9000, off=2), post("n1", unrelated(6), T0 + 9001, off=3)])
            real_drop = SegmentedIndex.drop
            monkeypatch.setattr(SegmentedIndex, "drop", lambda self, names: (_ for _ in ()).throw(OSError("crash")))
            try:
                await svc.expire_window()
                crashed = False
            except OSError:
                crashed = True
            mid = (sorted(svc.index.shards[0].ids()), await svc.state.posts.parked("scam", "c0") is not None,
                   await svc.state.posts.partition_of("u1"))
            monkeypatch.setattr(SegmentedIndex, "drop", real_drop)
            await svc.expire_window()
            after = (sorted(svc.index.shards[0].ids()), await svc.state.posts.partition_of("u1"),
                     await svc.state.posts.partition_of("c0"))
            applied = await _verdict(svc, "c0", 1)
            return crashed, mid, after, applied, await svc.state.seeds.all("scam")
        finally:
            await svc.stop()

    crashed, mid, after, applied, seeds = asyncio.run(go())
    assert crashed
    assert mid == (["c0", "n0", "n1", "u1"], True, None)   # Redis cleaned, the posts still here: due again
    assert after == (["n0", "n1"], None, 0)
    assert applied.dead_letters == [] and sorted(s["origin"] for s in seeds) == ["confirmed", "synthetic"]


def test_a_seal_asks_for_a_check_so_a_fast_backlog_holds_about_one_segment_over_the_window():
    """A restarted worker catching up ingests far faster than the periodic check runs: the seal check (what the
    worker's ``expire_on_seal`` timer polls) keeps it near the window, the periodic check alone does not."""
    window_s, seg = 100, 10          # 100 s of event time, one post a second: the window holds 100 posts

    async def catch_up(on_seal: bool) -> int:
        svc = await seeded_service(service_settings(retention=f"{window_s}s", segment_posts=seg), seed=SEED)
        try:
            assert not svc.retention.sealed()
            peak = 0
            for b in range(40):      # 400 posts in batches of 10, no periodic check in between
                await svc.handle_posts([post(f"p{b}-{i}", unrelated(b * 10 + i), T0 + b * 10 + i, off=b * 10 + i)
                                        for i in range(10)])
                if on_seal and svc.retention.sealed():
                    await svc.expire_window()
                    assert not svc.retention.sealed()
                peak = max(peak, len(svc.index))
            return peak
        finally:
            await svc.stop()

    assert asyncio.run(catch_up(True)) <= window_s + 2 * seg
    assert asyncio.run(catch_up(False)) == 400


def test_two_checks_at_once_drop_each_segment_once():
    async def go():
        svc = await seeded_service(service_settings(retention="10s", segment_posts=2), seed=SEED)
        try:
            for i in range(6):       # one batch each (a batch's watermark is its newest post)
                await svc.handle_posts([post(f"p{i}", unrelated(i), T0 + 30 * i, off=i)])
            await asyncio.gather(svc.expire_window(), svc.expire_window())
            return sorted(svc.index.shards[0].ids()), svc.metrics.posts_expired._value.get()
        finally:
            await svc.stop()

    ids, expired = asyncio.run(go())
    # 30 s apart, a 10 s window: each post seals the segment before it; all but the growing one are due, once
    assert ids == ["p5"] and expired == 5

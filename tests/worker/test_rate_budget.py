"""The hourly candidate budget (``max_candidates_per_hour``) through the service, two workers on one state:
together they send at most the budget in an hour, the rest waits in the outbox, in the order found, and goes
out when the hour has room; audits count and are never held back; rounds plan no more than the room left."""
from __future__ import annotations

import asyncio
import json

from service_helpers import seeded_service, service_settings

from stream_app.worker.service import RawMsg
from stream_app.worker.settings import DetectorSettings
from stream_app.worker.state import MemoryState

SEED = "urgent wallet recovery scam alert"


def post(pid: str, text: str, part: int, off: int) -> RawMsg:
    return RawMsg("synapse.posts", part, off, pid.encode(), json.dumps({"id": pid, "text": text}).encode())


def near(i: int) -> str:
    return f"{SEED} send seed phrase now {i}"


def sent(out) -> list[str]:
    return [json.loads(v)["post_id"] for _, v in out.candidates]


async def _worker(settings, state, parts):
    return await seeded_service(settings, state, parts, seed=SEED)


def test_two_workers_share_the_hourly_budget_and_the_rest_waits_for_room(monkeypatch):
    clock = [1_700_000_000.0]
    monkeypatch.setattr("stream_app.worker.state.memory.time.time", lambda: clock[0])
    det = DetectorSettings(name="scam", tau=0.5, d_max=50, candidates="ibg", max_candidates_per_hour=3)
    settings = service_settings()
    settings.detectors[0] = det

    async def go():
        state = MemoryState()
        a, b = await _worker(settings, state, [0]), await _worker(settings, state, [1])
        try:
            first = sent(await a.handle_posts([post(f"a{i}", near(i), 0, i) for i in range(2)]))
            second = sent(await b.handle_posts([post(f"b{i}", near(10 + i), 1, i) for i in range(3)]))
            waiting = [c.post_id for c, _ in b.pending]
            deferred = b.metrics.registry.get_sample_value("synapse_candidates_deferred", {"detector": "scam"})
            await b.refresh_gauges()
            used = b.metrics.registry.get_sample_value("synapse_rate_budget_used", {"detector": "scam"})
            clock[0] += 1800
            none_yet = sent(await b.send_waiting())
            clock[0] += 1860            # the first minute's candidates left the hour
            later = sent(await b.send_waiting())
            return first, second, waiting, deferred, used, none_yet, later, [c.post_id for c, _ in b.pending]
        finally:
            await a.stop()
            await b.stop()

    first, second, waiting, deferred, used, none_yet, later, left = asyncio.run(go())
    assert sorted(first) == ["a0", "a1"] and len(second) == 1
    assert len(waiting) == 2 and deferred == 2 and used == 1.0
    assert none_yet == [] and sorted(later) == sorted(waiting) and left == []
    assert sorted(second + later) == ["b0", "b1", "b2"]


def test_a_round_plans_only_the_room_left_in_the_hour():
    det = DetectorSettings(name="scam", tau=0.5, d_max=50, candidates="gble", k0=20, max_query_ratio=None,
                           max_candidates_per_hour=4)
    settings = service_settings(round_settle=0.0)
    settings.detectors[0] = det

    async def go():
        svc = await _worker(settings, MemoryState(), [0])
        try:
            texts = [near(i) for i in range(6)] + [f"weekend football results {i}" for i in range(12)]
            await svc.handle_posts([post(f"p{i}", t, 0, i) for i, t in enumerate(texts)])
            first = sent(await svc.run_rounds())
            return first, await svc.state.rate.spent("scam"), list(svc.pending)
        finally:
            await svc.stop()

    first, spent, pending = asyncio.run(go())
    assert len(first) == 4 and spent == 4 and pending == []   # planned to the room, nothing left waiting


def test_audits_are_counted_and_never_held_back():
    det = DetectorSettings(name="scam", tau=0.5, d_max=50, candidates="ibg", max_candidates_per_hour=2,
                           audit_rate=1.0)
    settings = service_settings()
    settings.detectors[0] = det

    async def go():
        svc = await _worker(settings, MemoryState(), [0])
        try:
            texts = [near(i) for i in range(3)] + [f"weekend football results {i}" for i in range(5)]
            out = await svc.handle_posts([post(f"p{i}", t, 0, i) for i, t in enumerate(texts)])
            reasons = [json.loads(v)["reason"] for _, v in out.candidates]
            return reasons, await svc.state.rate.spent("scam"), [c.post_id for c, _ in svc.pending]
        finally:
            await svc.stop()

    reasons, spent, pending = asyncio.run(go())
    # every post the detector did not want is audited (audit_rate 1), over the budget: audits are never held
    assert reasons == ["audit"] * 5 and spent == 5
    assert sorted(pending) == ["p0", "p1", "p2"]   # the detector's own candidates wait: the audits took the hour

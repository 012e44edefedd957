"""The outbox under overlapping emits: the posts pipeline, a round and the verdicts each call ``emit`` and await
Redis in between, so one emit runs while another waits for its claims. Every candidate queued meanwhile still goes
out exactly once, and a round does not wait for a candidate that will never reach the oracle."""
from __future__ import annotations

import asyncio
import json

from service_helpers import seeded_service, service_settings

from synapse_stream.online import Candidate
from synapse_stream.rounds import RoundRecord


def cand(pid: str, reason: str = "gble") -> Candidate:
    return Candidate("scam", pid, 0.9, (), reason)


def sent(out) -> list[str]:
    return [json.loads(v)["post_id"] for _, v in out.candidates]


class GatedClaims:
    """The state's claims, each call held until ``gate`` opens (a slow Redis round trip)."""

    def __init__(self, claims, gate: asyncio.Event):
        self.claims, self.gate, self.calls = claims, gate, 0

    async def claim_many(self, *args, **kw):
        self.calls += 1
        await self.gate.wait()
        return await self.claims.claim_many(*args, **kw)

    def __getattr__(self, name):
        return getattr(self.claims, name)


def test_a_candidate_queued_while_two_emits_wait_for_redis_goes_out_once():
    async def go():
        svc = await seeded_service(service_settings(), seed="urgent wallet recovery scam alert")
        try:
            gate = asyncio.Event()
            svc.state.claims = GatedClaims(svc.state.claims, gate)
            a = asyncio.create_task(svc.outbox.emit([cand("x")]))
            await asyncio.sleep(0)
            b = asyncio.create_task(svc.outbox.emit([cand("y")]))
            while svc.state.claims.calls < 2:
                await asyncio.sleep(0)
            svc.outbox.queue([cand("z")])      # e.g. a round's batch, queued while both emits wait
            gate.set()
            await asyncio.gather(a, b)
            first = sent(svc.outbox.drain(type(svc.ready)()))
            waiting = [c.post_id for c, _ in svc.pending]
            later = sent(await svc.send_waiting())
            return first, waiting, later, [c.post_id for c, _ in svc.pending]
        finally:
            await svc.stop()

    first, waiting, later, left = asyncio.run(go())
    assert sorted(first) == ["x", "y"]          # each emit claimed only what it took: nothing twice
    assert waiting == ["z"]                     # the candidate queued meanwhile is still waiting, not dropped
    assert later == ["z"] and left == []


def test_a_round_stops_waiting_for_a_candidate_another_claim_already_took():
    async def go():
        settings = service_settings()
        svc = await seeded_service(settings, seed="urgent wallet recovery scam alert")
        try:
            await svc.state.claims.claim_many([("scam", "p1")], "another-worker")   # sent before elsewhere
            rounds = _rounds_of(svc)
            rec = RoundRecord(1, 0.0, sent={"p1": "gble", "p2": "gble"})
            rounds.rounds.append(rec)
            await svc.outbox.emit([cand("p1"), cand("p2")])
            out = sent(svc.outbox.drain(type(svc.ready)()))
            return out, dict(rec.sent), rec.outstanding
        finally:
            await svc.stop()

    out, still, outstanding = asyncio.run(go())
    assert out == ["p2"]
    assert still == {"p2": "gble"} and outstanding == 1     # the round waits for p2's verdict only


def test_candidates_of_posts_leaving_the_window_are_dropped_and_their_round_stops_waiting():
    async def go():
        svc = await seeded_service(service_settings(), seed="urgent wallet recovery scam alert")
        try:
            rounds = _rounds_of(svc)
            rec = RoundRecord(1, 0.0, sent={"old": "gble", "new": "gble"})
            rounds.rounds.append(rec)
            svc.outbox.queue([cand("old"), cand("new")])
            gone = svc.outbox.discard({"old"})
            return gone, [c.post_id for c, _ in svc.pending], dict(rec.sent)
        finally:
            await svc.stop()

    gone, waiting, still = asyncio.run(go())
    assert gone == {("scam", "old")} and waiting == ["new"] and still == {"new": "gble"}


def _rounds_of(svc):
    """The detector's LiveRounds (made for a round-based detector; here the online one gets one for the test)."""
    from synapse_stream.rounds import LiveRounds

    eng = svc.engines["scam"]
    svc.rounds["scam"] = LiveRounds(eng, svc.index, name="scam")
    return svc.rounds["scam"]

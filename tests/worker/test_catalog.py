"""Detectors changed while the service runs (no restart), over the in-memory state: create (with backfill over
the posts already indexed), pause and resume, update τ, retire (its ledger kept, its labels then refused), and
bad records that change nothing."""
from __future__ import annotations

import asyncio
import json

import pytest
from service_helpers import service_settings

from stream_app.worker.service import DetectionService, Outputs, RawMsg
from stream_app.worker.service.catalog import DetectorError, parse_detector
from stream_app.worker.state import MemoryState

SCAM = ["urgent wallet recovery scam alert send seed phrase", "claim your crypto airdrop send seed phrase now"]
OTHER = ["lovely weather for a walk in the park today", "the match last night was a great game"]


def post(i: int, text: str, partition: int = 0) -> RawMsg:
    return RawMsg("synapse.posts", partition, i, f"p{i}".encode(), json.dumps({"id": f"p{i}", "text": text}).encode())


def record(name: str, **settings) -> tuple[bytes, bytes]:
    return name.encode(), json.dumps({"name": name, **settings}).encode()


def seed(detector: str, text: str) -> RawMsg:
    return RawMsg("synapse.seeds", 0, 0, None, json.dumps({"detector": detector, "text": text}).encode())


async def service() -> DetectionService:
    svc = DetectionService(service_settings(), MemoryState())
    await svc.start()
    await svc.assign([0, 1])
    return svc


def run(coro):
    return asyncio.run(coro)


def test_a_detector_created_while_running_backfills_over_posts_already_indexed():
    async def go():
        svc = await service()
        try:
            await svc.handle_posts([post(i, t) for i, t in enumerate(SCAM + OTHER)])   # before the detector exists
            what = await svc.catalog.apply(*record("crypto", tau=0.3, d_max=5, candidates="ibg"))
            await svc.handle_seeds([seed("crypto", "send your seed phrase to recover the wallet")])
            out = await svc.poll_seedlog(block_ms=None)
            return what, sorted(json.loads(v)["post_id"] for _, v in out.candidates), sorted(svc.engines)
        finally:
            await svc.stop()

    what, cands, engines = run(go())
    assert what == "created" and engines == ["crypto", "scam"]
    assert cands and set(cands) <= {"p0", "p1"}    # the scam posts, found by backfill with no restart


def test_pause_stops_candidates_and_resume_backfills():
    async def go():
        svc = await service()
        try:
            await svc.catalog.apply(*record("crypto", tau=0.3, d_max=5, candidates="ibg"))
            await svc.handle_seeds([seed("crypto", "send your seed phrase to recover the wallet")])
            await svc.poll_seedlog(block_ms=None)
            paused = await svc.catalog.apply(*record("crypto", tau=0.3, d_max=5, candidates="ibg", paused=True))
            during = await svc.handle_posts([post(i, t) for i, t in enumerate(SCAM)])
            resumed = await svc.catalog.apply(*record("crypto", tau=0.3, d_max=5, candidates="ibg"))
            cands = [json.loads(v)["post_id"] for _, v in svc.outbox.drain(Outputs()).candidates]   # the backfill's
            return paused, [json.loads(v) for _, v in during.candidates], resumed, cands
        finally:
            await svc.stop()

    paused, during, resumed, cands = run(go())
    assert paused == "paused" and resumed == "resumed"
    assert [c for c in during if c["detector"] == "crypto"] == []     # posts indexed, no candidates while paused
    assert sorted(cands) == ["p0", "p1"]                              # resume: backfill over them


def test_updating_tau_rebuilds_the_engine_over_the_same_books():
    async def go():
        svc = await service()
        try:
            await svc.catalog.apply(*record("crypto", tau=0.95, d_max=5, candidates="ibg"))
            await svc.handle_seeds([seed("crypto", "send your seed phrase to recover the wallet")])
            await svc.poll_seedlog(block_ms=None)
            first = await svc.handle_posts([post(i, t) for i, t in enumerate(SCAM)])
            books = svc.engines["crypto"].books
            what = await svc.catalog.apply(*record("crypto", tau=0.3, d_max=5, candidates="ibg"))
            cands = [json.loads(v)["post_id"] for _, v in svc.outbox.drain(Outputs()).candidates]
            return first, what, cands, svc.engines["crypto"], books
        finally:
            await svc.stop()

    first, what, cands, eng, books = run(go())
    assert [json.loads(v) for _, v in first.candidates if json.loads(v)["detector"] == "crypto"] == []  # τ too high
    assert what == "updated" and eng.config.tau == 0.3 and eng.books is books and len(books.seeds) == 1
    assert sorted(cands) == ["p0", "p1"]


def test_retire_keeps_the_ledger_and_refuses_its_labels():
    async def go():
        svc = await service()
        try:
            await svc.catalog.apply(*record("crypto", tau=0.3, d_max=5, candidates="ibg"))
            await svc.handle_seeds([seed("crypto", "send your seed phrase to recover the wallet")])
            await svc.poll_seedlog(block_ms=None)
            await svc.handle_posts([post(i, t) for i, t in enumerate(SCAM)])
            routed = await svc.handle_labels([RawMsg("synapse.labels", 0, 0, b"p0", json.dumps(
                {"detector": "crypto", "post_id": "p0", "label": 1, "labeler": "ann"}).encode())])
            await svc.handle_verdicts([RawMsg("synapse.verdicts", p, 0, k, v) for p, k, v in routed.verdicts])
            what = await svc.catalog.apply(b"crypto", None)
            late = await svc.handle_labels([RawMsg("synapse.labels", 0, 1, b"p1", json.dumps(
                {"detector": "crypto", "post_id": "p1", "label": 1, "labeler": "ann"}).encode())])
            again = await svc.catalog.apply(*record("crypto", tau=0.3, d_max=5, candidates="ibg"))   # re-created
            return (what, sorted(svc.engines), await svc.state.verdicts.ledger("crypto"), late.dead_letters, again,
                    dict(svc.engines["crypto"].labels), len(svc.engines["crypto"].seeds))
        finally:
            await svc.stop()

    what, engines, ledger, dead, again, labels, seeds = run(go())
    assert what == "retired" and "crypto" in engines          # re-created at the end
    assert ledger == {"p0": 1}
    assert len(dead) == 1 and json.loads(dead[0][1])["reason"] == "unknown_detector"
    assert again == "created" and labels == {"p0": 1} and seeds == 2   # its seed and its confirmed post, from Redis


@pytest.mark.parametrize("key,value,reason", [
    (b"", b'{"tau": 0.5}', "bad_detector:key"),
    (b"\xff", b'{"tau": 0.5}', "bad_detector:key"),
    (b"x", b"{not json", "not_json"),
    (b"x", b"[1, 2]", "bad_detector:value"),
    (b"x", b'{"tau": 7}', "bad_detector:tau"),
    (b"x", b'{"candidates": "nope"}', "bad_detector:candidates"),
    (b"x", b'{"name": "y"}', "bad_detector:name"),
    (b"new", b'{"tau": 0.5}', "bad_detector:name"),      # reserved: the console's /detectors/new
    (b"..", b'{"tau": 0.5}', "bad_detector:name"),
])
def test_bad_records_are_refused_with_a_reason(key, value, reason):
    with pytest.raises(DetectorError) as err:
        parse_detector(key, value)
    assert err.value.reason == reason

    async def go():
        svc = await service()
        try:
            before = (sorted(svc.engines), dict(svc.detectors))
            with pytest.raises(DetectorError):
                await svc.catalog.apply(key, value)
            return before, (sorted(svc.engines), dict(svc.detectors))
        finally:
            await svc.stop()

    before, after = run(go())
    assert before == after


def test_a_seed_for_a_detector_created_a_moment_ago_waits_for_the_detectors_topic():
    """The seeds topic can run ahead of the detectors topic on a worker: before refusing a seed as
    ``unknown_detector`` the service catches up with the detectors topic (the runtime's hook)."""
    async def go(with_hook: bool):
        svc = await service()
        try:
            if with_hook:
                async def catch_up():   # what DetectorFeed.catch_up does: apply what is on the topic now
                    await svc.catalog.apply(*record("fresh", tau=0.3, candidates="ibg"))
                svc.catch_up_detectors = catch_up
            out = await svc.handle_seeds([seed("fresh", "send your seed phrase to recover the wallet")])
            return [json.loads(v)["reason"] for _, v in out.dead_letters], await svc.state.seeds.all("fresh")
        finally:
            await svc.stop()

    dead, seeds = run(go(with_hook=True))
    assert dead == [] and len(seeds) == 1
    dead, seeds = run(go(with_hook=False))
    assert dead == ["unknown_detector"] and seeds == []


@pytest.mark.parametrize("name", ["new", "live", ".", ".."])
def test_reserved_detector_names_are_refused_wherever_settings_are_read(name):
    from pydantic import ValidationError

    from stream_app.worker.settings import DetectorSettings, Settings

    with pytest.raises(ValidationError, match="is reserved"):
        DetectorSettings(name=name)
    with pytest.raises(ValidationError, match="is reserved"):
        Settings(_env_file=None, detectors=[{"name": name}])


@pytest.mark.parametrize("name", ["news", "renew", "live-chat", "New", "...", "a.new"])
def test_names_that_only_look_like_a_reserved_one_are_fine(name):
    from stream_app.worker.settings import DetectorSettings

    assert DetectorSettings(name=name).name == name
    assert parse_detector(name.encode(), b'{"tau": 0.5}')[1].name == name

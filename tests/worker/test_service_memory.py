"""The service's whole loop with the in-memory state: no Redis, no broker, well under a second.

A synthetic seed finds a post on arrival; its positive verdict makes it a confirmed seed (registered and
put on the seed log for the other workers), which backfills a post the synthetic seed could not reach
(online IBG).
"""
from __future__ import annotations

import asyncio
import json
import time

from service_helpers import service_settings

from stream_app.worker.service import DetectionService, RawMsg
from stream_app.worker.state import MemoryState
from synapse_stream.embedders import HashingEmbedder

TEXTS = ["urgent wallet recovery scam alert",                                # the synthetic seed
         "urgent wallet recovery scam alert send seed phrase now",           # near the seed
         "send seed phrase now to claim airdrop bonus today"]                # near the post, not the seed


def tau_for(texts) -> float:
    v = HashingEmbedder(64).encode(texts)
    lo, hi = float(v[0] @ v[2]), min(float(v[0] @ v[1]), float(v[1] @ v[2]))
    assert lo < hi
    return round((lo + hi) / 2, 4)


def test_seed_post_verdict_confirmed_seed_backfill_without_redis():
    det = {"name": "scam", "tau": tau_for(TEXTS), "d_max": 5, "candidates": "ibg"}
    settings = service_settings()
    settings.detectors[0] = type(settings.detectors[0])(**det)

    async def go():
        svc = DetectionService(settings, MemoryState())
        try:
            await svc.start()
            await svc.assign([0, 1])
            await svc.handle_seeds([RawMsg("synapse.seeds", 0, 0, None, json.dumps(
                {"detector": "scam", "text": TEXTS[0]}).encode())])
            await svc.poll_seedlog(block_ms=None)
            out = await svc.handle_posts([RawMsg("synapse.posts", 0, 0, b"a0", json.dumps(
                {"id": "a0", "text": TEXTS[1]}).encode()), RawMsg("synapse.posts", 1, 0, b"a1", json.dumps(
                {"id": "a1", "text": TEXTS[2]}).encode())])
            first = [json.loads(v) for _, v in out.candidates]
            await svc.confirm(out.claims)
            routed = await svc.handle_labels([RawMsg("synapse.labels", 0, 0, b"a0", json.dumps(
                {"detector": "scam", "post_id": "a0", "label": 1, "labeler": "ann"}).encode())])
            applied = await svc.handle_verdicts([RawMsg("synapse.verdicts", p, 0, k, v) for p, k, v in routed.verdicts])
            again = await svc.poll_seedlog(block_ms=None)   # the confirmed seed on the seed log: already applied here
            backfill = [json.loads(v) for _, v in applied.candidates + again.candidates]
            return (first, routed.verdicts, applied, backfill,
                    await svc.state.verdicts.ledger("scam"), await svc.state.seeds.all("scam"), await svc.state.verdicts.counters("scam"))
        finally:
            await svc.stop()

    t0 = time.perf_counter()
    first, routed, applied, backfill, ledger, seeds, counters = asyncio.run(go())
    assert [(c["post_id"], c["reason"]) for c in first] == [("a0", "post")]
    # why it was suggested, for the console: the nearest seeds with their similarity (the score is the best one)
    (why,) = [c["why"] for c in first]
    assert len(why["seeds"]) == 1 and why["seeds"][0][1] == round(first[0]["score"], 4)
    assert [s[0] for s in backfill[0]["why"]["seeds"]][0] == "a0"
    assert [(p, k) for p, k, _ in routed] == [(0, b"a0")] and applied.dead_letters == []
    assert [(c["post_id"], c["reason"], c["matched_seeds"]) for c in backfill] == [("a1", "backfill", ["a0"])]
    assert ledger == {"a0": 1} and sorted(s["origin"] for s in seeds) == ["confirmed", "synthetic"]
    assert counters["queried"] == 2 and counters["positives"] == 1
    print(f"whole loop in {time.perf_counter() - t0:.3f}s")

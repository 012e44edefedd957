"""The chaos run's helpers that need no stack: the crash-after-produce hook (``stream_app.devstack.crash_hook``),
each partition's newest shard over several workers (``latest_shards``) and the cluster's ``chaos:`` line."""
from __future__ import annotations

import asyncio
import signal

import numpy as np

from stream_app.devstack import crash_hook
from stream_app.devstack.chaos import chaos_line, chaos_ok, latest_shards
from synapse_stream.segments import SegmentedIndex


def test_hook_kills_after_the_nth_acknowledged_candidate_before_confirming(monkeypatch, capsys):
    from stream_app.worker.service.outbox import CandidateOutbox

    events = []   # in order: what reached Redis's confirmation, and the kill

    async def original(self, claims):
        events.append(list(claims))

    monkeypatch.setattr(CandidateOutbox, "confirm", original)
    monkeypatch.setattr(crash_hook.os, "kill", lambda pid, sig: events.append(sig))   # a real SIGKILL never returns
    crash_hook.install(3)
    box = object.__new__(CandidateOutbox)
    asyncio.run(CandidateOutbox.confirm(box, [("d", "p1"), ("d", "p2")]))
    assert events == [[("d", "p1"), ("d", "p2")]]
    asyncio.run(CandidateOutbox.confirm(box, [("d", "p3")]))
    assert events[1] == signal.SIGKILL, "the kill comes before the third candidate is confirmed"
    line = capsys.readouterr().err
    assert crash_hook.MARKER in line
    log = "[2026-12-03 11:41:16,198] [3560] [ERROR] " + line
    assert crash_hook.acknowledged_before_crash(log) == [("d", "p1"), ("d", "p2"), ("d", "p3")]
    assert crash_hook.acknowledged_before_crash("no hook here\n") == []


def test_latest_shards_takes_each_partitions_newest_snapshot(tmp_path):
    rng = np.random.default_rng(0)

    def save(worker: int, partition: int, offset: int, ids: list[str]) -> None:
        idx = SegmentedIndex(8)
        idx.add(ids, rng.standard_normal((len(ids), 8)).astype(np.float32))
        idx.meta = {"partition": partition, "offset": offset}
        idx.save(tmp_path / f"worker-{worker}" / f"shard-{partition}" / "index.json")

    save(0, 0, 10, ["a"])            # worker 0 held partition 0 up to offset 10, then lost it
    save(1, 0, 42, ["a", "b"])       # worker 1 took it over and got further
    save(0, 1, 7, ["c"])
    got = latest_shards(tmp_path)
    assert sorted(got) == [0, 1]
    assert sorted(got[0].ids()) == ["a", "b"] and sorted(got[1].ids()) == ["c"]


def test_cluster_chaos_line_counts_broker_faults():
    r = {"crashes": 2, "posts": 800, "missing": 0, "duplicate_candidates": 0, "lost_verdicts": 0,
         "worker_restarts_from_bad_input": 0, "broker_kills": 1, "broker_restarts": [5.2], "crash_after_produce": 1,
         "crash_after_produce_not_once": 0, "quiet": True, "posts_in_two_shards": 0, "queried_equal_reference": True,
         "positives_equal_reference": True, "bad_unaccounted": 0, "graceful_stop": {"exit_code": 0}}
    assert chaos_line(r) == ("chaos: crashes=2 posts=800 missing=0 duplicate_candidates=0 lost_verdicts=0 "
                             "worker_restarts_from_bad_input=0 broker_kills=1 broker_restarts=1 "
                             "crash_after_produce=1 crash_after_produce_not_once=0")
    assert chaos_ok(r)
    assert not chaos_ok({**r, "broker_restarts": []}), "a killed node that never came back fails the run"
    assert not chaos_ok({**r, "crash_after_produce_not_once": 1})
    tansu = {k: v for k, v in r.items() if not k.startswith(("broker_", "crash_after"))}
    assert chaos_line(tansu).endswith("worker_restarts_from_bad_input=0") and chaos_ok(tansu)

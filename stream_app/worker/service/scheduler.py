"""Candidate rounds: for every detector whose round is due, the budget (``max_query_ratio`` of the posts
seen and ``max_candidates_per_hour``, all workers together) and the plan (``synapse_stream.rounds.LiveRounds``, the core policy over this worker's shards)."""
from __future__ import annotations

import logging
import math
import time

from stream_app.worker import memory
from stream_app.worker.service.records import (
    Outputs,
    ServicePart,
)

log = logging.getLogger("synapse.service")


class RoundScheduler(ServicePart):
    """Plans the rounds that are due."""

    async def run(self, now: float | None = None) -> Outputs:
        """Plan a round for every detector whose round is due (``LiveRounds.due``); claim and emit it.

        Before planning, the detector's classifier is retrained if verdicts arrived since its last
        version (as the core's model source refits every round), so the model source and the ranker
        see every verdict of the previous round.
        """
        s = self.svc.settings
        await self.upkeep()
        now = time.time() if now is None else now
        for name, rounds in list(self.svc.rounds.items()):
            if not rounds.due(now, min_interval=s.round_min_interval, timeout=s.round_timeout,
                              outstanding=s.round_outstanding, settle=s.round_settle):
                continue
            d = self.svc.detectors.get(name)
            if d is None or d.paused:   # retired meanwhile, or paused: no rounds
                continue
            if not await self.svc.state.seeds.settled(name):   # a seed set is still being embedded somewhere
                continue
            if rounds.uses_model:
                await self.svc.trainer.maybe_train(name, force=True)
                await self.svc.trainer.refresh_models()
            total = await self.svc.state.posts.total()
            share = len(self.svc.index) / total if total else 1.0
            limit = None
            if d.max_query_ratio is not None:   # the budget, all workers together
                queried = (await self.svc.state.verdicts.counters(name)).get("queried", 0)
                limit = math.floor(d.max_query_ratio * total) - queried
                if limit > 0 and share < 1.0:
                    limit = max(1, math.ceil(limit * share))
            if d.max_candidates_per_hour is not None:   # the moderators' capacity, all workers together
                room = d.max_candidates_per_hour - await self.svc.state.rate.spent(name)
                if room > 0 and share < 1.0:
                    room = max(1, math.ceil(room * share))
                limit = room if limit is None else min(limit, room)
            t0 = time.perf_counter()
            # gather and commit on the model thread (the books), the heavy step in the round thread
            inp = await self.svc.in_model_thread(rounds.gather, share, now, limit)
            if inp is None:
                continue
            out = await self.svc.in_round_thread(self._compute, rounds, inp)
            segs, posts = rounds.live.take_loaded()
            if segs:
                log.info("kNN graph of %s: %d posts of %d sealed segments loaded from their saved shares, not searched",
                         name, posts, segs)
            if rounds.checkpoint is not None and rounds.checkpoint.take_restored():
                log.info("rounds of %s: IBG's kept lists, the automatic tau and the bandit's counts taken back from "
                         "the checkpoint (tau %s)", name, rounds.tau)
            if self.svc.rounds.get(name) is not rounds:   # rebuilt or retired meanwhile: its batch is void
                continue
            cands = await self.svc.in_model_thread(rounds.commit, out)
            self.svc.metrics.round_seconds.observe(time.perf_counter() - t0)
            if not cands:
                continue
            self.svc.outbox.queue(cands)   # in the outbox before any I/O: a Redis error delays them, never loses them
            self.svc.metrics.rounds.labels(name).inc()
            for src in rounds.sources:
                self.svc.metrics.source_share.labels(name, src).set(
                    rounds.rounds[-1].alloc.get(src, 0) / max(1, len(cands)))
            rec = rounds.rounds[-1]
            log.info("round %d of %s: %d candidates %s in %.2fs (%s)", rec.number, name, len(cands), rec.alloc,
                     rec.seconds, " ".join(f"{k} {v:.2f}" for k, v in rec.phases.items()))
            await self.svc.state.rounds.record(name, {c.post_id: c.reason for c in cands})
            await self.svc.outbox.emit([])
        return self.svc.outbox.drain(Outputs())

    async def upkeep(self) -> None:
        """Between rounds, in the round thread: each detector's kNN graph takes the posts indexed since it last grew
        (at most ``graph_upkeep_posts`` a detector per check; ``LiveRounds.advance``)."""
        limit = self.svc.settings.graph_upkeep_posts
        for name, rounds in list(self.svc.rounds.items()):
            d = self.svc.detectors.get(name)
            if limit and rounds.uses_graph and d is not None and not d.paused:
                await self.svc.in_round_thread(self._advance, rounds, limit)
                self.svc.metrics.graph_lag.labels(name).set(rounds.live.lag)

    def _advance(self, rounds, limit: int) -> int:
        took = rounds.advance(limit)
        self._trim_after(rounds)
        return took

    def _trim_after(self, rounds) -> None:
        """After a step that let go of expired segments, the allocator's free pages are given back."""
        if rounds.dropped and self.svc.settings.malloc_trim:
            t = time.perf_counter()
            memory.trim()
            log.info("malloc_trim after %d expired posts let go: %.3fs", rounds.dropped, time.perf_counter() - t)

    def _compute(self, rounds, inp):
        """Round thread: the round's heavy step; after one that let go of expired segments (their last references
        go with the round's snapshot), the allocator's free pages are given back (``malloc_trim``)."""
        out = rounds.compute(inp)
        self._trim_after(rounds)
        return out

"""The posts pipeline: parse, record the partition map, embed (embed thread), index and compare (model
thread), claim; in two stages so batch n+1 is embedded while batch n is claimed and published."""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Sequence

from stream_app.worker.exceptions import is_transient
from stream_app.worker.service.records import (
    Outputs,
    PostsBatch,
    RawMsg,
    ServicePart,
)
from synapse_stream.messages import (
    PostMsg,
    detection_message,
    dumps,
    parse_post,
)
from synapse_stream.online import Candidate

log = logging.getLogger("synapse.service")


class PostsPipeline(ServicePart):
    """The two-stage posts path of the worker."""

    async def handle(self, msgs: Sequence[RawMsg]) -> Outputs:
        """Both stages of a micro-batch of posts, one after the other (replays; the agent pipelines them)."""
        return await self.finish(await self.begin(msgs))

    async def begin(self, msgs: Sequence[RawMsg]) -> "PostsBatch":
        """Stage 1: parse, record the partition map, and submit the batch to the model thread.

        Returns as soon as the embed thread has the work (it embeds, then hands the vectors to the model
        thread, which indexes and compares them; both in the order batches were begun); :meth:`finish_posts`
        then waits for it and claims its candidates. The runtime's pipeline begins batch n+1 while batch
        n's claims and publishes are awaited. Safe to retry: a failed attempt submitted nothing.
        """
        out = Outputs()
        good: list[tuple[RawMsg, PostMsg]] = []
        seen: set[str] = set()

        async def parse(m: RawMsg) -> None:
            post = parse_post(m.value, max_text_chars=self.svc.settings.max_text_chars,
                              max_bytes=self.svc.settings.max_message_bytes)
            if post.id not in seen:  # the same id twice in one batch: the first wins (as in the index)
                seen.add(post.id)
                good.append((m, post))
        t0 = time.perf_counter()
        await self.svc.boundary.each(msgs, out, "parse", parse)
        t1 = time.perf_counter()
        self.svc.metrics.stage("parse", t1 - t0)
        batch = PostsBatch(list(msgs), out)
        if good:
            # the partition map first: a post must never be a candidate (through another agent's backfill)
            # before a verdict for it can be routed to its shard
            try:
                await self.svc.state.posts.record({p.id: int(m.partition or 0) for m, p in good})
            except Exception as exc:  # noqa: BLE001 - one post's id broke the batch: record them one by one
                if is_transient(exc):
                    raise
                one = list(good)
                good.clear()

                async def record(item) -> None:
                    m, p = item
                    await self.svc.state.posts.record({p.id: int(m.partition or 0)})
                    good.append(item)
                await self.svc.boundary.each(one, out, "record", record, msg_of=lambda item: item[0])
            self.svc.metrics.stage("record", time.perf_counter() - t1)
        batch.good = good
        if good:
            now = time.time()
            batch.arrival = {p.id: (m.timestamp or now) for m, p in good}
            handed = asyncio.get_running_loop().run_in_executor(
                self.svc.embed_executor, functools.partial(self._embed_then_index, good))
            batch.ingest = asyncio.ensure_future(self._indexed(handed))
        return batch

    @staticmethod
    async def _indexed(handed):
        """The candidates of a batch: ``handed`` (the embed thread's job) yields the model thread's future."""
        return await asyncio.wrap_future(await handed)

    async def finish(self, batch: "PostsBatch") -> Outputs:
        """Stage 2: wait for the model thread, claim the candidates in Redis, advance the offsets.

        Safe to retry after a Redis error: the candidates wait in the outbox and are queued only once.
        ``self.svc.offsets`` (the snapshot offset and the health check's lag) moves only once the batch's
        candidates are claimed, as before.
        """
        if batch.ingest is not None:
            if not batch.queued:
                try:
                    cands = await batch.ingest
                except Exception as exc:  # noqa: BLE001 - embedding or indexing failed: one post at a time
                    if is_transient(exc):
                        raise
                    cands = await self._ingest_one_by_one(batch)
                batch.ingested_at = time.monotonic()
                self.svc.outbox.queue(cands, batch.arrival)
                batch.queued = True
            t0 = time.perf_counter()
            await self.svc.outbox.emit([])
            self.svc.metrics.stage("claim", time.perf_counter() - t0)
        for m in batch.msgs:   # consumed (indexed or dead-lettered): the snapshot offset and the health check's lag
            if m.partition is not None and m.offset is not None:
                self.svc.offsets[m.partition] = max(self.svc.offsets.get(m.partition, -1), m.offset)
        self.svc.last_progress = time.monotonic()
        return self.svc.outbox.drain(batch.out)

    async def _ingest_one_by_one(self, batch: "PostsBatch") -> list[Candidate]:
        """The batch's embedding or indexing raised: embed and index each post alone, so only the post at
        fault is dead-lettered (``internal_error``). Each post is compared with the seeds even if the failed
        attempt had already indexed it (harmless: windows are keyed by post, claims are first-wins)."""
        cands: list[Candidate] = []

        async def one(item) -> None:
            handed = asyncio.get_running_loop().run_in_executor(
                self.svc.embed_executor, functools.partial(self._embed_then_index, [item], True))
            cands.extend(await self._indexed(handed))
        await self.svc.boundary.each(batch.good, batch.out, "index", one, msg_of=lambda item: item[0])
        return cands

    def _embed_then_index(self, good: list[tuple[RawMsg, PostMsg]], compare_all: bool = False):
        """Embed thread: embed the batch, then queue its indexing on the model thread (in this order, so
        batches reach the model thread in the order they were begun). Returns the model thread's future."""
        vecs = self._embed_sync(good)
        return self.svc.executor.submit(self._index_sync, good, vecs, compare_all)

    def _embed_sync(self, good: list[tuple[RawMsg, PostMsg]]):
        t0 = time.perf_counter()
        vecs = self.svc.embedder.encode([p.text for _, p in good])
        dt = time.perf_counter() - t0
        self.svc.metrics.embed_seconds.observe(dt)
        self.svc.metrics.stage("embed", dt)
        self.svc.metrics.embed_batch.observe(len(good))
        return vecs

    def _index_sync(self, good: list[tuple[RawMsg, PostMsg]], vecs, compare_all: bool = False) -> list[Candidate]:
        """Model thread: add the batch to its shards and compare the new posts (``compare_all``: every post)
        with every detector's seeds."""
        t0 = time.perf_counter()
        by_part: dict[int, list[int]] = {}
        for i, (m, _) in enumerate(good):
            by_part.setdefault(int(m.partition or 0), []).append(i)
        new_rows = []
        times = self._event_times(good)
        for part, rows in by_part.items():
            shard = self.svc.index.shard(part)
            ids = [good[i][1].id for i in rows]
            fresh = [i for i, pid in zip(rows, ids) if pid not in self.svc.index]
            if fresh:
                late = shard.late
                shard.add([good[i][1].id for i in fresh], vecs[fresh], [good[i][1].text for i in fresh],
                          ts=[times[i] for i in fresh])
                if shard.late != late:   # older than the window when they arrived (a replay): not indexed
                    self.svc.metrics.posts_late.inc(shard.late - late)
                    fresh = [i for i in fresh if good[i][1].id in shard]
                new_rows += fresh
        self.svc.metrics.posts.inc(len(new_rows))
        t1 = time.perf_counter()
        self.svc.metrics.stage("index", t1 - t0)
        if compare_all:
            new_rows = list(range(len(good)))
        if not new_rows:
            return []
        self.svc.last_indexed = (time.time(), len(self.svc.index))   # one assignment: the health check reads the pair
        ids = [good[i][1].id for i in new_rows]
        cands: list[Candidate] = []
        for eng in list(self.svc.engines.values()):
            cands += eng.on_posts(ids, vecs[new_rows])
        for name, sampler in list(self.svc.samplers.items()):   # audits: chosen by post id alone, never by the detector
            if self.svc.detectors[name].paused:
                continue
            eng = self.svc.engines[name]
            cands += [Candidate(name, pid, 0.0, (), "audit") for pid in ids
                      if sampler.should_audit(pid) and pid not in eng.queried]
        t2 = time.perf_counter()
        self.svc.metrics.stage("compare", t2 - t1)
        self._after_index(ids, vecs[new_rows])
        t3 = time.perf_counter()
        self.svc.metrics.stage("classify", t3 - t2)
        try:   # posts no active detector claims -> the trends stage (never a reason to lose the batch)
            if not compare_all:   # a one-by-one retry: the failed attempt may have fed them already
                self.svc.trends.observe_sync(ids, [good[i][1].text for i in new_rows], vecs[new_rows],
                                             [times[i] for i in new_rows])
        except Exception as exc:  # noqa: BLE001 - logged and counted; the posts are indexed and compared already
            log.warning("trends stage failed on a batch of %d posts: %s: %s", len(ids), type(exc).__name__, exc)
            self.svc.metrics.internal_errors.labels("posts", "trends", type(exc).__name__).inc()
        self.svc.metrics.stage("trends", time.perf_counter() - t3)
        return cands

    def _event_times(self, good: list[tuple[RawMsg, PostMsg]]) -> list[float]:
        """Each post's event time for the window: its ``ts``, else the broker's timestamp (else now); a ts
        later than the arrival by more than ``event_time_max_skew`` (a clock gone wrong, or a hostile post
        trying to push the window forward) is taken as the arrival time."""
        now, skew = time.time(), self.svc.settings.event_time_max_skew
        out = []
        for m, p in good:
            arrival = m.timestamp or now
            out.append(arrival if p.ts is None or p.ts > arrival + skew else float(p.ts))
        return out

    def _after_index(self, ids: list[str], vecs) -> None:
        """Model thread, after new posts are indexed: rounds learn there is something new; every
        detector's current classifier scores the posts, and those at or above its threshold are queued
        for the detections topic (drained with the handler's outputs)."""
        for r in list(self.svc.rounds.values()):
            r.touch(len(ids))
        now = time.time()
        for d in list(self.svc.detectors.values()):
            mv = self.svc.models.get(d.name)
            if mv is None or d.detect_threshold is None:
                continue
            probs = mv.predict_proba(vecs)
            for pid, p in zip(ids, probs.tolist()):
                if p >= d.detect_threshold:
                    msg = detection_message(d.name, pid, p, d.detect_threshold, mv.version, now)
                    self.svc.detections.append((pid.encode(), dumps(msg)))
                    self.svc.metrics.detections.labels(d.name).inc()

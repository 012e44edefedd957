"""The posts agent's two-stage pipeline: begin a micro-batch, finish it in the background, in order;
events held (offsets uncommitted) until their batch is finished."""
from __future__ import annotations

import asyncio
import logging
import time

from stream_app.worker.events import (
    RuntimePart,
    hold_event,
    raw_from_event,
    release_event,
)
from stream_app.worker.service import DetectionService

log = logging.getLogger("synapse.runtime")


class PostsFeeder(RuntimePart):
    """Feeds micro-batches of posts through the service's two stages, in order, holding their offsets."""

    def __init__(self, rt) -> None:
        super().__init__(rt)
        self.slots: asyncio.Semaphore | None = None   # created on the event loop, at the first batch
        self.tail: asyncio.Future | None = None       # stage 2 of the last begun batch of posts
        self.sent: asyncio.Future | None = None       # ... done once its claims are made and its records handed out
        self.error: BaseException | None = None       # a stage 2 that failed for good, raised by the next call

    # ------------------------------------------------------------------ the posts pipeline
    async def submit(self, events) -> None:
        """Two-stage posts path: begin this micro-batch, and finish it in the background, in order.

        Stage 1 (here, awaited by the agent): parse, record the partition map in Redis, hand the batch
        to the model thread (:meth:`DetectionService.begin_posts`). Stage 2 (a task chained after the
        previous batch's): wait for the model thread, claim the candidates in Redis, publish and await
        the broker's acknowledgements (:meth:`DetectionService.finish_posts`, :meth:`publish`). So while
        batch n's round trips are awaited, batch n+1 is being embedded. ``Settings.posts_pipeline_depth``
        bounds the batches between the two stages (2: one finishing, one in the model thread).

        At-least-once stays as it was: the batch's events are held (a Faust reference each) until its
        stage 2 is done, so their offsets are committed only then, and a rebalance or a shutdown waits
        for them (Faust's ``wait_empty``). Stage 2s run one after another, so claims, ``offsets`` and
        acknowledgements follow the consumed order. A stage 2 that fails for good releases its events
        (as the agent's crash did before: the batch is skipped) and the error is raised here, once the
        current batch is on its way, so the agent crashes and restarts as before.
        """
        if self.slots is None:
            self.slots = asyncio.Semaphore(max(1, self.rt.settings.posts_pipeline_depth))
        await self.slots.acquire()
        try:
            svc = await self.rt.get()
            t0 = time.perf_counter()
            msgs = [raw_from_event(e) for e in events]
            svc.metrics.stage("events", time.perf_counter() - t0)
            await self.rt.recovery.wait_recovered(msgs)
            batch = await self.rt.retry(svc.begin_posts, msgs, what="handle_posts")
        except BaseException as exc:
            self.slots.release()
            if isinstance(exc, Exception):
                self.rt.liveness.crashed("ingest_posts", exc)
            raise
        for e in events:
            hold_event(e)
        sent = asyncio.get_running_loop().create_future()
        self.tail = asyncio.ensure_future(self._finish(self.tail, self.sent, sent, svc, batch, list(events)))
        self.sent = sent
        self._raise_error()

    async def _finish(self, prev, prev_sent, sent: asyncio.Future, svc: DetectionService, batch, events) -> None:
        """Stage 2 of one batch: after the previous batch's claims and sends, claim this batch's candidates
        and hand its records to the producer (``sent``: the next batch may claim and send now); then await
        their acknowledgements (overlapping the next batch's claims and sends) and, once the previous
        batch is done, release the events (in order: offsets are committed only after both)."""
        try:
            if prev_sent is not None:
                await asyncio.wait([prev_sent])   # in order; a failure is reported by submit_posts
            out = await self.rt.retry(svc.finish_posts, batch, what="handle_posts")
            t0 = time.perf_counter()
            acks = await self.rt.publish_later(out)
            if not sent.done():
                sent.set_result(None)
            await acks
            svc.metrics.stage("publish", time.perf_counter() - t0)
            if prev is not None:
                await asyncio.wait([prev])
            if getattr(batch, "ingested_at", None) is not None:
                svc.metrics.posts_io_seconds.observe(time.monotonic() - batch.ingested_at)
        except asyncio.CancelledError:   # the loop is going away: keep the events unacknowledged (re-consumed)
            if not sent.done():
                sent.set_result(None)
            self.slots.release()
            raise
        except Exception as exc:  # noqa: BLE001 - reported by the next submit_posts / flush_posts
            if not sent.done():
                sent.set_result(None)
            if prev is not None:   # the events of earlier batches are released first
                await asyncio.wait([prev])
            self.rt.liveness.crashed("ingest_posts", exc)
            if self.error is None:
                self.error = exc
            self._release(events)
            self.slots.release()
        else:
            self._release(events)
            self.slots.release()

    def _release(self, events) -> None:
        t0 = time.perf_counter()
        for e in events:
            release_event(self.rt.app, e)
        svc = self.rt.service
        if svc is not None:
            svc.metrics.stage("ack", time.perf_counter() - t0)

    def _raise_error(self) -> None:
        exc, self.error = self.error, None
        if exc is not None:
            raise exc

    async def flush(self) -> None:
        """Wait until every begun batch of posts is finished (claimed, published, acknowledged)."""
        tail = self.tail
        if tail is not None:
            await asyncio.wait([tail])
        self._raise_error()

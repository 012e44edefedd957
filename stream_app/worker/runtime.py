"""The worker's runtime around :class:`~stream_app.worker.service.DetectionService`.

* creates the service once (model loading off the event loop);
* retries through Redis and broker outages with capped, jittered exponential backoff;
* publishes outputs and waits for the broker's acknowledgement of every candidate before marking it
  sent in Redis (until then it is "in flight" and recoverable);
* on partition assignment, loads shard snapshots and replays the gap between a snapshot and the
  group's committed offset from the posts topic, before the agent consumes that partition again;
* re-sends the in-flight candidates of dead workers that never reached the candidates topic;
* reports liveness (:meth:`Runtime.health`): unhealthy when the posts consumer has lag but has not
  advanced for a while, when a shard stays recovering too long or its replay failed, or when agents
  crashed more than ``health_max_crashes`` times within ``health_crash_window`` seconds;
* runs background work through :meth:`Runtime.spawn`, so no task dies with its exception unobserved.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Awaitable, Callable

from stream_app.worker.detector_feed import DetectorFeed
from stream_app.worker.events import raw_from_event
from stream_app.worker.exceptions import transient_errors
from stream_app.worker.liveness import Liveness
from stream_app.worker.metrics import GCPauses, freeze_heap
from stream_app.worker.posts_feeder import PostsFeeder
from stream_app.worker.recovery import ShardRecovery
from stream_app.worker.service import DetectionService, Outputs
from stream_app.worker.settings import Settings

log = logging.getLogger("synapse.runtime")


class Runtime:

    def __init__(self, app, settings: Settings, *, candidates_topic, dead_letters_topic, verdicts_topic,
                 posts_topic_name: str, detections_topic=None, detectors_topic_name: str = "synapse.detectors",
                 trends_topic=None) -> None:
        self.app = app
        self.settings = settings
        self.candidates_topic = candidates_topic
        self.dead_letters_topic = dead_letters_topic
        self.verdicts_topic = verdicts_topic
        self.detections_topic = detections_topic
        self.trends_topic = trends_topic
        self.posts_topic_name = posts_topic_name
        self.service: DetectionService | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        # the runtime's parts (they share the data above through ``rt``), and the operations the agents call
        self.feeder = PostsFeeder(self)
        self.recovery = ShardRecovery(self)
        self.liveness = Liveness(self)
        self.detector_feed = DetectorFeed(self, detectors_topic_name)
        self.submit_posts, self.flush_posts = self.feeder.submit, self.feeder.flush
        self.on_assigned, self.recover_orphans = self.recovery.on_assigned, self.recovery.recover_orphans
        self.crashed, self.health = self.liveness.crashed, self.liveness.health

    # ------------------------------------------------------------------ service
    async def get(self) -> DetectionService:
        if self.service is None:
            async with self._lock:
                if self.service is None:
                    self.service = await self._create()
        return self.service

    async def _create(self) -> DetectionService:
        from stream_app.worker.state import RedisState

        state = RedisState.from_settings(self.settings)
        await self.retry(state.ping, what="connect to Redis")
        svc = await asyncio.to_thread(DetectionService, self.settings, state)
        svc.catch_up_detectors = self.detector_feed.catch_up
        await self.retry(svc.start, what="load shared state")
        await self.retry(state.workers.heartbeat, svc.worker_id, what="heartbeat")
        if self.settings.gc_freeze:
            t0 = time.perf_counter()
            n = freeze_heap()
            log.info("garbage collector: %d objects frozen in %.0f ms", n, 1000 * (time.perf_counter() - t0))
        svc.gc_pauses = GCPauses().install()
        log.info("service ready: worker %s, embedder %s, detectors %s", svc.worker_id, svc.embedder.name,
                 list(svc.engines))
        return svc

    async def retry(self, fn: Callable[..., Awaitable], *args, what: str = "call"):
        """Run ``fn`` until it succeeds, backing off (0.5 s doubling to 15 s, jittered) on connection errors."""
        delay = 0.5
        while True:
            try:
                return await fn(*args)
            except transient_errors() as exc:
                if self.app.should_stop:
                    raise
                log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
                await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
                delay = min(15.0, delay * 2)


    async def tick(self, name: str, operation: str) -> None:
        """One run of a timer's service operation (``operation``: a ``DetectionService`` method's name): retried
        on connection errors, its outputs published; any other failure is counted and logged (``crashed``) and
        the timer's next tick tries again. Nothing before the service exists."""
        svc = self.service
        if svc is None:
            return
        try:
            await self.publish(await self.retry(getattr(svc, operation), what=name.replace("_", " ")))
        except Exception as exc:  # noqa: BLE001 - counted and logged; the next tick tries again
            self.crashed(name, exc)

    def spawn(self, coro, what: str) -> asyncio.Task:
        """A background task whose failure is logged and counted (never an unobserved exception)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.liveness.crashed(what, t.exception())
        task.add_done_callback(done)
        return task

    async def trend_decisions(self) -> int:
        """Read the trends topic to its end and apply its accept/reject decisions (and, after a restart, its
        proposals) to this worker's trends stage; a broker error is logged and the next tick tries again."""
        from stream_app.worker.kafka_admin import read_to_end
        from stream_app.worker.kafka_clients import aiokafka_security

        try:
            msgs = await read_to_end(self.settings.bootstrap_servers(), self.settings.topic("trends"),
                                     **aiokafka_security(self.settings))
            return await self.service.trends.apply_decisions([(m.key, m.value) for m in msgs])
        except Exception as exc:  # noqa: BLE001 - counted and logged; decisions wait for the next tick
            self.liveness.crashed("trend_decisions", exc)
            return 0

    async def name_trends(self) -> None:
        """Name new trend proposals with the LLM and publish their records; failures are counted and logged."""
        try:
            await self.publish(await self.service.trends.name_pending())
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            self.liveness.crashed("name_trends", exc)

    # ------------------------------------------------------------------ messages
    async def handle_seeds(self, events) -> None:
        await self._handle("ingest_seeds", events, lambda svc: svc.handle_seeds)

    async def handle_labels(self, events) -> None:
        await self._handle("route_labels", events, lambda svc: svc.handle_labels)

    async def handle_verdicts(self, events) -> None:
        await self._handle("apply_verdicts", events, lambda svc: svc.handle_verdicts)

    async def _handle(self, agent: str, events, method) -> None:
        try:
            svc = await self.get()
            out = await self.retry(method(svc), [raw_from_event(e) for e in events], what=agent)
            await self.publish(out)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.liveness.crashed(agent, exc)
            raise


    async def publish(self, out: Outputs) -> None:
        """Send everything; candidates are confirmed in Redis only once the broker acknowledged them."""
        await self.retry(self._publish, out, what="publish")

    async def _publish(self, out: Outputs) -> None:
        """Send and await every acknowledgement; what was acknowledged is removed from ``out``, so a
        retry after a broker error re-sends only what did not get through (no duplicates)."""
        await self.settle(out, await self.send_outputs(out))

    async def publish_later(self, out: Outputs):
        """Hand ``out``'s records to the producer now and return a coroutine that awaits their
        acknowledgements (then confirms the candidates; what failed is published again, with retries).

        The posts pipeline issues batch n+1's sends while batch n's acknowledgements are awaited: the
        producer keeps the order, and each batch's offsets are still committed only after its own
        acknowledgements (:class:`~stream_app.worker.posts_feeder.PostsFeeder`)."""
        try:
            sent = await self.send_outputs(out)
        except transient_errors():
            return self.publish(out)

        async def acks() -> None:
            try:
                await self.settle(out, sent)
            except transient_errors():
                await self.publish(out)   # re-sends only what was not acknowledged
        return acks()

    async def send_outputs(self, out: Outputs) -> list:
        """Issue every send of ``out`` (no waiting for the broker); the futures, by record kind, for :meth:`settle`."""
        async def send_all(items, send):
            return items, [await send(*item) for item in items]

        sent = [("dead_letters", *await send_all(
            out.dead_letters, lambda k, v: self.dead_letters_topic.send(key=k, value=v)))]
        sent.append(("verdicts", *await send_all(
            out.verdicts, lambda p, k, v: self.verdicts_topic.send(key=k, value=v, partition=p))))
        if self.detections_topic is not None:   # at least once: a consumer dedupes on (detector, post_id)
            sent.append(("detections", *await send_all(
                out.detections, lambda k, v: self.detections_topic.send(key=k, value=v))))
        else:
            out.detections = []
        if self.trends_topic is not None:   # compacted by proposal id: a re-send only repeats the latest version
            sent.append(("trends", *await send_all(
                out.trends, lambda k, v: self.trends_topic.send(key=k, value=v, partition=0))))
        else:
            out.trends = []
        pending = list(zip(out.candidates, out.claims))
        sent.append(("candidates", *await send_all(
            pending, lambda kv, claim: self.candidates_topic.send(key=kv[0], value=kv[1]))))
        return sent

    async def settle(self, out: Outputs, sent: list) -> None:
        """Await the acknowledgements of :meth:`send_outputs`; what was acknowledged leaves ``out`` (the
        candidates' claims are confirmed in Redis), what failed stays for a retry, whose error is raised."""
        error = None
        for kind, items, futs in sent:
            results = await asyncio.gather(*futs, return_exceptions=True)
            failed = [it for it, r in zip(items, results) if isinstance(r, BaseException)]
            error = error or next((r for r in results if isinstance(r, BaseException)), None)
            if kind != "candidates":
                setattr(out, kind, failed)
                continue
            out.acked += [claim for (kv, claim) in items if (kv, claim) not in failed]
            out.candidates = [kv for kv, _ in failed]
            out.claims = [claim for _, claim in failed]
        if out.acked:   # if Redis fails here, the retry confirms them without sending them again
            await self.service.confirm(out.acked)
            out.acked = []
        if error is not None:
            raise error
        if out.released:   # held labels whose verdicts (or dead letters) are now on their topics
            await self.service.state.held.drop(out.released)
            out.released = []

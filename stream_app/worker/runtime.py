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
from collections import deque
from typing import Awaitable, Callable

from stream_app.worker.exceptions import describe, frames, transient_errors
from stream_app.worker.metrics import GCPauses, freeze_heap
from stream_app.worker.service import DetectionService, Outputs, RawMsg
from stream_app.worker.settings import Settings

log = logging.getLogger("synapse.runtime")


def raw_from_event(event) -> RawMsg:
    m = event.message
    ts = getattr(m, "timestamp", None)
    return RawMsg(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                  timestamp=float(ts) if ts else None)


def hold_event(event) -> None:
    """Keep a consumed Faust event from being acknowledged (its offset committed) until :func:`release_event`.

    Faust acknowledges a message when its last reference is dropped; ``take_events`` drops its own as
    soon as the agent asks for the next batch, so a pipelined batch takes one more.
    """
    event.message.incref()


def release_event(app, event) -> None:
    """Drop :func:`hold_event`'s reference; the last one acknowledges the message (as ``Stream.ack`` does)."""
    if event.ack():
        m = event.message
        app.sensors.on_message_out(m.tp, m.offset, m)


class Runtime:

    def __init__(self, app, settings: Settings, *, candidates_topic, dead_letters_topic, verdicts_topic,
                 posts_topic_name: str, detections_topic=None) -> None:
        self.app = app
        self.settings = settings
        self.candidates_topic = candidates_topic
        self.dead_letters_topic = dead_letters_topic
        self.verdicts_topic = verdicts_topic
        self.detections_topic = detections_topic
        self.posts_topic_name = posts_topic_name
        self.service: DetectionService | None = None
        self._lock = asyncio.Lock()
        self.assigned: set[int] = set()
        self._recovered: dict[int, asyncio.Event] = {}
        self.recovery_seconds: dict[int, float] = {}
        self._posts_slots: asyncio.Semaphore | None = None   # created on the event loop, at the first batch
        self._posts_tail: asyncio.Future | None = None        # stage 2 of the last begun batch of posts
        self._posts_error: BaseException | None = None
        self._recovering_since: dict[int, float] = {}   # partition -> monotonic start of its recovery
        self.replay_failed: dict[int, str] = {}           # partition -> why its gap replay could not finish
        self.crashes: deque[tuple[float, str]] = deque(maxlen=1000)   # (monotonic time, agent) of each failure
        self._tasks: set[asyncio.Task] = set()

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
        await self.retry(svc.start, what="load shared state")
        await self.retry(state.heartbeat, svc.worker_id, what="heartbeat")
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

    # ------------------------------------------------------------------ failures
    def crashed(self, agent: str, exc: BaseException) -> None:
        """Count a failure of an agent or a background task (it restarts or retries); the health check
        reads the recent ones. Logged with its type and frames, never its message."""
        self.crashes.append((time.monotonic(), agent))
        metrics = getattr(self.service, "metrics", None)
        if metrics is not None:
            metrics.agent_crashes.labels(agent).inc()
        log.error("%s failed: %s\n%s", agent, describe(exc), frames(exc))

    def spawn(self, coro, what: str) -> asyncio.Task:
        """A background task whose failure is logged and counted (never an unobserved exception)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.crashed(what, t.exception())
        task.add_done_callback(done)
        return task

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
            self.crashed(agent, exc)
            raise

    async def _wait_recovered(self, msgs) -> None:
        """A partition whose shard is being rebuilt (snapshot + replay) is consumed only afterwards."""
        for p in {m.partition for m in msgs}:
            ev = self._recovered.get(p)
            if ev is not None:
                await ev.wait()

    # ------------------------------------------------------------------ the posts pipeline
    async def submit_posts(self, events) -> None:
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
        if self._posts_slots is None:
            self._posts_slots = asyncio.Semaphore(max(1, self.settings.posts_pipeline_depth))
        await self._posts_slots.acquire()
        try:
            svc = await self.get()
            msgs = [raw_from_event(e) for e in events]
            await self._wait_recovered(msgs)
            batch = await self.retry(svc.begin_posts, msgs, what="handle_posts")
        except BaseException as exc:
            self._posts_slots.release()
            if isinstance(exc, Exception):
                self.crashed("ingest_posts", exc)
            raise
        for e in events:
            hold_event(e)
        self._posts_tail = asyncio.ensure_future(self._finish_posts(self._posts_tail, svc, batch, list(events)))
        self._raise_posts_error()

    async def _finish_posts(self, prev, svc: DetectionService, batch, events) -> None:
        try:
            if prev is not None:
                await asyncio.wait([prev])   # in order; its own failure is reported by submit_posts
            out = await self.retry(svc.finish_posts, batch, what="handle_posts")
            await self.publish(out)
            if getattr(batch, "ingested_at", None) is not None:
                svc.metrics.posts_io_seconds.observe(time.monotonic() - batch.ingested_at)
        except asyncio.CancelledError:   # the loop is going away: keep the events unacknowledged (re-consumed)
            self._posts_slots.release()
            raise
        except Exception as exc:  # noqa: BLE001 - reported by the next submit_posts / flush_posts
            self.crashed("ingest_posts", exc)
            if self._posts_error is None:
                self._posts_error = exc
            self._release(events)
            self._posts_slots.release()
        else:
            self._release(events)
            self._posts_slots.release()

    def _release(self, events) -> None:
        for e in events:
            release_event(self.app, e)

    def _raise_posts_error(self) -> None:
        exc, self._posts_error = self._posts_error, None
        if exc is not None:
            raise exc

    async def flush_posts(self) -> None:
        """Wait until every begun batch of posts is finished (claimed, published, acknowledged)."""
        tail = self._posts_tail
        if tail is not None:
            await asyncio.wait([tail])
        self._raise_posts_error()

    async def publish(self, out: Outputs) -> None:
        """Send everything; candidates are confirmed in Redis only once the broker acknowledged them."""
        await self.retry(self._publish, out, what="publish")

    async def _publish(self, out: Outputs) -> None:
        """Send and await every acknowledgement; what was acknowledged is removed from ``out``, so a
        retry after a broker error re-sends only what did not get through (no duplicates)."""
        async def send_all(items, send):
            futs = [await send(*item) for item in items]
            results = await asyncio.gather(*futs, return_exceptions=True)
            failed = [it for it, r in zip(items, results) if isinstance(r, BaseException)]
            return failed, next((r for r in results if isinstance(r, BaseException)), None)

        error = None
        out.dead_letters, err = await send_all(
            out.dead_letters, lambda k, v: self.dead_letters_topic.send(key=k, value=v))
        error = error or err
        out.verdicts, err = await send_all(
            out.verdicts, lambda p, k, v: self.verdicts_topic.send(key=k, value=v, partition=p))
        error = error or err
        if self.detections_topic is not None:   # at least once: a consumer dedupes on (detector, post_id)
            out.detections, err = await send_all(
                out.detections, lambda k, v: self.detections_topic.send(key=k, value=v))
            error = error or err
        else:
            out.detections = []
        pending = list(zip(out.candidates, out.claims))
        failed, err = await send_all(pending, lambda kv, claim: self.candidates_topic.send(key=kv[0], value=kv[1]))
        error = error or err
        out.acked += [claim for (kv, claim) in pending if (kv, claim) not in failed]
        out.candidates = [kv for kv, _ in failed]
        out.claims = [claim for _, claim in failed]
        if out.acked:   # if Redis fails here, the retry confirms them without sending them again
            await self.service.confirm(out.acked)
            out.acked = []
        if error is not None:
            raise error
        if out.released:   # held labels whose verdicts (or dead letters) are now on their topics
            await self.service.state.drop_held_labels(out.released)
            out.released = []

    # ------------------------------------------------------------------ rebalance and recovery
    async def on_assigned(self, assigned) -> None:
        parts = {tp.partition for tp in assigned if tp.topic == self.posts_topic_name}
        svc = await self.get()
        gone = sorted(self.assigned - parts)
        if gone:
            await svc.revoke(gone)
        new = sorted(parts - self.assigned)
        self.assigned = parts
        for p in new:
            self._recovered[p] = asyncio.Event()
            self._recovering_since[p] = time.monotonic()
            self.replay_failed.pop(p, None)
        for p in gone:
            self._recovering_since.pop(p, None)
            self.replay_failed.pop(p, None)
        out = await self.retry(svc.assign, sorted(parts), what="assign shards")
        await self.publish(out)
        if new:
            self.spawn(self._replay_gaps(new), "replay")
        log.info("holding shards %s (%d posts)", sorted(parts), len(svc.index))

    async def _replay_gaps(self, partitions: list[int]) -> None:
        """Re-index posts between each shard's snapshot and the group's committed offset."""
        svc = await self.get()
        try:
            for p in partitions:
                t0 = time.monotonic()
                start = svc.offsets.get(p, -1) + 1
                try:
                    replayed = await self.retry(self._replay_partition, svc, p, start, what=f"replay shard {p}")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the partition is consumed anyway; health says so
                    self.replay_failed[p] = describe(exc)
                    self.crashed(f"replay shard {p}", exc)
                    continue
                finally:
                    self._recovered[p].set()
                    self._recovering_since.pop(p, None)
                self.recovery_seconds[p] = time.monotonic() - t0
                log.info("shard %s recovered: snapshot up to offset %d, %d posts replayed in %.2fs",
                         p, start - 1, replayed, self.recovery_seconds[p])
            await self.publish(await self.retry(svc.reconcile_confirmed, what="reconcile confirmed seeds"))
        finally:   # whatever happened, no partition waits for a replay that is not running
            for p in partitions:
                if p in self._recovered:
                    self._recovered[p].set()
                self._recovering_since.pop(p, None)

    async def _replay_partition(self, svc: DetectionService, partition: int, start: int) -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(self.posts_topic_name, partition)
        c = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers(), group_id=self.settings.app_id,
                             enable_auto_commit=False, **self._client_security())
        await c.start()
        n = 0
        try:
            committed = await c.committed(tp)
            if committed is None or committed <= start:
                return 0
            c.assign([tp])
            c.seek(tp, start)
            while await c.position(tp) < committed:
                batch = (await c.getmany(tp, timeout_ms=1000, max_records=self.settings.embed_batch_size * 4)).get(tp, [])
                msgs = [RawMsg(m.topic, m.partition, m.offset, m.key, m.value,
                               m.timestamp / 1000 if m.timestamp else None) for m in batch if m.offset < committed]
                if msgs:
                    await self.publish(await svc.handle_posts(msgs))
                    n += len(msgs)
        finally:
            await c.stop()
        return n

    def _client_security(self) -> dict:
        s = self.settings
        if s.broker_security_protocol == "PLAINTEXT":
            return {}
        from stream_app.worker.transport import broker_credentials

        creds = broker_credentials(s)
        kw = {"security_protocol": s.broker_security_protocol, "ssl_context": getattr(creds, "ssl_context", None)}
        if s.broker_security_protocol.startswith("SASL"):
            kw.update(sasl_mechanism=s.broker_sasl_mechanism, sasl_plain_username=s.broker_username,
                      sasl_plain_password=s.broker_password.get_secret_value())
        return kw

    async def recover_orphans(self) -> int:
        """Re-send in-flight candidates of dead workers that are not on the candidates topic."""
        svc = await self.get()
        orphans = await svc.orphans()
        if not orphans:
            return 0
        if not await svc.state.lock("orphans", svc.worker_id, ttl=120):
            return 0
        try:
            on_topic = await self._candidates_on_topic()
            resend, done = Outputs(), []
            for det, entries in orphans.items():
                for pid, msg in entries.items():
                    if (det, pid) in on_topic:
                        done.append((det, pid))
                    else:
                        resend.candidates.append((pid.encode(), msg.encode("utf-8")))
                        resend.claims.append((det, pid))
            await svc.confirm(done)
            await self.publish(resend)
            if resend.claims or done:
                log.warning("recovered %d in-flight candidates of dead workers (%d re-sent, %d already sent)",
                            len(done) + len(resend.claims), len(resend.claims), len(done))
            return len(resend.claims)
        finally:
            await svc.state.unlock("orphans", svc.worker_id)

    async def _candidates_on_topic(self) -> set[tuple[str, str]]:
        """(detector, post id) of every candidate on the candidates topic so far."""
        import json

        from stream_app.worker.kafka_admin import read_to_end

        seen = set()
        for m in await read_to_end(self.settings.bootstrap_servers(), self.candidates_topic.get_topic_name(),
                                   timeout=120.0, **self._client_security()):
            try:
                doc = json.loads(m.value)
                seen.add((doc["detector"], doc["post_id"]))
            except (ValueError, KeyError, TypeError):
                continue
        return seen

    # ------------------------------------------------------------------ liveness
    def health(self) -> tuple[bool, dict]:
        svc = self.service
        if svc is None:
            return False, {"reason": "starting"}
        body = svc.health()
        lag = 0
        try:
            from faust.types import TP

            consumer = self.app.consumer
            for p in self.assigned:
                hw = consumer.highwater(TP(self.posts_topic_name, p))
                if hw is not None:
                    lag += max(0, int(hw) - (svc.offsets.get(p, -1) + 1))
        except Exception:  # noqa: BLE001 - no consumer yet / not assigned: lag unknown
            lag = 0
        s, now = self.settings, time.monotonic()
        body["lag"] = lag
        body["recovering"] = sorted(p for p, ev in self._recovered.items() if not ev.is_set())
        body["replay_failed"] = {str(p): why for p, why in sorted(self.replay_failed.items())}
        recent = [agent for t, agent in self.crashes if now - t <= s.health_crash_window]
        body["recent_crashes"] = len(recent)
        reasons = []
        slow = sorted(p for p, t0 in self._recovering_since.items() if now - t0 > s.health_recovery_seconds)
        if slow:
            reasons.append(f"shards {slow} still recovering after {s.health_recovery_seconds:g}s")
        if self.replay_failed:
            reasons.append(f"replay failed for shards {sorted(self.replay_failed)}")
        if len(recent) > s.health_max_crashes:
            agents = sorted(set(recent))
            reasons.append(f"{len(recent)} agent crashes in {s.health_crash_window:g}s ({', '.join(agents)})")
        if lag > 0 and body["seconds_since_progress"] > s.health_stall_seconds and not body["recovering"]:
            reasons.append(f"consumption stalled: lag {lag} and no progress for {body['seconds_since_progress']}s")
        if reasons:
            body["reason"] = "; ".join(reasons)
        return not reasons, body

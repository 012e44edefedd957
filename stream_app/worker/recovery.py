"""Rebalances and recovery: shards taken over are loaded from their snapshot and the gap to the group's
committed offset replayed before their partition is consumed; in-flight candidates of dead workers re-sent."""
from __future__ import annotations

import asyncio
import logging
import time

from stream_app.worker.events import RuntimePart
from stream_app.worker.exceptions import describe
from stream_app.worker.service import DetectionService, Outputs, RawMsg
from stream_app.worker.transport import aiokafka_security

log = logging.getLogger("synapse.runtime")


class ShardRecovery(RuntimePart):
    """Rebuilds the shards this worker takes over, and re-sends dead workers' in-flight candidates."""

    def __init__(self, rt) -> None:
        super().__init__(rt)
        self.assigned: set[int] = set()                  # partitions of the posts topic this worker holds
        self.recovered: dict[int, asyncio.Event] = {}     # set once the partition's shard is rebuilt
        self.recovering_since: dict[int, float] = {}      # partition -> monotonic start of its recovery
        self.replay_failed: dict[int, str] = {}           # partition -> why its gap replay could not finish
        self.recovery_seconds: dict[int, float] = {}

    async def wait_recovered(self, msgs) -> None:
        """A partition whose shard is being rebuilt (snapshot + replay) is consumed only afterwards."""
        for p in {m.partition for m in msgs}:
            ev = self.recovered.get(p)
            if ev is not None:
                await ev.wait()

    # ------------------------------------------------------------------ rebalance and recovery
    async def on_assigned(self, assigned) -> None:
        parts = {tp.partition for tp in assigned if tp.topic == self.rt.posts_topic_name}
        svc = await self.rt.get()
        gone = sorted(self.assigned - parts)
        if gone:
            await svc.revoke(gone)
        new = sorted(parts - self.assigned)
        self.assigned = parts
        for p in new:
            self.recovered[p] = asyncio.Event()
            self.recovering_since[p] = time.monotonic()
            self.replay_failed.pop(p, None)
        for p in gone:
            self.recovering_since.pop(p, None)
            self.replay_failed.pop(p, None)
        out = await self.rt.retry(svc.assign, sorted(parts), what="assign shards")
        await self.rt.publish(out)
        if new:
            self.rt.spawn(self._replay_gaps(new), "replay")
        log.info("holding shards %s (%d posts)", sorted(parts), len(svc.index))

    async def _replay_gaps(self, partitions: list[int]) -> None:
        """Re-index posts between each shard's snapshot and the group's committed offset."""
        svc = await self.rt.get()
        try:
            for p in partitions:
                t0 = time.monotonic()
                start = svc.offsets.get(p, -1) + 1
                try:
                    replayed = await self.rt.retry(self._replay_partition, svc, p, start, what=f"replay shard {p}")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the partition is consumed anyway; health says so
                    self.replay_failed[p] = describe(exc)
                    self.rt.liveness.crashed(f"replay shard {p}", exc)
                    continue
                finally:
                    self.recovered[p].set()
                    self.recovering_since.pop(p, None)
                self.recovery_seconds[p] = time.monotonic() - t0
                log.info("shard %s recovered: snapshot up to offset %d, %d posts replayed in %.2fs",
                         p, start - 1, replayed, self.recovery_seconds[p])
            await self.rt.publish(await self.rt.retry(svc.reconcile_confirmed, what="reconcile confirmed seeds"))
        finally:   # whatever happened, no partition waits for a replay that is not running
            for p in partitions:
                if p in self.recovered:
                    self.recovered[p].set()
                self.recovering_since.pop(p, None)

    async def _replay_partition(self, svc: DetectionService, partition: int, start: int) -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(self.rt.posts_topic_name, partition)
        c = AIOKafkaConsumer(bootstrap_servers=self.rt.settings.bootstrap_servers(), group_id=self.rt.settings.app_id,
                             enable_auto_commit=False, **aiokafka_security(self.rt.settings))
        await c.start()
        n = 0
        try:
            committed = await c.committed(tp)
            if committed is None or committed <= start:
                return 0
            c.assign([tp])
            c.seek(tp, start)
            while await c.position(tp) < committed:
                batch = (await c.getmany(tp, timeout_ms=1000, max_records=self.rt.settings.posts_batch_size() * 4)).get(tp, [])
                msgs = [RawMsg(m.topic, m.partition, m.offset, m.key, m.value,
                               m.timestamp / 1000 if m.timestamp else None) for m in batch if m.offset < committed]
                if msgs:
                    await self.rt.publish(await svc.handle_posts(msgs))
                    n += len(msgs)
        finally:
            await c.stop()
        return n

    async def recover_orphans(self) -> int:
        """Re-send in-flight candidates of dead workers that are not on the candidates topic."""
        svc = await self.rt.get()
        orphans = await svc.orphans()
        if not orphans:
            return 0
        if not await svc.state.workers.lock("orphans", svc.worker_id, ttl=120):
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
            await self.rt.publish(resend)
            if resend.claims or done:
                log.warning("recovered %d in-flight candidates of dead workers (%d re-sent, %d already sent)",
                            len(done) + len(resend.claims), len(resend.claims), len(done))
            return len(resend.claims)
        finally:
            await svc.state.workers.unlock("orphans", svc.worker_id)

    async def _candidates_on_topic(self) -> set[tuple[str, str]]:
        """(detector, post id) of every candidate on the candidates topic so far."""
        import json

        from stream_app.worker.kafka_admin import read_to_end

        seen = set()
        for m in await read_to_end(self.rt.settings.bootstrap_servers(), self.rt.candidates_topic.get_topic_name(),
                                   timeout=120.0, **aiokafka_security(self.rt.settings)):
            try:
                doc = json.loads(m.value)
                seen.add((doc["detector"], doc["post_id"]))
            except (ValueError, KeyError, TypeError):
                continue
        return seen

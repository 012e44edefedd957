"""Topics in: candidates into the review queue (:class:`CandidateIntake`), labels seen on the topic out of it
(:class:`LabelIntake`: a post answered anywhere leaves every moderator's queue), detections into the records
(:class:`DetectionIntake`). Each intake handles raw message values and is Kafka-free; :class:`TopicFollower`
feeds one from a topic with its own consumer group, committing offsets after the intake handled a batch (at
least once: the queue ignores repeats)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Protocol, Sequence

from stream_app.console.items import ReviewItem, item_key
from stream_app.console.queue import ReviewQueue
from synapse_stream.exceptions import MessageError
from synapse_stream.messages import parse_label

log = logging.getLogger("synapse.console")


class Intake(Protocol):
    async def handle(self, values: Sequence[bytes]) -> int: ...


class CandidateIntake:
    """Candidates for humans, not answered yet (by the ledger), into the queue. Bad messages are counted and
    skipped (the workers wrote them; the dead-letter topic is theirs)."""

    def __init__(self, queue: ReviewQueue, state=None, max_text_chars: int = 20_000) -> None:
        self.queue, self.state, self.max_text_chars = queue, state, max_text_chars
        self.bad = 0

    async def handle(self, values: Sequence[bytes]) -> int:
        items = []
        for v in values:
            try:
                it = ReviewItem.from_message(v, max_text_chars=self.max_text_chars)
            except MessageError as exc:
                self.bad += 1
                log.warning("candidate skipped: %s", exc.reason)
                continue
            if it.for_humans():
                items.append(it)
        if self.state is not None and items:
            by_det: dict[str, list[str]] = {}
            for it in items:
                by_det.setdefault(it.detector, []).append(it.post_id)
            known = {det: await self.state.verdicts.labels_of(det, pids) for det, pids in by_det.items()}
            answered = [it for it in items if it.post_id in known[it.detector]]
            if answered:
                await self.queue.answered([it.key for it in answered])
            items = [it for it in items if it.post_id not in known[it.detector]]
        return await self.queue.add(items, time.time())


class LabelIntake:
    def __init__(self, queue: ReviewQueue) -> None:
        self.queue = queue

    async def handle(self, values: Sequence[bytes]) -> int:
        keys = []
        for v in values:
            try:
                lab = parse_label(v)
            except MessageError:
                continue
            keys.append(item_key(lab.detector, lab.post_id))
        return await self.queue.answered(keys)


class DetectionIntake:
    def __init__(self, records) -> None:
        self.records = records

    async def handle(self, values: Sequence[bytes]) -> int:
        n = 0
        for v in values:
            try:
                msg = json.loads(v)
                det = msg["detector"]
            except (ValueError, TypeError, KeyError):
                continue
            if isinstance(det, str):
                await self.records.add_detection(det, msg)
                n += 1
        return n


class TopicFollower:
    """One topic into one intake, consumer group ``group``; new groups start at the topic's beginning."""

    def __init__(self, settings, topic: str, group: str, intake: Intake) -> None:
        self.settings, self.topic, self.group, self.intake = settings, topic, group, intake

    def _consumer(self):
        from aiokafka import AIOKafkaConsumer

        from stream_app.worker.kafka_clients import aiokafka_security

        kw = {}
        if self.settings.embedded_broker:
            from stream_app.worker.tansu import aiokafka_consumer_settings_for_tansu

            kw.update(aiokafka_consumer_settings_for_tansu(), fetch_max_wait_ms=self.settings.embedded_fetch_max_wait_ms)
        return AIOKafkaConsumer(self.topic, bootstrap_servers=self.settings.bootstrap_servers(), group_id=self.group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **kw, **aiokafka_security(self.settings))

    async def run(self) -> None:
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    values = [m.value for msgs in batches.values() for m in msgs if m.value is not None]
                    if values:
                        await self.intake.handle(values)
                    if batches:
                        await consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker or Redis away: start over from the committed offsets
                log.warning("following %s failed (%s: %s); retrying", self.topic, type(exc).__name__, exc)
                await asyncio.sleep(2.0)
            finally:
                try:
                    await consumer.stop()
                except Exception:  # noqa: BLE001
                    pass

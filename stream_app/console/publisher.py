"""Decisions out: once a decision's undo grace period is over, :class:`Publisher` sends it to the ``labels`` topic
(:class:`KafkaLabelSink`; :class:`MemorySink` in tests) and drops it from the queue's held decisions. At least once:
a publisher that dies after sending and before :meth:`ReviewQueue.published` leaves the decision for the next
round, and the worker treats a repeated verdict as a no-op."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, Sequence

from stream_app.console.queue import ReviewQueue
from synapse_stream.messages import dumps

log = logging.getLogger("synapse.console")


class LabelSink(Protocol):
    async def send(self, messages: Sequence[dict]) -> None: ...


class MemorySink:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def send(self, messages: Sequence[dict]) -> None:
        self.messages.extend(messages)


class KafkaLabelSink:
    """``labels`` messages keyed by post id (the topic's key), every replica's acknowledgement awaited."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.topic = settings.topic("labels")
        self._producer = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        from stream_app.worker.kafka_clients import aiokafka_producer_settings

        self._producer = AIOKafkaProducer(**aiokafka_producer_settings(self.settings))
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, messages: Sequence[dict]) -> None:
        if self._producer is None:
            await self.start()
        futures = [await self._producer.send(self.topic, dumps(m), key=str(m["post_id"]).encode("utf-8"))
                   for m in messages]
        await asyncio.gather(*futures)


class Publisher:
    def __init__(self, queue: ReviewQueue, sink: LabelSink) -> None:
        self.queue, self.sink = queue, sink
        self.sent = 0

    async def publish_due(self, now: float | None = None) -> int:
        due = await self.queue.due(time.time() if now is None else now)
        if not due:
            return 0
        await self.sink.send([d.label_message() for d in due])
        await self.queue.published([d.key for d in due])
        self.sent += len(due)
        return len(due)

    async def run(self, interval: float = 0.5) -> None:
        while True:
            try:
                await self.publish_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker or Redis is away: the decisions wait, try again
                log.warning("publishing decisions failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(min(5.0, interval * 4))
            await asyncio.sleep(interval)

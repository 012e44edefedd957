"""The worker's runtime: creates the service once, retries through Redis outages, publishes outputs."""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Awaitable, Callable

from .service import DetectionService, Outputs, RawMsg
from .settings import Settings

log = logging.getLogger("synapse.runtime")


def raw_from_event(event) -> RawMsg:
    m = event.message
    ts = getattr(m, "timestamp", None)
    return RawMsg(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                  timestamp=float(ts) if ts else None)


class Runtime:
    def __init__(self, app, settings: Settings, *, candidates_topic, dead_letters_topic, verdicts_topic,
                 posts_topic_name: str) -> None:
        self.app = app
        self.settings = settings
        self.candidates_topic = candidates_topic
        self.dead_letters_topic = dead_letters_topic
        self.verdicts_topic = verdicts_topic
        self.posts_topic_name = posts_topic_name
        self.service: DetectionService | None = None
        self._lock = asyncio.Lock()
        self.assigned: set[int] = set()

    async def get(self) -> DetectionService:
        if self.service is None:
            async with self._lock:
                if self.service is None:
                    self.service = await self._create()
        return self.service

    async def _create(self) -> DetectionService:
        from .state import RedisState

        state = RedisState.from_settings(self.settings)
        await self.retry(state.ping, what="connect to Redis")
        svc = await asyncio.to_thread(DetectionService, self.settings, state)
        await self.retry(svc.start, what="load shared state")
        log.info("service ready: embedder %s, detectors %s", svc.embedder.name, list(svc.engines))
        return svc

    async def retry(self, fn: Callable[..., Awaitable], *args, what: str = "call"):
        """Run ``fn`` until it succeeds, backing off (0.5 s doubling to 15 s, jittered) on connection errors."""
        import redis.exceptions as rexc
        from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

        delay = 0.5
        while True:
            try:
                return await fn(*args)
            except (rexc.ConnectionError, rexc.TimeoutError, ConnectionError, OSError, KafkaConnectionError,
                    KafkaTimeoutError) as exc:
                if self.app.should_stop:
                    raise
                log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
                await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
                delay = min(15.0, delay * 2)

    async def handle(self, method: str, events) -> None:
        svc = await self.get()
        msgs = [raw_from_event(e) for e in events]
        out = await self.retry(getattr(svc, method), msgs, what=method)
        await self.publish(out)

    async def publish(self, out: Outputs) -> None:
        for key, value in out.dead_letters:
            await self.dead_letters_topic.send(key=key, value=value)
        for part, key, value in out.verdicts:
            await self.verdicts_topic.send(key=key, value=value, partition=part)
        for key, value in out.candidates:
            await self.candidates_topic.send(key=key, value=value)

    async def on_assigned(self, assigned) -> None:
        parts = {tp.partition for tp in assigned if tp.topic == self.posts_topic_name}
        svc = await self.get()
        gone = sorted(self.assigned - parts)
        if gone:
            await svc.revoke(gone)
        self.assigned = parts
        out = await self.retry(svc.assign, sorted(parts), what="assign shards")
        await self.publish(out)
        log.info("holding shards %s (%d posts)", sorted(parts), len(svc.index))

"""Every worker follows the whole ``detectors`` topic and applies each change live (no restart).

A plain consumer with no group (each worker must see every record, as Kafka Connect workers read their config
topic): it reads the topic from the beginning. On the first pass, up to the end offset it found at start, only
each detector's latest record counts (what compaction keeps):

* an empty topic is seeded with ``SYNAPSE_DETECTORS`` (once, by whichever worker takes the lock; the others
  then read what it wrote);
* otherwise the topic wins: the latest record of each detector is applied, and a detector of
  ``SYNAPSE_DETECTORS`` the topic does not have (or has retired) is retired here, with a warning.

Then it follows the topic (after a broker outage, from the last record applied). A record that cannot be applied changes nothing and becomes a dead letter, sent once
for all workers (a Redis claim on its offset). :attr:`DetectorFeed.ready` is set after the first pass.
"""
from __future__ import annotations

import asyncio
import json
import logging

from stream_app.worker.events import RuntimePart
from stream_app.worker.kafka_admin import create_topics
from stream_app.worker.exceptions import TopicAdminError, is_transient
from stream_app.worker.service.catalog import DetectorError
from stream_app.worker.service.records import Outputs, RawMsg, dead_letter_key
from stream_app.worker.transport import aiokafka_producer_settings, aiokafka_security

log = logging.getLogger("synapse.detectors")


def detector_record(d) -> tuple[bytes, bytes]:
    """``(key, value)`` of a detector's settings on the ``detectors`` topic."""
    return d.name.encode("utf-8"), json.dumps(d.model_dump(mode="json")).encode("utf-8")


class DetectorFeed(RuntimePart):
    """Reads the ``detectors`` topic into the service's :class:`~stream_app.worker.service.catalog.DetectorCatalog`."""

    def __init__(self, rt, topic: str) -> None:
        super().__init__(rt)
        self.topic = topic
        self.ready = asyncio.Event()
        self.applied = 0
        self.position = 0          # the next offset to apply
        self._consumer = None

    async def run(self) -> None:
        """Until the worker stops: the first pass, then every new record (reconnecting after broker outages)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        svc = await self.rt.get()
        s = self.rt.settings
        tp = TopicPartition(self.topic, 0)
        while not self.rt.app.should_stop:
            c = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers(), group_id=None, enable_auto_commit=False,
                                 **aiokafka_security(s))
            try:
                if not self.ready.is_set():   # an upgraded deployment may not have the topic yet
                    try:
                        await create_topics(s.bootstrap_servers(), {self.topic: 1}, s.replication,
                                            configs={self.topic: {"cleanup.policy": "compact"}},
                                            **aiokafka_security(s))
                    except TopicAdminError as exc:   # e.g. no right to create topics: it may exist all the same
                        log.warning("cannot create the %s topic (%s); reading it as it is", self.topic, exc)
                await c.start()
                c.assign([tp])
                if self.ready.is_set():   # a reconnect: on from the last record applied
                    c.seek(tp, self.position)
                else:
                    await c.seek_to_beginning(tp)
                self._consumer = c
                if not self.ready.is_set():
                    await self._first_pass(c, tp, svc)
                    self.ready.set()
                while not self.rt.app.should_stop:
                    for m in (await c.getmany(tp, timeout_ms=1000)).get(tp, []):
                        await self._apply(svc, m)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the feed reconnects and re-reads (applying is idempotent)
                if is_transient(exc):   # the broker or Redis is away: not a failure of the worker
                    log.warning("detectors feed: %s; reconnecting", type(exc).__name__)
                else:
                    self.rt.crashed("follow_detectors", exc)
                await asyncio.sleep(2.0)
            finally:
                self._consumer = None
                await c.stop()

    async def catch_up(self, timeout: float = 3.0) -> bool:
        """Wait until every record on the topic now has been applied here (False after ``timeout`` s, or if the
        broker cannot say where the topic ends)."""
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        deadline = asyncio.get_running_loop().time() + timeout
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
            c = self._consumer
            if c is None:
                return False
            end = (await asyncio.wait_for(c.end_offsets([TopicPartition(self.topic, 0)]), timeout))
            end = next(iter(end.values()))
            while self.position < end:
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.05)
            return True
        except (asyncio.TimeoutError, TimeoutError, KafkaError, OSError):   # best effort: the broker is away
            return False

    async def _first_pass(self, c, tp, svc) -> None:
        end = (await c.end_offsets([tp]))[tp]
        records = []
        while await c.position(tp) < end:
            records += [m for m in (await c.getmany(tp, timeout_ms=500)).get(tp, []) if m.offset < end]
        if not records:
            await self._seed(svc)
            return
        latest = {}
        for m in records:   # only each detector's latest record counts (what compaction keeps)
            latest[m.key] = m
        for m in latest.values():
            await self._apply(svc, m)
        self.position = end
        for d in list(svc.detectors.values()):
            m = latest.get(d.name.encode("utf-8"))
            if m is None or m.value is None:
                log.warning("detector %s is in SYNAPSE_DETECTORS but not on the %s topic (or retired there): "
                            "retired here; create it with `synapse-stream detectors create`", d.name, self.topic)
                await svc.catalog.retire(d.name)

    async def _seed(self, svc) -> None:
        """An empty topic: this worker writes ``SYNAPSE_DETECTORS`` to it (the others read the records). The lock
        expires, so a worker that dies while seeding leaves the job to the next one."""
        from aiokafka import AIOKafkaProducer

        if not await svc.state.workers.lock("detectors-seed", svc.worker_id, ttl=60):
            return
        producer = AIOKafkaProducer(**aiokafka_producer_settings(self.rt.settings))
        await producer.start()
        try:
            for d in self.rt.settings.detectors:
                key, value = detector_record(d)
                await producer.send_and_wait(self.topic, value, key=key, partition=0)
        finally:
            await producer.stop()
        log.info("detectors topic seeded from SYNAPSE_DETECTORS: %s", [d.name for d in self.rt.settings.detectors])

    async def _apply(self, svc, m) -> None:
        try:
            await self._apply_one(svc, m)
        finally:
            self.position = m.offset + 1   # applied, or refused for good (catch_up waits for this)

    async def _apply_one(self, svc, m) -> None:
        try:
            what = await svc.catalog.apply(m.key, m.value)
        except DetectorError as exc:
            name = (m.key or b"").decode("utf-8", "replace")[:200]
            log.error("detectors record at offset %d (%r) not applied: %s", m.offset, name, exc.reason)
            msg = RawMsg(m.topic, m.partition, m.offset, m.key, m.value)
            if await svc.state.workers.lock(f"dead:{dead_letter_key(msg).decode()}", svc.worker_id, ttl=7 * 86400):
                await self.rt.publish(Outputs(dead_letters=[svc.boundary.dead(msg, exc.reason, exc.detail)]))
            return
        self.applied += 1
        if what != "unchanged":
            log.info("detector %s: %s (offset %d)", (m.key or b"").decode("utf-8", "replace")[:200], what, m.offset)

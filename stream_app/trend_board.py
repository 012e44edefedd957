"""Trend proposals as analysts see and decide them: the ``trends`` topic read whole, decisions written back.

:class:`KafkaTrendBoard` reads the compacted ``trends`` topic (each proposal under its id, as the workers publish
it; each decision under ``<id>/decision``) and writes decisions; :class:`MemoryTrendBoard` does the same in memory
(tests). :func:`accept` turns a proposal into a detector by the same path as the console's new-detector flow and
``synapse-stream detectors create`` (the detector's settings on the ``detectors`` topic, checked first; its seeds,
the proposal's medoid posts, on the ``seeds`` topic), then records the decision; :func:`reject` records a
rejection, and every worker mutes the group (``stream_app/worker/service/trends.py``). Used by
``synapse-stream trends list|show|accept|reject`` and by the console's proposals pages.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Protocol

from synapse_stream.exceptions import ConfigError

DECISION_SUFFIX = "/decision"


def decode(key, value) -> tuple[str, dict | None]:
    """One record of the trends topic: its key as text, and its value as a JSON object (None for a tombstone, a
    value that is not JSON or not an object: bad records are skipped, never an error)."""
    k = (key or b"").decode("utf-8", "replace") if isinstance(key, (bytes, type(None))) else str(key)
    if value is None:
        return k, None
    try:
        doc = json.loads(value)
    except ValueError:
        return k, None
    return k, doc if isinstance(doc, dict) else None


def merge(records) -> dict[str, dict]:
    """``{proposal id: record}`` from ``(key, value)`` records in topic order, each record's ``status`` (and
    ``detector``, ``decided_by``) taken from its decision when there is one. Bad records are skipped."""
    props: dict[str, dict] = {}
    decisions: dict[str, dict] = {}
    for key, value in records:
        k, doc = decode(key, value)
        if value is None:
            (decisions if k.endswith(DECISION_SUFFIX) else props).pop(k.removesuffix(DECISION_SUFFIX), None)
            continue
        if doc is None:
            continue
        if k.endswith(DECISION_SUFFIX):
            decisions[k.removesuffix(DECISION_SUFFIX)] = doc
        elif doc.get("id") == k:
            props[k] = doc
    for pid, d in decisions.items():
        if pid in props and d.get("status") in ("accepted", "rejected"):
            props[pid] = {**props[pid], "status": d["status"], "detector": d.get("detector", ""),
                          "decided_by": d.get("by", "")}
    return props


def ranked(props: dict[str, dict], status: str | None = "open") -> list[dict]:
    """Proposals by growth (then size), optionally of one status."""
    ps = [p for p in props.values() if status is None or p.get("status") == status]
    return sorted(ps, key=lambda p: (-float(p.get("growth") or 0), -int(p.get("size") or 0), p.get("id", "")))


class TrendBoard(Protocol):
    async def all(self) -> dict[str, dict]: ...
    async def decide(self, proposal_id: str, status: str, detector: str = "", by: str = "") -> None: ...


def _decision(proposal_id: str, status: str, detector: str, by: str) -> dict:
    if status not in ("accepted", "rejected"):
        raise ConfigError(f"a decision is accepted or rejected, not {status!r}")
    return {"id": proposal_id, "status": status, "detector": detector, "by": by, "at": time.time()}


class MemoryTrendBoard:
    """The topic as a list of ``(key, value)`` records (tests; ``publish`` adds a worker's record)."""

    def __init__(self, proposals=()) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        for p in proposals:
            self.publish(p)

    def publish(self, proposal: dict) -> None:
        self.records.append((proposal["id"].encode(), json.dumps(proposal).encode()))

    async def all(self) -> dict[str, dict]:
        return merge(self.records)

    async def decide(self, proposal_id: str, status: str, detector: str = "", by: str = "") -> None:
        self.records.append(((proposal_id + DECISION_SUFFIX).encode(),
                             json.dumps(_decision(proposal_id, status, detector, by)).encode()))


class KafkaTrendBoard:
    """The ``trends`` topic read to its end (at most every ``ttl`` seconds) and decisions written by key."""

    def __init__(self, settings, ttl: float = 3.0) -> None:
        self.settings = settings
        self.ttl = ttl
        self.topic = settings.topic("trends")
        self._cache: tuple[float, dict[str, dict]] | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> None:
        from stream_app.worker.kafka_admin import create_topics
        from stream_app.worker.kafka_clients import aiokafka_security

        await create_topics(self.settings.bootstrap_servers(), {self.topic: 1}, self.settings.replication,
                            configs={self.topic: {"cleanup.policy": "compact"}}, **aiokafka_security(self.settings))

    async def all(self) -> dict[str, dict]:
        from stream_app.worker.kafka_admin import read_to_end
        from stream_app.worker.kafka_clients import aiokafka_security

        async with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > self.ttl:
                await self._ensure()
                msgs = await asyncio.wait_for(read_to_end(self.settings.bootstrap_servers(), self.topic,
                                                          **aiokafka_security(self.settings)), 60)
                self._cache = (time.monotonic(), merge([(m.key, m.value) for m in msgs]))
            return dict(self._cache[1])

    async def decide(self, proposal_id: str, status: str, detector: str = "", by: str = "") -> None:
        from aiokafka import AIOKafkaProducer

        from stream_app.worker.kafka_clients import aiokafka_producer_settings

        doc = _decision(proposal_id, status, detector, by)
        producer = AIOKafkaProducer(**aiokafka_producer_settings(self.settings))
        await producer.start()
        try:
            await producer.send_and_wait(self.topic, json.dumps(doc).encode(),
                                         key=(proposal_id + DECISION_SUFFIX).encode(), partition=0)
        finally:
            await producer.stop()
        self._cache = None


def detector_name(proposal: dict) -> str:
    """A detector name from the proposal's LLM name (``trend-crypto-giveaway-scam``), else its id."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(proposal.get("name") or "").lower()).strip("-")[:60]
    return f"trend-{slug}" if slug else str(proposal["id"])


def description_of(proposal: dict) -> str:
    if proposal.get("description"):
        return str(proposal["description"])
    terms = ", ".join(proposal.get("terms") or [])
    return (proposal.get("name") or "An emerging trend found in the stream") + (f" (terms: {terms})" if terms else "")


async def _open(board: TrendBoard, proposal_id: str) -> dict:
    props = await board.all()
    p = props.get(proposal_id)
    if p is None:
        raise ConfigError(f"no proposal {proposal_id!r} (open: {', '.join(x['id'] for x in ranked(props)) or 'none'})")
    if p.get("status", "open") != "open":
        raise ConfigError(f"proposal {proposal_id} is {p['status']} already")
    return p


async def accept(board: TrendBoard, catalog, proposal_id: str, *, detector: str | None = None, by: str = "",
                 settings: dict | None = None) -> dict:
    """Create a detector from an open proposal (its medoids as seeds, its description) and record the decision;
    returns the detector's settings. ``catalog``: a console :class:`~stream_app.console.catalog.DetectorCatalog`."""
    from stream_app.console.catalog import NewSeed

    p = await _open(board, proposal_id)
    texts = [str(m.get("text", "")).strip() for m in p.get("medoids") or []]
    texts = [t for t in dict.fromkeys(texts) if t]
    if not texts:
        raise ConfigError(f"proposal {proposal_id} has no medoid posts to seed a detector with")
    doc = {"name": detector or detector_name(p), "description": description_of(p)[:2000], **(settings or {})}
    created = await catalog.create(doc)
    await catalog.add_seeds(created["name"], [NewSeed(t, "manual") for t in texts])
    await board.decide(proposal_id, "accepted", created["name"], by)
    return created


async def reject(board: TrendBoard, proposal_id: str, *, by: str = "") -> None:
    await _open(board, proposal_id)
    await board.decide(proposal_id, "rejected", "", by)

"""The detectors as the console sees and changes them: :class:`DetectorCatalog` (the interface),
:class:`KafkaCatalog` (the compacted ``detectors`` topic and the ``seeds`` topic, as ``synapse-stream detectors``
and ``seeds generate --create`` use them) and :class:`MemoryCatalog` (tests). Every change is checked against
:class:`~stream_app.worker.settings.DetectorSettings` first (:class:`~synapse_stream.exceptions.ConfigError`
naming the field), then published; the workers apply it live.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

from synapse_stream.exceptions import ConfigError

def tau_value(text: str) -> float | None:
    """A detector's τ from a form: a number, or ``auto`` (None: the worker's rounds choose it from the data)."""
    return None if text.strip().lower() == "auto" else float(text)


tau_value.__name__ = "number or 'auto'"

#: the settings an analyst changes on a detector's page, with their types
EDITABLE = {"description": str, "tau": tau_value, "d_max": int, "k0": int, "candidates": str, "audit_rate": float,
            "max_query_ratio": float, "detect_threshold": float}


@dataclass(frozen=True)
class NewSeed:
    text: str
    origin: str = "manual"    # "synthetic" (an LLM's, unchanged) or "manual" (typed, uploaded or edited)

    def message(self, detector: str) -> dict:
        sid = ("gen-" if self.origin == "synthetic" else "man-") + hashlib.sha1(
            (detector + self.text).encode("utf-8")).hexdigest()[:12]
        return {"detector": detector, "text": self.text, "origin": self.origin, "id": sid}


class DetectorCatalog(Protocol):
    async def all(self) -> dict[str, dict]: ...
    async def create(self, doc: dict) -> dict: ...
    async def update(self, name: str, changes: dict) -> dict: ...
    async def add_seeds(self, name: str, seeds: Sequence[NewSeed]) -> int: ...


def checked(doc: dict) -> dict:
    from stream_app.detectors_cli import check_settings

    return check_settings(doc).model_dump(mode="json")


class _Base:
    async def all(self) -> dict[str, dict]:
        raise NotImplementedError

    async def _publish(self, name: str, doc: dict | None) -> None:
        raise NotImplementedError

    async def get(self, name: str) -> dict | None:
        return (await self.all()).get(name)

    async def create(self, doc: dict) -> dict:
        d = checked(doc)
        if d["name"] in await self.all():
            raise ConfigError(f"a detector named {d['name']!r} exists already")
        await self._publish(d["name"], d)
        return d

    async def update(self, name: str, changes: dict) -> dict:
        cur = await self.get(name)
        if cur is None:
            raise ConfigError(f"no detector {name!r}")
        d = checked({**cur, **changes, "name": name})
        await self._publish(name, d)
        return d


class MemoryCatalog(_Base):
    """Detectors and seeds in memory (tests): ``seeds`` keeps every seed message added."""

    def __init__(self, detectors: Sequence[dict] = ()) -> None:
        self.detectors: dict[str, dict] = {}
        self.seeds: list[dict] = []
        for d in detectors:
            d = checked(d)
            self.detectors[d["name"]] = d

    async def all(self) -> dict[str, dict]:
        return dict(self.detectors)

    async def _publish(self, name: str, doc: dict | None) -> None:
        if doc is None:
            self.detectors.pop(name, None)
        else:
            self.detectors[name] = doc

    async def add_seeds(self, name: str, seeds: Sequence[NewSeed]) -> int:
        self.seeds += [s.message(name) for s in seeds]
        return len(seeds)


class KafkaCatalog(_Base):
    """The ``detectors`` topic read to its end (at most every ``ttl`` seconds) and written by key."""

    def __init__(self, settings, ttl: float = 3.0) -> None:
        self.settings = settings
        self.ttl = ttl
        self._cache: tuple[float, dict[str, dict]] | None = None
        self._lock = asyncio.Lock()

    async def all(self) -> dict[str, dict]:
        from stream_app.detectors_cli import current

        async with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > self.ttl:
                self._cache = (time.monotonic(), await asyncio.wait_for(current(self.settings), 30))
            return dict(self._cache[1])

    async def _publish(self, name: str, doc: dict | None) -> None:
        from stream_app.detectors_cli import publish

        await publish(self.settings, name, doc)
        self._cache = None

    async def add_seeds(self, name: str, seeds: Sequence[NewSeed]) -> int:
        from aiokafka import AIOKafkaProducer

        from stream_app.worker.kafka_clients import aiokafka_producer_settings
        from synapse_stream.messages import dumps

        producer = AIOKafkaProducer(**aiokafka_producer_settings(self.settings))
        await producer.start()
        try:
            futures = [await producer.send(self.settings.topic("seeds"), dumps(s.message(name))) for s in seeds]
            await producer.flush()
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return len(seeds)

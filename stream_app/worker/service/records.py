"""The service's records: raw messages in, outputs for the runtime, a micro-batch of posts, and the keys
and documents derived from a raw message."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field

log = logging.getLogger("synapse.service")


@dataclass
class RawMsg:
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None   # broker timestamp, seconds


@dataclass
class Outputs:
    candidates: list[tuple[bytes, bytes]] = field(default_factory=list)     # (key, value)
    claims: list[tuple[str, str]] = field(default_factory=list)             # (detector, post id), to confirm once acked
    acked: list[tuple[str, str]] = field(default_factory=list)              # acknowledged, confirmation pending
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    verdicts: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (partition, key, value)
    detections: list[tuple[bytes, bytes]] = field(default_factory=list)     # (key, value)
    trends: list[tuple[bytes, bytes]] = field(default_factory=list)         # (proposal id, record)
    released: list[str] = field(default_factory=list)   # held labels to drop in Redis once the above are sent

    def extend(self, other: "Outputs") -> "Outputs":
        self.candidates += other.candidates
        self.claims += other.claims
        self.acked += other.acked
        self.dead_letters += other.dead_letters
        self.verdicts += other.verdicts
        self.detections += other.detections
        self.trends += other.trends
        self.released += other.released
        return self


@dataclass
class PostsBatch:
    """A micro-batch of posts between :meth:`DetectionService.begin_posts` and :meth:`~DetectionService.finish_posts`."""
    msgs: list[RawMsg]
    out: Outputs                                  # its dead letters (and, once finished, the claimed candidates)
    arrival: dict[str, float] = field(default_factory=dict)   # post id -> broker timestamp (latency metric)
    ingest: "asyncio.Future | None" = None        # its candidates: embed thread, then model thread (submitted)
    queued: bool = False                          # its candidates are in the outbox
    ingested_at: float | None = None              # monotonic time the model thread's work was taken (I/O metric)
    good: list = field(default_factory=list)      # (RawMsg, PostMsg) of the valid, new-in-batch posts


def dead_letter_key(msg: RawMsg) -> bytes | None:
    """A dead letter's key: its source coordinates, the same on every replay of the message (idempotent)."""
    if msg.offset is None:
        return msg.key
    return f"{msg.topic}/{msg.partition}/{msg.offset}".encode()


def held_label_doc(m: RawMsg, post_id: str) -> dict:
    """A held label as stored in Redis: the raw message (base64) and its source coordinates."""
    import base64

    b64 = lambda v: None if v is None else base64.b64encode(bytes(v)).decode("ascii")  # noqa: E731
    return {"post_id": post_id, "topic": m.topic, "partition": m.partition, "offset": m.offset,
            "key": b64(m.key), "value": b64(m.value), "timestamp": m.timestamp,
            "id": f"{m.topic}/{m.partition}/{m.offset}"}


def held_label_msg(doc: dict) -> RawMsg:
    import base64

    unb64 = lambda v: None if v is None else base64.b64decode(v)  # noqa: E731
    return RawMsg(doc["topic"], doc["partition"], doc["offset"], unb64(doc["key"]), unb64(doc["value"]),
                  doc.get("timestamp"))


def seed_id_for(detector: str, text: str) -> str:
    return "s-" + hashlib.sha1(f"{detector}\0{text}".encode("utf-8")).hexdigest()[:16]


class ServicePart:
    """One responsibility of :class:`~stream_app.worker.service.DetectionService`; the data it works on is the
    service's (``self.svc``), shared by every part."""

    def __init__(self, svc) -> None:
        self.svc = svc

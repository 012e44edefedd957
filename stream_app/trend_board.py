"""Trend proposals as analysts see and decide them: the ``trends`` topic read whole, decisions written back.

:class:`KafkaTrendBoard` reads the compacted ``trends`` topic (each proposal under its id, as the workers publish
it; each decision under ``<id>/decision``) and writes decisions; :class:`MemoryTrendBoard` does the same in memory
(tests). :func:`accept` turns a proposal into a detector by the same path as the console's new-detector flow and
``synapse-stream detectors create`` (the detector's settings on the ``detectors`` topic, checked first; its seeds,
the proposal's medoid posts, on the ``seeds`` topic), then records the decision; :func:`reject` records a
rejection, and every worker mutes the group (``stream_app/worker/service/trends.py``). Used by
``synapse-stream trends list|show|accept|reject`` and by the console's proposals pages.

**One wave, several workers.** Each worker runs its own stage over the partitions it holds, so a wave spread
over partitions is proposed once per worker, under different ids. :func:`merge` folds such proposals into one
(:func:`combine`): proposals whose centres are within cosine :data:`MERGE_SIM` of an earlier proposal's are
its members. The oldest (least ``raised_at``, then id) keeps its id; sizes and recent counts are summed,
timelines added bin by bin, medoids and terms taken in turn from each member (deduplicated, capped as a
worker's record is), and ``merged_ids`` lists every member, the kept id first. The merged view is a function
of the latest record of each key only, so it is the same on a compacted topic, after a console or worker
restart (a worker keeps its ids: its stage is snapshotted) and whatever the order of the records. A decision
(:func:`accept`, :func:`reject`) is written for every member id, so each worker applies it to its own
proposal; a member id given to :func:`find` (a link, the CLI) finds the merged proposal.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Protocol

import numpy as np

from synapse_stream.exceptions import ConfigError
from synapse_stream.trends.proposals import MAX_MEDOIDS, MAX_TERMS

DECISION_SUFFIX = "/decision"
#: proposals of different workers whose centres are this close are one wave (the stage's own ``merge_sim``)
MERGE_SIM = 0.8


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


def merge(records, *, merge_sim: float | None = MERGE_SIM) -> dict[str, dict]:
    """``{proposal id: record}`` from ``(key, value)`` records in topic order, each record's ``status`` (and
    ``detector``, ``decided_by``) taken from its decision when there is one, then proposals of one wave folded
    into one (:func:`combine`; ``merge_sim=None``: not folded). Bad records are skipped."""
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
    return props if merge_sim is None else combine(props, merge_sim)


def _centre(p: dict) -> np.ndarray | None:
    c = p.get("centre")
    if not isinstance(c, list) or not c:
        return None
    try:
        v = np.asarray(c, np.float64)
    except (TypeError, ValueError):
        return None
    n = float(np.linalg.norm(v))
    return v / n if v.ndim == 1 and np.isfinite(n) and n > 0 else None


def _num(p: dict, key: str, default: float = 0.0) -> float:
    try:
        v = float(p.get(key, default))
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def _in_turn(lists, key, cap: int) -> list:
    """Items taken in turn from each list (deduplicated by ``key``), at most ``cap``."""
    out, seen = [], set()
    for row in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if row < len(x) and key(x[row]) not in seen:
                seen.add(key(x[row]))
                out.append(x[row])
                if len(out) >= cap:
                    return out
    return out


def _folded(members: list[dict]) -> dict:
    root = members[0]
    if len(members) == 1:
        return {**root, "merged_ids": [root["id"]]}
    bins: dict[float, float] = {}
    for m in members:
        for pt in m.get("timeline") or []:
            if isinstance(pt, list) and len(pt) == 2:
                bins[float(pt[0])] = bins.get(float(pt[0]), 0.0) + float(pt[1])
    decided = next((m for m in members if m.get("status", "open") != "open"), None)
    named = next((m for m in members if m.get("name")), root)
    return {**root,
            "size": int(sum(_num(m, "size") for m in members)),
            "recent": int(sum(_num(m, "recent") for m in members)),
            "growth": max(_num(m, "growth") for m in members),
            "p_value": min(_num(m, "p_value", 1.0) for m in members),
            "first_seen": min(_num(m, "first_seen", _num(root, "first_seen")) for m in members),
            "updated_at": max(_num(m, "updated_at") for m in members),
            "version": int(sum(_num(m, "version", 1) for m in members)),
            "medoids": _in_turn([[x for x in (m.get("medoids") or []) if isinstance(x, dict)] for m in members],
                                lambda x: str(x.get("id")), MAX_MEDOIDS),
            "terms": _in_turn([[str(t) for t in (m.get("terms") or [])] for m in members], str, MAX_TERMS),
            "timeline": [[b, c] for b, c in sorted(bins.items())],
            "name": named.get("name", ""), "description": named.get("description", ""),
            "status": (decided or root).get("status", "open"), "detector": (decided or root).get("detector", ""),
            "decided_by": (decided or root).get("decided_by", ""),
            "merged_ids": [m["id"] for m in members]}


def combine(props: dict[str, dict], merge_sim: float = MERGE_SIM) -> dict[str, dict]:
    """Fold the proposals of one wave raised by several workers into one (see the module docstring): in order
    of ``(raised_at, id)``, a proposal joins the first earlier kept proposal whose centre is within
    ``merge_sim`` of its own, else it is kept. Proposals without a centre are never folded.

    >>> a = {"id": "trend-a", "raised_at": 5.0, "size": 7, "centre": [1.0, 0.0], "medoids": [{"id": "x"}]}
    >>> b = {"id": "trend-b", "raised_at": 3.0, "size": 9, "centre": [0.95, 0.31], "medoids": [{"id": "y"}]}
    >>> c = {"id": "trend-c", "raised_at": 4.0, "size": 6, "centre": [0.0, 1.0]}
    >>> out = combine({p["id"]: p for p in (a, b, c)})
    >>> sorted(out), out["trend-b"]["size"], out["trend-b"]["merged_ids"], [m["id"] for m in out["trend-b"]["medoids"]]
    (['trend-b', 'trend-c'], 16, ['trend-b', 'trend-a'], ['y', 'x'])
    """
    order = sorted(props.values(), key=lambda p: (_num(p, "raised_at"), str(p.get("id"))))
    kept: list[list[dict]] = []
    centres: list[np.ndarray] = []
    rows: list[int] = []                      # centres[i] belongs to kept[rows[i]]
    for p in order:
        c = _centre(p)
        if c is not None and centres:
            sims = [float(np.dot(c, k)) if len(k) == len(c) else -1.0 for k in centres]
            best = int(np.argmax(sims))
            if sims[best] >= merge_sim:
                kept[rows[best]].append(p)
                continue
        kept.append([p])
        if c is not None:
            centres.append(c)
            rows.append(len(kept) - 1)
    return {g[0]["id"]: _folded(g) for g in kept}


def find(props: dict[str, dict], proposal_id: str) -> dict | None:
    """The (merged) proposal ``proposal_id`` is, or is a member of."""
    p = props.get(proposal_id)
    if p is not None:
        return p
    return next((q for q in props.values() if proposal_id in (q.get("merged_ids") or ())), None)


def ranked(props: dict[str, dict], status: str | None = "open") -> list[dict]:
    """Proposals by growth (then size), optionally of one status."""
    ps = [p for p in props.values() if status is None or p.get("status") == status]
    return sorted(ps, key=lambda p: (-float(p.get("growth") or 0), -int(p.get("size") or 0), p.get("id", "")))


class TrendBoard(Protocol):
    async def all(self) -> dict[str, dict]: ...
    async def decide(self, proposal_id: str, status: str, detector: str = "", by: str = "", of: str = "") -> None: ...


def _decision(proposal_id: str, status: str, detector: str, by: str, of: str = "") -> dict:
    """A decision record; ``of``: the wave's kept id when ``proposal_id`` is another worker's proposal of it
    (the workers count a wave's decision once, under its kept id)."""
    if status not in ("accepted", "rejected"):
        raise ConfigError(f"a decision is accepted or rejected, not {status!r}")
    return {"id": proposal_id, "status": status, "detector": detector, "by": by, "at": time.time(),
            "of": of or proposal_id}


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

    async def decide(self, proposal_id: str, status: str, detector: str = "", by: str = "", of: str = "") -> None:
        self.records.append(((proposal_id + DECISION_SUFFIX).encode(),
                             json.dumps(_decision(proposal_id, status, detector, by, of)).encode()))


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

    async def decide(self, proposal_id: str, status: str, detector: str = "", by: str = "", of: str = "") -> None:
        from aiokafka import AIOKafkaProducer

        from stream_app.worker.kafka_clients import aiokafka_producer_settings

        doc = _decision(proposal_id, status, detector, by, of)
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
    p = find(props, proposal_id)
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
    for pid in p.get("merged_ids") or [p["id"]]:      # every worker's proposal of the wave
        await board.decide(pid, "accepted", created["name"], by, of=p["id"])
    return created


async def reject(board: TrendBoard, proposal_id: str, *, by: str = "") -> None:
    p = await _open(board, proposal_id)
    for pid in p.get("merged_ids") or [p["id"]]:      # every worker's proposal of the wave
        await board.decide(pid, "rejected", "", by, of=p["id"])

"""The shared state in one process's memory: :class:`MemoryState`, the same contract as ``RedisState``
(``tests/worker/test_state.py`` checks both), for the service's unit tests and single-process tools. Nothing
survives the process and nothing is shared with another one.

Time-limited keys (heartbeats, locks, "seeds arriving", leases) expire by the wall clock, as in Redis;
the seed log's ids are ``"<n>-0"`` with ``n`` increasing, ordered like a Redis stream's.
"""
from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from stream_app.worker.state.base import State, vec_from_b64, vec_to_b64, verdict_change
from synapse_stream.messages import LabelMsg


def _log_id(entry_id: str) -> tuple[int, ...]:
    return tuple(int(x) for x in entry_id.split("-"))


class _Data:
    """Every store's dictionaries (one object shared by the stores, as Redis is shared by the Redis stores)."""

    def __init__(self) -> None:
        self.partitions: dict[str, int] = {}
        self.seen = 0                              # posts ever recorded
        self.parked: dict[str, dict[str, tuple]] = defaultdict(dict)   # detector -> post -> (vector, text)
        self.held: dict[str, dict] = {}            # id -> held label document (with "expires")
        self.lease: dict[str, float] = {}          # id -> leased until (0: free)
        self.sets: dict[tuple[str, str], set[str]] = defaultdict(set)       # (detector, queried|audited)
        self.flight: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        self.count: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.expiry: dict[tuple[str, str], float] = {}                     # (kind, name) -> wall time
        self.locks: dict[str, str] = {}
        self.entries: dict[str, dict[str, dict]] = defaultdict(dict)       # ledger: detector -> post -> entry
        self.history: dict[str, list[dict]] = defaultdict(list)
        self.audits: dict[str, dict[str, int]] = defaultdict(dict)
        self.seed_docs: dict[str, dict[str, str]] = defaultdict(dict)     # detector -> seed id -> JSON
        self.seedlog: list[tuple[str, str]] = []
        self.source: dict[str, dict[str, str]] = defaultdict(dict)
        self.source_count: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.vectors: dict[str, dict[str, str]] = defaultdict(dict)
        self.models: dict[str, dict] = {}
        self.versions: dict[str, int] = defaultdict(int)
        self.keys: dict[str, list] = {}
        self.summaries: dict[str, list[dict]] = defaultdict(list)
        self.truth: dict[str, int] = {}
        self.rate: dict[str, dict[int, int]] = defaultdict(dict)          # detector -> minute -> candidates

    def live(self, kind: str, name: str) -> bool:
        """A time-limited key (heartbeat, lock, "seeds arriving") that has not expired yet."""
        return self.expiry.get((kind, name), 0.0) > time.time()


class _Store:
    def __init__(self, data: _Data) -> None:
        self.d = data


class MemoryPosts(_Store):
    """Post id -> partition."""

    async def record(self, partitions: dict[str, int]) -> None:
        self.d.seen += sum(1 for pid in partitions if pid not in self.d.partitions)
        self.d.partitions.update({pid: int(p) for pid, p in partitions.items()})

    async def partition_of(self, post_id: str) -> int | None:
        return self.d.partitions.get(post_id)

    async def total(self) -> int:
        return self.d.seen

    async def forget(self, post_ids: Sequence[str]) -> None:
        for pid in post_ids:
            self.d.partitions.pop(pid, None)

    async def park(self, detector: str, items: dict[str, tuple[np.ndarray, str]]) -> None:
        for pid, (v, t) in items.items():
            self.d.parked[detector][pid] = (np.asarray(v, np.float32).copy(), str(t))

    async def parked(self, detector: str, post_id: str) -> tuple[np.ndarray, str] | None:
        got = self.d.parked[detector].get(post_id)
        return None if got is None else (got[0].copy(), got[1])

    async def unpark(self, detector: str, post_id: str) -> None:
        self.d.parked[detector].pop(post_id, None)


class MemoryHeldLabels(_Store):
    """Held label documents and their leases."""

    async def hold(self, doc: dict, expires: float, max_held: int) -> bool:
        if doc["id"] in self.d.held:
            return True
        if len(self.d.held) >= max_held:
            return False
        self.d.held[doc["id"]] = json.loads(json.dumps({**doc, "expires": expires}))
        self.d.lease[doc["id"]] = 0.0
        return True

    async def take(self, now: float, lease: float = 60.0, count: int = 10_000):
        out = []
        for hid in sorted((h for h, t in self.d.lease.items() if t <= now), key=lambda h: (self.d.lease[h], h))[:count]:
            doc = self.d.held[hid]
            part = self.d.partitions.get(doc["post_id"])
            if part is not None or doc["expires"] <= now:
                self.d.lease[hid] = now + lease
                out.append((copy.deepcopy(doc), part))
        return out

    async def drop(self, ids: Sequence[str]) -> None:
        for hid in ids:
            self.d.held.pop(hid, None)
            self.d.lease.pop(hid, None)

    async def count(self) -> int:
        return len(self.d.held)


class MemoryClaims(_Store):
    """The queried and audited sets, candidates in flight."""

    async def claim_many(self, items: Sequence[tuple[str, str]], owner: str = "-",
                         messages: Sequence[bytes | str] | None = None,
                         sets: Sequence[str] | None = None) -> list[bool]:
        out = []
        for i, (det, pid) in enumerate(items):
            which = sets[i] if sets is not None else "queried"
            first = pid not in self.d.sets[(det, which)]
            if first:
                self.d.sets[(det, which)].add(pid)
                msg = messages[i] if messages is not None else b""
                msg = msg.decode("utf-8") if isinstance(msg, bytes) else msg
                if msg:
                    self.d.flight[det][pid] = (owner, msg)
                self.d.count[det][which] += 1
            out.append(first)
        return out

    async def sent(self, items: Sequence[tuple[str, str]]) -> None:
        for det, pid in items:
            self.d.flight[det].pop(pid, None)

    async def inflight(self, detector: str) -> dict[str, tuple[str, str]]:
        return dict(self.d.flight[detector])

    async def orphans(self, detector: str, me: str) -> dict[str, str]:
        return {pid: msg for pid, (owner, msg) in self.d.flight[detector].items()
                if owner != me and not self.d.live("worker", owner)}

    async def queried(self, detector: str) -> set[str]:
        return set(self.d.sets[(detector, "queried")])

    async def audited(self, detector: str) -> set[str]:
        return set(self.d.sets[(detector, "audited")])


class MemoryWorkers(_Store):
    """Heartbeats and locks that expire by the wall clock."""

    async def heartbeat(self, worker_id: str, ttl: float = 15.0) -> None:
        self.d.expiry[("worker", worker_id)] = time.time() + ttl

    async def alive(self, worker_id: str) -> bool:
        return self.d.live("worker", worker_id)

    async def lock(self, name: str, owner: str, ttl: float = 60.0) -> bool:
        if self.d.live("lock", name):
            return False
        self.d.locks[name] = owner
        self.d.expiry[("lock", name)] = time.time() + ttl
        return True

    async def unlock(self, name: str, owner: str) -> None:
        if self.d.live("lock", name) and self.d.locks.get(name) == owner:
            self.d.expiry.pop(("lock", name), None)
            self.d.locks.pop(name, None)


class MemoryVerdicts(_Store):
    """Ledger, history, counters, audit verdicts, true positives."""

    async def record(self, msg: LabelMsg) -> tuple[int | None, int]:
        entry = {"label": msg.label, "labeler": msg.labeler, "ts": msg.ts, "received_at": time.time()}
        prev, overruled, deltas = verdict_change(self.d.entries[msg.detector].get(msg.post_id), msg)
        self.d.history[msg.detector].append({"post_id": msg.post_id, **entry})
        if not overruled:
            self.d.entries[msg.detector][msg.post_id] = entry
        for name, n in deltas.items():
            self.d.count[msg.detector][name] += n
        return prev, (prev if overruled else msg.label)

    async def ledger(self, detector: str) -> dict[str, int]:
        return {pid: e["label"] for pid, e in self.d.entries[detector].items()}

    async def labels_of(self, detector: str, post_ids: Sequence[str]) -> dict[str, int]:
        led = self.d.entries[detector]
        return {pid: led[pid]["label"] for pid in post_ids if pid in led}

    async def history(self, detector: str) -> list[dict]:
        return copy.deepcopy(self.d.history[detector])

    async def counters(self, detector: str) -> dict[str, int]:
        return dict(self.d.count[detector])

    async def record_audit(self, msg: LabelMsg) -> None:
        self.d.history[msg.detector].append({"post_id": msg.post_id, "label": msg.label, "labeler": msg.labeler,
                                           "audit": 1, "ts": msg.ts, "received_at": time.time()})
        self.d.audits[msg.detector][msg.post_id] = int(msg.label)

    async def audit_ledger(self, detector: str) -> dict[str, int]:
        return dict(self.d.audits[detector])

    async def set_truth_positives(self, detector: str, n: int) -> None:
        self.d.truth[detector] = int(n)

    async def truth_positives(self, detector: str) -> int | None:
        return self.d.truth.get(detector)


class MemorySeeds(_Store):
    """Seed documents and the seed log."""

    async def register(self, detector: str, seed_id: str, origin: str, text: str, vector: np.ndarray) -> bool:
        if seed_id in self.d.seed_docs[detector]:
            return False
        doc = json.dumps({"detector": detector, "id": seed_id, "origin": origin, "text": text,
                          "vector": vec_to_b64(vector)})
        self.d.seed_docs[detector][seed_id] = doc
        self.d.seedlog.append((f"{len(self.d.seedlog) + 1}-0", doc))
        return True

    async def all(self, detector: str) -> list[dict]:
        return [json.loads(v) for v in self.d.seed_docs[detector].values()]

    async def read_log(self, last_id: str = "0", block_ms: int | None = 1000, count: int = 500):
        after = _log_id(last_id)
        deadline = time.monotonic() + (block_ms or 0) / 1000
        while True:
            new = [(i, d) for i, d in self.d.seedlog if _log_id(i) > after][:count]
            if new or block_ms is None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        out = []
        for entry_id, raw in new:
            doc = json.loads(raw)
            doc["vector"] = vec_from_b64(doc["vector"])
            out.append((entry_id, doc))
        return out

    async def arriving(self, detector: str, seconds: float) -> None:
        self.d.expiry[("seeds-arriving", detector)] = time.time() + max(0.001, seconds)

    async def settled(self, detector: str) -> bool:
        return not self.d.live("seeds-arriving", detector)


class MemoryRoundSources(_Store):
    """Post -> source of the round that sent it; per-source counts."""

    async def record(self, detector: str, sources: dict[str, str]) -> None:
        self.d.source[detector].update(sources)
        for src in sources.values():
            self.d.source_count[detector][f"{src}:queried"] += 1

    async def all(self, detector: str) -> dict[str, str]:
        return dict(self.d.source[detector])

    async def source_of(self, detector: str, post_id: str) -> str | None:
        return self.d.source[detector].get(post_id)

    async def count_verdict(self, detector: str, source: str, label: int) -> None:
        self.d.source_count[detector][f"{source}:answered"] += 1
        self.d.source_count[detector][f"{source}:positives"] += int(label)

    async def counters(self, detector: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for key, v in self.d.source_count[detector].items():
            src, _, what = key.partition(":")
            out.setdefault(src, {})[what] = int(v)
        return out


class MemoryRateBudget(_Store):
    """Candidates per minute over the last hour (the same rule as Redis: minutes older than 60 are dropped)."""

    def _window(self, detector: str, now: float | None) -> tuple[int, int]:
        minute = int((time.time() if now is None else now) // 60)
        buckets = self.d.rate[detector]
        for m in [m for m in buckets if m <= minute - 60]:
            del buckets[m]
        return minute, sum(buckets.values())

    async def reserve(self, detector: str, n: int, per_hour: int | None, now: float | None = None) -> int:
        minute, used = self._window(detector, now)
        grant = int(n) if per_hour is None else max(0, min(int(n), int(per_hour) - used))
        if grant:
            self.d.rate[detector][minute] = self.d.rate[detector].get(minute, 0) + grant
        return grant

    async def refund(self, detector: str, n: int, now: float | None = None) -> None:
        if n > 0:
            minute, _ = self._window(detector, now)
            self.d.rate[detector][minute] = self.d.rate[detector].get(minute, 0) - int(n)

    async def spent(self, detector: str, now: float | None = None) -> int:
        return self._window(detector, now)[1]


class MemoryModels(_Store):
    """Training vectors and classifier versions."""

    async def store_vectors(self, detector: str, vectors: dict[str, np.ndarray]) -> None:
        self.d.vectors[detector].update({pid: vec_to_b64(v) for pid, v in vectors.items()})

    async def vectors(self, detector: str) -> dict[str, np.ndarray]:
        return {pid: vec_from_b64(v) for pid, v in self.d.vectors[detector].items()}

    async def next_version(self, detector: str) -> int:
        self.d.versions[detector] += 1
        return self.d.versions[detector]

    async def publish(self, detector: str, doc: dict, summary: dict, key: list | None = None) -> None:
        cur = self.d.models.get(detector)
        if cur is not None and int(cur["version"]) >= int(doc["version"]):
            return
        self.d.models[detector] = json.loads(json.dumps(doc))
        self.d.summaries[detector].append(json.loads(json.dumps(summary)))
        if key is not None:
            self.d.keys[detector] = list(key)

    async def key(self, detector: str) -> list | None:
        return self.d.keys.get(detector)

    async def current(self, detector: str) -> dict | None:
        return copy.deepcopy(self.d.models.get(detector))

    async def history(self, detector: str) -> list[dict]:
        return copy.deepcopy(self.d.summaries[detector])


class MemoryState(State):
    """Dictionaries behind the :class:`~stream_app.worker.state.base.State` interface (one event loop)."""

    def __init__(self) -> None:
        self.data = _Data()
        self._build()

    def _build(self) -> None:
        data = self.data
        self.posts, self.held, self.claims = MemoryPosts(data), MemoryHeldLabels(data), MemoryClaims(data)
        self.workers, self.verdicts, self.seeds = MemoryWorkers(data), MemoryVerdicts(data), MemorySeeds(data)
        self.rounds, self.models, self.rate = MemoryRoundSources(data), MemoryModels(data), MemoryRateBudget(data)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    async def wipe(self, detectors: Iterable[str]) -> None:
        self.data = _Data()
        self._build()

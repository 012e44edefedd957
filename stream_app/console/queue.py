"""The review queue with leases and the undo buffer: the interface (:class:`ReviewQueue`) and its in-memory
implementation (:class:`MemoryReviewQueue`, one process: unit tests). ``queue_redis.RedisReviewQueue`` is the
shared one (several console processes, restarts); ``tests/console/test_queue.py`` runs one contract over both.

The rules, the same in both:

* **Queued** candidates are free, or **leased** to one moderator until the lease expires (then free again; the
  moderator who had it gets it back if nobody took it meanwhile). Leasing is atomic: two moderators never
  hold the same candidate at once. :meth:`ReviewQueue.lease` returns the moderator's own leases first (in the
  order taken, renewed), then takes free ones, oldest first, up to ``n`` (the item shown and the prefetched ones).
* **Skip** gives a candidate back to the others; the moderator who skipped it is not offered it again.
* **Decide** needs the moderator's lease; the candidate leaves the queue for everyone at once and its decision is
  **held** for the grace period. **Undo** takes back the moderator's latest held decision and leases the
  candidate to them again, at the front. Once the grace period is over the publisher :meth:`due` takes the
  decision (leased to the publisher, so a publisher that dies leaves it for another), publishes it to
  ``labels`` and calls :meth:`published`. Undo is refused from then on.
* A candidate once decided (or answered elsewhere, :meth:`answered`) never enters the queue again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

from stream_app.console.items import Decision, Lease, ReviewItem, split_key

UNDO_DEPTH = 50          # undo remembers this many of a moderator's latest decisions (those still held)
PUBLISH_LEASE = 30.0     # a publisher that took due decisions has this long to publish them


@dataclass(frozen=True)
class QueueStats:
    queued: dict[str, int] = field(default_factory=dict)    # per detector: candidates waiting (free or leased)
    leased: dict[str, int] = field(default_factory=dict)    # ... of those, leased right now
    held: int = 0                                           # decisions in their grace period

    def total(self) -> int:
        return sum(self.queued.values())


class ReviewQueue(Protocol):
    """Candidates waiting for moderators, leases, decisions held for undo (every method a coroutine; ``now``
    is the wall clock, passed in so tests control time)."""

    lease_seconds: float
    grace_seconds: float

    async def add(self, items: Sequence[ReviewItem], now: float) -> int: ...
    async def lease(self, moderator: str, n: int, now: float, detectors: Iterable[str] | None = None) -> list[Lease]: ...
    async def skip(self, moderator: str, key: str, now: float) -> bool: ...
    async def release(self, moderator: str, now: float) -> int: ...
    async def decide(self, moderator: str, key: str, label: int, now: float) -> Decision | None: ...
    async def undo(self, moderator: str, now: float) -> ReviewItem | None: ...
    async def due(self, now: float, limit: int = 500) -> list[Decision]: ...
    async def published(self, keys: Sequence[str]) -> None: ...
    async def answered(self, keys: Sequence[str]) -> int: ...
    async def stats(self, now: float) -> QueueStats: ...


def _wanted(key: str, detectors: set[str] | None) -> bool:
    return detectors is None or split_key(key)[0] in detectors


class MemoryReviewQueue:
    """:class:`ReviewQueue` in one process's memory."""

    def __init__(self, lease_seconds: float = 120.0, grace_seconds: float = 10.0) -> None:
        self.lease_seconds = float(lease_seconds)
        self.grace_seconds = float(grace_seconds)
        self.items: dict[str, ReviewItem] = {}
        self.available: dict[str, float] = {}      # key -> free from (a lease's expiry, or the arrival time)
        self.arrival: dict[str, tuple[float, int]] = {}
        self.owner: dict[str, str] = {}             # key -> moderator holding (or who last held) its lease
        self.mine: dict[str, dict[str, float]] = {}  # moderator -> key -> order of taking
        self.skipped: dict[str, set[str]] = {}
        self.done: set[str] = set()
        self.held: dict[str, tuple[Decision, float]] = {}   # key -> (decision, free for a publisher from)
        self.undo_stack: dict[str, list[str]] = {}
        self._seq = 0

    async def add(self, items: Sequence[ReviewItem], now: float) -> int:
        n = 0
        for it in items:
            k = it.key
            if k in self.done or k in self.items or k in self.held:
                continue
            self._seq += 1
            self.items[k], self.available[k], self.arrival[k] = it, now, (now, self._seq)
            n += 1
        return n

    def _give(self, moderator: str, key: str, now: float, order: float) -> None:
        self.available[key] = now + self.lease_seconds
        self.owner[key] = moderator
        self.mine.setdefault(moderator, {})[key] = order

    async def lease(self, moderator: str, n: int, now: float, detectors: Iterable[str] | None = None) -> list[Lease]:
        want = set(detectors) if detectors is not None else None
        mine = self.mine.setdefault(moderator, {})
        out: list[Lease] = []
        for k, order in sorted(mine.items(), key=lambda kv: kv[1]):
            if k not in self.items or self.owner.get(k) != moderator:
                del mine[k]
                continue
            if len(out) < n and _wanted(k, want):
                self._give(moderator, k, now, order)
                out.append(Lease(self.items[k], moderator, self.available[k]))
        if len(out) < n:
            skipped = self.skipped.get(moderator, set())
            free = sorted((k for k, t in self.available.items() if t <= now and k not in mine and k not in skipped
                           and _wanted(k, want)), key=lambda k: (self.available[k], self.arrival[k]))
            for k in free[:n - len(out)]:
                self._give(moderator, k, now, now + len(out) * 1e-5)
                out.append(Lease(self.items[k], moderator, self.available[k]))
        return out

    async def skip(self, moderator: str, key: str, now: float) -> bool:
        if self.owner.get(key) != moderator or key not in self.items:
            return False
        self.available[key] = now
        del self.owner[key]
        self.mine.get(moderator, {}).pop(key, None)
        self.skipped.setdefault(moderator, set()).add(key)
        return True

    async def release(self, moderator: str, now: float) -> int:
        """Every lease of ``moderator`` back to the queue at once (log-out)."""
        n = 0
        for k in list(self.mine.get(moderator, {})):
            if self.owner.get(k) == moderator and k in self.items:
                self.available[k] = now
                del self.owner[k]
                n += 1
        self.mine.pop(moderator, None)
        return n

    async def decide(self, moderator: str, key: str, label: int, now: float) -> Decision | None:
        if label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {label!r}")
        if self.owner.get(key) != moderator or key not in self.items:
            return None
        it = self.items.pop(key)
        self.available.pop(key, None)
        self.arrival.pop(key, None)
        del self.owner[key]
        self.mine.get(moderator, {}).pop(key, None)
        self.done.add(key)
        d = Decision(it, moderator, int(label), now, now + self.grace_seconds)
        self.held[key] = (d, d.due)
        stack = self.undo_stack.setdefault(moderator, [])
        stack.append(key)
        del stack[:-UNDO_DEPTH]
        return d

    async def undo(self, moderator: str, now: float) -> ReviewItem | None:
        stack = self.undo_stack.get(moderator, [])
        while stack:
            k = stack.pop()
            h = self.held.get(k)
            if h is None or h[0].moderator != moderator:
                continue
            if h[0].due <= now:
                stack.clear()   # published or being published: this one and every older one are final
                return None
            d = h[0]
            del self.held[k]
            self.done.discard(k)
            self.items[k] = d.item
            self._seq += 1
            self.arrival[k] = (d.decided_at, self._seq)
            self._give(moderator, k, now, -now)
            return d.item
        return None

    async def due(self, now: float, limit: int = 500) -> list[Decision]:
        out = []
        for k, (d, free) in sorted(self.held.items(), key=lambda kv: kv[1][1]):
            if free > now or len(out) >= limit:
                continue
            self.held[k] = (d, now + PUBLISH_LEASE)
            out.append(d)
        return out

    async def published(self, keys: Sequence[str]) -> None:
        for k in keys:
            self.held.pop(k, None)

    async def answered(self, keys: Sequence[str]) -> int:
        """Candidates answered elsewhere (a label seen on the topic): out of every queue, never queued again."""
        n = 0
        for k in keys:
            if k in self.held:
                continue    # this console's own decision, still in its grace period
            if k in self.items:
                del self.items[k]
                self.available.pop(k, None)
                self.arrival.pop(k, None)
                m = self.owner.pop(k, None)
                if m is not None:
                    self.mine.get(m, {}).pop(k, None)
                n += 1
            self.done.add(k)
        return n

    async def stats(self, now: float) -> QueueStats:
        queued: dict[str, int] = {}
        leased: dict[str, int] = {}
        for k, t in self.available.items():
            det = split_key(k)[0]
            queued[det] = queued.get(det, 0) + 1
            if t > now:
                leased[det] = leased.get(det, 0) + 1
        return QueueStats(queued, leased, len(self.held))

"""One detector's books: its positives, the latest verdict per post, the posts sent to the oracle.

Every candidate source reads them (through a round's :class:`~synapse_stream.methods.base.LoopState`), the
online IBG engine keeps its windows beside them, and the streaming layer restores them from the ledger after a
restart. Kept apart from any one source so that a detector whose candidates come from rounds has the same books
as one on online IBG.

>>> import numpy as np
>>> from synapse_stream.seeds import Seed
>>> b = DetectorBooks(2)
>>> b.seeds.add(Seed("s1", "a seed"), np.array([1.0, 0.0], np.float32))
True
>>> b.queried.add("p1"); b.record("p1", 1)
>>> b.stats()["precision"], b.pending()
(1.0, set())
"""
from __future__ import annotations

from .exceptions import MessageError
from .seeds import SeedSet


class DetectorBooks:
    """Seeds (synthetic, manual and confirmed: :class:`~synapse_stream.seeds.SeedSet`), ``labels`` (latest
    verdict per post), ``queried`` (every post ever sent) and the confirmed positives overturned since
    (``retracted``: they no longer count as positives). Memory O(|seeds| · d + |labels| + |queried|)."""

    def __init__(self, dim: int) -> None:
        self.seeds = SeedSet(dim)
        self.labels: dict[str, int] = {}
        self.queried: set[str] = set()
        self._retracted: set[str] = set()

    @property
    def retracted(self) -> frozenset[str]:
        return frozenset(self._retracted)

    def record(self, post_id: str, label: int) -> int | None:
        """Record a verdict (the latest wins); the previous one (None: the post's first)."""
        if label not in (0, 1) or isinstance(label, bool):
            raise MessageError("bad_label", f"label must be 0 or 1, got {label!r}")
        previous = self.labels.get(post_id)
        self.labels[post_id] = int(label)
        return previous

    def retract(self, seed_id: str) -> bool:
        """A confirmed positive was overturned: its vector stops counting (cos 0 with everything). False if it
        is not a seed."""
        if seed_id not in self.seeds:
            return False
        self._retracted.add(seed_id)
        self.seeds.matrix[self.seeds.position(seed_id)] = 0.0
        return True

    def reinstate(self, seed_id: str, vector) -> bool:
        """An overturned positive confirmed again: its vector counts again. False if it was not retracted."""
        if seed_id not in self._retracted:
            return False
        self._retracted.discard(seed_id)
        self.seeds.matrix[self.seeds.position(seed_id)] = vector
        return True

    def pending(self) -> set[str]:
        """Sent, no verdict yet."""
        return self.queried - self.labels.keys()

    def stats(self, name: str = "") -> dict:
        answered = [self.labels[p] for p in self.queried if p in self.labels]
        positives = sum(answered)
        counts = self.seeds.counts()
        counts["active"] = len(self.seeds) - len(self._retracted)
        return {
            "detector": name,
            "seeds": counts,
            "queried": len(self.queried),
            "answered": len(answered),
            "pending": len(self.queried) - len(answered),
            "confirmed_positives": positives,
            "precision": positives / len(answered) if answered else None,
        }

"""Arrival-rate bursts: a group's share of the recent traffic tested against its own history.

:class:`RateHistory` counts arrivals in event-time bins of ``bin_seconds`` and keeps only the last
``bins`` of them (a ring: memory O(bins) per group, never O(stream)). :func:`burst_test` asks whether the
group's count in the recent bins is improbably high given its share of the traffic before them: a one-sided
binomial test ``k ~ Bin(n, p0)`` where ``k`` is the group's recent count, ``n`` the recent count of all posts
and ``p0`` the group's historical share (floored at ``p_floor``, the share a group with no history is
assumed to have). Testing a *share* rather than a count keeps a rising overall volume from looking like a
burst of every group.

>>> g, total = RateHistory(3600, 24), RateHistory(3600, 24)
>>> for h in range(20):                      # 100 posts an hour, the group 1 of them, for 20 h
...     total.add(h * 3600.0, 100); g.add(h * 3600.0, 1)
>>> total.add(20 * 3600.0, 100); g.add(20 * 3600.0, 12)    # then 12 in one hour
>>> t = burst_test(g, total, now=20 * 3600.0, recent_bins=1, p_floor=0.002)
>>> t.k, t.n, round(t.p0, 3), t.p_value < 1e-5
(12, 100, 0.01, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import bdtrc


class RateHistory:
    """Counts per event-time bin, the last ``bins`` bins only (older ones are forgotten as time moves on)."""

    __slots__ = ("bin_seconds", "bins", "_counts", "_head")

    def __init__(self, bin_seconds: float, bins: int) -> None:
        if bin_seconds <= 0 or bins < 2:
            raise ValueError("bin_seconds must be > 0 and bins >= 2")
        self.bin_seconds = float(bin_seconds)
        self.bins = int(bins)
        self._counts: dict[int, float] = {}     # bin number -> count; at most ``bins`` keys
        self._head = -(1 << 62)                  # the newest bin number seen

    def bin_of(self, ts: float) -> int:
        return int(math.floor(ts / self.bin_seconds))

    def add(self, ts: float, count: float = 1.0) -> None:
        b = self.bin_of(ts)
        if b > self._head:
            self._head = b
            self._forget()
        if b <= self._head - self.bins:
            return                               # older than the ring: forgotten already
        self._counts[b] = self._counts.get(b, 0.0) + count

    def advance(self, ts: float) -> None:
        """Move the newest bin to ``ts`` (bins that fall out of the ring are dropped)."""
        b = self.bin_of(ts)
        if b > self._head:
            self._head = b
            self._forget()

    def _forget(self) -> None:
        low = self._head - self.bins
        for b in [b for b in self._counts if b <= low]:
            del self._counts[b]

    def split(self, now: float, recent_bins: int) -> tuple[float, float]:
        """``(count in the last recent_bins bins up to now, count in the older bins of the ring)``."""
        cut = self.bin_of(now) - recent_bins
        recent = old = 0.0
        for b, c in self._counts.items():
            if b > cut:
                recent += c
            else:
                old += c
        return recent, old

    def series(self, now: float) -> list[tuple[float, float]]:
        """``[(bin start, count)]`` for every bin of the ring up to ``now``, oldest first (zeros included)."""
        head = self.bin_of(now)
        return [(b * self.bin_seconds, self._counts.get(b, 0.0)) for b in range(head - self.bins + 1, head + 1)]

    def __len__(self) -> int:
        return len(self._counts)


@dataclass(frozen=True)
class BurstTest:
    k: int              # the group's posts in the recent bins
    n: int              # all posts in the recent bins
    p0: float           # the group's share before them (floored)
    p_value: float      # P(X >= k), X ~ Bin(n, p0)

    @property
    def lift(self) -> float:
        """Recent share over historical share: the growth factor proposals are ranked by."""
        return (self.k / self.n) / self.p0 if self.n else 0.0


def burst_test(group: RateHistory, total: RateHistory, *, now: float, recent_bins: int,
               p_floor: float) -> BurstTest:
    """The one-sided binomial test of the module docstring."""
    k, k_old = group.split(now, recent_bins)
    n, n_old = total.split(now, recent_bins)
    p0 = max(p_floor, k_old / n_old if n_old > 0 else 0.0)
    p0 = min(p0, 1.0)
    k, n = int(round(k)), int(round(n))
    p = float(bdtrc(k - 1, n, p0)) if k > 0 and n > 0 else 1.0   # P(X > k - 1), a ufunc: ~1 us
    return BurstTest(k, n, p0, p)

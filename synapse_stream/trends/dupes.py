"""Near-duplicate floods: the same text copy-pasted (with small edits), a signature of campaigns.

Each text is normalised (:func:`normalise`: case folded, URLs and @mentions dropped, digits replaced,
punctuation and runs of spaces collapsed), cut into character 5-shingles and summarised by a MinHash signature
of ``perms`` hashes; locality-sensitive hashing over ``bands`` bands of ``perms / bands`` rows puts texts whose
shingle sets are alike into a shared bucket (128 hashes in 16 bands of 8: a pair at Jaccard 0.5 shares one 6 %
of the time, at 0.7 56 %, at 0.8 94 %). A text joins the group of a bucket it shares if its signature agrees
with the group founder's on at least ``min_jaccard`` of the hashes (the estimated Jaccard similarity: no chains
of loosely similar texts drifting into one group); otherwise it founds a new group.

Bounds: at most ``max_buckets`` band buckets and ``max_buckets / bands`` founder signatures (least recently
used dropped first), so memory is O(max_buckets) whatever the stream; and, by event time, with a ``horizon``,
buckets and founders not used for ``horizon`` seconds (the event time of the last text that used them against
the newest event time seen) are dropped after each text, from the old end of the same least-recently-used order
(so a steady stream holds about ``horizon`` seconds' worth of buckets, not the cap). Event times that go back
(late posts) keep that order only roughly: an entry used by a late text is dropped when it reaches the old end.
Texts shorter than ``min_chars`` once normalised are not grouped (an "ok" or a bare link is no campaign).

>>> d = NearDupIndex()
>>> a = d.assign("WIN a FREE iPhone now!!! click http://x.co/1 @bob")
>>> b = d.assign("win a free iphone NOW - click http://y.co/2 @alice")
>>> c = d.assign("the council meets on tuesday to discuss the budget")
>>> a == b, a == c
(True, False)
>>> d = NearDupIndex(horizon=3600)
>>> a = d.assign("WIN a FREE iPhone now!!! click http://x.co/1 @bob", ts=0)
>>> _ = d.assign("the council meets on tuesday to discuss the budget", ts=7200)
>>> len(d), d.assign("win a free iphone NOW - click http://y.co/2 @alice", ts=7300) == a   # forgotten
(16, False)
"""
from __future__ import annotations

import math
import re
import zlib
from collections import OrderedDict

import numpy as np

_URL = re.compile(r"https?://\S+|www\.\S+", re.I)
_MENTION = re.compile(r"@\w+")
_DIGITS = re.compile(r"\d+")
_NONWORD = re.compile(r"[\W_]+", re.UNICODE)
_PRIME = (1 << 61) - 1


def normalise(text: str) -> str:
    """The text as compared for near-duplicates.

    >>> normalise("Hey @bob!!  Visit https://t.co/x NOW, 100% free")
    'hey visit now n free'
    """
    t = _URL.sub(" ", text.casefold())
    t = _MENTION.sub(" ", t)
    t = _DIGITS.sub(" n ", t)
    return " ".join(_NONWORD.sub(" ", t).split())


class NearDupIndex:
    """MinHash-LSH grouping of near-duplicate texts (see the module docstring)."""

    def __init__(self, *, perms: int = 128, bands: int = 16, shingle: int = 5, min_chars: int = 20,
                 min_jaccard: float = 0.6, max_buckets: int = 200_000, horizon: float | None = None,
                 seed: int = 1) -> None:
        if perms % bands:
            raise ValueError("perms must be a multiple of bands")
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, _PRIME, size=perms, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=perms, dtype=np.uint64)
        self.bands, self.rows = bands, perms // bands
        self.shingle, self.min_chars, self.max_buckets = shingle, min_chars, max_buckets
        self.min_jaccard = float(min_jaccard)
        if horizon is not None and not horizon > 0:
            raise ValueError("horizon must be > 0 (or None: no time bound)")
        self.horizon = None if horizon is None else float(horizon)
        # least recently used first; the event time of their last use beside each value
        self._buckets: OrderedDict[bytes, tuple[str, float]] = OrderedDict()   # band key -> (group id, last used)
        self._founders: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()   # group -> (signature, last used)
        self._next = 0
        self.now = -math.inf            # the newest event time seen

    def __len__(self) -> int:
        return len(self._buckets)

    def signature(self, norm: str) -> np.ndarray:
        sh = {norm[i:i + self.shingle] for i in range(max(1, len(norm) - self.shingle + 1))}
        x = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in sh), dtype=np.uint64, count=len(sh))
        # (a*x + b) mod p, in uint64 with wraparound: x < 2**32 and a < 2**61 would overflow, so take a mod 2**32
        h = (x[:, None] * (self.a[None, :] & np.uint64(0xFFFFFFFF)) + self.b[None, :]) % np.uint64(_PRIME)
        return h.min(axis=0)

    def assign(self, text: str, ts: float | None = None) -> str | None:
        """The near-duplicate group of ``text`` (a new one if it matches none); None if too short. ``ts``: its
        event time (None: the newest seen so far), for the ``horizon``."""
        norm = normalise(text)
        if len(norm) < self.min_chars:
            return None
        t = self.now if ts is None else float(ts)
        self.now = max(self.now, t)
        sig = self.signature(norm)
        keys = [bytes([i]) + sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]
        group = None
        for k in keys:
            hit = self._buckets.get(k)
            if hit is not None and hit[0] != group:
                f = self._founders.get(hit[0])
                if f is not None and float((f[0] == sig).mean()) >= self.min_jaccard:
                    group = hit[0]
                    break
        if group is None:
            group = f"d{self._next}"
            self._next += 1
            self._founders[group] = (sig, t)
            while len(self._founders) > max(1, self.max_buckets // self.bands):
                self._founders.popitem(last=False)
        else:
            self._founders[group] = (self._founders[group][0], t)
            self._founders.move_to_end(group)
        for k in keys:
            self._buckets[k] = (group, t)            # a bucket leads to the newest group that shares it
            self._buckets.move_to_end(k)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        self.expire()
        return group

    def expire(self, now: float | None = None) -> int:
        """Drop the buckets and founders last used more than ``horizon`` seconds before ``now`` (default: the
        newest event time seen); returns the buckets dropped. Nothing without a horizon."""
        if self.horizon is None:
            return 0
        cut = (self.now if now is None else float(now)) - self.horizon
        dropped = 0
        while self._buckets and next(iter(self._buckets.values()))[1] < cut:
            self._buckets.popitem(last=False)
            dropped += 1
        while self._founders and next(iter(self._founders.values()))[1] < cut:
            self._founders.popitem(last=False)
        return dropped

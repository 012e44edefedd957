"""Near-duplicate floods: the same text copy-pasted (with small edits), a signature of campaigns.

Each text is normalised (:func:`normalise`: case folded, URLs and @mentions dropped, digits replaced,
punctuation and runs of spaces collapsed), cut into character 5-shingles and summarised by a MinHash signature
of ``perms`` hashes; locality-sensitive hashing over ``bands`` bands of ``perms / bands`` rows puts texts whose
shingle sets are alike into a shared bucket (128 hashes in 16 bands of 8: a pair at Jaccard 0.5 shares one 6 %
of the time, at 0.7 56 %, at 0.8 94 %). A text joins the group of a bucket it shares if its signature agrees
with the group founder's on at least ``min_jaccard`` of the hashes (the estimated Jaccard similarity: no chains
of loosely similar texts drifting into one group); otherwise it founds a new group.

Bounds: at most ``max_buckets`` band buckets and ``max_buckets / bands`` founder signatures (least recently
used dropped first), so memory is O(max_buckets) whatever the stream. Texts shorter than ``min_chars`` once normalised are not grouped (an
"ok" or a bare link is no campaign).

>>> d = NearDupIndex()
>>> a = d.assign("WIN a FREE iPhone now!!! click http://x.co/1 @bob")
>>> b = d.assign("win a free iphone NOW - click http://y.co/2 @alice")
>>> c = d.assign("the council meets on tuesday to discuss the budget")
>>> a == b, a == c
(True, False)
"""
from __future__ import annotations

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
                 min_jaccard: float = 0.6, max_buckets: int = 200_000, seed: int = 1) -> None:
        if perms % bands:
            raise ValueError("perms must be a multiple of bands")
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, _PRIME, size=perms, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=perms, dtype=np.uint64)
        self.bands, self.rows = bands, perms // bands
        self.shingle, self.min_chars, self.max_buckets = shingle, min_chars, max_buckets
        self.min_jaccard = float(min_jaccard)
        self._buckets: OrderedDict[bytes, str] = OrderedDict()   # band key -> group id
        self._founders: OrderedDict[str, np.ndarray] = OrderedDict()   # group id -> its first text's signature
        self._next = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def signature(self, norm: str) -> np.ndarray:
        sh = {norm[i:i + self.shingle] for i in range(max(1, len(norm) - self.shingle + 1))}
        x = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in sh), dtype=np.uint64, count=len(sh))
        # (a*x + b) mod p, in uint64 with wraparound: x < 2**32 and a < 2**61 would overflow, so take a mod 2**32
        h = (x[:, None] * (self.a[None, :] & np.uint64(0xFFFFFFFF)) + self.b[None, :]) % np.uint64(_PRIME)
        return h.min(axis=0)

    def assign(self, text: str) -> str | None:
        """The near-duplicate group of ``text`` (a new one if it matches none); None if too short."""
        norm = normalise(text)
        if len(norm) < self.min_chars:
            return None
        sig = self.signature(norm)
        keys = [bytes([i]) + sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]
        group = None
        for k in keys:
            g = self._buckets.get(k)
            if g is not None and g != group:
                f = self._founders.get(g)
                if f is not None and float((f == sig).mean()) >= self.min_jaccard:
                    group = g
                    break
        if group is None:
            group = f"d{self._next}"
            self._next += 1
            self._founders[group] = sig
            while len(self._founders) > max(1, self.max_buckets // self.bands):
                self._founders.popitem(last=False)
        else:
            self._founders.move_to_end(group)
        for k in keys:
            if self._buckets.get(k) == group:
                self._buckets.move_to_end(k)
            else:
                self._buckets[k] = group             # a bucket leads to the newest group that shares it
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return group

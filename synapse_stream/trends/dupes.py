"""Near-duplicate floods: the same text copy-pasted (with small edits), a signature of campaigns.

Each text is normalised (:func:`normalise`: case folded, URLs and @mentions dropped, digits replaced,
punctuation and runs of spaces collapsed), cut into character 5-shingles and summarised by a MinHash signature
of ``perms`` hashes; locality-sensitive hashing over ``bands`` bands of ``perms / bands`` rows puts texts whose
shingle sets are alike into a shared bucket (128 hashes in 16 bands of 8: a pair at Jaccard 0.5 shares one 6 %
of the time, at 0.7 56 %, at 0.8 94 %). A text joins the group of a bucket it shares if its signature agrees
with the group founder's on at least ``min_jaccard`` of the hashes (the estimated Jaccard similarity: no chains
of loosely similar texts drifting into one group); otherwise it founds a new group.

The ``perms`` hash functions are multiply-add-shift (Dietzfelbinger 1996): ``(a * x + b) mod 2**64 >> 32``
with random 64-bit ``a``, ``b``, a strongly universal family from 32-bit shingle hashes ``x`` to 32-bit values,
computed with uint64 arithmetic that wraps (no modulus pass: 1.7x faster than the Mersenne-prime family used
before, measured with ``bench/trends_core.py``; a snapshot signed with that family is not reused,
:mod:`~synapse_stream.trends.snapshot`).

Cost: :meth:`NearDupIndex.assign_batch` signs a whole batch at once (:meth:`~NearDupIndex.signatures`): the
crc32 of every 5-shingle of the batch's ASCII texts in numpy (a table-driven crc32 over a sliding window of
their bytes; other texts' shingles through :func:`zlib.crc32`), then, ``block`` texts at a time (so the
``[shingles, perms]`` array of hashes stays in the cache: about 3x faster than one array for a batch of 256),
the ``perms`` hashes of their shingles in one product and one ``np.minimum.reduceat`` over each text's rows:
the same signatures as one text at a time, bit for bit (tests/core/test_trends_dupes.py).

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
_S32 = np.uint64(32)
#: the hash family of the signatures (kept in snapshots: signatures of another family are not comparable)
HASH = "mas32"


def _crc32_table() -> np.ndarray:
    """The byte table of the reflected CRC-32 (polynomial 0xEDB88320: zlib's)."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(0xEDB88320), t >> 1)
    return t


_CRC = _crc32_table()


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

    block = 32      # texts hashed per product in :meth:`signatures`

    def __init__(self, *, perms: int = 128, bands: int = 16, shingle: int = 5, min_chars: int = 20,
                 min_jaccard: float = 0.6, max_buckets: int = 200_000, horizon: float | None = None,
                 seed: int = 1) -> None:
        if perms % bands:
            raise ValueError("perms must be a multiple of bands")
        rng = np.random.default_rng(seed)
        top = np.iinfo(np.uint64).max
        self.a = rng.integers(0, top, size=perms, dtype=np.uint64, endpoint=True) | np.uint64(1)   # odd
        self.b = rng.integers(0, top, size=perms, dtype=np.uint64, endpoint=True)
        self._prefix = [bytes([i]) for i in range(bands)]
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
        """The MinHash signature of one normalised text (``perms`` uint32 hashes)."""
        return self.signatures([norm])[0]

    def signatures(self, norms) -> np.ndarray:
        """The signatures of normalised texts, ``[len(norms), perms]`` uint32: each the minimum over the text's
        character ``shingle``-shingles (the whole text when shorter) of ``(a * crc32(shingle) + b) mod 2**64 >> 32``."""
        k = self.shingle
        fast = [i for i, n in enumerate(norms) if len(n) >= k and n.isascii()]   # a char is a byte
        slow = [i for i, n in enumerate(norms) if not (len(n) >= k and n.isascii())]
        parts, counts = [], []
        if fast:
            parts.append(self._ascii_crcs([norms[i] for i in fast], counts))
        for i in slow:
            n = norms[i]
            sh = [n[j:j + k].encode("utf-8") for j in range(max(1, len(n) - k + 1))]
            parts.append(np.fromiter(map(zlib.crc32, sh), dtype=np.uint64, count=len(sh)))
            counts.append(len(sh))
        if not counts:
            return np.zeros((0, len(self.a)), np.uint32)
        x = np.concatenate(parts)
        ends = np.cumsum(np.asarray(counts, np.intp))
        starts = ends - np.asarray(counts, np.intp)
        sigs = np.empty((len(counts), len(self.a)), np.uint32)
        for lo in range(0, len(counts), self.block):
            hi = min(lo + self.block, len(counts))
            h = x[starts[lo]:ends[hi - 1], None] * self.a[None, :]   # uint64: wraps, i.e. mod 2**64
            h += self.b[None, :]
            h >>= _S32
            sigs[lo:hi] = np.minimum.reduceat(h.astype(np.uint32), starts[lo:hi] - starts[lo], axis=0)
        out = np.empty_like(sigs)
        out[np.array(fast + slow, np.intp)] = sigs
        return out

    def _ascii_crcs(self, norms: list[str], counts: list[int]) -> np.ndarray:
        """crc32 of every shingle of ASCII texts at least ``shingle`` long, text after text (the shingles of
        each counted into ``counts``), as uint64: zlib's CRC-32 over a sliding window of the bytes."""
        k = self.shingle
        buf = np.frombuffer("".join(norms).encode("ascii"), np.uint8)
        lens = np.fromiter(map(len, norms), dtype=np.intp, count=len(norms))
        n_sh = lens - (k - 1)
        counts.extend(n_sh.tolist())
        text_start = np.cumsum(lens) - lens
        sh_start = np.cumsum(n_sh) - n_sh
        pos = np.arange(int(n_sh.sum()), dtype=np.intp) + np.repeat(text_start - sh_start, n_sh)
        crc = np.full(len(pos), 0xFFFFFFFF, np.uint32)
        for j in range(k):
            crc = _CRC[(crc ^ buf[pos + j]) & 0xFF] ^ (crc >> 8)
        return (crc ^ np.uint32(0xFFFFFFFF)).astype(np.uint64)

    def assign(self, text: str, ts: float | None = None) -> str | None:
        """The near-duplicate group of ``text`` (a new one if it matches none); None if too short. ``ts``: its
        event time (None: the newest seen so far), for the ``horizon``."""
        return self.assign_batch([text], None if ts is None else [ts])[0]

    def assign_batch(self, texts, ts=None) -> list[str | None]:
        """:meth:`assign` for each text in turn (``ts``: their event times, or None), the signatures made for
        the whole batch at once."""
        norms = [normalise(t) for t in texts]
        rows = [i for i, n in enumerate(norms) if len(n) >= self.min_chars]
        sigs = self.signatures([norms[i] for i in rows])
        out: list[str | None] = [None] * len(norms)
        for i, sig in zip(rows, sigs):
            t = self.now if ts is None else float(ts[i])
            self.now = max(self.now, t)
            out[i] = self._place(sig, t)
            self.expire()
        return out

    def _place(self, sig: np.ndarray, t: float) -> str:
        """The group of the text signed ``sig`` at event time ``t``: found through its band buckets or new."""
        raw, w = sig.tobytes(), sig.itemsize * self.rows
        keys = [pre + raw[i * w:(i + 1) * w] for i, pre in enumerate(self._prefix)]
        group = None
        for k in keys:
            hit = self._buckets.get(k)
            if hit is not None and hit[0] != group:
                f = self._founders.get(hit[0])
                if f is not None and np.count_nonzero(f[0] == sig) / len(sig) >= self.min_jaccard:
                    group = hit[0]
                    break
        if group is None:
            group = f"d{self._next}"
            self._next += 1
            self._founders[group] = (sig.copy(), t)     # a copy: not a view holding the batch's rows
            while len(self._founders) > max(1, self.max_buckets // self.bands):
                self._founders.popitem(last=False)
        else:
            self._founders[group] = (self._founders[group][0], t)
            self._founders.move_to_end(group)
        used = (group, t)                            # one tuple for the text's buckets (memory: not one each)
        for k in keys:
            self._buckets[k] = used                  # a bucket leads to the newest group that shares it
            self._buckets.move_to_end(k)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
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

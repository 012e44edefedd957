"""A deterministic hashing embedder, for fast unit tests only.

Bag of word unigrams and bigrams hashed into ``dim`` buckets with a sign (the "hashing trick").
Texts sharing words get a positive cosine, so tests can build clusters; it knows nothing about
meaning, so **no claim about detection quality is ever measured with it**.

>>> e = HashingEmbedder(dim=64)
>>> v = e.encode(["free crypto giveaway", "free crypto giveaway now", "the weather is mild"])
>>> v.shape, v.dtype.name
((3, 64), 'float32')
>>> bool(v[0] @ v[1] > v[0] @ v[2])
True
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

from .base import Embedder

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder(Embedder):
    def __init__(self, dim: int = 64, *, bigrams: bool = True) -> None:
        self.dim = int(dim)
        self.bigrams = bigrams
        self.name = f"hashing-{self.dim}{'-bi' if bigrams else ''}"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        return h % self.dim, (1.0 if (h >> 63) & 1 else -1.0)

    def _encode(self, texts: list[str], *, progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            toks = _TOKEN.findall(text.lower())
            feats = toks + ([a + " " + b for a, b in zip(toks, toks[1:])] if self.bigrams else [])
            if not feats:  # empty text: a fixed, non-zero vector so it stays a unit vector
                feats = ["<empty>"]
            for f in feats:
                j, s = self._bucket(f)
                out[i, j] += s
        return out

"""The embedder interface: ``encode(texts) -> float32 [n, d]``, rows L2-normalised."""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as C-contiguous float32 with unit-length rows (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class Embedder(abc.ABC):
    """Turns texts into unit vectors, so that the dot product is the cosine similarity.

    Subclasses implement :meth:`_encode`; :meth:`encode` normalises and checks the shape.
    ``name`` identifies the model and variant (used as the embedding-cache key), ``dim`` is d.
    """

    name: str = "embedder"
    dim: int = 0

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = l2_normalise(self._encode(texts, progress=progress))
        if out.shape != (len(texts), self.dim):
            raise AssertionError(f"{self.name} returned {out.shape}, expected {(len(texts), self.dim)}")
        return out

    @abc.abstractmethod
    def _encode(self, texts: list[str], *, progress: bool) -> np.ndarray: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"

"""Embedders: one interface (:class:`Embedder`), a real model and a hashing model for tests."""
from __future__ import annotations

from .base import Embedder, l2_normalise
from .cache import CachedEmbedder
from .hashing import HashingEmbedder

__all__ = ["Embedder", "HashingEmbedder", "CachedEmbedder", "l2_normalise", "make_embedder"]


def make_embedder(spec: str = "minilm", **options) -> Embedder:
    """Build an embedder from a short spec.

    ``minilm`` (all-MiniLM-L6-v2 fp32), ``minilm-int8``, ``hashing`` / ``hashing-<dim>`` (tests only),
    or any sentence-transformers model name / local folder (``st:<name or path>`` or just the path).
    Extra ``options`` go to :class:`~synapse_stream.embedders.sentence.SentenceTransformerEmbedder`.
    """
    s = spec.strip()
    if s.startswith("hashing"):
        dim = int(s.split("-", 1)[1]) if "-" in s else 64
        return HashingEmbedder(dim=dim)
    from .sentence import DEFAULT_MODEL, SentenceTransformerEmbedder

    if s in ("minilm", "minilm-fp32"):
        return SentenceTransformerEmbedder(DEFAULT_MODEL, **options)
    if s == "minilm-int8":
        return SentenceTransformerEmbedder(DEFAULT_MODEL, variant="int8", **options)
    if s.startswith("st:"):
        s = s[3:]
    return SentenceTransformerEmbedder(s, **options)

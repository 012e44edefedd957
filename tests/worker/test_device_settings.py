"""SYNAPSE_DEVICE in the worker's settings, its start-up check, and ``synapse-stream eval --device``
(ONNX Runtime's provider list monkeypatched: no GPU here)."""
from __future__ import annotations

import pytest


def _providers(monkeypatch, providers):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(providers))


def test_settings_device_and_batch(monkeypatch):
    from stream_app.worker.settings import Settings

    _providers(monkeypatch, ["CPUExecutionProvider"])
    s = Settings(_env_file=None, embedder="minilm-onnx", device="auto")
    assert (s.resolved_device(), s.batch_size()) == ("cpu", 32)
    assert Settings(_env_file=None, embedder="minilm-onnx", embed_batch_size=8).batch_size() == 8
    _providers(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    s = Settings(_env_file=None, embedder="minilm-onnx", device="auto")
    assert (s.resolved_device(), s.batch_size()) == ("cuda", 256)
    monkeypatch.setenv("SYNAPSE_DEVICE", "gpu")
    with pytest.raises(Exception, match="device"):
        Settings(_env_file=None)


def test_worker_preflight_exits_2_on_cuda_without_gpu(monkeypatch, capsys):
    from stream_app.worker.preflight import check_device_or_exit
    from stream_app.worker.settings import Settings

    _providers(monkeypatch, ["CPUExecutionProvider"])
    check_device_or_exit(Settings(_env_file=None, embedder="minilm-onnx", device="auto"))   # passes
    with pytest.raises(SystemExit) as ei:
        check_device_or_exit(Settings(_env_file=None, embedder="minilm-onnx", device="cuda"))
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: worker not started: SYNAPSE_DEVICE=cuda") and "\n" not in err


def test_eval_device_cuda_without_gpu_exits_2(monkeypatch, tmp_path, capsys):
    from stream_app.cli import main

    pool = tmp_path / "pool.tsv"
    pool.write_text("sentence\tlabel\ngood film\t1\nbad film\t0\nfine film\t0\n", encoding="utf-8")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("good film\n", encoding="utf-8")
    code = main(["eval", "--pool", str(pool), "--seeds", str(seeds), "--embedder", "hashing-64", "--device", "cuda",
                 "--out", str(tmp_path / "out"), "--no-progress", "--cache-dir", ""])
    assert code == 2
    assert "no GPU path" in capsys.readouterr().err


def test_embed_threads_auto_number_and_former_name(monkeypatch):
    import os

    from stream_app.worker.settings import Settings, auto_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert Settings(_env_file=None).embed_threads == "auto"
    assert Settings(_env_file=None).model_threads() == auto_threads(2) == 2
    monkeypatch.setenv("SYNAPSE_EMBED_THREADS", "1")
    assert Settings(_env_file=None).model_threads() == 1
    assert Settings(_env_file=None, torch_threads=3).model_threads() == 3     # the former name wins when set
    monkeypatch.setenv("SYNAPSE_EMBED_THREADS", "0")
    with pytest.raises(Exception, match="embed_threads"):
        Settings(_env_file=None)


def test_faust_entry_point_stops_with_one_line_on_cuda_without_gpu(tmp_path):
    """``faust -A stream_app worker`` builds the app from ``stream_app.app``: there the device check runs first."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from synapse_stream.embedders.device import onnx_cuda_available

    if onnx_cuda_available():
        pytest.skip("this machine has ONNX Runtime's CUDA provider")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "SYNAPSE_DEVICE": "cuda", "SYNAPSE_EMBEDDER": "minilm-onnx"}
    proc = subprocess.run([sys.executable, "-c", "import stream_app; stream_app.app"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: worker not started: SYNAPSE_DEVICE=cuda"), proc.stderr

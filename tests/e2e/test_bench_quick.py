"""The benchmark suite runs and writes what it promises (no wall-clock assertions: figures are only printed).

* ``bench/run.py --toy`` (hashing embedder, toy sizes) without the broker: every promised key is in
  ``results.json`` and every measured number is positive;
* the report renders from that JSON;
* the ONNX int8 embedder stays close to MiniLM fp32 (slow: exports the model once).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = ("pipeline_efficiency", "latency_p50_ms", "latency_p99_ms", "backfill_ms", "seed_compare_us", "bytes_per_post",
        "workers", "embedders", "machine", "command", "targets", "hnsw_tuning", "static_drain", "static_posts_per_s",
        "overhead_us_per_post")


def _numbers(x):
    if isinstance(x, bool) or x is None:
        return
    if isinstance(x, (int, float)):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run([sys.executable, "bench/run.py", "--toy", "--skip", "stack,threads,quality,broker,static", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_toy_run_writes_every_key(toy_results):
    res, stdout = toy_results
    for key in KEYS:
        assert key in res, key
    assert res["mode"] == "toy"
    assert res["machine"]["cores"] >= 1 and res["machine"]["python"]
    assert "section" in stdout and "backfill" in stdout  # the printed table


def test_toy_run_numbers_are_positive(toy_results):
    res, _ = toy_results
    for section in ("backfill_ms", "seed_compare_us", "bytes_per_post", "embedders", "hnsw_tuning"):
        nums = list(_numbers(res[section]))
        assert nums, section
        assert all(n > 0 for n in nums if n is not None), (section, res[section])
    for size, b in res["backfill_ms"].items():
        assert b["p50"] > 0 and b["p99"] >= b["p50"]
        assert 0 < b["recall_vs_exact"] <= 1
    assert res["seed_compare_us"]["choice"]["step"] in ("brute force", "index")
    assert res["pipeline_efficiency"] == {"skipped": "not run"}  # the stack was skipped, and says so
    assert res["static_drain"] == {"skipped": "not run"} and res["static_posts_per_s"] is None


def test_report_renders_from_results(toy_results, tmp_path):
    res, _ = toy_results
    src = tmp_path / "results.json"
    src.write_text(json.dumps(res))
    md = tmp_path / "benchmarks.md"
    proc = subprocess.run([sys.executable, "bench/report.py", str(src), "--out", str(md)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "| section |" in text and "bench/run.py --toy" in text


@pytest.mark.slow
def test_onnx_int8_close_to_fp32(tmp_path):
    pytest.importorskip("onnx")          # the exporter (bert_onnx) writes the graph with it
    pytest.importorskip("onnxruntime")
    from synapse_stream.embedders import make_embedder
    from synapse_stream.embedders.onnx import OnnxEmbedder

    texts = ["Send 0.1 BTC and get 1 BTC back, guaranteed!", "the weather in lisbon is mild today",
             "a gorgeous, witty, seductive movie .", "I hated every minute of this film", "",
             "Limited offer: double your crypto now " * 40]  # long: truncated as sentence-transformers does
    ref = make_embedder("minilm-onnx", cache_dir=tmp_path).encode(texts)   # fp32, the default
    e = OnnxEmbedder(variant="int8", cache_dir=tmp_path)
    v = e.encode(texts)
    assert v.shape == ref.shape and v.dtype == np.float32
    cos = (v * ref).sum(1)
    assert cos.mean() > 0.95, cos
    assert any(tmp_path.glob("*.int8.onnx")) and any(tmp_path.glob("*.fp32.onnx"))
    fp32 = OnnxEmbedder(variant="fp32", cache_dir=tmp_path).encode(texts)   # from the cache: no export
    assert ((fp32 * ref).sum(1) > 0.999).all()

"""bench/capacity.py's formulas and bench/run.py's efficiency_vs_best on made-up inputs (no machine figures):
the table scales as the formulas say, RAM bounds the workers, the two-worker prediction is bounded by the cores,
and the best equal-quality embedder ignores the ones that drift."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import capacity  # noqa: E402
from bench.run import efficiency_vs_best  # noqa: E402


def _f(**kw):
    base = {"embed_core_s": 0.01, "insert_core_s": 0.001, "graph_core_s": 0.0005, "pipeline_core_s_measured": 0.015,
            "bytes_per_post": 2000.0, "worker_base_rss_mib": 500.0, "round_peak_ram_mib_per_1m_posts": 100.0,
            "redis_ops_per_post": 1.0, "redis_bytes_per_post": 80.0, "redis_node_ops_per_s": 100_000.0,
            "redis_usec_per_post": 2.0, "redis_overhead_factor": 2.0,
            "post_bytes": 150.0, "candidates_per_post": 0.1, "candidate_bytes": 500.0}
    base.update(kw)
    return {k: {"value": v, "source": "test"} for k, v in base.items()}


def test_per_post_parts_add_up():
    c = capacity.per_post_core_s(_f())
    assert c["other"] == pytest.approx(0.015 - 0.01 - 0.001)
    assert capacity.per_post_core_s(_f(pipeline_core_s_measured=0.001))["other"] == 0.0   # never negative


def test_row_follows_the_formulas():
    f, p = _f(), capacity.PARAMS
    r = capacity.row(1000, f)
    n = 1000 * capacity.WINDOW_S
    assert r["window_posts"] == n
    per_post = 0.01 + 0.001 + 0.0005 + 0.004
    assert r["cpu"]["cores"] == pytest.approx(1000 * per_post / p["cpu_utilisation"])
    assert r["gpu"]["host_cores"] == pytest.approx(1000 * (per_post - 0.01) / p["cpu_utilisation"])
    assert r["gpu"]["gpus"] is None                      # no GPU rate given: no GPU count
    assert r["redis_ops_per_s"] == pytest.approx(1000.0)
    assert r["redis_cpu_cores"] == pytest.approx(1000 * 2.0 * 2.0 / 1e6)
    assert r["redis_memory_gib"] == pytest.approx(n * 80 / 2**30)
    assert r["kafka_in_mb_per_s"] == pytest.approx(1000 * (150 + 0.1 * 500) / 1e6)
    assert r["kafka_storage_tb"] == pytest.approx(r["kafka_in_mb_per_s"] * 1e6 * (capacity.WINDOW_S + 86_400) * 3 / 1e12)
    usable = p["node_ram_gib"] * 2**30 * p["ram_usable_share"] - 500 * 2**20
    assert r["cpu"]["workers_for_ram"] == math.ceil(n / (usable / (2000 + 100)))
    assert r["cpu"]["workers"] == max(r["cpu"]["workers_for_ram"], r["cpu"]["workers_for_cpu"])
    assert r["ram_per_worker_gib"] <= p["node_ram_gib"] * p["ram_usable_share"] + 1e-9
    assert r["partitions"] >= r["cpu"]["workers"]
    ten = capacity.row(10_000, f, gpu_posts_per_s=5000)
    assert ten["cpu"]["cores"] == pytest.approx(10 * r["cpu"]["cores"])
    assert ten["gpu"]["gpus"] == pytest.approx(2.0)
    assert ten["cpu"]["workers"] >= 9 * r["cpu"]["workers"]


def test_two_workers_are_bounded_by_the_cores():
    chk = {"1": {"posts_per_s": 50.0, "cpu_s_per_post": {"children": 0.03}, "cores_busy": {"children": 1.5}},
           "2": {"posts_per_s": 60.0, "cpu_s_per_post": {"children": 0.031}, "cores_busy": {"children": 1.8}}}
    pr = capacity.predict_two_vs_one(_f(), chk, cores=2)
    assert pr["predicted_d2"] == pytest.approx(2 / 0.03)
    assert pr["predicted_ratio"] == pytest.approx((2 / 0.03) / 50)
    assert pr["predicted_ratio_given_cpu"] == pytest.approx((1.8 / 0.03) / 50)
    chk["1"]["cpu_s_per_post"]["children"] = 0.005                # a light worker: twice one worker
    assert capacity.predict_two_vs_one(_f(), chk, cores=2)["predicted_ratio"] == pytest.approx(2.0)


def test_render_names_every_input_and_the_gpu_gap():
    f = _f()
    rows = [capacity.row(r, f) for r in capacity.RATES]
    md = capacity.render(f, rows, None, {}, None)
    assert "100,000 posts/s" in md and "not measured: there is no GPU here" in md
    assert "Where the model is uncertain" in md and "Not run yet" in md


def test_best_embedder_is_the_fastest_with_equal_vectors():
    res = {"embedders": {"minilm": {"posts_per_s": 100.0, "cosine_to_fp32_mean": 1.0},
                         "minilm-onnx": {"posts_per_s": 120.0, "cosine_to_fp32_mean": 0.9999999},
                         "minilm-onnx-int8": {"posts_per_s": 300.0, "cosine_to_fp32_mean": 0.99},
                         "wordllama": {"posts_per_s": 20000.0}}}
    out = efficiency_vs_best(res)
    assert out["best_embedder"] == "minilm-onnx" and out["best_embedder_raw_posts_per_s"] == 120.0
    assert "efficiency_vs_best_embedder" not in out            # no threads section: no drain to compare
    res["threads"] = {"shipped": "threads_1", "rows": {"threads_1": {
        "pipeline_posts_per_s": 90.0, "best_raw_posts_per_s_all_cores": {"minilm-onnx": 110.0, "minilm": 100.0}}}}
    out = efficiency_vs_best(res)
    assert out["best_embedder_raw_posts_per_s"] == 110.0      # timed beside the drain, preferred
    assert out["efficiency_vs_best_embedder"] == pytest.approx(90 / 110)

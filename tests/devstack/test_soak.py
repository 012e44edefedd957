"""The soak run in the short form CI runs (``make soak`` runs 2,000,000 posts through 200,000; ``QUICK=1``
60,000 through 5,000), and its summary arithmetic on a made-up report."""
from __future__ import annotations

import argparse
import asyncio
import math

import pytest

from stream_app.devstack.soak import SoakReport, Stream, add_soak_parser, run_soak, soak_line, summarise


def _args(*argv):
    ap = argparse.ArgumentParser()
    add_soak_parser(ap.add_subparsers(dest="cmd"))
    return ap.parse_args(["soak", *argv])


def test_the_synthetic_stream_is_deterministic_and_its_trend_is_near_itself():
    from synapse_stream.embedders import make_embedder

    s = Stream(seed=3, prevalence=0.05)
    assert [s.text(i) for i in range(50)] == [Stream(seed=3, prevalence=0.05).text(i) for i in range(50)]
    trend = [i for i in range(2000) if s.is_trend(i)]
    other = [i for i in range(2000) if not s.is_trend(i)][:200]
    assert 60 < len(trend) < 140
    e = make_embedder("hashing-384")
    seeds = e.encode(s.seeds(4))
    near = (e.encode([s.text(i) for i in trend[:50]]) @ seeds.T).max(axis=1)
    far = (e.encode([s.text(i) for i in other]) @ seeds.T).max(axis=1)
    assert near.mean() > far.mean() + 0.15, (near.mean(), far.mean())


def test_growth_is_measured_after_twice_the_window_and_latency_split_by_rounds():
    r = SoakReport(posts=10_000, window=1_000, embedder="x", broker="y")
    for k in range(100):   # RSS flat after 2x the window at 100 MB, then 105 at the end: +5 %
        sent = 100 * (k + 1)
        rss = 50 + sent / 40 if sent < 2_000 else (100.0 if k < 90 else 105.0)
        r.samples.append({"t": float(k), "posts_sent": sent, "rss_mb": rss, "redis_mb": 10.0, "index_size": 900})
    r.rounds = [{"end": 50.0, "seconds": 2.0, "candidates": 5}, {"end": 60.0, "seconds": 1.0, "candidates": 5}]
    r.latencies = [(49.0, 0.3), (59.5, 0.2)] + [(float(t), 0.1) for t in range(10, 40)]
    s = summarise(r)
    assert math.isclose(s["rss_growth_pct"], 5.0) and s["redis_growth_pct"] == 0.0
    assert s["latency_samples_in_rounds"] == 2 and math.isclose(s["latency_p99_in_rounds_ms"], 299.0)
    assert math.isclose(s["latency_p99_ms"], 100.0)
    assert s["round_p99_s"] > 1.9 and s["rounds"] == 2
    assert soak_line(s).startswith("soak: posts=10000 window=1000 rss_growth_pct=5.0 redis_growth_pct=0.0")
    assert math.isnan(s["redis_growth_excl_answers_pct"])       # not sampled: not a figure


def test_redis_growth_is_split_into_the_answers_and_the_rest():
    r = SoakReport(posts=10_000, window=1_000, embedder="x", broker="y")
    for k in range(100):   # the answers' keys double after 2x the window, the rest stays at 8 MB
        sent = 100 * (k + 1)
        answers = 2.0 if k < 50 else 4.0
        r.samples.append({"t": float(k), "posts_sent": sent, "rss_mb": 100.0, "redis_mb": 8.0 + answers,
                          "redis_answers_mb": answers, "redis_other_mb": 8.0, "index_size": 900})
    s = summarise(r)
    assert math.isclose(s["redis_answers_growth_pct"], 100.0) and s["redis_growth_excl_answers_pct"] == 0.0
    assert math.isclose(s["redis_growth_pct"], 20.0)


@pytest.mark.stack
def test_soak_short(tmp_path):
    import os

    args = _args("--window", "1000", "--posts", "10000", "--sample", "1", "--moderator-rate", "20",
                 "--broker-kind", os.environ.get("SYNAPSE_DEV_BROKER", "tansu"), "--timeout", "600",
                 "--run-dir", str(tmp_path / "run"), "--quiet")
    r = asyncio.run(run_soak(args))
    s = r.summary
    print(soak_line(s))
    assert len(r.samples) > 10 and r.rounds and r.answered > 0
    assert all({"snapshot", "plan"} <= set(x["phases"]) for x in r.rounds)   # each round's steps, from the log
    assert s["index_size_max"] < 2 * 1000, "the window must stay bounded (a window plus a segment or two)"
    assert s["latency_samples_in_rounds"] >= 0 and s["rounds"] == len(r.rounds)
    assert max(x.get("expired_total", 0) for x in r.samples) > 5000, "segments must leave the window"
    assert s["dead_letters"] == 0
    assert math.isfinite(s["restart_s"]) and math.isfinite(s["rss_growth_pct"])
    if math.isfinite(s["first_round_after_restart_s"]):     # a round after the restart (the run may end before)
        assert s["checkpoint_taken_back"], "the restarted worker's rounds go on from their checkpoint"
    assert s["latency_samples"] > 20

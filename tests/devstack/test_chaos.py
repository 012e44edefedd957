"""The crash / outage / hostile-input run, in the short form CI runs (``make chaos`` runs the long one)."""
from __future__ import annotations

import argparse

import pytest

from stream_app.devstack.chaos import add_chaos_parser, chaos_line, run_chaos

pytestmark = [pytest.mark.stack, pytest.mark.chaos]


def test_chaos_short(tmp_path):
    ap = argparse.ArgumentParser()
    add_chaos_parser(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["chaos", "--posts", "1500", "--crashes", "2", "--outage", "5", "--bad", "1000",
                          "--tau", "0.5", "--run-dir", str(tmp_path / "run"), "--quiet"])
    import asyncio

    r = asyncio.run(run_chaos(args))
    print(chaos_line(r))
    assert r["quiet"], "every candidate should have been answered and every post indexed"
    assert r["crashes"] == 2
    assert r["missing"] == 0 and r["posts_in_two_shards"] == 0 and r["unexpected_in_index"] == 0
    assert r["duplicate_candidates"] == 0
    assert r["lost_verdicts"] == 0 and r["ledger_latest_mismatch"] == 0
    assert r["worker_restarts_from_bad_input"] == 0 and r["worker_survived_outages"]
    assert r["bad_unaccounted"] == 0 and r["dead_letters"] == r["bad_messages"] == 1000
    assert r["queried_equal_reference"] and r["positives_equal_reference"], (r["reference"], r["stream"])
    assert r["stream"]["queried"] > 0, "the run should exercise the oracle loop"
    assert r["graceful_stop"]["exit_code"] == 0
    assert len(r["recovery_seconds"]) >= 2 * 4   # every shard recovered after each restart (4 partitions)


def test_chaos_kafka_cluster_short(tmp_path):
    """Three Apache Kafka nodes (replication 3, min.insync.replicas 2), three workers: the leader of a posts
    partition killed with kill -9 during the replay and restarted, two of the three workers killed and restarted,
    and one worker killing itself after the broker acknowledged its candidate, before confirming or committing."""
    import shutil

    from stream_app.devstack.kafka import kafka_libs

    if shutil.which("java") is None or kafka_libs() is None:
        pytest.skip("needs java (17+) and the Apache Kafka jars (`make kafka`)")
    ap = argparse.ArgumentParser()
    add_chaos_parser(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["chaos", "--broker-kind", "kafka-cluster", "--posts", "800", "--crashes", "1",
                          "--outage", "3", "--bad", "200", "--tau", "0.5", "--crash-after-produce", "1",
                          "--run-dir", str(tmp_path / "run"), "--quiet"])
    import asyncio

    r = asyncio.run(run_chaos(args))
    print(chaos_line(r))
    assert r["workers"] == 3 and r["broker"] == "kafka-cluster"
    assert r["quiet"], "every candidate should have been answered and every post indexed"
    assert r["crashes"] == 2, "two of the three workers killed at the crash moment"
    assert r["broker_kills"] == 1 and len(r["broker_restarts"]) == 1
    assert r["missing"] == 0 and r["posts_in_two_shards"] == 0 and r["unexpected_in_index"] == 0
    assert r["duplicate_candidates"] == 0 and r["duplicate_candidates_from_producer_retries_in_outages"] == 0
    assert r["lost_verdicts"] == 0 and r["ledger_latest_mismatch"] == 0
    assert r["worker_restarts_from_bad_input"] == 0 and r["worker_survived_outages"]
    assert r["bad_unaccounted"] == 0 and r["dead_letters"] == r["bad_messages"] == 200
    # the crash after produce: the worker died with its candidate on the topic; each is there exactly once
    assert r["crash_after_produce"] == 1 and r["crash_after_produce_candidates"]
    assert r["crash_after_produce_copies"] == [1] * len(r["crash_after_produce_candidates"])
    assert r["queried_equal_reference"] and r["positives_equal_reference"], (r["reference"], r["stream"])
    assert r["stream"]["queried"] > 0, "the run should exercise the oracle loop"
    assert r["graceful_stop"]["exit_codes"] == [0, 0, 0]
    line = chaos_line(r)
    assert " missing=0 duplicate_candidates=0 lost_verdicts=0 " in line and " broker_kills=1 " in line

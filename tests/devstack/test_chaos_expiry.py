"""The expiry case of ``make chaos`` in a short form: the worker killed at the crash point ``retention.drop``."""
from __future__ import annotations

import argparse
import asyncio

import pytest

from stream_app.devstack.chaos_expiry import add_expiry_parser, expiry_line, expiry_ok, run_expiry

pytestmark = [pytest.mark.stack, pytest.mark.chaos]


def test_crash_while_a_segment_is_dropped(tmp_path):
    ap = argparse.ArgumentParser()
    add_expiry_parser(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["chaos-expiry", "--posts", "3000", "--window", "400", "--segment", "100",
                          "--run-dir", str(tmp_path / "run"), "--quiet"])
    r = asyncio.run(run_expiry(args))
    print(expiry_line(r))
    assert r["crashed"] == 1 and r["exit_code"] == -9          # killed at the crash point, once
    assert r["missing_in_window"] == 0 and r["beyond_window"] == 0
    assert r["index_posts"] <= 2 * (400 + 100)                 # 2 shards, each the window plus one segment at most
    assert r["duplicate_candidates"] == 0 and r["lost_verdicts"] == 0
    assert r["answered"] > 0, "the run should exercise the oracle loop"
    assert r["graceful_stop_exit_code"] == 0
    assert expiry_ok(r)

"""Detectors as data, end to end: two workers run one detector; a second one is created with the CLI while posts
stream, finds its positives on both workers' shards with no restart, is paused (no candidates) and resumed
(backfill), and is retired (its labels are then refused). A bad record on the detectors topic is dead-lettered
once and changes nothing."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app.devstack.demo import LiveLoop, gauge

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]
SCAM = {"name": "scam", "tau": 0.5, "d_max": 5, "candidates": "ibg"}
CRYPTO_SEED = "free crypto airdrop claim your tokens now"
CRYPTO = ["free crypto airdrop claim your tokens now today", "claim your free crypto airdrop tokens now",
          "free crypto airdrop tokens claim now", "now claim free crypto airdrop your tokens"]
OTHER = ["lovely weather for a long walk", "the match last night was great", "my cat sleeps all day long",
         "baking bread on a sunday morning"]


def run(coro):
    return asyncio.run(coro)


def cli(loop: LiveLoop, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYNAPSE_BROKER_URL": f"kafka://{loop.bootstrap}", "SYNAPSE_TOPIC_PREFIX": loop.prefix,
           "SYNAPSE_EMBEDDED_BROKER": "1", "SYNAPSE_ENV_FILE": "/nonexistent", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "stream_app.cli", "detectors", *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def wait_change(loop: LiveLoop, detector: str, change: str, timeout: float = 60.0) -> None:
    """Until every worker applied the change (its /metrics count it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((gauge(loop.scrape(i), "synapse_detector_changes_total", detector=detector, change=change) or 0) >= 1
               for i in range(loop.n_workers)):
            return
        time.sleep(0.5)
    pytest.fail(f"{change} of {detector} not applied by every worker")


async def candidates(loop: LiveLoop, detector: str) -> list[dict]:
    return [c for c in (json.loads(m.value) for m in await loop.read_topic(loop.topics.candidates))
            if c["detector"] == detector]


async def send(loop: LiveLoop, posts: list[tuple[str, str]]) -> None:
    for i, (pid, text) in enumerate(posts):
        await loop.send_raw(loop.topics.posts, json.dumps({"id": pid, "text": text}).encode(), pid.encode(), i % 4)


async def until(fn, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await fn()
        if got:
            return got
        await asyncio.sleep(0.5)
    return await fn()


def test_a_detector_created_paused_and_retired_while_two_workers_run(tmp_path):
    loop = LiveLoop(tmp_path, detectors=[SCAM], embedder="hashing-64", partitions=4, workers=2)
    with loop:
        async def before():
            await send(loop, [(f"c{i}", t) for i, t in enumerate(CRYPTO[:2])] + [(f"o{i}", t) for i, t in enumerate(OTHER)])
        run(before())
        out = cli(loop, "create", "crypto", "--tau", "0.5", "--d-max", "10", "--candidates", "ibg",
                  "--description", "crypto giveaway scams")
        assert out.returncode == 0, out.stderr
        wait_change(loop, "crypto", "created")
        listed = cli(loop, "list")
        assert listed.returncode == 0 and "crypto" in listed.stdout and "scam" in listed.stdout

        async def seeded():
            await loop.send_seeds("crypto", [CRYPTO_SEED])
            await send(loop, [(f"c{i}", t) for i, t in enumerate(CRYPTO) if i >= 2])   # after the seed
            return await until(lambda: _have(loop, {"c0", "c1", "c2", "c3"}))
        found = run(seeded())
        assert {c["post_id"] for c in found} == {"c0", "c1", "c2", "c3"}    # before and after the seed, both shards
        assert len(found) == 4                                               # each once

        assert cli(loop, "pause", "crypto").returncode == 0
        wait_change(loop, "crypto", "paused")

        async def while_paused():
            await send(loop, [("c9", CRYPTO[0] + " again")])
            await asyncio.sleep(4)
            return await candidates(loop, "crypto")
        assert "c9" not in {c["post_id"] for c in run(while_paused())}
        assert cli(loop, "resume", "crypto").returncode == 0
        wait_change(loop, "crypto", "resumed")
        assert run(until(lambda: _have(loop, {"c9"})))                       # backfill on resume

        bad = cli(loop, "update", "crypto", "--tau", "7")
        assert bad.returncode == 2 and "tau" in bad.stderr                   # refused before publishing

        async def raw_bad():
            await loop.send_raw(loop.topics.detectors, b'{"tau": "high"}', b"broken", 0)
            return await until(lambda: _dead(loop, "bad_detector"), timeout=30)
        dead = run(raw_bad())
        assert len(dead) == 1 and dead[0]["reason"] == "bad_detector:tau"  # once, for both workers

        assert cli(loop, "retire", "crypto").returncode == 0
        wait_change(loop, "crypto", "retired")

        async def late_label():
            await loop.send_raw(loop.topics.labels, json.dumps({"detector": "crypto", "post_id": "c0", "label": 1,
                                                                "labeler": "ann"}).encode(), b"c0")
            return await until(lambda: _dead(loop, "unknown_detector"), timeout=30)
        assert run(late_label())
        listed = cli(loop, "list")
        assert "crypto" not in listed.stdout and "scam" in listed.stdout
        run(loop.close())


async def _have(loop: LiveLoop, wanted: set[str]):
    got = await candidates(loop, "crypto")
    return got if wanted <= {c["post_id"] for c in got} else None


async def _dead(loop: LiveLoop, reason: str):
    docs = [json.loads(m.value) for m in await loop.read_topic(loop.topics.dead_letters)]
    return [d for d in docs if d["reason"].startswith(reason)] or None

"""Liveness: unhealthy when the posts consumer has lag but stopped advancing, not merely "process alive"."""
from __future__ import annotations

import time
from types import SimpleNamespace

from stream_app.worker.runtime import Runtime
from stream_app.worker.settings import Settings


class FakeConsumer:
    def __init__(self, highwater):
        self.hw = highwater

    def highwater(self, tp):
        return self.hw[tp.partition]


class FakeService:
    def __init__(self, offsets, idle_seconds):
        self.offsets = offsets
        self.last_progress = time.monotonic() - idle_seconds

    def health(self):
        return {"seconds_since_progress": round(time.monotonic() - self.last_progress, 1)}


def runtime(offsets, highwater, idle, stall=60.0):
    s = Settings(_env_file=None, health_stall_seconds=stall)
    app = SimpleNamespace(consumer=FakeConsumer(highwater), should_stop=False)
    rt = Runtime(app, s, candidates_topic=None, dead_letters_topic=None, verdicts_topic=None,
                 posts_topic_name="synapse.posts")
    rt.service = FakeService(offsets, idle)
    rt.recovery.assigned = set(offsets)
    return rt


def test_idle_without_lag_is_healthy():
    ok, body = runtime({0: 9, 1: 4}, {0: 10, 1: 5}, idle=600).health()
    assert ok and body["lag"] == 0


def test_lag_with_recent_progress_is_healthy():
    ok, body = runtime({0: 5}, {0: 100}, idle=2).health()
    assert ok and body["lag"] == 94


def test_lag_without_progress_is_unhealthy():
    ok, body = runtime({0: 5, 1: 7}, {0: 100, 1: 8}, idle=120).health()
    assert not ok and body["lag"] == 94 and "stalled" in body["reason"]


def test_threshold_is_a_setting():
    assert runtime({0: 5}, {0: 100}, idle=20, stall=60).health()[0]
    assert not runtime({0: 5}, {0: 100}, idle=20, stall=10).health()[0]


def test_starting_is_unhealthy():
    rt = runtime({0: 0}, {0: 0}, idle=0)
    rt.service = None
    assert rt.health() == (False, {"reason": "starting"})


def test_a_shard_recovering_too_long_is_unhealthy_and_says_which():
    import asyncio

    rt = runtime({0: 0, 1: 0}, {0: 1, 1: 1}, idle=0)
    rt.settings.health_recovery_seconds = 30
    rt.recovery.recovered = {0: asyncio.Event(), 1: asyncio.Event()}
    rt.recovery.recovering_since = {0: time.monotonic() - 5, 1: time.monotonic() - 31}
    ok, body = rt.health()
    assert not ok and body["recovering"] == [0, 1] and "shards [1] still recovering" in body["reason"]
    rt.recovery.recovered[1].set()
    del rt.recovery.recovering_since[1]
    assert rt.health()[0]


def test_a_failed_replay_is_unhealthy():
    rt = runtime({0: 0}, {0: 1}, idle=0)
    rt.recovery.replay_failed[0] = "ValueError at x.py:1 in f"
    ok, body = rt.health()
    assert not ok and body["replay_failed"] == {"0": "ValueError at x.py:1 in f"} and "replay failed" in body["reason"]


def test_more_crashes_than_allowed_within_the_window_is_unhealthy():
    rt = runtime({0: 0}, {0: 1}, idle=0)
    rt.settings.health_max_crashes, rt.settings.health_crash_window = 2, 60
    for _ in range(2):
        rt.crashed("route_labels", ValueError("x"))
    assert rt.health()[0]
    rt.crashed("ingest_posts", KeyError("y"))
    ok, body = rt.health()
    assert not ok and body["recent_crashes"] == 3 and "ingest_posts, route_labels" in body["reason"]
    crashes = rt.liveness.crashes
    rt.liveness.crashes = type(crashes)([(t - 61, a) for t, a in crashes], maxlen=crashes.maxlen)   # out of the window
    assert rt.health()[0]


def test_a_background_task_that_fails_is_counted_not_lost():
    import asyncio

    rt = runtime({0: 0}, {0: 1}, idle=0)

    async def go():
        async def boom():
            raise RuntimeError("in the background")
        task = rt.spawn(boom(), "replay")
        await asyncio.wait([task])
        await asyncio.sleep(0)
        return [a for _, a in rt.liveness.crashes]
    assert asyncio.run(go()) == ["replay"]


def test_tick_publishes_the_operation_and_counts_its_failure():
    import asyncio

    rt = runtime({0: 1}, {0: 1}, idle=0)
    published = []

    async def publish(out):
        published.append(out)
    rt.publish = publish

    async def fine():
        return "outputs"

    async def broken():
        raise ValueError("a bug in the operation")
    rt.service.fine, rt.service.broken = fine, broken
    asyncio.run(rt.tick("fine_timer", "fine"))
    assert published == ["outputs"] and not rt.liveness.crashes
    asyncio.run(rt.tick("broken_timer", "broken"))      # counted, not raised: the timer goes on
    assert published == ["outputs"] and [a for _, a in rt.liveness.crashes] == ["broken_timer"]
    rt.service = None
    asyncio.run(rt.tick("fine_timer", "fine"))          # no service yet: nothing
    assert published == ["outputs"]

"""Liveness: unhealthy when the posts consumer has lag but stopped advancing, not merely "process alive"."""
from __future__ import annotations

import time
from types import SimpleNamespace

from stream_app.runtime import Runtime
from stream_app.settings import Settings


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
    rt.assigned = set(offsets)
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

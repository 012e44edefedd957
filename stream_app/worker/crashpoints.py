"""Crash points: a fault-injection hook that kills the worker at a named place, for the chaos harness.

``SYNAPSE_CRASH_POINT=<name>[:<marker file>]`` makes :func:`crash_point` (``name``) kill its own process with
SIGKILL, as an operator's ``kill -9`` or the OOM killer would, at exactly that place; with a marker file, only
the first time (the file is created just before the kill, so the restarted worker runs on). Unset (every
production deployment), a crash point costs one dictionary lookup. The points are:

* ``retention.drop``: after Redis was cleaned of the expiring posts (unsent candidates let go, unanswered ones
  parked, routing forgotten) and before the segments are dropped (``service/retention.py``); the restarted
  worker finds the same segments due and finishes the job once (``synapse-stream chaos-expiry``).
"""
from __future__ import annotations

import os
import signal
import time


def crash_point(name: str) -> None:
    spec = os.environ.get("SYNAPSE_CRASH_POINT")
    if not spec:
        return
    point, _, marker = spec.partition(":")
    if point != name:
        return
    if marker:
        if os.path.exists(marker):
            return
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(f"{name} {time.time()}\n")
            fh.flush()
            os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

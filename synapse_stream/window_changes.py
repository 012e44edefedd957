"""Changes to a worker's window asked for on the thread that owns the books (:class:`WindowChanges`): posts that
expired, and shards dropped or replaced. The next round's compute, which may be running in another thread when
they are asked for, takes them all at once (``take``) and applies them to the graph and the sources.

>>> import numpy as np
>>> w = WindowChanges()
>>> w.expire(["p1", "p2"], {"p2": np.ones(2, np.float32)})
>>> w.take().drops, w.take().drops
(['p1', 'p2'], [])
>>> w.expire(["p3"]); w.forget(); w.take()        # a reset makes the drops moot
Taken(reset=True, drops=[], to_seeds={})
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Taken(NamedTuple):
    reset: bool                          # shards dropped or replaced: start again
    drops: list[str]                     # posts that left the window
    to_seeds: dict[str, np.ndarray]      # of those, confirmed positives that stay as seeds -> their vectors


class WindowChanges:
    """Thread-safe: ``forget`` and ``expire`` from the owner's thread, ``take`` from the round's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset = False
        self._drops: list[str] = []
        self._to_seeds: dict[str, np.ndarray] = {}

    def forget(self) -> None:
        """Shards were dropped or replaced: everything built over the old posts goes."""
        with self._lock:
            self._reset = True
            self._drops, self._to_seeds = [], {}

    def expire(self, post_ids: Sequence[str], to_seeds: dict[str, np.ndarray] | None = None) -> None:
        """Posts left the window (``to_seeds``: those that stay positives, as seeds with these vectors)."""
        with self._lock:
            if not self._reset:
                self._drops.extend(post_ids)
                self._to_seeds.update(to_seeds or {})

    def take(self) -> Taken:
        """Everything asked for since the last call."""
        with self._lock:
            out = Taken(self._reset, self._drops, self._to_seeds)
            self._reset, self._drops, self._to_seeds = False, [], {}
        return out

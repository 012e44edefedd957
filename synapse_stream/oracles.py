"""Oracles: who answers "is this post a positive?".

* :class:`Oracle` is the interface: ``label(post_ids) -> list[int]`` (0/1, same order).
* :class:`ReplayOracle` answers from known ground truth, for evaluation and the demo.
* :class:`CallbackOracle` wraps any function, which is how an LLM rater or a human queue plugs in
  (the streaming service instead publishes candidates and consumes verdicts from a topic).

Every oracle counts its calls, so evaluation can report the labelling cost.

>>> o = ReplayOracle({"p1": 1, "p2": 0})
>>> o.label(["p2", "p1"]), o.calls
([0, 1], 2)
"""
from __future__ import annotations

import abc
from typing import Callable, Mapping, Sequence

from .exceptions import OracleError


class Oracle(abc.ABC):
    def __init__(self) -> None:
        self.calls = 0

    def label(self, post_ids: Sequence[str]) -> list[int]:
        raw = list(self._label(list(post_ids)))
        # check before converting: int() would turn 0.5 into 0 and fail on "yes" or None with a raw error
        if len(raw) != len(post_ids) or any(y not in (0, 1) for y in raw):
            raise OracleError(f"{type(self).__name__} returned {raw!r} for {len(post_ids)} posts")
        labels = [int(y) for y in raw]
        self.calls += len(labels)
        return labels

    @abc.abstractmethod
    def _label(self, post_ids: list[str]) -> Sequence[int]: ...


class ReplayOracle(Oracle):
    """Answers from a ``post_id -> label`` mapping (the pool's ground truth)."""

    def __init__(self, truth: Mapping[str, int]) -> None:
        super().__init__()
        self.truth = truth

    def _label(self, post_ids):
        try:
            return [self.truth[p] for p in post_ids]
        except KeyError as exc:
            raise OracleError(f"replay oracle has no label for post {exc.args[0]!r}") from None


class CallbackOracle(Oracle):
    """Delegates to ``fn(post_ids) -> labels`` (an LLM rater, a blocking human-review client...)."""

    def __init__(self, fn: Callable[[list[str]], Sequence[int]]) -> None:
        super().__init__()
        self.fn = fn

    def _label(self, post_ids):
        return self.fn(post_ids)

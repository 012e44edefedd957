"""A live round's snapshot of a worker's window (:class:`RoundSnapshot`): the posts' vectors in a buffer kept between
rounds, their labels and pending marks from the books' copy, and the positives outside the window.

Cost of :meth:`RoundSnapshot.take`: O(n d) to copy the vectors (segment by segment, into the kept buffer) and
O(n + labels + queried) for the rows' marks; memory O(n d), the buffer, kept between rounds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .index import ShardedIndex
from .methods.base import LoopState

if TYPE_CHECKING:
    from .rounds import RoundInput


class RoundSnapshot:
    """The loop state of one detector's rounds over ``index`` (``take``), and the index parts it was read from
    (``parts``, as ``ShardedIndex.vectors_parts`` gives them, until :meth:`release`)."""

    def __init__(self, index: ShardedIndex, rng: np.random.Generator) -> None:
        self.index = index
        self.rng = rng
        self.parts: list = []                    # the last snapshot's parts (ShardedIndex.vectors_parts)
        self._buf: np.ndarray | None = None      # the snapshot rows (_rows_buffer)

    def take(self, inp: RoundInput, upto: dict | None = None, kept: bool = True
             ) -> tuple[LoopState, dict[str, np.ndarray]]:
        """The loop state and the positives outside it (its ``S``, by seed id): synthetic and manual seeds and
        posts confirmed on other workers or gone with the window (overturned ones excluded). ``upto``: how many
        first rows of each part to take (``LiveGraph.upto``; None: all). ``kept``: the vectors go into the buffer
        kept between rounds (:meth:`_rows_buffer`), else into arrays of their own."""
        ids, X, self.parts = self.index.vectors_parts(upto, self._rows_buffer if kept else None)
        row_of = {p: i for i, p in enumerate(ids)}
        labels = np.full(len(ids), -1, np.int8)
        for pid, y in inp.labels.items():
            r = row_of.get(pid)
            if r is not None:
                labels[r] = y
        pending = np.zeros(len(ids), bool)
        for pid in inp.queried:
            r = row_of.get(pid)
            if r is not None and labels[r] < 0:
                pending[r] = True
        S = {sid: v for sid, v in inp.external.items() if sid not in row_of}
        state = LoopState(X=X, S=np.vstack(list(S.values())) if S else np.zeros((0, self.index.dim), np.float32),
                          ids=ids, labels=labels, rng=self.rng, pending=pending)
        state.row_of(row_of)
        if inp.last is not None:
            state.rounds = [inp.last]
        return state, S

    def release(self) -> None:
        """The round is over: no reference to its parts (a dropped segment is freed with its last one)."""
        self.parts = []

    def _rows_buffer(self, n: int) -> np.ndarray:
        """The front ``n`` rows of the buffer the snapshots are written into, kept between rounds: a new array of the
        window's size each round cost its page faults every time (with the classifier's chunks, the median round at
        a full 200 k window went from 2.4 to 1.4 s: docs/live-rounds.md, "The snapshot's buffer"). Between ``n``
        and ``2 n + 4096`` rows; a larger need gets one an eighth larger. Nothing keeps a view of it past the round
        (the sources copy what they keep: ``tests/core/test_rounds.py``)."""
        buf = self._buf
        if buf is None or len(buf) < n or len(buf) > 2 * n + 4096:
            buf = self._buf = np.empty((n + n // 8 + 1024, self.index.dim), np.float32)
        return buf[:n]

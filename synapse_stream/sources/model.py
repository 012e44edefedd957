"""The classifier as a candidate source (and the policy's ranker).

* batch: :class:`~synapse_stream.methods.model.ModelGuided` (a logistic regression refitted every round on the
  seeds, the labels so far and provisional negatives);
* live: :class:`LiveModel`, the detector's current shared classifier version (trained on every worker's
  verdicts by the streaming layer, handed over through :meth:`~.base.CandidateSource.use_model`).

The live source scores each post **once per classifier version**: a round scores only the rows new since the
last one (segments only append: ``LiveView.parts`` says which rows are new), and keeps the best ``keep``
unlabelled posts in a bounded list; a new version scores the window once. When the kept list runs short of
unlabelled posts (the best were answered) the window is scored again. As the other sources' ranker it scores
just the rows it is asked about (:class:`RowScores`). Cost of a round: O(Δn · d) for the Δn new posts plus
O(keep log keep); memory O(keep + segments), not O(window).

>>> import numpy as np
>>> from synapse_stream.methods.base import LoopState
>>> class Half:                       # a "classifier": the first coordinate
...     def predict_proba(self, X): return np.asarray(X)[:, 0]
>>> X = np.array([[.9, 0], [.1, 0], [.5, 0], [.7, 0]], np.float32)
>>> state = LoopState(X=X, S=X[:0], ids=list("abcd"), labels=np.array([-1, -1, 1, -1], np.int8))
>>> src = LiveModel(keep=2); src.use_model(Half())
>>> [(row, round(score, 2)) for row, score in src.propose(state, 2)]   # c is labelled: the best two others
[(0, 0.9), (3, 0.7)]
>>> round(src.last_scores[1], 2)      # as a ranker: any row, scored when asked
0.1
"""
from __future__ import annotations

import heapq

import numpy as np

from ..methods.base import LoopState, top_rows
from ..methods.model import ModelGuided
from .base import CandidateSource, LiveView, SourceParams
from .registry import SourceSpec, register


class RowScores:
    """The ranker's scores of a state's rows, computed on first use (``scores[row]`` or ``scores[rows]``)."""

    def __init__(self, model, X: np.ndarray, known: dict[int, float]) -> None:
        self.model, self.X, self.known = model, X, dict(known)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, rows):
        if np.ndim(rows) == 0:
            r = int(rows)
            if r not in self.known:
                self.known[r] = float(self.model.predict_proba(self.X[r:r + 1])[0])
            return self.known[r]
        rows = np.asarray(rows, np.int64)
        missing = [int(r) for r in rows.tolist() if int(r) not in self.known]
        if missing:
            for r, p in zip(missing, self.model.predict_proba(self.X[missing]).tolist()):
                self.known[r] = float(p)
        return np.asarray([self.known[int(r)] for r in rows.tolist()], np.float32)


class LiveModel(CandidateSource):
    """Proposes the best unlabelled posts by the detector's shared classifier; nothing before the first version.

    ``keep``: how many of the best scored posts are kept between rounds (at least ``4 k`` is used)."""

    name = "model"
    ranks = True
    uses_model = True

    def __init__(self, keep: int = 2000) -> None:
        self.keep = int(keep)
        self.model = None   # a synapse_stream.classifier.ModelVersion
        self.last_scores: RowScores | None = None
        self._scored_with = None            # the version the kept list was scored with
        self._done: dict[int, tuple[object, int]] = {}   # id(part) -> (part, rows of it scored)
        self._best: list[tuple[float, str]] = []         # min-heap of (score, post id), at most ``keep``
        self._cut = False                   # True if posts were scored and left out of ``_best``
        self._parts: list = []
        self.scored = 0                     # posts scored so far (all versions): the cost, for tests and metrics

    def use_model(self, model: object) -> None:
        self.model = model

    def refresh(self, view: LiveView) -> None:
        self._parts = list(view.parts)

    def forget(self) -> None:
        self._restart()

    def expired(self) -> None:
        """Kept: the heap is by post id and loses departed posts as it loses answered ones; every post left out
        of it scored below all it keeps, so what remains is still the best of the remaining (``propose``)."""

    def _restart(self) -> None:
        self._done, self._best, self._cut = {}, [], False

    def _score_new(self, state: LoopState, keep: int) -> None:
        """Score the rows new since the last look (all of them for a new version) into the kept list."""
        model = self.model
        if model is not self._scored_with:
            self._restart()
            self._scored_with = model
        parts = self._parts or [(None, 0, state.n)]
        if parts[0][0] is None:    # no parts known (a batch state): every row, every time
            self._restart()
        new_rows, new_scores, now_done = [], [], {}
        free = state.unlabelled_mask()   # answered or waiting for a verdict: never proposed again
        for part, start, count in parts:
            key = id(part)
            seen = self._done.get(key, (part, 0))[1] if part is not None else 0
            if count > seen:
                lo, hi = start + seen, start + count
                open_ = np.flatnonzero(free[lo:hi])
                if len(open_):   # the slice itself is scored (a view: no copy of its open rows' vectors), then cut
                    sc = np.asarray(model.predict_proba(state.X[lo:hi]), np.float32)
                    new_scores.append(sc if len(open_) == hi - lo else sc[open_])
                new_rows.append(lo + open_)
            now_done[key] = (part, max(seen, count))
        self._done = now_done        # parts no longer held are forgotten (and released)
        rows = np.concatenate(new_rows) if new_rows else np.zeros(0, np.int64)
        if not len(rows):
            return
        scores = np.concatenate(new_scores)
        self.scored += len(rows)
        if len(rows) > keep:   # only the best ``keep`` new rows (and ties at the cut) can enter the kept list
            cut = np.partition(scores, len(scores) - keep)[len(scores) - keep]
            sel = scores >= cut
            if not sel.all():
                self._cut = True
            rows, scores = rows[sel], scores[sel]
        best = self._best
        for r, sc in zip(rows.tolist(), scores.tolist()):
            item = (sc, state.ids[r])
            if len(best) < keep:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
                self._cut = True
            else:
                self._cut = True

    def propose(self, state: LoopState, k: int) -> list[tuple[int, float]]:
        self.last_scores = None
        if self.model is None:
            return []
        keep = max(self.keep, 4 * k)
        self._score_new(state, keep)
        row_of = state.row_of()
        free = state.unlabelled_mask()
        rows = [(row_of[p], sc) for sc, p in self._best if p in row_of and free[row_of[p]]]
        if len(rows) < k and self._cut:       # the kept best were answered: score the window again
            self._restart()
            self._score_new(state, keep)
            rows = [(row_of[p], sc) for sc, p in self._best if p in row_of and free[row_of[p]]]
        self._best = [(sc, state.ids[r]) for r, sc in rows]   # answered, pending or gone: out of the list
        heapq.heapify(self._best)
        self.last_scores = RowScores(self.model, state.X, dict(rows))
        if not rows:
            return []
        scores = np.zeros(state.n, np.float32)
        idx = np.asarray([r for r, _ in rows], np.int64)
        scores[idx] = [sc for _, sc in rows]
        return top_rows(scores, idx, k)


def _batch(p: SourceParams) -> ModelGuided:
    return ModelGuided(k0=p.k0, seed=p.seed)


register(SourceSpec("model", batch=_batch, live=lambda p: LiveModel(),
                    summary="the classifier trained on the seeds and the verdicts (also ranks the others)"))

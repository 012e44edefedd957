"""GBLE as a candidate source: label propagation on a kNN graph (the paper's Algorithm 3), positives and
negatives clamped.

* batch: :class:`~synapse_stream.methods.gble.GBLE` (the exact graph over the pool and the seeds, built once in
  ``prepare``);
* live: :class:`LiveGBLE`, propagation on the worker's incremental :class:`~synapse_stream.graph.KNNGraph` (each
  round only the posts and seeds new since the last one are searched), every positive outside the snapshot
  clamped to 1 and an overturned one to 0, warm-started from the last round.

Cost of a live proposal: O(iterations · n k) for the propagation plus O(n) for the top k.
"""
from __future__ import annotations

import numpy as np

from ..methods.base import LoopState, top_rows
from ..methods.gble import GBLE, propagate
from .base import CandidateSource, LiveView
from .registry import SourceSpec, register


class LiveGBLE(CandidateSource):
    """GBLE over the live rounds' :class:`~synapse_stream.graph.KNNGraph` (``LiveView.graph``)."""

    name = "gble"
    uses_graph = True

    def __init__(self, iterations: int = 20) -> None:
        self.iterations = int(iterations)
        self.graph = None
        self.seed_values: dict[str, float] = {}    # seed node name in the graph -> clamp value
        self._y: np.ndarray | None = None

    def refresh(self, view: LiveView) -> None:
        self.graph = view.graph
        self.seed_values = {"seed:" + s: 1.0 for s in view.external}
        for s in view.retracted:
            if "seed:" + s in self.graph.node_of:
                self.seed_values["seed:" + s] = 0.0

    def forget(self) -> None:
        self._y = None

    def propose(self, state: LoopState, k: int) -> list[tuple[int, float]]:
        g = self.graph
        if g is None or len(g) == 0 or state.n == 0:
            return []
        n_nodes = len(g)
        rows_nodes = g.nodes_of(state.ids)
        known = np.flatnonzero(state.labels >= 0)
        seed_nodes = np.asarray([g.node_of[s] for s in self.seed_values], np.int64)
        clamp_rows = np.concatenate([rows_nodes[known], seed_nodes])
        clamp_vals = np.concatenate([state.labels[known].astype(np.float32),
                                     np.asarray(list(self.seed_values.values()), np.float32)])
        y_init = None
        if self._y is not None:
            y_init = np.zeros(n_nodes, np.float32)
            y_init[:min(len(self._y), n_nodes)] = self._y[:n_nodes]
        self._y = propagate(g.transition(), np.zeros(n_nodes, np.float32), clamp_rows, clamp_vals,
                            self.iterations, y_init)
        return top_rows(self._y[rows_nodes], np.flatnonzero(state.unlabelled_mask()), k)


register(SourceSpec("gble", batch=lambda p: GBLE(k=p.gble_k, k0=p.k0, iterations=p.gble_iterations),
                    live=lambda p: LiveGBLE(p.gble_iterations),
                    summary="label propagation on the kNN graph of posts and seeds"))

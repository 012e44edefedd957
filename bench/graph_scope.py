"""GBLE's quality when the kNN graph is searched in stretches of time (the worker's ``SYNAPSE_GBLE_SCOPE=recent``).

``python -m bench.graph_scope BANDS REACH eval ARGS...`` runs ``synapse-stream eval ARGS...`` with GBLE's graph (the
source alone and inside the policy) built as the worker's ``recent`` scope builds it over a window of ``BANDS``
segments: the pool is put in a random arrival order and cut into ``BANDS`` stretches; each post's ``k`` nearest are
searched among the posts of its own stretch and the ``REACH`` stretches before it (the worker: its own segment and
the last sealed one, ``REACH`` 1) and the seeds; each seed's among every post and seed; symmetrised as
``knn_graph``. ``BANDS`` 1 is the exact graph of ``eval``. The commands and results: docs/live-rounds.md,
"The graph's scope".
"""
from __future__ import annotations

import sys

import numpy as np
from scipy import sparse


def banded_graph(V: np.ndarray, n: int, k: int, bands: int, reach: int, rng) -> sparse.csr_matrix:
    """The symmetric binary kNN graph of ``V`` (``n`` posts, then the seeds) searched stretch by stretch."""
    m = len(V) - n
    band = np.empty(n, np.int64)
    band[rng.permutation(n)] = np.arange(n) * bands // n
    rows, cols = [], []
    for b in range(bands):
        own = np.flatnonzero(band == b)
        near = np.flatnonzero((band >= b - reach) & (band <= b))
        cand = np.concatenate([near, np.arange(n, n + m)])
        for start in range(0, len(own), 1024):
            q = own[start:start + 1024]
            sims = V[q] @ V[cand].T
            sims[np.arange(len(q)), np.searchsorted(near, q)] = -np.inf     # not itself
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            rows.append(np.repeat(q, k))
            cols.append(cand[top].ravel())
    sims = V[n:] @ V.T
    sims[np.arange(m), n + np.arange(m)] = -np.inf
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    rows.append(np.repeat(n + np.arange(m), k))
    cols.append(top.ravel())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    A = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(V), len(V)))
    return ((A + A.T) > 0).astype(np.float32).tocsr()


def main(argv: list[str]) -> int:
    import synapse_stream.methods.gble as gble
    from stream_app.cli import main as cli

    bands, reach, rest = int(argv[0]), int(argv[1]), argv[2:]
    if bands > 1:
        def _prepare(self, state):
            V = np.vstack([state.X, state.S])
            self._W = gble.row_normalise(banded_graph(V, state.n, self.k, bands, reach, np.random.default_rng(0)))
            self._y = None
        gble.GBLE._prepare = _prepare
    return cli(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

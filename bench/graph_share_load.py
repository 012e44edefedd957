"""Time loading saved kNN-graph shares into a fresh graph (``KNNGraph.add_share``), as a restart does.

    python bench/graph_share_load.py LABEL 'DIR/shard-0/*.k10.npz'

e.g. the shares ``python -m bench.round_profile --cache DIR`` keeps. For an A/B of two commits, run it alternately
with ``PYTHONPATH`` pointing at each checkout (one line each: wall and CPU seconds, the adjacency's entries).
"""
from __future__ import annotations

import glob
import sys
import time

import numpy as np

from synapse_stream.graph import KNNGraph


def main() -> None:
    label, pattern = sys.argv[1], sys.argv[2]
    loads = []
    for f in sorted(glob.glob(pattern)):
        with np.load(f, allow_pickle=False) as z:
            loads.append((z["own"].tolist(), z["src"], z["names"].tolist(), z["dst"]))
    g = KNNGraph(10)
    t, c = time.perf_counter(), time.process_time()
    for share in loads:
        g.add_share(*share)
    print(f"{label}: {len(loads)} shares, {len(g.names):,} nodes: add_share wall {time.perf_counter() - t:.2f} s, "
          f"CPU {time.process_time() - c:.2f} s; adjacency entries {g.adjacency().nnz:,}")


if __name__ == "__main__":
    main()

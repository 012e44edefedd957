"""What the rounds' checkpoint costs at a soak's scale: IBG's kept lists for ``--positives`` positives (``d_max +
slack`` posts each), the automatic τ with ``--verdicts`` booked verdicts, the parts of a 200 k window.

    python bench/checkpoint_cost.py [--positives 7600] [--verdicts 12000] [--out bench/checkpoint_cost.json]

Prints the time to build the arrays, write the file, read it back and restore, and the file's size (one run).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from synapse_stream.checkpoints import RoundCheckpoints
from synapse_stream.sources.ibg import LiveIBG


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--positives", type=int, default=7600)
    ap.add_argument("--verdicts", type=int, default=12000)
    ap.add_argument("--d-max", type=int, default=10)
    ap.add_argument("--segments", type=int, default=18)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    ibg = LiveIBG(tau="auto", d_max=a.d_max)
    limit = ibg.d_max + ibg.slack
    for i in range(a.positives):
        sims = np.sort(rng.uniform(0.5, 0.9, limit))[::-1]
        ibg.lists[f"post-{i:09d}"] = ([(float(s), f"post-{rng.integers(0, 10**9):09d}") for s in sims], 0.5)
    ibg.auto.tau = ibg.auto.start_tau = 0.55
    ibg.auto.moves = [("start", 0.55)]
    ibg.auto.observe(rng.uniform(0.3, 0.9, a.verdicts).tolist(), rng.integers(0, 2, a.verdicts).tolist())
    ibg._lists_tau = ibg.tau
    ibg._done = {i: (object(), 11_000, f"post-{i:09d}", f"post-{i + 11_000:09d}") for i in range(a.segments)}
    store = RoundCheckpoints(tempfile.mkdtemp())
    t0 = time.perf_counter()
    arrays = ibg.checkpoint()
    t1 = time.perf_counter()
    path = store.save("d", {"fingerprint": {}}, {"ibg": arrays})
    t2 = time.perf_counter()
    _, back = store.load("d")
    t3 = time.perf_counter()
    again = LiveIBG(tau="auto", d_max=a.d_max)
    again.restore(back["ibg"])
    t4 = time.perf_counter()
    assert again.lists == ibg.lists and again.tau == ibg.tau
    out = {"positives": a.positives, "entries": a.positives * limit, "verdicts": a.verdicts,
           "arrays_s": t1 - t0, "write_s": t2 - t1, "read_s": t3 - t2, "restore_s": t4 - t3,
           "file_mb": path.stat().st_size / 2**20}
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

"""How long a full garbage collection stops a worker, before and after ``gc.freeze()`` (``Settings.gc_freeze``).

Run in a fresh process (``python -m bench.gcpause --out F``) that loads what a worker loads: Faust, the
service module and its imports, the embedder (model weights and tokenizer) with one batch embedded. Then
``gc.collect()`` is timed a few times, the heap is frozen as the worker does (``stream_app.worker.metrics.freeze_heap``),
and ``gc.collect()`` is timed again. A full collection stops every thread, the event loop included.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def timed_collections(rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        gc.collect()
        out.append(1000 * (time.perf_counter() - t))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import faust  # noqa: F401  (what a worker imports)

    from stream_app.worker.metrics import freeze_heap
    from stream_app.worker.service import DetectionService  # noqa: F401
    from synapse_stream.embedders import make_embedder

    emb = make_embedder(a.embedder, batch_size=32, threads=1)
    emb.encode(["a first post to load the model", "and a second one"] * 16)
    objects = len(gc.get_objects())
    before = timed_collections(a.rounds)
    frozen = freeze_heap()
    after = timed_collections(a.rounds)
    res = {"embedder": a.embedder, "tracked_objects": objects, "frozen_objects": frozen,
           "full_collection_ms": statistics.median(before), "full_collection_ms_each": before,
           "after_freeze_ms": statistics.median(after), "after_freeze_ms_each": after}
    with open(a.out, "w") as fh:
        json.dump(res, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

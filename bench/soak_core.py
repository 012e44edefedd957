"""The soak's service loop in one process, without Faust, Kafka or Redis: the worker's DetectionService on
the memory state, the soak's synthetic stream with event times (docs/soak.md), a moderator answering every
candidate four batches later, segments expired after every batch. Prints RSS every 2,500 posts: what the
core holds over a stream 16x its window (5,000 posts).

    .venv/bin/python bench/soak_core.py [--posts 80000] [--window 5000] [--tracemalloc]

``--tracemalloc``: Python allocations (numpy's arrays included) traced from the start; a snapshot at 2x the window and
one at the end, and the 20 source lines whose held memory grew most between the two (what still grows after the
window has filled; memory of C++ libraries, hnswlib's segments, is not traced).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
import tracemalloc

import psutil

from stream_app.devstack.soak import DETECTOR, Stream
from stream_app.worker.service import DetectionService, RawMsg
from stream_app.worker.settings import DetectorSettings, Settings
from stream_app.worker.state import MemoryState


async def seeded_service(st: Stream, **settings) -> DetectionService:
    """The worker's service on the memory state (no Faust, Kafka or Redis), holding partition 0, with the soak
    detector and ``st``'s seeds registered; ``settings``: the worker settings of the run."""
    s = Settings(_env_file=None, detectors=[DetectorSettings(**DETECTOR)], data_dir=tempfile.mkdtemp(), **settings)
    svc = DetectionService(s, MemoryState())
    await svc.start()
    await svc.assign([0])
    for t in st.seeds():
        await svc.handle_seeds([RawMsg("synapse.seeds", 0, 0, None, json.dumps({"detector": "trend", "text": t}).encode())])
    await svc.poll_seedlog(block_ms=None)
    return svc


async def main(posts: int, window: int, trace: bool = False) -> None:
    if trace:
        tracemalloc.start(8)
    base = None
    st = Stream()
    svc = await seeded_service(st, embedder="hashing-384", retention=f"{window}s", round_settle=0.0,
                               round_min_interval=0.0)
    t0, delayed = time.time() - posts - 3600, []
    for b in range(0, posts, 500):
        out = await svc.handle_posts([RawMsg("synapse.posts", 0, i, f"s{i}".encode(), json.dumps(
            {"id": f"s{i}", "text": st.text(i), "ts": t0 + i}).encode()) for i in range(b, b + 500)])
        await svc.confirm(out.claims)
        await svc.expire_window()
        r = await svc.run_rounds()
        await svc.confirm(r.claims)
        delayed.append([json.loads(v) for _, v in out.candidates + r.candidates])
        for c in (delayed.pop(0) if len(delayed) > 4 else []):
            routed = await svc.handle_labels([RawMsg("synapse.labels", 0, 0, c["post_id"].encode(), json.dumps(
                {"detector": "trend", "post_id": c["post_id"], "label": int(st.is_trend(int(c["post_id"][1:]))),
                 "labeler": "moderator:bench"}).encode())])
            await svc.handle_verdicts([RawMsg("synapse.verdicts", p, 0, k, v) for p, k, v in routed.verdicts])
        if (b + 500) % 2500 == 0:
            gc.collect()
            c = await svc.state.verdicts.counters("trend")
            print(f"posts={b + 500} rss_mb={psutil.Process().memory_info().rss >> 20} window={len(svc.index)} "
                  f"rounds={svc.rounds['trend'].planned} answered={c.get('answered', 0)}"
                  + (f" traced_mb={tracemalloc.get_traced_memory()[0] / 2**20:.1f}" if trace else ""), flush=True)
            if trace and b + 500 == 2 * window:
                base = tracemalloc.take_snapshot()
    if trace and base is not None:
        gc.collect()
        diff = tracemalloc.take_snapshot().compare_to(base, "lineno")
        print(f"tracemalloc: held memory grown most from {2 * window} posts to {posts}:")
        for d in diff[:20]:
            print(f"  {d.size_diff / 2**20:+8.2f} MiB {d.count_diff:+8d} blocks  {d.traceback}")
    await svc.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=80_000)
    ap.add_argument("--window", type=int, default=5_000)
    ap.add_argument("--tracemalloc", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.posts, a.window, a.tracemalloc))

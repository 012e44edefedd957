"""The trends stage's cost in the worker's posts pipeline: the same posts through the service with the stage off,
in its own thread (the default) and inline on the model thread, in one run, interleaved.

    PYTHONPATH=. .venv/bin/python bench/trends_worker.py [--posts N] [--repeats R] [--embedder hashing-384]

The worker's :class:`~stream_app.worker.service.DetectionService` on the memory state (no Faust, Kafka or
Redis: the broker's cost is the same in every mode and would only add noise), one detector, the soak's
synthetic stream (docs/soak.md; 2 % of its posts the detector's trend, claimed and so never seen by the stage)
with one post a second of event time, in batches of ``--batch`` (the worker's ``embed_batch_size``). For each
mode, ``--repeats`` fresh services, the modes taking turns (off, thread, inline, off, ...) so that the other
engineers' load falls on all of them alike. Per run it prints the posts pipeline's rate (posts handed to
``handle_posts`` per second, until the last batch is indexed and compared), the rate until the stage has
caught up too (its backlog flushed), the stage's own ms a post fed to it (``synapse_trend_stage_seconds``)
and the batches it skipped; then the medians per mode and their ratios to "off".
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from bench.soak_core import seeded_service
from stream_app.devstack.soak import Stream
from stream_app.worker.service import RawMsg

MODES = {"off": {"trends": False}, "thread": {"trends": True, "trends_thread": True},
         "inline": {"trends": True, "trends_thread": False}}


async def one_run(mode: str, posts: int, batch: int, embedder: str) -> dict:
    st = Stream()
    svc = await seeded_service(st, embedder=embedder, embed_batch_size=batch, **MODES[mode])
    t0 = time.time() - posts - 3600
    msgs = [[RawMsg("synapse.posts", 0, i, f"s{i}".encode(), json.dumps(
        {"id": f"s{i}", "text": st.text(i), "ts": t0 + i}).encode()) for i in range(b, min(posts, b + batch))]
        for b in range(0, posts, batch)]
    # warm the embedder and the index (first calls), not timed
    await svc.handle_posts([RawMsg("synapse.posts", 0, 10**9, b"w", json.dumps({"id": "w", "text": "warm up"}).encode())])
    await svc.trends.flush()
    fed0 = svc.metrics.trend_seconds._sum.get()
    t = time.perf_counter()
    for m in msgs:
        await svc.handle_posts(m)
    piped = time.perf_counter() - t
    await svc.trends.flush()
    caught_up = time.perf_counter() - t
    stage_s = svc.metrics.trend_seconds._sum.get() - fed0
    skipped = svc.metrics.trend_batches_skipped._value.get()
    observed = 0 if svc.trends.stage is None else svc.trends.stage.seen
    await svc.stop()
    return {"mode": mode, "pipeline_posts_s": posts / piped, "caught_up_posts_s": posts / caught_up,
            "stage_ms_per_post": 1e3 * stage_s / max(1, observed), "stage_posts": observed,
            "skipped_batches": int(skipped)}


async def main(a) -> None:
    rows: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(a.repeats):
        for mode in MODES:
            row = await one_run(mode, a.posts, a.batch, a.embedder)
            rows[mode].append(row)
            print(f"run {r} {mode:6s}: pipeline {row['pipeline_posts_s']:7.1f} posts/s, caught up "
                  f"{row['caught_up_posts_s']:7.1f} posts/s; stage {row['stage_ms_per_post']:.3f} ms a post over "
                  f"{row['stage_posts']} posts fed to it, {row['skipped_batches']} batches skipped", flush=True)
    med = {m: {k: statistics.median(x[k] for x in rows[m]) for k in ("pipeline_posts_s", "caught_up_posts_s",
                                                                       "stage_ms_per_post")} for m in MODES}
    off = med["off"]
    print(f"medians over {a.repeats} runs of {a.posts} posts ({a.embedder}, batches of {a.batch}, "
          f"{os.cpu_count()} cpus):")
    for m, v in med.items():
        print(f"  {m:6s}: pipeline {v['pipeline_posts_s']:7.1f} posts/s ({v['pipeline_posts_s'] / off['pipeline_posts_s']:.2f}x off), "
              f"caught up {v['caught_up_posts_s']:7.1f} posts/s ({v['caught_up_posts_s'] / off['caught_up_posts_s']:.2f}x off), "
              f"off's {1e3 / off['pipeline_posts_s']:.3f} ms a post; stage {v['stage_ms_per_post']:.3f} ms a post")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--embedder", default="hashing-384")
    asyncio.run(main(ap.parse_args()))

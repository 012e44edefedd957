"""The pipeline's own per-post cost (issue #18 part 2): a worker draining a backlog with a static embedder.

With a static embedder (``wordllama``, else the built-in ``hashing-384``) embedding costs a few µs per post,
so the drain rate measures everything else the worker does per post: parse, the partition map in Redis,
the index insert, the seed compare, the claims, the produce of candidates, the offset commit and Faust's
own consumer path. Per broker (Tansu, the dev broker; Apache Kafka 4.x from ``.cache/kafka``), in one run:

* ``raw_posts_per_s``: the embedder alone in this process on the same posts and micro-batches, measured
  between the drained chunks (:func:`bench.stack.backlog_efficiency`);
* ``posts_per_s``: the worker's drain of a backlog, by its own clock;
* ``overhead_us_per_post`` = 1e6 / drain − 1e6 / raw: what a post costs besides its embedding;
* ``stages_us_per_post``: the worker's stage timers (``synapse_posts_stage_seconds_total``) over the same
  drains, per post (wall time inside each stage, awaits included). The stages run in three threads (event
  loop: events, parse, record, claim, publish, ack; embed thread: embed; model thread: index, compare,
  classify, trends) that overlap, so they do not add up to the overhead; ``event_loop_other_us_per_post``
  is the event loop's time outside its timed stages (Faust's consumer and ``take_events``, aiokafka's
  fetch parsing and produce, offset commits, the asyncio machinery): 1e6 / drain minus those stages;
* ``thread_cpu_us_per_post``: CPU per post of each worker thread (``synapse_thread_cpu_seconds``, from
  ``/proc``; MainThread = the event loop, synapse-embed, synapse-model, synapse-trends, Faust's consumer
  thread), ``cpu_us_per_post`` their sum: with 2 cores, what bounds the drain once the threads overlap;
* ``profile`` (``--profile``): py-spy's share of the worker's samples per stage (CPU, every thread).

Then 1 and 2 workers on the 2-partition topic with the same static embedder (on Apache Kafka), each draining
a backlog produced while they are stopped (:func:`bench.stack.run_workers_backlog`: the producer's speed,
60-400 posts/s on this loaded machine, is not in the figure).
The top-level ``static_posts_per_s`` and ``overhead_us_per_post`` of ``bench/results.json`` are the Apache
Kafka figures (the Tansu broker answers produce requests one record at a time and caps lower).
"""
from __future__ import annotations

import importlib.util

from . import stack
from .common import say

# event-loop stages (the overhead's share the event loop spends in them); the others run in the embed and
# model threads, overlapped with the event loop
LOOP_STAGES = ("events", "parse", "record", "claim", "publish", "ack")


def static_embedder() -> str:
    return "wordllama" if importlib.util.find_spec("wordllama") is not None else "hashing-384"


def drain(*, broker: str, embedder: str, posts: int, batch: int, chunk_posts: int, timeout: float = 600,
          env: dict | None = None, label: str | None = None, profile_dir=None) -> dict:
    """One worker on ``broker`` draining ``posts`` (in chunks of at most ``chunk_posts``) with ``embedder``."""
    r = stack.run_single(embedder=embedder, posts=posts, latency_posts=0, batch=batch, timeout=timeout,
                         extra_env=env or {}, label=label or f"static[{broker}]", broker=broker,
                         chunk_posts=chunk_posts, chunks=1, profile_dir=profile_dir)
    e = r["efficiency"]
    n = e["counted"]
    out = {"broker": r["broker"], "embedder": embedder, "batch": batch, "env": r["env"], "posts": e["posts"],
           "counted": n, "chunks": e["chunks"], "posts_per_s": e["pipeline_posts_per_s"],
           "posts_per_s_each": e["pipeline_each"], "raw_posts_per_s": e["raw_posts_per_s"],
           "overhead_us_per_post": 1e6 / e["pipeline_posts_per_s"] - 1e6 / e["raw_posts_per_s"],
           "posts_per_batch": e["posts_per_batch"], "embed_us_per_post_in_worker":
               1e6 / e["embedder_in_worker_posts_per_s"] if e["embedder_in_worker_posts_per_s"] else None,
           "worker_start_s": r.get("worker_start_s"), "candidates_last_chunk": e["candidates"],
           "io_ms_per_batch": e["io_ms_per_batch"], "trend_records_per_post":
               (e["trend_updates"] + e["trend_raised"]) / max(1, n), "trend_batches_skipped": e["trend_skipped"]}
    st = e.get("stage_seconds") or {}
    out["stages_us_per_post"] = {k: round(1e6 * v / n, 1) for k, v in sorted(st.items(), key=lambda kv: -kv[1])}
    if st:
        loop_us = sum(out["stages_us_per_post"].get(k, 0.0) for k in LOOP_STAGES)
        out["event_loop_other_us_per_post"] = round(1e6 / e["pipeline_posts_per_s"] - loop_us, 1)
    cpu = e.get("thread_cpu_seconds") or {}
    out["thread_cpu_us_per_post"] = {k: round(1e6 * v / n, 1) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
                                     if v > 0}
    out["cpu_us_per_post"] = round(sum(out["thread_cpu_us_per_post"].values()), 1)
    out["wall_us_per_post"] = round(1e6 / e["pipeline_posts_per_s"], 1)
    if e.get("profile"):
        out["profile"] = e["profile"]
    say(out["broker"], f"static drain {out['posts_per_s']:.0f} posts/s, raw {out['raw_posts_per_s']:.0f} posts/s: "
        f"overhead {out['overhead_us_per_post']:.0f} µs/post; stages (µs/post) {out['stages_us_per_post']}; "
        f"CPU by thread (µs/post) {out['thread_cpu_us_per_post']}")
    return out


# the most posts per chunk, produced while the worker is stopped: Tansu takes one record per produce request
# (~200/s here) and drops a consumer silent for 6 s; Kafka gets a batching producer and drops it after 60 s
# (producing ran at 60-400 posts/s here under the machine's load: a chunk must be produced well within that)
CHUNK_POSTS = {"tansu": 500, "kafka": 1000}


# further drains on Apache Kafka, one change each on top of the defaults (the insert is the largest stage left)
CONFIGS = {
    "ef_construction_100": {"SYNAPSE_HNSW_EF_CONSTRUCTION": "100"},
    "insert_threads_2": {"SYNAPSE_HNSW_INSERT_THREADS": "2"},
    "trends_off": {"SYNAPSE_TRENDS": "false"},
}
QUICK_CONFIGS = {k: CONFIGS[k] for k in ("ef_construction_100", "trends_off")}


def insert_threads(embedder: str, *, posts: int = 6000, batch: int = 256, ef_constructions=(200, 100)) -> dict:
    """hnswlib ``add_items`` at 1 and 2 threads (the model thread's insert, ``SYNAPSE_HNSW_INSERT_THREADS``), in
    this process on ``embedder``'s vectors of the demo posts (made distinct by a suffix), M = 16, micro-batches
    of ``batch``; interleaved (1, 2, 1, 2) so a change of the machine's load shows as a spread."""
    import time

    import hnswlib
    import numpy as np

    from synapse_stream.embedders import make_embedder

    from .common import load_demo_posts

    demo = [p["text"] for p in load_demo_posts()]
    texts = [f"{demo[i % len(demo)]} #{i}" for i in range(posts)]
    vecs = np.asarray(make_embedder(embedder).encode(texts), dtype=np.float32)
    out: dict = {"posts": posts, "batch": batch, "m": 16}
    for efc in ef_constructions:
        runs: dict[int, list[float]] = {1: [], 2: []}
        for threads in (1, 2, 1, 2):
            idx = hnswlib.Index(space="cosine", dim=vecs.shape[1])
            idx.init_index(max_elements=posts, ef_construction=efc, M=16, random_seed=100)
            t = time.perf_counter()
            for i in range(0, posts, batch):
                idx.add_items(vecs[i:i + batch], np.arange(i, min(i + batch, posts)), num_threads=threads)
            runs[threads].append(1e6 * (time.perf_counter() - t) / posts)
        out[f"ef_construction_{efc}"] = {"us_per_post_1_thread": min(runs[1]), "us_per_post_2_threads": min(runs[2]),
                                         "each": runs, "speedup_2_vs_1": min(runs[1]) / min(runs[2])}
        say("static", f"hnswlib insert, ef_construction {efc}: {min(runs[1]):.0f} µs/post on 1 thread, "
                      f"{min(runs[2]):.0f} on 2 ({min(runs[1]) / min(runs[2]):.2f}x)")
    return out


def section(*, posts: int, worker_posts: int, batch: int | None = None, brokers=("tansu", "kafka"),
            embedder: str | None = None, env: dict | None = None, profile_dir=None, configs: dict | None = None) -> dict:
    """The static-embedder section of ``bench/run.py`` (``--only static``). ``batch``: the micro-batch (default:
    the worker's for a static embedder); ``configs``: further Kafka drains (name -> worker env)."""
    embedder = embedder or static_embedder()
    if batch is None:
        from stream_app.worker.settings import Settings

        s = Settings(_env_file=None, embedder=embedder)
        batch = s.batch_size() if hasattr(s, "batch_size") else s.embed_batch_size   # (older workers)
    res: dict = {"embedder": embedder, "batch": batch, "brokers": {}, "configs": {}}
    for b in brokers:
        prof = None
        if profile_dir is not None:
            prof = profile_dir / f"static-{b}"
            prof.mkdir(parents=True, exist_ok=True)
        res["brokers"][b] = drain(broker=b, embedder=embedder, posts=posts if b == "kafka" else posts // 2,
                                  batch=batch, chunk_posts=CHUNK_POSTS.get(b, 500), env=env, profile_dir=prof)
    top = res["brokers"].get("kafka") or next(iter(res["brokers"].values()))
    res["static_posts_per_s"] = top["posts_per_s"]
    res["overhead_us_per_post"] = top["overhead_us_per_post"]
    res["top_level_broker"] = top["broker"]
    res["insert_threads"] = insert_threads(embedder)
    for name, extra in (configs or {}).items():
        res["configs"][name] = drain(broker="kafka", embedder=embedder, posts=posts, batch=batch,
                                     chunk_posts=CHUNK_POSTS["kafka"], env={**(env or {}), **extra},
                                     label=f"static[kafka, {name}]")
    if not worker_posts:
        return res
    wb = "kafka" if "kafka" in brokers else brokers[0]
    workers = {}
    for n in (1, 2):
        workers[str(n)] = stack.run_workers_backlog(embedder=embedder, posts=worker_posts, batch=batch, timeout=600,
                                                    workers=n, env=dict(env or {}), broker=wb,
                                                    chunk_posts=CHUNK_POSTS.get(wb, 500))
    workers["speedup_2_vs_1"] = workers["2"]["posts_per_s"] / workers["1"]["posts_per_s"]
    res["workers"] = workers
    say("static", f"2 workers vs 1 ({wb}, {embedder}): {workers['2']['posts_per_s']:.0f} vs "
        f"{workers['1']['posts_per_s']:.0f} posts/s = {workers['speedup_2_vs_1']:.2f}x")
    return res


if __name__ == "__main__":   # python -m bench.static [posts] [brokers] [batch] [profile dir] [worker posts] [configs]
    import json
    import sys

    from pathlib import Path

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    bs = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("tansu", "kafka")
    batch = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
    prof = Path(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
    wp = int(sys.argv[5]) if len(sys.argv) > 5 else n
    cf = {k: CONFIGS[k] for k in sys.argv[6].split(",") if k} if len(sys.argv) > 6 else {}
    res = section(posts=n, worker_posts=wp, batch=batch, brokers=bs, profile_dir=prof, configs=cf)
    print(json.dumps(res, indent=2, default=str))

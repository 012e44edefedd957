"""The expiry case of ``make chaos``: the worker killed while a segment leaves the window.

``synapse-stream chaos-expiry`` (``make chaos`` runs it after the main chaos run). One worker on the embedded
stack keeps at most ``--window`` posts per shard (``SYNAPSE_RETENTION_POSTS``; segments of ``--segment`` posts);
one detector runs online IBG and a simulated moderator answers its candidates from the truth. The worker runs
with the crash point ``retention.drop`` (``stream_app/worker/crashpoints.py``): the first time segments are due,
it cleans Redis of their posts (unsent candidates let go, unanswered ones parked, routing forgotten) and is then
killed with SIGKILL before the segments go. The harness restarts it; the restarted worker loads its snapshot
(the due segments still in it), finds them due again and finishes the drop once. More posts follow; then the
worker is stopped gracefully and the checks read the shards' snapshots, the candidates topic and Redis:

* ``missing_in_window``: posts among the newest ``window - segment`` of their partition not in the index;
* ``beyond_window``: posts older than the newest ``window + segment`` of their partition still in the index;
* ``duplicate_candidates``: a post sent twice for the detector on the candidates topic;
* ``lost_verdicts``: a post the moderator answered with no verdict in the ledger (a verdict for a post that left
  the window still counts: ``late_verdicts`` of them);

and it ends with one line::

    chaos-expiry: crashed=1 posts=N window=N missing_in_window=0 beyond_window=0 duplicate_candidates=0 lost_verdicts=0 late_verdicts=N
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

from stream_app.devstack.chaos import finish_run, load_posts
from stream_app.devstack.demo import LiveLoop, gauge
from synapse_stream.messages import dumps

DETECTOR = "expiry"


async def run_expiry(args) -> dict:
    posts = load_posts(args.posts, args.seed)
    truth = {p["id"]: p["label"] for p in posts}
    seeds = [p["text"] for p in load_posts(args.posts + 600, args.seed)[args.posts:] if p["label"] == 1][:args.seeds]
    det = {"name": DETECTOR, "tau": args.tau, "d_max": args.dmax, "candidates": "ibg"}
    run_dir = Path(args.run_dir) if args.run_dir else None
    loop = LiveLoop(run_dir, detectors=[det], embedder=args.embedder, partitions=args.partitions,
                    extra_env={"SYNAPSE_RETENTION": "off", "SYNAPSE_RETENTION_POSTS": str(args.window),
                               "SYNAPSE_SEGMENT_POSTS": str(args.segment), "SYNAPSE_RETENTION_CHECK_SECONDS": "1",
                               "SYNAPSE_SNAPSHOT_INTERVAL": "2"})
    marker = loop.run_dir / "crashed-at-retention-drop"
    loop.extra_env["SYNAPSE_CRASH_POINT"] = f"retention.drop:{marker}"
    say = (lambda m: print(f"[chaos-expiry] {m}", flush=True)) if not args.quiet else (lambda m: None)
    report: dict = {"run_dir": str(loop.run_dir), "posts": len(posts), "window": args.window,
                    "segment": args.segment, "partitions": args.partitions, "crashed": 0}
    await asyncio.to_thread(loop.start)
    worker = loop.workers[0]
    stop = asyncio.Event()
    by_part: dict[int, list[str]] = {p: [] for p in range(args.partitions)}
    try:
        moderator = asyncio.create_task(loop.moderate(truth, stop))
        await loop.send_seeds(DETECTOR, seeds)
        producer = await loop.producer()

        async def send(batch):
            for i, p in batch:
                part = i % args.partitions
                by_part[part].append(p["id"])
                await producer.send(loop.topics.posts, dumps({"id": p["id"], "text": p["text"], "ts": time.time()}),
                                    key=p["id"].encode(), partition=part)
            await producer.flush()

        numbered = list(enumerate(posts))
        half = len(numbered) // 2
        await send(numbered[:half])
        say(f"{half} posts sent; waiting for the first expiry (and the crash point)")
        t0 = time.monotonic()
        while worker.running and time.monotonic() - t0 < args.timeout:
            await asyncio.sleep(0.5)
        if worker.running:
            raise RuntimeError(f"the worker did not reach the crash point in {args.timeout:.0f}s")
        report["crashed"] = int(marker.exists())
        report["exit_code"] = worker.proc.returncode
        say(f"worker killed at the crash point (exit {worker.proc.returncode}); restarting")
        t1 = time.monotonic()
        await asyncio.to_thread(worker.start, timeout=180)
        report["restart_ready_seconds"] = round(time.monotonic() - t1, 2)
        await send(numbered[half:])
        say(f"{len(numbered)} posts sent; waiting for the loop to go quiet")
        m = await _wait_indexed(loop, len(posts), args.timeout)
        await asyncio.sleep(3.0)    # the last candidates answered
        stop.set()
        mod = await moderator
        m = await asyncio.to_thread(loop.scrape)
        report["expired_total"] = int(gauge(m, "synapse_posts_expired_total") or 0)
        await loop.close()
        code = await asyncio.to_thread(worker.stop)
        report["graceful_stop_exit_code"] = code
        report.update(_check_window(loop, by_part, args.window, args.segment))
        report.update(await _check_topic_and_ledger(loop, mod))
        report["retention_log_lines"] = worker.log_text(current_run=False).count("retention: ")
        return report
    finally:
        stop.set()
        await loop.close()
        await asyncio.to_thread(loop.stop)


async def _wait_indexed(loop: LiveLoop, n: int, timeout: float) -> dict:
    """Until every post sent was consumed (indexed, or late/expired)."""
    t0 = time.monotonic()
    while True:
        try:
            m = await asyncio.to_thread(loop.scrape)
            if (gauge(m, "synapse_posts_indexed") or 0) >= n:
                return m
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"posts not all consumed after {timeout:.0f}s")
        await asyncio.sleep(0.5)


def _check_window(loop: LiveLoop, by_part: dict[int, list[str]], window: int, segment: int) -> dict:
    from synapse_stream.segments import SegmentedIndex

    held: dict[int, set[str]] = {}
    for path in sorted(Path(loop.run_dir).glob("worker-0/shard-*/index.json")):
        part = int(path.parent.name.split("-", 1)[1])
        held[part] = set(SegmentedIndex.load(path).ids())
    missing = beyond = 0
    for part, ids in by_part.items():
        have = held.get(part, set())
        must = ids[-(window - segment):] if window > segment else []
        missing += sum(1 for p in must if p not in have)
        gone = ids[:max(0, len(ids) - (window + segment))]
        beyond += sum(1 for p in gone if p in have)
    return {"missing_in_window": missing, "beyond_window": beyond,
            "index_posts": sum(len(v) for v in held.values())}


async def _check_topic_and_ledger(loop: LiveLoop, mod) -> dict:
    import redis.asyncio as aioredis

    from stream_app.worker.state import RedisState

    cands = [json.loads(m.value) for m in await loop.read_topic(loop.topics.candidates)]
    counts = Counter((c["detector"], c["post_id"]) for c in cands if c.get("reason") != "audit")
    r = aioredis.from_url(loop.redis_url, decode_responses=True)
    try:
        ledger = await RedisState(r, "synapse:").verdicts.ledger(DETECTOR)
    finally:
        await r.aclose()
    answered = {c["post_id"] for c in mod.candidates}
    from synapse_stream.segments import SegmentedIndex

    held = set()
    for path in Path(loop.run_dir).glob("worker-0/shard-*/index.json"):
        held |= set(SegmentedIndex.load(path).ids())
    return {"candidates": len(cands), "duplicate_candidates": sum(n - 1 for n in counts.values() if n > 1),
            "answered": len(answered), "lost_verdicts": len(answered - set(ledger)),
            "late_verdicts": len((answered & set(ledger)) - held)}


def expiry_line(r: dict) -> str:
    return (f"chaos-expiry: crashed={r['crashed']} posts={r['posts']} window={r['window']} "
            f"missing_in_window={r['missing_in_window']} beyond_window={r['beyond_window']} "
            f"duplicate_candidates={r['duplicate_candidates']} lost_verdicts={r['lost_verdicts']} "
            f"late_verdicts={r['late_verdicts']}")


def add_expiry_parser(sub) -> None:
    p = sub.add_parser("chaos-expiry", help="the worker killed while a segment leaves the window (make chaos)")
    p.add_argument("--posts", type=int, default=8000)
    p.add_argument("--window", type=int, default=1000, help="posts kept per shard (SYNAPSE_RETENTION_POSTS)")
    p.add_argument("--segment", type=int, default=200, help="posts per segment (SYNAPSE_SEGMENT_POSTS)")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--embedder", default="hashing-256")
    p.add_argument("--tau", type=float, default=0.5)
    p.add_argument("--dmax", type=int, default=10)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--report", default=None, help="write the full report (JSON) here")
    p.add_argument("--quiet", action="store_true")

    def main(args):
        r = asyncio.run(run_expiry(args))
        return finish_run(r, args, expiry_line(r), expiry_ok(r), "chaos-expiry")

    p.set_defaults(func=main)


def expiry_ok(r: dict) -> bool:
    return (r["crashed"] == 1 and r["missing_in_window"] == 0 and r["beyond_window"] == 0
            and r["duplicate_candidates"] == 0 and r["lost_verdicts"] == 0 and r["graceful_stop_exit_code"] == 0)

"""The live loop through the embedded broker: pipeline efficiency, post-to-candidate latency, scale-out.

Every figure comes from real ``faust -A stream_app worker`` subprocesses on the embedded Tansu broker and
Redis (:class:`stream_app.devstack.demo.LiveLoop`). Progress is read from the workers' ``/metrics``.

* efficiency: the embedder alone on the same posts in the same micro-batches (measured just before and
  just after, in this process, while the worker idles), against posts produced → embedded, indexed,
  compared with every seed, claimed in Redis and emitted on the candidates topic.
* latency: posts sent at half the measured sustainable rate; one post in ten is a *marker*, whose exact
  text was sent as a seed beforehand, so it matches on arrival (cos = 1 > τ) and becomes a ``post``
  candidate; latency = candidate ``emitted_at`` − the post's send time (and, for what a moderator sees,
  the candidate's arrival at a consumer − send time).
* scale-out: 1 and 2 workers on the same 2-partition topic; then one probe post per partition and a
  seed per probe: every probe must come back as a ``backfill`` candidate (a seed reaches every shard).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import (
    encode_microbatches,
    load_demo_posts,
    load_demo_seeds,
    percentile,
    say,
)

DETECTOR = {"name": "bench", "tau": 0.55, "d_max": 10, "candidates": "ibg"}   # post-to-candidate latency: online IBG


def worker_defaults() -> dict:
    """The worker settings the stack runs start from (the shipped defaults, resolved on this machine)."""
    from stream_app.worker.settings import Settings

    s = Settings(_env_file=None, torch_threads=None)
    return {"torch_threads": s.model_threads(), "blas_threads": s.blas_threads, "embed_threads": s.embed_threads,
            "device": s.resolved_device(), "embedder": s.embedder,
            "posts_pipeline_depth": s.posts_pipeline_depth, "embed_batch_size": s.batch_size(),
            "embed_within": s.embed_within, "embedded_fetch_max_wait_ms": s.embedded_fetch_max_wait_ms,
            "embed_thread": s.embed_thread, "gc_freeze": s.gc_freeze}


class Collector:
    """Reads the candidates topic from the start and keeps (arrival time, message)."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.items: list[tuple[float, dict]] = []
        self._stop = asyncio.Event()
        self._task = None

    async def __aenter__(self):
        from aiokafka import AIOKafkaConsumer

        # a short fetch wait: the embedded broker holds a fetch for the whole wait (stream_app/transport.py)
        self._c = AIOKafkaConsumer(self.loop.topics.candidates, bootstrap_servers=self.loop.bootstrap, group_id=None,
                                   auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=10)
        await self._c.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self):
        while not self._stop.is_set():
            batch = await self._c.getmany(timeout_ms=50)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    self.items.append((now, json.loads(m.value)))

    async def __aexit__(self, *exc):
        self._stop.set()
        await self._task
        await self._c.stop()


class HttpProbe:
    """A thread that asks the worker's ``/healthz`` and ``/metrics`` in turn every ``every`` seconds while it is
    :meth:`on`, and keeps each response time (what a liveness probe and a Prometheus scrape see under load)."""

    def __init__(self, loop, index: int = 0, every: float = 0.1, timeout: float = 5.0) -> None:
        import threading

        self.urls = {"healthz": loop.health_url(index), "metrics": loop.metrics_url(index)}
        self.every, self.timeout = every, timeout
        self.times: dict[str, list[float]] = {k: [] for k in self.urls}
        self.errors = 0
        self._on = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import urllib.request

        k = 0
        while not self._stop.is_set():
            if not self._on.wait(0.05):
                continue
            name = ("healthz", "metrics")[k % 2]
            k += 1
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.urls[name], timeout=self.timeout) as r:
                    r.read()
                self.times[name].append(time.perf_counter() - t)
            except OSError:
                self.errors += 1
            self._stop.wait(max(0.0, self.every - (time.perf_counter() - t)))

    def on(self, flag: bool) -> None:
        (self._on.set if flag else self._on.clear)()

    def close(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=10)
        out: dict = {"every_s": self.every, "errors": self.errors}
        for k, v in self.times.items():
            out[k] = {"n": len(v), "p50_ms": _ms(percentile(v, 50)), "p99_ms": _ms(percentile(v, 99)),
                      "max_ms": _ms(max(v) if v else None)}
        return out


def process_cpu(loop) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's children (workers, broker, Redis, ...) in all,
    and of the workers alone."""
    import psutil

    workers = {w.proc.pid for w in loop.workers if w is not None and w.proc is not None}
    out = {"children": 0.0, "workers": 0.0}
    for c in psutil.Process().children(recursive=True):
        try:
            t = c.cpu_times()
        except psutil.Error:
            continue
        sec = t.user + t.system
        out["children"] += sec
        if c.pid in workers:
            out["workers"] += sec
    return out


def redis_commandstats(loop, field: str = "calls") -> dict[str, int]:
    """Per Redis command so far (``INFO commandstats``) on the loop's Redis: ``calls`` or ``usec`` (Redis's own
    CPU time in the command, Lua scripts included)."""
    import redis

    r = redis.Redis.from_url(loop.redis_url)
    try:
        return {k.removeprefix("cmdstat_"): int(v[field]) for k, v in r.info("commandstats").items()}
    finally:
        r.close()


# the commands of the posts' path (one Lua call per micro-batch records the posts' partitions, one claims the
# candidates, ...); the rest are a worker's timers and gauges (seed log, heartbeats, /metrics), per second
POST_PATH_COMMANDS = ("eval", "evalsha", "hset", "sadd", "hdel", "hincrby", "incrby", "exists", "multi", "exec")


def redis_split(calls: dict[str, int], usec: dict[str, int], posts: int, seconds: float, workers: int) -> dict:
    post = {k: v for k, v in calls.items() if k in POST_PATH_COMMANDS}
    bg = {k: v for k, v in calls.items() if k not in POST_PATH_COMMANDS and k != "info"}
    return {"calls": calls, "usec": usec, "posts": posts, "seconds": seconds,
            "post_path_commands_per_post": sum(post.values()) / posts,
            "post_path_usec_per_post": sum(usec.get(k, 0) for k in post) / posts,
            "background_commands_per_worker_s": sum(bg.values()) / seconds / workers,
            "background_usec_per_worker_s": sum(usec.get(k, 0) for k in bg) / seconds / workers}


def redis_memory(loop) -> int:
    import redis

    r = redis.Redis.from_url(loop.redis_url)
    try:
        return int(r.info("memory")["used_memory"])
    finally:
        r.close()


def _delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0)}


def metric_sum(loop, name: str, **labels) -> float:
    key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    total = 0.0
    for i in range(len(loop.workers)):
        try:
            total += loop.scrape(i).get(key, 0.0)
        except OSError:
            pass
    return total


def indexed(loop) -> int:
    """Posts held in the workers' shards, from ``/healthz`` (cheap: the progress polls must not load the worker;
    ``/metrics`` also refreshes the Redis gauges on every scrape)."""
    total = 0
    for i in range(len(loop.workers)):
        try:
            total += int(loop.health(i).get("index_size", 0))
        except (OSError, ValueError):   # starting (503) or between restarts
            pass
    return total


def histogram(loop, name: str) -> dict[float, float]:
    """A Prometheus histogram's cumulative buckets summed over the workers, by upper bound (``le``)."""
    return {float("inf") if le == "+Inf" else float(le): v for le, v in labelled(loop, f"{name}_bucket", "le").items()}


def gc_pauses(loop) -> dict:
    """The worker's garbage-collector pauses so far (``synapse_gc_pause_seconds``): count, seconds, and how
    many lasted over 50 ms."""
    out = {"pauses": 0.0, "seconds": 0.0, "over_50ms": 0.0}
    for i in range(len(loop.workers)):
        m = loop.scrape(i)
        for g in "012":
            n = m.get(f'synapse_gc_pause_seconds_count{{generation="{g}"}}', 0.0)
            out["pauses"] += n
            out["seconds"] += m.get(f'synapse_gc_pause_seconds_sum{{generation="{g}"}}', 0.0)
            out["over_50ms"] += n - m.get(f'synapse_gc_pause_seconds_bucket{{generation="{g}",le="0.05"}}', 0.0)
    return out


def hist_quantile(before: dict, after: dict, q: float) -> float | None:
    """Prometheus-style quantile (linear within the bucket) of the observations between two scrapes."""
    les = sorted(after)
    counts = [after[le] - before.get(le, 0.0) for le in les]
    total = counts[-1] if counts else 0
    if not total:
        return None
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in zip(les, counts):
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return None


async def send_posts(loop, posts: list[dict], *, rate: float | None = None, partition: int | None = None,
                     bulk: bool = False) -> dict:
    """Produce posts (``ts`` = send time); returns ``{id: send time}``. ``bulk``: on Apache Kafka, through a
    producer that batches (a backlog produced while the worker is stopped: only its speed matters)."""
    own = bulk and not loop.tansu_quirks
    if own:
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(bootstrap_servers=loop.bootstrap, linger_ms=20, max_batch_size=1 << 20, acks=1)
        await p.start()
    else:
        p = await loop.producer()
    try:
        return await _send(p, loop, posts, rate, partition)
    finally:
        if own:
            await p.stop()


async def _send(p, loop, posts, rate, partition) -> dict:
    from synapse_stream.messages import dumps

    sent, t0 = {}, time.monotonic()
    for i, post in enumerate(posts):
        ts = time.time()
        await p.send(loop.topics.posts, dumps({"id": post["id"], "text": post["text"], "ts": ts}),
                     key=str(post["id"]).encode(), partition=partition)
        sent[post["id"]] = ts
        if rate:
            lag = (i + 1) / rate - (time.monotonic() - t0)
            if lag > 0:
                await asyncio.sleep(lag)
    await p.flush()
    return sent


async def wait_for(cond, *, timeout: float, what: str, every: float = 0.1, progress=None):
    t0 = time.monotonic()
    last = 0.0
    while True:
        v = await asyncio.to_thread(cond)
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not done within {timeout:.0f}s")
        if progress and time.monotonic() - last > 3:
            last = time.monotonic()
            progress()
        await asyncio.sleep(every)


async def wait_seeds(loop, n: int, timeout: float = 120) -> None:
    def cond():
        try:
            return (metric_sum(loop, "synapse_seeds", detector=DETECTOR["name"], origin="synthetic")
                    / max(1, len(loop.workers))) >= n
        except OSError:
            return False
    await wait_for(cond, timeout=timeout, what=f"{n} seeds registered", every=0.5)


async def wait_assigned(loop, partitions: int, timeout: float = 120) -> None:
    def cond():
        held = []
        for i in range(len(loop.workers)):
            try:
                h = loop.health(i)
            except Exception:  # noqa: BLE001 - starting or rebalancing
                return False
            if not h.get("shards"):
                return False
            held += h["shards"]
        return sorted(held) == list(range(partitions))
    await wait_for(cond, timeout=timeout, what="every partition assigned once", every=0.5)
    await asyncio.sleep(1.0)


async def wait_emitted(loop, col: "Collector", timeout: float = 30) -> None:
    """Until every candidate the workers counted (``post`` and ``backfill``) is on the candidates topic as
    ``col`` sees it; after ``timeout`` seconds the caller goes on with what arrived."""
    def all_emitted():
        total = sum(metric_sum(loop, "synapse_candidates_total", detector=DETECTOR["name"], reason=r)
                    for r in ("post", "backfill"))
        return len(col.items) >= total
    try:
        await wait_for(all_emitted, timeout=timeout, what="candidates on the topic", every=0.05)
    except TimeoutError:
        pass


async def drain(loop, posts: list[dict], *, section: str, timeout: float, rate: float | None = None,
                profile: Path | None = None, bulk: bool = False) -> dict:
    """Send ``posts`` and time them through the pipeline: all indexed, every candidate on the topic."""
    base = indexed(loop)
    spy = _start_profile(loop, profile) if profile else None
    samples: list[tuple[float, float]] = []
    async with Collector(loop) as col:
        n0 = len(col.items)
        await asyncio.sleep(0.5)
        t0 = time.time()
        sender = asyncio.create_task(send_posts(loop, posts, rate=rate, bulk=bulk))

        def cond():
            c = indexed(loop) - base
            samples.append((time.time(), c))
            return c >= len(posts)

        await wait_for(cond, timeout=timeout, what=f"{len(posts)} posts indexed", every=0.1,
                       progress=lambda: say(section, f"{int(samples[-1][1]) if samples else 0}/{len(posts)} indexed"))
        sent = await sender
        t_sent = max(sent.values())
        t_idx = time.time()
        await wait_emitted(loop, col)
        new = col.items[n0:]
        t_end = max([t_idx] + [t for t, _ in new])
    if spy:
        _stop_profile(spy)
    n = len(posts)
    ts = np.array([s[0] for s in samples])
    cs = np.array([s[1] for s in samples])

    def when(frac):
        i = int(np.argmax(cs >= frac * n))
        return float(ts[i])

    steady = (0.8 * n) / max(1e-9, when(0.9) - when(0.1)) if cs.max() >= 0.9 * n else None
    return {"posts": n, "send_s": t_sent - t0, "end_to_end_s": t_end - t0, "posts_per_s": n / (t_end - t0),
            "steady_posts_per_s": steady, "candidates": len(new), "sent": sent, "new_candidates": new,
            "rate_offered": rate}


def _start_profile(loop, path: Path):
    exe = shutil.which("py-spy") or str(Path(os.sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        say("profile", "py-spy not installed (pip install py-spy): no profile")
        return None
    pid = loop.workers[0].proc.pid
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "--output", str(path),
                             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profile(proc) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def summarise_profile(path: Path, top: int = 12) -> dict | None:
    """Share of samples per leaf function and for the stages of the post path (inclusive)."""
    if not path.exists():
        return None
    leaf, stages, total = {}, {}, 0
    marks = {
        "embedder.encode": "encode (", "index add (hnswlib)": "add (synapse_stream/index.py",
        "OnlineIBG.on_posts": "on_posts (", "Redis claim_many": "claim_many (", "Redis record_posts": "record_posts (",
        "parse_post": "parse_post (", "publish (runtime)": "_publish (", "faust/aiokafka consumer": "aiokafka/consumer",
        "begin_posts (stage 1)": "begin_posts (", "finish_posts (stage 2)": "finish_posts (",
        "Redis client (redis-py)": "redis/", "faust streams/agents": "faust/", "embed thread (_embed_sync)": "_embed_sync (",
        "model thread (_index_sync)": "_index_sync (",
        "faust/aiokafka producer": "aiokafka/producer", "event loop idle (select/epoll)": "select (",
    }
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        try:
            c = int(count)
        except ValueError:
            continue
        total += c
        frames = stack.split(";")
        name = frames[-1].split(" (")[0] if frames else "?"
        leaf[name] = leaf.get(name, 0) + c
        for label, needle in marks.items():
            if needle in stack:
                stages[label] = stages.get(label, 0) + c
    if not total:
        return None
    return {"samples": total,
            "stages_share": {k: round(v / total, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
            "top_leaf_share": {k: round(v / total, 3) for k, v in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]}}


def make_posts(prefix: str, n: int, demo: list[dict], *, suffix: bool = False) -> list[dict]:
    out = []
    for i in range(n):
        d = demo[i % len(demo)]
        text = d["text"] if not suffix and i < len(demo) else f"{d['text']} #{prefix}{i}"
        out.append({"id": f"{prefix}-{i}", "text": text})
    return out


# ---------------------------------------------------------------------- the runs
def start_services(loop) -> None:
    """The broker, Redis and the topics, but no worker yet (so a backlog can be produced first)."""
    from stream_app.worker.kafka_admin import create_topics
    from stream_app.worker.settings import Settings

    loop._start_services()
    s = Settings(topic_prefix=loop.prefix, partitions=loop.partitions, _env_file=None)
    asyncio.run(create_topics(loop.bootstrap, loop.topics.partitions(s)))


def start_workers(loop, timeout: float = 240) -> None:
    from stream_app.devstack.embedded import free_port

    for i in range(loop.n_workers):
        loop.web_ports.append(free_port())
        loop.start_worker(i, timeout=timeout)


def last_indexed(loop, i: int = 0) -> tuple[float, int]:
    """(wall time, posts held) of worker ``i``'s last indexed batch, as one pair from ``/healthz``."""
    try:
        h = loop.health(i).get("last_indexed")
    except (OSError, ValueError):
        return (time.time(), 0)
    return (h["at"], int(h["index_size"])) if h else (time.time(), 0)


async def chunk_drain(loop, base: int, n: int, *, section: str, timeout: float) -> dict:
    """Time the drain of ``n`` posts already on the topic by one worker holding ``base`` posts: from its first
    indexed batch (those posts not counted) to the last, by the worker's own clock (``/healthz``
    ``last_indexed``: exact whatever the polling interval), and until every candidate it counted is on the
    candidates topic. Also the worker's own embedding and I/O time meanwhile."""
    samples: list[tuple[float, int]] = []
    async with Collector(loop) as col:
        def cond():
            at, size = last_indexed(loop)
            samples.append((at, size - base))
            return size - base >= n

        await wait_for(lambda: cond() or samples[-1][1] > 0, timeout=timeout, what="first post indexed", every=0.05)
        t_first, c_first = samples[-1]
        names = ("synapse_embed_batch_seconds_sum", "synapse_embed_batch_seconds_count",
                 "synapse_embed_batch_size_sum", "synapse_posts_batch_io_seconds_sum",
                 "synapse_posts_batch_io_seconds_count", "synapse_trend_proposal_updates_total",
                 "synapse_trend_proposals_raised_total", "synapse_trend_batches_skipped_total")
        first_m = {k: metric_sum(loop, k) for k in names}
        first_s, first_c = stage_seconds(loop), labelled(loop, "synapse_thread_cpu_seconds", "thread")
        await wait_for(cond, timeout=timeout, what=f"{n} posts indexed", every=0.05,
                       progress=lambda: say(section, f"{int(samples[-1][1])}/{n} indexed"))
        t_idx = samples[-1][0]
        last_m = {k: metric_sum(loop, k) for k in names}
        last_s, last_c = stage_seconds(loop), labelled(loop, "synapse_thread_cpu_seconds", "thread")
        await wait_emitted(loop, col)
        t_end = max([t_idx] + [t for t, _ in col.items])
        cands = len(col.items)
        cand_bytes = sum(len(json.dumps(c, ensure_ascii=False, separators=(",", ":")).encode()) for _, c in col.items)
    return {"posts": n, "counted": n - int(c_first), "drain_s": t_end - t_first, "candidates": cands,
            "candidate_bytes": cand_bytes,
            "metrics": {k: last_m[k] - first_m[k] for k in names},
            "stages": {k: v - first_s.get(k, 0.0) for k, v in last_s.items()},
            "thread_cpu": {k: v - first_c.get(k, 0.0) for k, v in last_c.items()}}


def stage_seconds(loop) -> dict[str, float]:
    """The workers' own per-stage timers of the posts path (``synapse_posts_stage_seconds_total{stage=...}``),
    summed over the workers: seconds spent so far in each stage (empty if the worker has none)."""
    return labelled(loop, "synapse_posts_stage_seconds_total", "stage")


def labelled(loop, name: str, label: str) -> dict[str, float]:
    """``name{label="x"}`` summed over the workers, by ``x`` (empty if the workers do not export it)."""
    out: dict[str, float] = {}
    for i in range(len(loop.workers)):
        try:
            m = loop.scrape(i)
        except OSError:
            continue
        for k, v in m.items():
            g = re.fullmatch(re.escape(name) + r'\{' + label + r'="([^"]+)"\}', k)
            if g:
                out[g.group(1)] = out.get(g.group(1), 0.0) + v
    return out


async def produce_frozen(loop, posts: list[dict]) -> float:
    """Produce ``posts`` while the (idle) worker is stopped (SIGSTOP), so it finds them as a backlog when it
    resumes and the producer never shares the cores with its drain. Kept to a few seconds: the worker's
    consumer must heartbeat within the embedded broker's 6 s session. Returns the seconds it took."""
    pid = loop.workers[0].proc.pid
    t = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        await send_posts(loop, posts, bulk=True)
    finally:
        os.kill(pid, signal.SIGCONT)
    return time.monotonic() - t


async def backlog_efficiency(loop, posts: list[dict], local, texts: list[str], batch: int, *, chunks: int,
                             section: str, timeout: float, profile: Path | None = None,
                             probe: HttpProbe | None = None, best: dict | None = None) -> dict:
    """Pipeline efficiency with the raw embedder measured between the chunks of the backlog.

    The machine's speed drifts over tens of seconds (other jobs, the host), so a raw figure taken once
    before the drain and once after it compares two different machines. Here the raw embedder (this
    process, the worker idle) and the worker's drain alternate: raw, chunk 1, raw, chunk 2, ..., raw; each
    chunk is produced while the worker is stopped (:func:`produce_frozen`) and then drained in full.
    Pooled figures: counted posts / drain time over all chunks, and raw posts / raw time over all raw
    measurements; per-chunk ratios use the raw measurements on either side of the chunk.
    ``best``: ``{spec: embedder}`` also timed at each raw step (all cores: the candidates for the fastest
    equal-quality raw embedder), pooled the same way."""
    best = best or {}
    best_timed = {k: [await asyncio.to_thread(_raw, e, texts, batch)] for k, e in best.items()}
    timed = [await asyncio.to_thread(_raw, local, texts, batch)]   # (posts, seconds) per raw measurement
    raws = [n / sec for n, sec in timed]
    say(section, f"raw embedder {raws[-1]:.0f} posts/s")
    spy = _start_profile(loop, profile) if profile else None
    parts, size = [], -(-len(posts) // chunks)
    try:
        for k in range(chunks):
            chunk = posts[k * size:(k + 1) * size]
            base = last_indexed(loop)[1]
            frozen = await produce_frozen(loop, chunk)
            if frozen > 4.5:
                say(section, f"warning: producing chunk {k + 1} took {frozen:.1f}s with the worker stopped")
            if probe:
                probe.on(True)
            try:
                d = await chunk_drain(loop, base, len(chunk), section=section, timeout=timeout)
            finally:
                if probe:
                    probe.on(False)
            timed.append(await asyncio.to_thread(_raw, local, texts, batch))
            raws.append(timed[-1][0] / timed[-1][1])
            for spec, emb in best.items():
                best_timed[spec].append(await asyncio.to_thread(_raw, emb, texts, batch))
            d["posts_per_s"] = d["counted"] / max(1e-9, d["drain_s"])
            d["ratio"] = d["posts_per_s"] / ((raws[-2] + raws[-1]) / 2)
            parts.append(d)
            say(section, f"chunk {k + 1}/{chunks}: {d['posts_per_s']:.0f} posts/s; raw embedder {raws[-1]:.0f} "
                         f"posts/s; ratio {d['ratio']:.2f}")
    finally:
        if spy:
            _stop_profile(spy)
    m = {k: sum(p["metrics"][k] for p in parts) for k in parts[0]["metrics"]}
    stages = {k: sum(p["stages"].get(k, 0.0) for p in parts) for k in parts[0]["stages"]}
    cpu = {k: sum(p["thread_cpu"].get(k, 0.0) for p in parts) for k in parts[0]["thread_cpu"]}
    drain = sum(p["drain_s"] for p in parts)
    pipeline = sum(p["counted"] for p in parts) / drain
    raw = sum(n for n, _ in timed) / sum(sec for _, sec in timed)
    cnt_e, cnt_io = m["synapse_embed_batch_seconds_count"], m["synapse_posts_batch_io_seconds_count"]
    return {
        "best_raw_posts_per_s": {k: sum(n for n, _ in t) / sum(sec for _, sec in t) for k, t in best_timed.items()},
        "posts": len(posts), "chunks": chunks, "raw_posts_per_s": raw, "raw_each": raws,
        "pipeline_posts_per_s": pipeline, "pipeline_each": [p["posts_per_s"] for p in parts],
        "ratio": pipeline / raw, "ratio_each": [p["ratio"] for p in parts], "drain_s": drain,
        "counted": sum(p["counted"] for p in parts), "candidates": parts[-1]["candidates"],
        # the collector reads the topic from its start: the last chunk's figures hold every candidate so far
        "candidates_per_post": parts[-1]["candidates"] / max(1, len(posts)),
        "candidate_message_bytes": parts[-1]["candidate_bytes"] / max(1, parts[-1]["candidates"]),
        # the share of the drain the embed thread spent embedding (the worker's own histogram: robust to
        # other load, since both sides are measured inside the worker at the same time)
        "embedder_busy_share": m["synapse_embed_batch_seconds_sum"] / drain,
        "embed_ms_per_batch": 1000 * m["synapse_embed_batch_seconds_sum"] / cnt_e if cnt_e else None,
        "posts_per_batch": m["synapse_embed_batch_size_sum"] / cnt_e if cnt_e else None,
        # the embedder's own speed inside the worker during the drain (vs raw: what the worker's other
        # threads and processes cost it)
        "embedder_in_worker_posts_per_s": m["synapse_embed_batch_size_sum"] / max(1e-9, m["synapse_embed_batch_seconds_sum"]),
        "io_ms_per_batch": 1000 * m["synapse_posts_batch_io_seconds_sum"] / cnt_io if cnt_io else None,
        "trend_updates": m["synapse_trend_proposal_updates_total"], "trend_raised": m["synapse_trend_proposals_raised_total"],
        "trend_skipped": m["synapse_trend_batches_skipped_total"],
        # the worker's stage timers over the counted drains: seconds per stage (they overlap: threads)
        "stage_seconds": stages,
        "thread_cpu_seconds": cpu,   # CPU per worker thread over the counted drains (/proc: 10 ms ticks)
    }


def run_single(*, embedder: str, posts: int, latency_posts: int, batch: int, timeout: float,
               profile_dir: Path | None = None, extra_env: dict | None = None, latency_rate: float | None = None,
               label: str = "stack", raw_posts: int = 320, chunks: int = 4, busy_cores: int = 0,
               http_probe: bool = False, redis_ops: bool = False, best_raw: tuple[str, ...] = (),
               broker: str | None = None, chunk_posts: int = 500) -> dict:
    """One worker, once its seeds are registered. Efficiency: ``posts`` are produced in ``chunks``, each drained
    by the worker, and the embedder alone is timed on the same kind of posts in this process before, between
    and after the chunks, while the worker idles (:func:`backlog_efficiency`). Then latency at half the drain
    rate (or ``latency_rate``).
    ``busy_cores``: that many processes spin on the CPU for the whole run (raw figures included), a controlled
    stand-in for other jobs or other workers on the same cores.
    ``http_probe``: ``/healthz`` and ``/metrics`` asked in turn every 0.1 s while the worker drains
    (:class:`HttpProbe`; ``out["http_under_load"]``). ``redis_ops``: Redis commands per drained post from
    ``INFO commandstats`` over the drain, less the probe's ``/metrics`` scrapes (each refreshes the Redis
    gauges; their cost is measured on the idle worker first), and Redis memory before and after.

    ``broker``: ``tansu`` or ``kafka`` (default ``$SYNAPSE_DEV_BROKER``, else Tansu); ``chunk_posts``: the most
    posts per chunk (a chunk is produced while the worker is stopped: a few seconds at most)."""
    from stream_app.devstack.demo import LiveLoop
    from synapse_stream.embedders import make_embedder

    demo, seeds = load_demo_posts(), load_demo_seeds()
    chunks = max(chunks, -(-posts // chunk_posts))   # each chunk is produced in a few seconds (see produce_frozen)
    eff_posts = make_posts("eff", posts, demo)
    lat_posts = make_posts("lat", latency_posts, demo[::-1], suffix=True)
    markers = lat_posts[::4]   # one post in four: the p99 of 200 markers is not just the slowest one or two
    env = {"SYNAPSE_EMBED_BATCH_SIZE": str(batch), **(extra_env or {})}
    # the raw embedder with the worker's torch threads (its setting, else the worker's default)
    threads = next((int(env[k]) for k in ("SYNAPSE_TORCH_THREADS", "SYNAPSE_EMBED_THREADS") if env.get(k, "auto") != "auto"),
                   worker_defaults()["torch_threads"])
    opts = {} if embedder.startswith(("hashing", "wordllama", "model2vec")) else {"threads": threads}
    local = make_embedder(embedder, batch_size=batch, **opts) if posts else None
    best = {}
    for spec in best_raw if posts else ():   # all cores (the library's default threads)
        try:
            best[spec] = make_embedder(spec, batch_size=batch)
        except Exception as exc:  # noqa: BLE001 - torch absent: that candidate is skipped, with a note
            say(label, f"raw candidate {spec} unavailable ({type(exc).__name__}: {exc})")
    loop = LiveLoop(tempfile.mkdtemp(prefix="synapse-bench-"), detectors=[DETECTOR], embedder=embedder, partitions=2,
                    workers=1, extra_env=env, broker_kind=broker)
    say(label, f"starting the embedded broker ({loop.broker_description}) and Redis ({embedder}, {env})")
    out: dict = {"embedder": embedder, "env": env, "busy_cores": busy_cores, "broker": loop.broker_kind}
    hogs = [subprocess.Popen([os.sys.executable, "-c", "while True: pass"]) for _ in range(busy_cores)]
    try:
        start_services(loop)
        all_seeds = seeds + [m["text"] for m in markers]
        # the raw embedder on a sample spread over the whole backlog (the later demo posts are a little longer)
        texts = [p["text"] for p in eff_posts][::max(1, len(eff_posts) // raw_posts)][:raw_posts]

        async def produce():
            try:
                await loop.send_seeds(DETECTOR["name"], all_seeds)
            finally:
                await loop.close()
        asyncio.run(produce())
        t = time.monotonic()
        start_workers(loop)
        out["worker_start_s"] = time.monotonic() - t

        async def main():
            try:
                # the seeds first: their embedding is not the pipeline's (and would stall the drain's model thread)
                await wait_seeds(loop, len(set(all_seeds)))
                if posts:
                    prof = profile_dir / "profile-worker.txt" if profile_dir else None
                    probe = HttpProbe(loop) if http_probe else None
                    if redis_ops:
                        c0 = await asyncio.to_thread(redis_commandstats, loop)
                        for _ in range(10):
                            await asyncio.to_thread(loop.scrape, 0)
                        c1 = await asyncio.to_thread(redis_commandstats, loop)
                        per_scrape = sum(_delta(c0, c1).values()) / 10 - 1   # less the INFO call itself
                        c0, m0 = c1, await asyncio.to_thread(redis_memory, loop)
                    e = await backlog_efficiency(loop, eff_posts, local, texts, batch, chunks=chunks, section=label,
                                                 timeout=timeout, profile=prof, probe=probe, best=best)
                    if probe:
                        out["http_under_load"] = h = probe.close()
                        say(label, f"under full load: /healthz p50 {h['healthz']['p50_ms']} p99 {h['healthz']['p99_ms']} ms, "
                                   f"/metrics p50 {h['metrics']['p50_ms']} p99 {h['metrics']['p99_ms']} ms")
                    if redis_ops:
                        c2 = await asyncio.to_thread(redis_commandstats, loop)
                        d = _delta(c0, c2)
                        d["info"] = d.get("info", 0) - 1
                        scrapes = (probe.times["metrics"].__len__() if probe else 0) + 2 * chunks
                        total = sum(d.values()) - scrapes * per_scrape
                        out["redis"] = {"commands": d, "ops_per_scrape": per_scrape, "metrics_scrapes": scrapes,
                                        "posts": len(eff_posts), "ops_per_post": total / len(eff_posts),
                                        "used_memory_before": m0, "used_memory_after": await asyncio.to_thread(redis_memory, loop),
                                        "post_message_bytes": float(np.mean([len(_post_bytes(p)) for p in eff_posts]))}
                        say(label, f"Redis: {out['redis']['ops_per_post']:.2f} commands per post ({d})")
                    out["efficiency"] = {**e, "batch": batch, "raw_posts": len(texts),
                                         "method": f"backlog drain in {chunks} chunks, the raw embedder between them"}
                    if prof:
                        out["efficiency"]["profile"] = summarise_profile(prof)
                    say(label, f"pipeline {e['pipeline_posts_per_s']:.0f} posts/s, raw {e['raw_posts_per_s']:.0f}; "
                               f"ratio {e['ratio']:.2f} (chunks {', '.join(f'{r:.2f}' for r in e['ratio_each'])})")
                if not latency_posts:
                    return
                rate = latency_rate or 0.5 * out["efficiency"]["pipeline_posts_per_s"]
                h0, gc0 = histogram(loop, "synapse_post_to_candidate_seconds"), gc_pauses(loop)
                say(label, f"latency: {len(lat_posts)} posts at {rate:.0f}/s, {len(markers)} markers")
                d = await drain(loop, lat_posts, section=label, timeout=timeout, rate=rate)
                h1, gc1 = histogram(loop, "synapse_post_to_candidate_seconds"), gc_pauses(loop)
                marker_ids = {m["id"] for m in markers}
                emit, recv, other = [], [], []
                for t_recv, c in d["new_candidates"]:
                    if c.get("reason") != "post" or c["post_id"] not in d["sent"]:
                        continue
                    lat = c["emitted_at"] - d["sent"][c["post_id"]]
                    (emit if c["post_id"] in marker_ids else other).append(lat)
                    if c["post_id"] in marker_ids:
                        recv.append(t_recv - d["sent"][c["post_id"]])
                out["latency"] = {
                    "rate_posts_per_s": rate, "posts": len(lat_posts), "markers": len(markers),
                    "markers_matched": len(emit), "p50_ms": _ms(percentile(emit, 50)), "p99_ms": _ms(percentile(emit, 99)),
                    "max_ms": _ms(max(emit) if emit else None),
                    "p50_ms_at_consumer": _ms(percentile(recv, 50)), "p99_ms_at_consumer": _ms(percentile(recv, 99)),
                    "all_post_candidates": len(emit) + len(other),
                    "p99_ms_all_post_candidates": _ms(percentile(emit + other, 99)),
                    "gc": {k: gc1[k] - gc0[k] for k in gc0},
                    "histogram_p50_ms": _ms(hist_quantile(h0, h1, 0.5)), "histogram_p99_ms": _ms(hist_quantile(h0, h1, 0.99)),
                }
                say(label, f"latency p50 {out['latency']['p50_ms']} ms, p99 {out['latency']['p99_ms']} ms "
                    f"({len(emit)}/{len(markers)} markers matched)")
            finally:
                await loop.close()
        asyncio.run(main())
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        finish_loop(loop, label)
    return out


def _post_bytes(post: dict) -> bytes:
    from synapse_stream.messages import dumps

    return dumps({"id": post["id"], "text": post["text"], "ts": time.time()})


def run_then_clean(loop, label: str, main) -> None:
    """``asyncio.run(main())`` on a started live loop, then :func:`finish_loop` whatever happened."""
    try:
        asyncio.run(main())
    finally:
        finish_loop(loop, label)


def finish_loop(loop, label: str) -> None:
    """Stop the loop's processes, keep their logs if asked (:func:`_keep_logs`), remove its run directory."""
    loop.stop()
    _keep_logs(loop, label)
    shutil.rmtree(loop.run_dir, ignore_errors=True)


def _keep_logs(loop, label: str) -> None:
    """``SYNAPSE_BENCH_LOGS=<dir>``: keep the workers' and the broker's logs of each run there (diagnosis)."""
    dest = os.environ.get("SYNAPSE_BENCH_LOGS")
    if dest and (loop.run_dir / "logs").is_dir():
        target = Path(dest) / re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)
        shutil.copytree(loop.run_dir / "logs", target, dirs_exist_ok=True, ignore_dangling_symlinks=True)


def _raw(embedder, texts, batch, min_seconds: float = 2.0) -> tuple[int, float]:
    """(posts, seconds) of ``embedder`` alone on ``texts`` in micro-batches of ``batch``, repeated until at
    least ``min_seconds`` passed (so a fast static embedder is timed as long as MiniLM)."""
    embedder.encode(texts[:batch])
    n, t = 0, time.perf_counter()
    while True:
        encode_microbatches(embedder, texts, batch)
        n += len(texts)
        if time.perf_counter() - t >= min_seconds:
            return n, time.perf_counter() - t


def _ms(x):
    return None if x is None else round(1000 * x, 1)


def _started_workers(label: str, embedder: str, workers: int, batch: int, env: dict | None, broker: str | None):
    """A started live loop of ``workers`` workers on a 2-partition topic with the bench detector; also the
    workers' env and the demo posts and seeds."""
    from stream_app.devstack.demo import LiveLoop

    demo, seeds = load_demo_posts(), load_demo_seeds()
    env = {"SYNAPSE_EMBED_BATCH_SIZE": str(batch), **(env or {})}
    loop = LiveLoop(tempfile.mkdtemp(prefix="synapse-bench-"), detectors=[DETECTOR], embedder=embedder, partitions=2,
                    workers=workers, extra_env=env, broker_kind=broker)
    say(label, f"starting {workers} worker(s) ({embedder}, {env}, {loop.broker_description})")
    loop.start(timeout=240)
    return loop, env, demo, seeds


def run_workers(*, embedder: str, posts: int, batch: int, timeout: float, workers: int, env: dict | None = None,
                broker: str | None = None) -> dict:
    """``workers`` workers on a 2-partition topic, all assigned before the posts are produced (as fast as the
    producer goes): throughput until all are indexed, then a probe per partition for the seed broadcast."""
    label = f"workers={workers}"
    loop, env, demo, seeds = _started_workers(label, embedder, workers, batch, env, broker)
    out: dict = {"workers": workers, "partitions": 2, "embedder": embedder, "env": env, "broker": loop.broker_kind}

    async def main():
        try:
            await wait_assigned(loop, 2)
            await loop.send_seeds(DETECTOR["name"], seeds)
            await wait_seeds(loop, len(set(seeds)))
            cpu0 = await asyncio.to_thread(process_cpu, loop)
            r0 = [await asyncio.to_thread(redis_commandstats, loop, k) for k in ("calls", "usec")]
            m0, t0 = await asyncio.to_thread(redis_memory, loop), time.monotonic()
            d = await drain(loop, make_posts(f"w{workers}", posts, demo), section=label, timeout=timeout,
                            bulk=broker == "kafka")
            cpu1 = await asyncio.to_thread(process_cpu, loop)
            r1 = [await asyncio.to_thread(redis_commandstats, loop, k) for k in ("calls", "usec")]
            out["redis"] = {**redis_split(_delta(r0[0], r1[0]), _delta(r0[1], r1[1]), posts, time.monotonic() - t0,
                                          workers),
                            "used_memory_per_post": (await asyncio.to_thread(redis_memory, loop) - m0) / posts}
            out.update({"posts": posts, "posts_per_s": d["posts_per_s"], "steady_posts_per_s": d["steady_posts_per_s"],
                        "end_to_end_s": d["end_to_end_s"], "send_s": d["send_s"],
                        # CPU of the workers, broker and Redis over the drain (this process's producer not counted)
                        "cpu_s_per_post": {k: (cpu1[k] - cpu0[k]) / posts for k in cpu0},
                        "cores_busy": {k: (cpu1[k] - cpu0[k]) / d["end_to_end_s"] for k in cpu0}})
            say(label, f"{d['posts_per_s']:.0f} posts/s end to end ({d['steady_posts_per_s'] or 0:.0f} steady)")
            # one probe post per partition, then a seed with the probe's exact text: a backfill must find each
            probes = {p: {"id": f"probe-{workers}-{p}", "text": f"zqx probe {p} of run {workers}: quartz xylophone "
                          f"vellum {p * 7919}"} for p in range(2)}
            base = metric_sum(loop, "synapse_posts_total")
            for p, post in probes.items():
                await send_posts(loop, [post], partition=p)
            await wait_for(lambda: metric_sum(loop, "synapse_posts_total") - base >= len(probes), timeout=60,
                           what="probe posts indexed")
            async with Collector(loop) as col:
                await loop.send_seeds(DETECTOR["name"], [p["text"] for p in probes.values()])
                want = {p["id"] for p in probes.values()}

                def found():
                    return want <= {c["post_id"] for _, c in col.items if c.get("reason") == "backfill"}
                try:
                    await wait_for(found, timeout=60, what="backfill candidates for every probe", every=0.2)
                except TimeoutError:
                    pass
                got = {c["post_id"] for _, c in col.items if c.get("reason") == "backfill"} & want
            per_worker = []
            for i in range(len(loop.workers)):
                m = loop.scrape(i)
                per_worker.append({"shards": loop.health(i).get("shards"),
                                   "posts": m.get("synapse_posts_total", 0.0),
                                   "backfill_candidates": m.get(f'synapse_candidates_total{{detector="{DETECTOR["name"]}",reason="backfill"}}', 0.0)})
            out["seed_reaches_every_shard"] = got == want
            out["probes_found"] = sorted(got)
            out["per_worker"] = per_worker
            say(label, f"seed broadcast: {len(got)}/{len(want)} probes found by backfill; per worker {per_worker}")
        finally:
            await loop.close()

    run_then_clean(loop, label, main)
    return out


# ---------------------------------------------------------------------- the embedded broker's fetch hold
def broker_fetch_latency(waits=(1500, 500, 10), records: int = 40, gap: float = 0.05) -> dict:
    """Produce → consume latency on the embedded Tansu broker for several consumer ``fetch_max_wait_ms``
    (Faust hard-codes 1500 for its consumer; a real Kafka answers a fetch as soon as a byte is there)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from stream_app.devstack.embedded import EmbeddedStack
    from stream_app.worker.kafka_admin import create_topics
    from stream_app.worker.tansu import aiokafka_producer_settings_for_tansu

    async def one(bootstrap: str, wait_ms: int) -> dict:
        topic = f"bench-fetch-{wait_ms}"
        await create_topics(bootstrap, {topic: 1})
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, **aiokafka_producer_settings_for_tansu())
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             fetch_max_wait_ms=wait_ms)
        await p.start()
        await c.start()
        lats: list[float] = []
        try:
            await asyncio.sleep(1.0)

            async def consume():
                async for m in c:
                    lats.append(time.time() - float(m.value.decode()))
                    if len(lats) >= records:
                        return
            task = asyncio.create_task(consume())
            for _ in range(records):
                await p.send_and_wait(topic, str(time.time()).encode())
                await asyncio.sleep(gap)
            await asyncio.wait_for(task, 60)
        finally:
            await p.stop()
            await c.stop()
        return {"p50_ms": _ms(percentile(lats, 50)), "p99_ms": _ms(percentile(lats, 99)), "records": len(lats)}

    with EmbeddedStack(tempfile.mkdtemp(prefix="synapse-bench-fetch-")) as st:
        out = {str(w): asyncio.run(one(st.bootstrap, w)) for w in waits}
    say("broker", "produce → consume on the embedded broker by fetch wait: "
        + ", ".join(f"{w} ms: p50 {v['p50_ms']} / p99 {v['p99_ms']} ms" for w, v in out.items()))
    return out


# ---------------------------------------------------------------------- n workers draining one backlog
async def _frozen_all(loop, posts: list[dict]) -> float:
    """Produce ``posts`` while every worker is stopped (SIGSTOP), so the drain never shares the cores with
    the producer; returns the seconds it took."""
    pids = [w.proc.pid for w in loop.workers]
    t = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        await send_posts(loop, posts, bulk=True)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    return time.monotonic() - t


async def workers_backlog(loop, posts: list[dict], *, chunk_posts: int, section: str, timeout: float) -> dict:
    """Every worker of ``loop`` drains the same backlog, produced in chunks while they are all stopped: per chunk,
    from the first batch any worker indexed after the resume (by the workers' own clocks, ``/healthz``
    ``last_indexed``) to the last one that completes the chunk; posts of the first batches seen are not counted."""
    n_w = len(loop.workers)
    counted, drain = 0, 0.0
    for k in range(0, len(posts), chunk_posts):
        chunk = posts[k:k + chunk_posts]
        base = [last_indexed(loop, i)[1] for i in range(n_w)]
        frozen = await _frozen_all(loop, chunk)
        if frozen > 30:
            say(section, f"warning: producing a chunk took {frozen:.1f}s with the workers stopped")
        first: dict[int, tuple[float, int]] = {}
        last: dict[int, tuple[float, int]] = {}

        def cond():
            for i in range(n_w):
                at, size = last_indexed(loop, i)
                if size > base[i]:
                    first.setdefault(i, (at, size - base[i]))
                    last[i] = (at, size - base[i])
            return sum(v[1] for v in last.values()) >= len(chunk)
        await wait_for(cond, timeout=timeout, what=f"{len(chunk)} posts indexed by {n_w} worker(s)", every=0.05)
        t0 = min(v[0] for v in first.values())
        seen_at_t0 = sum(v[1] for i, v in first.items() if v[0] == t0)
        drain += max(v[0] for v in last.values()) - t0
        counted += len(chunk) - seen_at_t0
    return {"posts": len(posts), "counted": counted, "drain_s": drain, "posts_per_s": counted / max(1e-9, drain),
            "chunk_posts": chunk_posts}


def run_workers_backlog(*, embedder: str, posts: int, batch: int, timeout: float, workers: int,
                        env: dict | None = None, broker: str | None = None, chunk_posts: int = 1000) -> dict:
    """``workers`` workers on a 2-partition topic, all assigned and their seeds registered, drain a backlog
    (:func:`workers_backlog`): the producer's speed is not in the figure."""
    label = f"backlog workers={workers}"
    loop, env, demo, seeds = _started_workers(label, embedder, workers, batch, env, broker)
    out: dict = {"workers": workers, "partitions": 2, "embedder": embedder, "env": env, "broker": loop.broker_kind,
                 "method": "backlog produced in chunks while the workers are stopped"}

    async def main():
        try:
            await wait_assigned(loop, 2)
            await loop.send_seeds(DETECTOR["name"], seeds)
            await wait_seeds(loop, len(set(seeds)))
            d = await workers_backlog(loop, make_posts(f"b{workers}", posts, demo), chunk_posts=chunk_posts,
                                      section=label, timeout=timeout)
            out.update(d)
            out["per_worker_posts"] = [last_indexed(loop, i)[1] for i in range(len(loop.workers))]
            say(label, f"{d['posts_per_s']:.0f} posts/s ({d['counted']} posts in {d['drain_s']:.2f}s); "
                       f"per worker {out['per_worker_posts']}")
        finally:
            await loop.close()

    run_then_clean(loop, label, main)
    return out

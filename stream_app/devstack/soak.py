"""The soak run: one worker on the embedded stack over a stream many times its retention window
(``synapse-stream soak`` / ``make soak``; ``make soak QUICK=1`` for a few minutes).

A synthetic stream (topics of words, one of them the trend the detector looks for, ``prevalence`` of the
posts) carries event timestamps that advance one second per post (``--event-rate`` posts per event second),
far faster than real time, and end now; the worker's window is ``--window`` posts' worth of event time.
The harness sends ``--rate`` posts a second of wall time (250 by default: a stream the worker keeps up
with, not a backlog; 0 sends as fast as it can). One detector runs the default policy (rounds of IBG, GBLE
and the classifier, the bandit, a recall audit); a simulated moderator answers its candidates from the truth at a fixed rate. Every ``--sample`` seconds
the harness records the worker's RSS (psutil), Redis ``used_memory``, posts in the window
(``synapse_index_size``), segments held and the ingest rate; it reads every round's duration and end
time from the worker's log and every candidate from the topic: the audit's candidates are drawn on
arrival, so their post→candidate latency is the ingestion latency, and those emitted while a round was
planning measure whether a round holds ingestion up. With a full window, the worker is killed (SIGKILL)
and restarted while posts keep coming; the time until it indexes new posts again is ``restart_s``.

Writes the samples and the summary to JSON and a plot (PNG), and ends with one line::

    soak: posts=N window=N rss_growth_pct=X redis_growth_pct=X round_p99_s=X latency_p99_ms=X
    latency_p99_in_rounds_ms=X restart_s=X

Growth is measured from the samples after 2× the window to the kill (medians of the first and last tenth
of them, so that one garbage-collector swing does not count as growth).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from stream_app.devstack.demo import LiveLoop, gauge
from synapse_stream.messages import dumps

DETECTOR = {"name": "trend", "tau": 0.5, "d_max": 10, "candidates": "policy", "k0": 50, "audit_rate": 0.01,
            "max_query_ratio": 0.05, "detect_threshold": None}
_ROUND = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*round (\d+) of (\S+): (\d+) candidates .* in "
                    r"([0-9.]+)s(?: \(([^)]*)\))?")
_PHASE = re.compile(r"(\S+) ([0-9.]+)")
_LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"
#: Redis keys (last name part) that grow with the answers, by design (README's state table)
ANSWER_KEYS = {"ledger", "verdicts", "labelled-vectors", "audit-ledger", "queried", "audited", "sources", "seeds",
               "models", "parked", "seedlog"}


# ---------------------------------------------------------------------- the synthetic stream
class Stream:
    """Posts ``s<i>``: ``topics`` word topics; ``prevalence`` of them the trend (their own words, mixed with
    general ones, so that they are near each other and far from the rest under any bag-of-words or
    sentence embedder). Deterministic in ``seed``; post ``i`` is a pure function of ``i``."""

    def __init__(self, seed: int = 0, topics: int = 60, words_per_topic: int = 14, prevalence: float = 0.02):
        rng = random.Random(seed)
        syll = ["ka", "lo", "mi", "ru", "te", "sa", "vo", "ni", "pe", "da", "gu", "ze", "fi", "ho", "bu", "xa"]

        def word() -> str:
            return "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))

        self.general = [word() for _ in range(3000)]
        self.topics = [[word() for _ in range(words_per_topic)] for _ in range(topics)]
        self.trend = ["wallet", "airdrop", "claim", "bonus", "seed", "phrase", "recovery", "urgent", "verify",
                      "token", "giveaway", "double", "send", "crypto"]
        self.prevalence = prevalence
        self.seed = seed

    def is_trend(self, i: int) -> bool:
        return random.Random(self.seed * 1_000_003 + i).random() < self.prevalence

    def text(self, i: int) -> str:
        rng = random.Random(self.seed * 1_000_003 + i)
        trend = rng.random() < self.prevalence
        words = self.trend if trend else self.topics[rng.randrange(len(self.topics))]
        picked = rng.sample(words, 6) + rng.sample(self.general, 5)
        rng.shuffle(picked)
        return " ".join(picked) + f" #{i % 997}"

    def seeds(self, n: int = 8) -> list[str]:
        rng = random.Random(self.seed + 7)
        return [" ".join(rng.sample(self.trend, 7)) for _ in range(n)]


# ---------------------------------------------------------------------- the run
@dataclass
class SoakReport:
    posts: int
    window: int
    embedder: str
    broker: str
    samples: list[dict] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)          # {"end": wall time, "seconds", "candidates"}
    latencies: list[tuple[float, float]] = field(default_factory=list)   # (emitted_at, seconds) of audits
    answered: int = 0
    dead_letters: dict = field(default_factory=dict)     # reason -> count, read from the topic at the end
    restart: dict = field(default_factory=dict)
    checkpoint_taken_back: bool = False     # the restarted worker's rounds went on from their checkpoint
    summary: dict = field(default_factory=dict)


def _median(xs):
    return float(np.median(xs)) if len(xs) else float("nan")


def _pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


def summarise(r: SoakReport) -> dict:
    """The summary line's figures from the samples, the rounds and the latencies (see the module docstring)."""
    killed = r.restart.get("killed_at") or float("inf")   # growth up to the kill (a restart starts afresh)
    after = [s for s in r.samples if s["posts_sent"] >= 2 * r.window and s["t"] < killed]
    tenth = max(1, len(after) // 10)

    def growth(key: str) -> float:
        rows = [s[key] for s in after if key in s]     # a figure not sampled (an older report): nan
        part = max(1, len(rows) // 10)
        if len(rows) < 2 * part or len(rows) < 2 * tenth:
            return float("nan")
        a, b = _median(rows[:part]), _median(rows[-part:])
        return 100.0 * (b - a) / a if a else float("nan")

    full_at = next((s["t"] for s in r.samples if s["posts_sent"] >= r.window), None)
    steady = [x["seconds"] for x in r.rounds if full_at is not None and x["end"] >= full_at and not x.get("first_after_restart")]
    spans = [(x["end"] - x["seconds"], x["end"]) for x in r.rounds]
    starts = np.array(sorted(a for a, _ in spans)) if spans else np.zeros(0)
    ends = np.array([b for _, b in sorted(spans)]) if spans else np.zeros(0)

    def in_round(t: float) -> bool:
        i = int(np.searchsorted(starts, t, side="right")) - 1
        return i >= 0 and t <= ends[i]

    restart_t = r.restart.get("killed_at")
    lat = [(t, s) for t, s in r.latencies if restart_t is None or not (restart_t <= t <= restart_t + 120)]
    # by the time the post was sent: a post that arrives while a round plans is the one a round would hold up
    # (its candidate is emitted after the round, if the round blocks ingestion)
    inside = [s for t, s in lat if in_round(t - s)]
    outside = [s for t, s in lat if not in_round(t - s)]
    return {
        "posts": r.posts, "window": r.window,
        "rss_growth_pct": growth("rss_mb"), "redis_growth_pct": growth("redis_mb"),
        "redis_growth_excl_answers_pct": growth("redis_other_mb"), "redis_answers_growth_pct": growth("redis_answers_mb"),
        "round_p50_s": _pct(steady, 50), "round_p99_s": _pct(steady, 99), "rounds": len(r.rounds),
        "latency_p50_ms": 1000 * _pct([s for _, s in lat], 50), "latency_p99_ms": 1000 * _pct(outside, 99),
        "latency_p99_in_rounds_ms": 1000 * _pct(inside, 99), "latency_samples_in_rounds": len(inside),
        "latency_samples": len(lat), "restart_s": r.restart.get("back_to_consuming_s", float("nan")),
        "answered": r.answered, "dead_letters": sum(r.dead_letters.values()),
        "rss_mb_end": after[-1]["rss_mb"] if after else float("nan"),
        "redis_mb_end": after[-1]["redis_mb"] if after else float("nan"),
        "index_size_max": max((s["index_size"] for s in r.samples if s["t"] < killed), default=0),
        "index_size_max_after_restart": max((s["index_size"] for s in r.samples if s["t"] >= killed), default=0),
        # not in round_p99_s: the round after a restart, and whether it went on from the rounds' checkpoint
        "first_round_after_restart_s": r.restart.get("first_round_after_restart_s", float("nan")),
        "checkpoint_taken_back": r.checkpoint_taken_back,
    }


def soak_line(s: dict) -> str:
    def f(x, d=1):
        return "nan" if x is None or x != x else f"{x:.{d}f}"
    return (f"soak: posts={s['posts']} window={s['window']} rss_growth_pct={f(s['rss_growth_pct'])} "
            f"redis_growth_pct={f(s['redis_growth_pct'])} round_p99_s={f(s['round_p99_s'], 2)} "
            f"latency_p99_ms={f(s['latency_p99_ms'], 0)} latency_p99_in_rounds_ms={f(s['latency_p99_in_rounds_ms'], 0)} "
            f"restart_s={f(s['restart_s'])}")


class _Sampler:
    """Samples the worker's process, Redis and metrics; reads round lines from the worker's log."""

    def __init__(self, loop: LiveLoop, report: SoakReport, sent: list[int]):
        import redis

        self.loop, self.report, self.sent = loop, report, sent
        self.redis = redis.Redis.from_url(loop.redis_url)
        self.log_pos = 0
        self.last = None
        self.restarting = False

    def sample(self) -> None:
        import psutil

        w = self.loop.workers[0]
        now = time.time()
        row = {"t": now, "posts_sent": self.sent[0], "restarting": self.restarting}
        try:
            row["rss_mb"] = psutil.Process(w.proc.pid).memory_info().rss / 2**20
        except (psutil.Error, AttributeError):
            return
        row["redis_mb"] = self.redis.info("memory")["used_memory"] / 2**20
        row["redis_answers_mb"] = self.answers_mb()
        row["redis_other_mb"] = row["redis_mb"] - row["redis_answers_mb"]
        try:
            m = self.loop.scrape()
        except OSError:
            return
        row["index_size"] = int(gauge(m, "synapse_index_size") or 0)
        row["segments"] = int(gauge(m, "synapse_index_segments") or 0)
        row["posts_total"] = int(gauge(m, "synapse_posts_total") or 0)
        row["expired_total"] = int(gauge(m, "synapse_posts_expired_total") or 0)
        row["graph_lag"] = int(gauge(m, "synapse_graph_lag_posts", detector=DETECTOR["name"]) or 0)
        if self.last is not None and row["posts_total"] >= self.last["posts_total"]:
            row["ingest_per_s"] = (row["posts_total"] - self.last["posts_total"]) / max(1e-6, now - self.last["t"])
        self.last = row
        self.report.samples.append(row)
        self.read_rounds()

    def answers_mb(self) -> float:
        """Redis memory of the keys that grow with the oracle's answers by design (README's state table: the
        ledger, the verdict history, the training vectors, the audit verdicts, the queried/audited sets, the
        sources of sent posts, confirmed seeds, model versions), ``MEMORY USAGE`` estimates."""
        total = 0
        for key in self.redis.scan_iter(count=1000):
            name = key.decode(errors="replace")
            if name.rsplit(":", 1)[-1] in ANSWER_KEYS:
                total += self.redis.memory_usage(key) or 0
        return total / 2**20

    def read_rounds(self, *, first_after_restart: bool = False) -> None:
        path = self.loop.workers[0].log_path
        with open(path, "rb") as fh:
            fh.seek(self.log_pos)
            chunk = fh.read()
        cut = chunk.rfind(b"\n") + 1
        self.log_pos += cut
        for line in chunk[:cut].decode("utf-8", "replace").splitlines():
            m = _ROUND.search(line)
            if m and m.group(3) == DETECTOR["name"]:
                end = datetime.strptime(m.group(1), _LOG_TIME).timestamp()
                self.report.rounds.append({"end": end, "seconds": float(m.group(5)), "candidates": int(m.group(4)),
                                           "number": int(m.group(2)),
                                           "phases": {k: float(v) for k, v in _PHASE.findall(m.group(6) or "")}})
            elif f"rounds of {DETECTOR['name']}: IBG's kept lists" in line and "taken back from the checkpoint" in line:
                self.report.checkpoint_taken_back = True     # the worker's log after a restart


async def _moderate(loop: LiveLoop, stream: Stream, sent_at: np.ndarray, report: SoakReport, stop: asyncio.Event,
                    rate: float) -> None:
    """Reads every candidate (the audits' latencies); answers from the truth at ``rate`` per second."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(loop.topics.candidates, bootstrap_servers=loop.bootstrap, group_id=None,
                         auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    p = await loop.producer()
    queue: deque = deque()
    budget, last = 0.0, time.monotonic()
    try:
        while not stop.is_set():
            for msgs in (await c.getmany(timeout_ms=200)).values():
                for m in msgs:
                    cand = json.loads(m.value)
                    i = int(cand["post_id"][1:])
                    if cand.get("reason") == "audit" and sent_at[i] > 0:
                        report.latencies.append((cand["emitted_at"], cand["emitted_at"] - sent_at[i]))
                    queue.append((cand["detector"], cand["post_id"], i))
            now = time.monotonic()
            budget = min(budget + (now - last) * rate, max(1.0, rate))
            last = now
            while queue and budget >= 1.0:
                det, pid, i = queue.popleft()
                budget -= 1.0
                await p.send(loop.topics.labels, dumps({"detector": det, "post_id": pid, "label": int(stream.is_trend(i)),
                                                         "labeler": "moderator:soak", "ts": time.time()}),
                             key=pid.encode())
                report.answered += 1
    finally:
        await c.stop()


async def _produce(loop: LiveLoop, stream: Stream, n: int, t0_event: float, event_rate: float, sent_at: np.ndarray,
                   sent: list[int], start: int = 0, rate: float | None = None, progress=None) -> None:
    p = await loop.producer()
    topic = loop.topics.posts
    t_start = time.monotonic()
    for i in range(start, n):
        ts = t0_event + i / event_rate
        sent_at[i] = time.time()
        await p.send(topic, dumps({"id": f"s{i}", "text": stream.text(i), "ts": ts}), key=f"s{i}".encode())
        sent[0] = i + 1
        if rate:
            ahead = (i + 1 - start) / rate - (time.monotonic() - t_start)
            if ahead > 0:
                await asyncio.sleep(ahead)
        if (i + 1) % 2000 == 0:
            await asyncio.sleep(0)
            if progress:
                progress(i + 1)
    await p.flush()


async def run_soak(args) -> SoakReport:
    say = (lambda *_: None) if args.quiet else (lambda msg: print(f"[soak] {msg}", flush=True))
    stream = Stream(seed=args.seed, prevalence=args.prevalence)
    window_s = args.window / args.event_rate
    extra = {"SYNAPSE_RETENTION": f"{window_s:.0f}s", "SYNAPSE_RETENTION_CHECK_SECONDS": "2",
             "SYNAPSE_SNAPSHOT_INTERVAL": str(args.snapshot_interval), "SYNAPSE_WORKER_INSTANCE_ID": "soak-worker-0"}
    loop = LiveLoop(args.run_dir, detectors=[DETECTOR], embedder=args.embedder, partitions=args.partitions,
                    broker_kind=args.broker_kind, extra_env=extra)
    report = SoakReport(posts=args.posts, window=args.window, embedder=args.embedder, broker=loop.broker_kind)
    sent_at = np.zeros(args.posts, dtype=np.float64)
    sent = [0]
    t0_event = time.time() - args.posts / args.event_rate - 600   # the stream ends about now
    say(f"starting the embedded stack ({loop.broker_kind}) and one worker ({args.embedder}); window "
        f"{args.window} posts ({window_s:.0f} s of event time), {args.posts} posts")
    await asyncio.to_thread(loop.start)
    stop = asyncio.Event()
    sampler = _Sampler(loop, report, sent)
    try:
        await loop.send_seeds(DETECTOR["name"], stream.seeds())
        moderator = asyncio.create_task(_moderate(loop, stream, sent_at, report, stop, args.moderator_rate))

        async def sample_forever():
            while not stop.is_set():
                await asyncio.to_thread(sampler.sample)
                await asyncio.sleep(args.sample)

        sampling = asyncio.create_task(sample_forever())
        t_run = time.monotonic()

        def progress(k: int) -> None:
            if k % max(2000, args.posts // 20 // 2000 * 2000) == 0:
                s = report.samples[-1] if report.samples else {}
                say(f"{k}/{args.posts} posts sent ({time.monotonic() - t_run:.0f}s); window {s.get('index_size')} "
                    f"posts in {s.get('segments')} segments; RSS {s.get('rss_mb', 0):.0f} MB, Redis "
                    f"{s.get('redis_mb', 0):.0f} MB; {len(report.rounds)} rounds; {report.answered} answered")

        kill_at = args.posts - max(args.window // 4, 1000) if args.restart else args.posts
        await _produce(loop, stream, kill_at, t0_event, args.event_rate, sent_at, sent, rate=args.rate,
                       progress=progress)
        if args.restart:
            await _wait_indexed(loop, kill_at, timeout=args.timeout)
            report.restart = await _restart(loop, sampler, say)
            # watched while the rest is sent (after it, the health check's last indexing is the run's last one)
            back = asyncio.create_task(_back_to_consuming(loop, report.restart, timeout=args.timeout))
            await _produce(loop, stream, args.posts, t0_event, args.event_rate, sent_at, sent, start=kill_at,
                           rate=args.rate or 2000.0)
            report.restart.update(await back)
            say(f"restart: back to consuming {report.restart['back_to_consuming_s']:.1f}s after the kill "
                f"(Ready after {report.restart['ready_s']:.1f}s)")
        await _wait_indexed(loop, args.posts, timeout=args.timeout)
        await asyncio.sleep(2 * args.sample)
        m = await asyncio.to_thread(loop.scrape)
        report.restart["end_counters"] = {k: gauge(m, f"synapse_{k}", detector=DETECTOR["name"])
                                          for k in ("queried", "answered", "confirmed_positives", "precision")}
        dead = await loop.read_topic(loop.topics.dead_letters)
        report.dead_letters = dict(Counter(json.loads(x.value).get("reason", "?") for x in dead))
        stop.set()
        await asyncio.gather(moderator, sampling, return_exceptions=True)
        sampler.read_rounds()
        rounds_after = [x for x in report.rounds if report.restart and x["end"] > report.restart["killed_at"]]
        if rounds_after:
            rounds_after[0]["first_after_restart"] = True
            report.restart["first_round_after_restart_s"] = rounds_after[0]["seconds"]
    finally:
        stop.set()
        await loop.close()
        await asyncio.to_thread(loop.stop)
    report.summary = summarise(report)
    report.summary["run_dir"] = str(loop.run_dir)
    return report


async def _wait_indexed(loop: LiveLoop, n: int, timeout: float) -> None:
    t0 = time.monotonic()
    while True:
        try:
            m = await asyncio.to_thread(loop.scrape)
            if (gauge(m, "synapse_posts_indexed") or 0) >= n:
                return
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"the worker did not index {n} posts within {timeout:.0f}s")
        await asyncio.sleep(1.0)


async def _restart(loop: LiveLoop, sampler: _Sampler, say) -> dict:
    w = loop.workers[0]
    m = await asyncio.to_thread(loop.scrape)
    held = int(gauge(m, "synapse_index_size") or 0)
    total_before = int(gauge(m, "synapse_posts_total") or 0)
    say(f"killing the worker (SIGKILL) with {held} posts in its window")
    sampler.restarting = True
    killed_at = time.time()
    os.kill(w.proc.pid, signal.SIGKILL)
    w.proc.wait()
    t0 = time.monotonic()
    await asyncio.to_thread(w.start, timeout=600)
    ready = time.monotonic() - t0
    sampler.restarting = False
    return {"killed_at": killed_at, "held_posts": held, "ready_s": ready, "posts_total_before": total_before}


async def _back_to_consuming(loop: LiveLoop, restart: dict, timeout: float) -> dict:
    """Seconds from the kill until the restarted worker indexes posts sent after it (health ``last_indexed``)."""
    import urllib.error

    t0 = time.monotonic()
    unhealthy: dict[str, int] = {}   # why the health check said 503 meanwhile (its body still counts)
    while time.monotonic() - t0 < timeout:
        try:
            h = await asyncio.to_thread(loop.health)
        except urllib.error.HTTPError as exc:
            h = json.loads(exc.read() or b"{}")
            why = str(h.get("reason", exc.code))
            unhealthy[why] = unhealthy.get(why, 0) + 1
        except (OSError, ValueError):
            h = {}
        last = h.get("last_indexed") or {}
        if last.get("at", 0) > restart["killed_at"] and not h.get("recovering"):
            return {"back_to_consuming_s": last["at"] - restart["killed_at"],
                    "index_size_after": h.get("index_size"), "unhealthy_meanwhile": unhealthy}
        await asyncio.sleep(0.25)
    return {"back_to_consuming_s": float("nan"), "unhealthy_meanwhile": unhealthy}


# ---------------------------------------------------------------------- output
def plot(report: SoakReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report.samples
    if not s:
        return
    t0 = s[0]["t"]
    x = [r["posts_sent"] / 1000 for r in s]
    fig, ax = plt.subplots(3, 2, figsize=(12, 10))
    fig.suptitle(f"soak: {report.posts} posts through a {report.window}-post window ({report.embedder}, "
                 f"{report.broker}); restart at the dashed line")
    panels = [(ax[0, 0], "rss_mb", "worker RSS (MB)"), (ax[0, 1], "redis_mb", "Redis used_memory (MB)"),
              (ax[1, 0], "index_size", "posts in the window"), (ax[1, 1], "ingest_per_s", "ingest (posts/s)")]
    for a, key, title in panels:
        a.plot(x, [r.get(key, np.nan) for r in s], lw=1)
        a.set_title(title)
        a.set_xlabel("posts sent (thousands)")
        a.axvline(2 * report.window / 1000, color="grey", ls=":", lw=1)
    if any("redis_answers_mb" in r for r in s):   # what grows with the answers, by design, and the rest
        ax[0, 1].plot(x, [r.get("redis_answers_mb", np.nan) for r in s], lw=1, label="answer-driven keys")
        ax[0, 1].plot(x, [r.get("redis_other_mb", np.nan) for r in s], lw=1, label="everything else")
        ax[0, 1].legend(fontsize=8)
    # rounds: duration against posts sent at their end
    sent_t = np.array([r["t"] for r in s])
    sent_n = np.array([r["posts_sent"] for r in s])
    rx = np.interp([r["end"] for r in report.rounds], sent_t, sent_n) / 1000 if report.rounds else []
    ax[2, 0].scatter(rx, [r["seconds"] for r in report.rounds], s=6)
    ax[2, 0].set_title("round time (s)")
    ax[2, 0].set_xlabel("posts sent (thousands)")
    if report.latencies:
        lt = np.array(report.latencies)
        ax[2, 1].scatter((lt[:, 0] - t0) / 60, lt[:, 1] * 1000, s=4)
        ax[2, 1].set_yscale("log")
    ax[2, 1].set_title("audit candidates: post → candidate (ms)")
    ax[2, 1].set_xlabel("minutes")
    if report.restart.get("killed_at"):
        kx = float(np.interp(report.restart["killed_at"], sent_t, sent_n)) / 1000
        for a in ax.flat[:5]:
            a.axvline(kx, color="red", ls="--", lw=1)
        ax[2, 1].axvline((report.restart["killed_at"] - t0) / 60, color="red", ls="--", lw=1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def add_soak_parser(sub) -> None:
    p = sub.add_parser("soak", help="a stream 10x the retention window through one worker: memory, rounds, latency")
    p.add_argument("--window", type=int, default=200_000, help="the retention window, in posts of event time")
    p.add_argument("--posts", type=int, default=2_000_000)
    p.add_argument("--quick", action="store_true", help="window 5,000 posts, 60,000 posts (a few minutes)")
    p.add_argument("--event-rate", type=float, default=1.0, help="posts per second of event time")
    p.add_argument("--embedder", default="hashing-384", help="hashing-384 (fast) or minilm-onnx")
    p.add_argument("--moderator-rate", type=float, default=10.0, help="answers per second")
    p.add_argument("--prevalence", type=float, default=0.02)
    p.add_argument("--rate", type=float, default=250.0,
                   help="posts per second sent (0: as fast as the harness can, a backlog rather than a stream); the "
                        "default is about what one worker on 2 cores keeps up with at a 200 k window, GBLE's graph "
                        "included (docs/soak.md)")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--sample", type=float, default=2.0, help="seconds between samples")
    p.add_argument("--snapshot-interval", type=float, default=60.0)
    p.add_argument("--no-restart", dest="restart", action="store_false")
    p.add_argument("--broker-kind", choices=["tansu", "kafka"], default="kafka",
                   help="kafka (Apache Kafka, the default: what production runs) or tansu")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the worker to catch up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--out", default="docs/soak/soak", help="writes <out>.json and <out>.png")
    p.add_argument("--quiet", action="store_true")

    def main(args) -> int:
        import logging

        logging.getLogger("aiokafka").setLevel(logging.ERROR)
        if args.quick:
            args.window, args.posts = min(args.window, 5_000), min(args.posts, 60_000)
            if args.out == "docs/soak/soak":
                args.out = "docs/soak/soak-quick"
        r = asyncio.run(run_soak(args))
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = asdict(r)
        doc["args"] = {k: v for k, v in vars(args).items() if k != "func"}
        out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=str))
        plot(r, out.with_suffix(".png"))
        print(soak_line(r.summary), flush=True)
        if not args.run_dir:
            shutil.rmtree(r.summary["run_dir"], ignore_errors=True)
        return 0

    p.set_defaults(func=main)

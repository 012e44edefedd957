"""The live loop end to end on one machine: ``synapse-stream demo`` (and the end-to-end tests).

:class:`LiveLoop` starts the embedded stack (a broker + Redis; or uses an external Kafka and Redis;
``broker_kind="tansu"|"kafka"``, default ``$SYNAPSE_DEV_BROKER``, else Tansu), creates the topics,
starts Faust workers (``faust -A stream_app worker``) as subprocesses, and offers a producer for
seeds and posts and a simulated moderator (a replay oracle answering from the sample's labels).
Everything the demo reports is scraped from the workers' ``/metrics``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.devstack.embedded import BROKER_ENV_VAR, EmbeddedStack, FaustWorker, broker_kind, free_port
from stream_app.worker.kafka_admin import create_topics, read_to_end
from stream_app.worker.metrics import parse_exposition
from stream_app.worker.tansu import aiokafka_producer_settings_for_tansu
from stream_app.worker.topics import TopicNames
from synapse_stream.messages import dumps
from synapse_stream.sources import registry

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
REPO = Path(__file__).resolve().parents[2]
DEMO_DETECTOR = {"name": "positive-reviews", "description": "Movie reviews that praise the film: the reviewer liked it "
                 "(SST-2's positive class). A mixed review that is mostly praise counts; a negative one does not.",
                 "tau": 0.55, "d_max": 10, "audit_rate": 0.02, "candidates": "policy",
                 "k0": 50, "max_query_ratio": 0.1, "detect_threshold": 0.5}


_broker_kind = broker_kind  # LiveLoop's parameter shadows the function's name


def load_demo_posts(path: Path | None = None) -> list[dict]:
    with open(path or DEMO_DATA / "posts.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_demo_seeds(path: Path | None = None) -> list[str]:
    return [t for t in (path or DEMO_DATA / "seeds.txt").read_text(encoding="utf-8").splitlines() if t.strip()]


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return parse_exposition(resp.read().decode("utf-8"))


def gauge(metrics: dict[str, float], name: str, **labels) -> float | None:
    key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    return metrics.get(key)


@dataclass
class Moderated:
    candidates: list[dict] = field(default_factory=list)
    labels_sent: int = 0


class LiveLoop:
    def __init__(self, run_dir: str | os.PathLike | None = None, *, detectors: Sequence[dict] = (DEMO_DETECTOR,),
                 embedder: str = "minilm-onnx", partitions: int = 2, workers: int = 1, prefix: str = "synapse.",
                 external_broker: str | None = None, external_redis: str | None = None,
                 extra_env: dict | None = None, broker_kind: str | None = None, replication: int = 1) -> None:
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="synapse-run-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.detectors = list(detectors)
        self.embedder = embedder
        self.partitions = partitions
        self.n_workers = workers
        self.prefix = prefix
        self.external_broker = external_broker
        self.external_redis = external_redis
        self.broker_kind = _broker_kind(broker_kind)
        self.extra_env = dict(extra_env or {})
        self.replication = replication   # of every topic (``SYNAPSE_REPLICATION`` of the workers)
        self.worker_module = "faust"     # ``python -m <this> -A stream_app worker``
        self.stack: EmbeddedStack | None = None
        self.workers: list[FaustWorker] = []
        self.web_ports: list[int] = []
        self._producer = None
        self._producer_loop = None

    # ------------------------------------------------------------------ setup
    @property
    def bootstrap(self) -> str:
        if self.external_broker:
            return self.external_broker.split("://", 1)[-1]
        return self.stack.bootstrap

    @property
    def redis_url(self) -> str:
        return self.external_redis or self.stack.redis_url

    @property
    def tansu_quirks(self) -> bool:
        """True when the embedded Tansu broker runs: clients need its quirk settings (``worker/tansu.py``)."""
        return not self.external_broker and self.broker_kind == "tansu"

    @property
    def broker_description(self) -> str:
        if self.external_broker:
            return f"external Kafka at {self.bootstrap}"
        if self.stack is not None:
            return self.stack.broker_description
        return "Apache Kafka" if self.broker_kind == "kafka" else "Tansu"

    @property
    def broker_url(self) -> str:
        """The workers' ``SYNAPSE_BROKER_URL``: ``kafka://host:port`` per bootstrap server, ``;``-separated."""
        return ";".join(f"kafka://{b}" for b in self.bootstrap.split(","))

    def worker_env(self, index: int) -> dict[str, str]:
        env = {
            "SYNAPSE_BROKER_URL": self.broker_url,
            "SYNAPSE_REPLICATION": str(self.replication),
            "SYNAPSE_REDIS_URL": self.redis_url,
            "SYNAPSE_EMBEDDED_BROKER": "1" if self.tansu_quirks else "0",
            "SYNAPSE_EMBEDDER": self.embedder,
            "SYNAPSE_PARTITIONS": str(self.partitions),
            "SYNAPSE_TOPIC_PREFIX": self.prefix,
            "SYNAPSE_DETECTORS": json.dumps(self.detectors),
            "SYNAPSE_DATA_DIR": str(self.run_dir / f"worker-{index}"),
            "SYNAPSE_WEB_HOST": "127.0.0.1",
            "SYNAPSE_WEB_PORT": str(self.web_ports[index]),
            "SYNAPSE_ENV_FILE": "/nonexistent",   # only the variables above, not a stray synapse.env
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        env.update(self.extra_env)
        return env

    @property
    def topics(self) -> TopicNames:
        """The topic names (made once per prefix and partition count: building ``Settings`` reads the
        environment, about a millisecond, and harnesses ask for a topic once per post)."""
        key = (self.prefix, self.partitions)
        cached = getattr(self, "_topics", None)
        if cached is None or cached[0] != key:
            from stream_app.worker.settings import Settings

            cached = self._topics = (key, TopicNames.from_settings(
                Settings(topic_prefix=self.prefix, partitions=self.partitions, _env_file=None)))
        return cached[1]

    def _start_services(self) -> None:
        """Start the broker and Redis (unless external ones were given)."""
        if not self.external_broker:
            self.stack = EmbeddedStack(self.run_dir / "stack", broker=self.broker_kind).start()

    def start(self, *, timeout: float = 180.0, on_services=None) -> LiveLoop:
        """Start the services, create the topics, start the workers; ``on_services()`` is called once the
        broker and Redis are up (before the workers load their model)."""
        from stream_app.worker.settings import Settings

        self._start_services()
        if on_services is not None:
            on_services()
        s = Settings(topic_prefix=self.prefix, partitions=self.partitions, _env_file=None)
        parts = self.topics.partitions(s)
        asyncio.run(create_topics(self.bootstrap, parts, self.replication, configs=self.topics.configs(s)))
        self._wait_for_leaders(parts)
        for i in range(self.n_workers):
            self.web_ports.append(free_port())
            self.start_worker(i, timeout=timeout)
        return self

    def _wait_for_leaders(self, parts: dict[str, int]) -> None:
        if self.stack is not None:
            self.stack.wait_for_leaders(parts)

    def start_worker(self, index: int, *, timeout: float = 180.0) -> FaustWorker:
        while len(self.workers) <= index:
            self.workers.append(None)  # type: ignore[arg-type]
        w = self.workers[index]
        if w is None:
            data = self.run_dir / f"worker-{index}"
            data.mkdir(parents=True, exist_ok=True)
            w = FaustWorker("stream_app", self.run_dir / "logs", cwd=REPO, pythonpath=[REPO], env=self.worker_env(index),
                            web_port=self.web_ports[index], datadir=data / "faust", name=f"worker-{index}",
                            module=self.worker_module)
            self.workers[index] = w
        w.start(timeout=timeout)
        return w

    def metrics_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.web_ports[index]}/metrics"

    def health_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.web_ports[index]}/healthz"

    def scrape(self, index: int = 0) -> dict[str, float]:
        return scrape(self.metrics_url(index))

    def health(self, index: int = 0) -> dict:
        with urllib.request.urlopen(self.health_url(index), timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self) -> list[int | None]:
        codes = [w.stop() for w in self.workers if w is not None]
        if self.stack is not None:
            self.stack.stop()
        return codes

    def __enter__(self) -> LiveLoop:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ traffic
    async def producer(self):
        if self._producer is not None and self._producer_loop is not asyncio.get_running_loop():
            self._producer = None  # made in an earlier asyncio.run(); that loop is gone
        if self._producer is None:
            self._producer_loop = asyncio.get_running_loop()
            from aiokafka import AIOKafkaProducer

            # Tansu: its quirks; real Kafka: every in-sync replica acknowledges, retries are deduplicated (a
            # post acknowledged by a leader killed right after is then never lost, nor written twice)
            extra = (aiokafka_producer_settings_for_tansu() if self.tansu_quirks
                     else {"acks": "all", "enable_idempotence": True})
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, **extra)
            await self._producer.start()
        return self._producer

    async def close(self) -> None:
        if self._producer is not None and self._producer_loop is asyncio.get_running_loop():
            await self._producer.stop()
            self._producer = None

    async def send_seeds(self, detector: str, texts: Sequence[str], origin: str = "synthetic") -> None:
        p = await self.producer()
        for t in texts:
            await p.send(self.topics.seeds, dumps({"detector": detector, "text": t, "origin": origin}))
        await p.flush()

    async def send_posts(self, posts: Sequence[dict], *, rate: float | None = None, progress=None) -> None:
        p = await self.producer()
        t0 = time.monotonic()
        for i, post in enumerate(posts):
            await p.send(self.topics.posts, dumps({"id": post["id"], "text": post["text"], "ts": time.time()}),
                         key=str(post["id"]).encode())
            if rate:
                lag = (i + 1) / rate - (time.monotonic() - t0)
                if lag > 0:
                    await asyncio.sleep(lag)
            if progress and (i + 1) % 500 == 0:
                progress(i + 1)
        await p.flush()

    async def send_raw(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None):
        p = await self.producer()
        await p.send_and_wait(topic, value, key=key, partition=partition)

    async def set_truth(self, detector: str, positives: int) -> None:
        """Tell the workers the true number of positives (evaluation runs only: enables synapse_recall)."""
        import redis.asyncio as aioredis

        from stream_app.worker.state import RedisState

        r = aioredis.from_url(self.redis_url, decode_responses=True)
        await RedisState(r, "synapse:").verdicts.set_truth_positives(detector, positives)
        await r.aclose()

    async def moderate(self, truth: dict[str, int], stop: asyncio.Event, *, labeler: str = "replay-oracle",
                       answer: bool = True) -> Moderated:
        """A simulated moderator: read candidates, answer each from ``truth`` on the labels topic."""
        from aiokafka import AIOKafkaConsumer

        out = Moderated()
        c = AIOKafkaConsumer(self.topics.candidates, bootstrap_servers=self.bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        p = await self.producer()
        try:
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=300)
                for msgs in batch.values():
                    for m in msgs:
                        cand = json.loads(m.value)
                        out.candidates.append(cand)
                        if answer and cand["post_id"] in truth:
                            await p.send(self.topics.labels, dumps({
                                "detector": cand["detector"], "post_id": cand["post_id"],
                                "label": int(truth[cand["post_id"]]), "labeler": labeler, "ts": time.time()}),
                                key=cand["post_id"].encode())
                            out.labels_sent += 1
                await p.flush()
        finally:
            await c.stop()
        return out

    async def read_topic(self, topic: str, *, timeout: float = 30.0) -> list:
        """Every message on ``topic`` up to its end offsets as of the call."""
        return await read_to_end(self.bootstrap, topic, timeout=timeout)

    async def wait_quiet(self, detector: str, posts: int, *, timeout: float = 600.0, settle: float = 3.0,
                         progress=None, min_queried: int = 0) -> dict[str, float]:
        """Wait until every post is indexed and every candidate answered, stable for ``settle`` seconds
        (and at least ``min_queried`` posts queried: candidate rounds start a while after the seeds)."""
        t0 = time.monotonic()
        stable_since, last_key = None, None
        while True:
            try:
                m = await asyncio.to_thread(self.scrape)
            except OSError:  # worker busy starting up or rebalancing: try again
                await asyncio.sleep(1.0)
                continue
            indexed = gauge(m, "synapse_posts_indexed") or 0
            queried = gauge(m, "synapse_queried", detector=detector) or 0
            answered = gauge(m, "synapse_answered", detector=detector) or 0
            if progress:
                progress(m)
            key = (indexed, queried, answered)
            if indexed >= posts and queried == answered and queried >= min_queried:
                if key != last_key:
                    stable_since = time.monotonic()
                elif time.monotonic() - stable_since >= settle:
                    return m
            else:
                stable_since = None
            last_key = key
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"not quiet after {timeout:.0f}s: indexed={indexed}/{posts}, "
                                   f"queried={queried}, answered={answered}")
            await asyncio.sleep(1.0)


DEMO_USERS = (("moderator", "moderator-demo", "moderator"), ("analyst", "analyst-demo", "analyst"))


class DemoConsole:
    """The review console (``stream_app.console``) in the demo's own event loop, on the loop's broker and Redis, with
    two demo users; the simulated moderator reviews through its queue too, so a person logged in takes part in
    the same loop (leases keep the two apart)."""

    def __init__(self, loop: LiveLoop, port: int = 8088, host: str = "127.0.0.1") -> None:
        import socket

        from stream_app.console.settings import ConsoleSettings

        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                port = free_port()
        self.loop = loop
        self.settings = ConsoleSettings(
            _env_file=None, broker_url=f"kafka://{loop.bootstrap}", redis_url=loop.redis_url,
            embedded_broker=loop.tansu_quirks, topic_prefix=loop.prefix, partitions=loop.partitions,
            console_host=host, console_port=port, console_users_file=str(loop.run_dir / "console-users.json"),
            console_lease_seconds=30.0,   # a candidate left open in a browser holds the demo's round up 30 s at most
            embedder=loop.embedder, data_dir=str(loop.run_dir / "console"))
        self.url = f"http://{host}:{port}/"
        self._server = None
        self._task = None
        self._redis = None

    async def start(self) -> "DemoConsole":
        import uvicorn

        from stream_app.console.app import build_parts, create_app

        parts = build_parts(self.settings)
        for name, password, role in DEMO_USERS:
            parts.users.add(name, password, role)
        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):   # Ctrl-C stops the whole demo, not only the console
                yield

        self._server = Server(uvicorn.Config(create_app(self.settings, parts), host=self.settings.console_host,
                                             port=self.settings.console_port, log_level="warning"))
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task
            await asyncio.sleep(0.05)
        return self

    async def moderate(self, truth: dict[str, int], stop: asyncio.Event, *, name: str = "simulated",
                       rate: float = 20.0) -> Moderated:
        """The simulated moderator as a console user: one lease at a time, answered from ``truth`` at most ``rate``
        a second, no undo grace (published at once by the console as ``moderator:simulated``)."""
        import redis.asyncio as aioredis

        from stream_app.console.queue_redis import RedisReviewQueue

        self._redis = aioredis.from_url(self.settings.redis_url, decode_responses=True)
        q = RedisReviewQueue(self._redis, self.settings.redis_prefix, self.settings.console_lease_seconds, 0.0)
        out = Moderated()
        while not stop.is_set():
            leases = await q.lease(name, 1, time.time())
            if not leases:
                await asyncio.sleep(0.2)
                continue
            it = leases[0].item
            out.candidates.append(it.doc)
            y = truth.get(it.post_id)
            if y is None:
                await q.skip(name, it.key, time.time())
            elif await q.decide(name, it.key, int(y), time.time()):
                out.labels_sent += 1
            await asyncio.sleep(1.0 / rate)
        return out

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            await self._task
        if self._redis is not None:
            await self._redis.aclose()


def summary_line(m: dict[str, float], detector: str) -> str:
    posts = int(gauge(m, "synapse_posts_indexed") or 0)
    queried = int(gauge(m, "synapse_queried", detector=detector) or 0)
    positives = int(gauge(m, "synapse_confirmed_positives", detector=detector) or 0)
    precision = gauge(m, "synapse_precision", detector=detector) or 0.0
    recall = gauge(m, "synapse_recall", detector=detector)
    ratio = gauge(m, "synapse_query_ratio", detector=detector) or 0.0
    rec = f"{recall:.3f}" if recall is not None else "n/a"
    return (f"summary: posts={posts} queried={queried} positives={positives} precision={precision:.3f} "
            f"recall={rec} query_ratio={ratio:.3f}")


async def _demo(args) -> int:
    posts = load_demo_posts(Path(args.posts) if args.posts else None)
    if args.limit:
        posts = posts[: args.limit]
    seeds = load_demo_seeds(Path(args.seeds) if args.seeds else None)
    det = dict(DEMO_DETECTOR, tau=args.tau, d_max=args.dmax, audit_rate=args.audit_rate, candidates=args.candidates,
               k0=args.k0, max_query_ratio=args.max_query_ratio)
    truth = {p["id"]: int(p["label"]) for p in posts}
    loop = LiveLoop(args.run_dir, detectors=[det], embedder=args.embedder, partitions=args.partitions,
                    workers=args.workers, external_broker=args.broker if args.external else None,
                    external_redis=args.redis if args.external else None, broker_kind=args.broker_kind)

    def say(msg: str) -> None:
        print(f"[demo] {msg}", flush=True)

    say(f"run directory {loop.run_dir}")
    console = None
    embedded = "Apache Kafka" if loop.broker_kind == "kafka" else "Tansu"
    say("starting " + ("external Kafka/Redis" if args.external else f"the embedded {embedded} broker and Redis")
        + f", {args.workers} Faust worker(s) (loading the model)...")
    await asyncio.to_thread(loop.start, on_services=lambda: say(f"broker: {loop.broker_description} "
                                                                 f"at {loop.bootstrap}"))
    try:
        for i in range(args.workers):
            say(f"worker {i}: metrics at {loop.metrics_url(i)}  health at {loop.health_url(i)}")
        await loop.set_truth(det["name"], sum(truth.values()))
        stop = asyncio.Event()
        if args.console:
            console = await DemoConsole(loop, args.console_port).start()
            say(f"console at {console.url}  log in as " + " or ".join(
                f"{n} / {pw} ({r})" for n, pw, r in DEMO_USERS) + "; a simulated moderator reviews beside you "
                f"({args.moderator_rate:g} a second)")
            moderator = asyncio.create_task(console.moderate(truth, stop, rate=args.moderator_rate))
        else:
            moderator = asyncio.create_task(loop.moderate(truth, stop))
        say(f"publishing {len(seeds)} LLM-written seeds to {loop.topics.seeds}")
        await loop.send_seeds(det["name"], seeds)
        say(f"replaying {len(posts)} posts ({sum(truth.values())} positive) to {loop.topics.posts}")
        t0 = time.monotonic()
        last = [0.0]

        def progress(m):
            if time.monotonic() - last[0] < 3:
                return
            last[0] = time.monotonic()
            say(f"{time.monotonic() - t0:5.0f}s  indexed {int(gauge(m, 'synapse_posts_indexed') or 0)}/{len(posts)}  "
                f"queried {int(gauge(m, 'synapse_queried', detector=det['name']) or 0)}  "
                f"confirmed {int(gauge(m, 'synapse_confirmed_positives', detector=det['name']) or 0)}  "
                f"precision {gauge(m, 'synapse_precision', detector=det['name']) or 0:.3f}  "
                f"recall {gauge(m, 'synapse_recall', detector=det['name']) or 0:.3f}")

        # rounds start a few seconds apart (training the classifier first): wait longer before calling it quiet
        settle = 3.0 if det["candidates"] == "ibg" else 10.0
        # the stream in two halves: by the second one the classifier has learnt from the first half's
        # verdicts, so new posts it is confident about go to the detections topic
        half = len(posts) // 2 if det["candidates"] != "ibg" else len(posts)
        await loop.send_posts(posts[:half], rate=args.rate)
        first = 1 if det["candidates"] != "ibg" else 0
        m = await loop.wait_quiet(det["name"], half, timeout=args.timeout, progress=progress, settle=settle,
                                  min_queried=first)
        if half < len(posts):
            say(f"first half quiet; replaying the other {len(posts) - half} posts")
            await loop.send_posts(posts[half:], rate=args.rate)
            m = await loop.wait_quiet(det["name"], len(posts), timeout=args.timeout, progress=progress,
                                      settle=settle, min_queried=first)
        stop.set()
        await moderator
        say(f"loop quiet after {time.monotonic() - t0:.0f}s")
        est = gauge(m, "synapse_recall_estimate", detector=det["name"])
        if est is not None:
            say(f"recall estimated from {int(gauge(m, 'synapse_audit_size', detector=det['name']) or 0)} audited posts "
                f"(no ground truth): {est:.3f} "
                f"[{gauge(m, 'synapse_recall_estimate_lower', detector=det['name']):.3f}, "
                f"{gauge(m, 'synapse_recall_estimate_upper', detector=det['name']):.3f}] at 95 %; "
                f"the audit's share of oracle work {gauge(m, 'synapse_audit_share', detector=det['name']):.1%}")
        version = gauge(m, "synapse_model_version", detector=det["name"])
        if version:
            cvp = gauge(m, "synapse_model_cv_precision", detector=det["name"])
            cvr = gauge(m, "synapse_model_cv_recall", detector=det["name"])
            say(f"classifier version {int(version)}: cross-validated on the ledger precision "
                f"{cvp if cvp is None else round(cvp, 3)} recall {cvr if cvr is None else round(cvr, 3)}; "
                f"{int(gauge(m, 'synapse_detections_total', detector=det['name']) or 0)} posts sent to "
                f"{loop.topics.detections} (probability >= {det['detect_threshold']})")
        shares = {k.split('source="')[1].rstrip('"}'): int(v) for k, v in m.items()
                  if k.startswith("synapse_source_queried{") and f'detector="{det["name"]}"' in k}
        if shares:
            say("queried per candidate source: " + ", ".join(f"{k} {v}" for k, v in sorted(shares.items())))
        print(summary_line(m, det["name"]), flush=True)
        if console is not None and args.hold:
            say(f"the console stays up at {console.url} (Ctrl-C to stop)")
            await asyncio.Event().wait()
        return 0
    finally:
        if console is not None:
            await console.stop()
        await loop.close()
        codes = await asyncio.to_thread(loop.stop)
        if any(c not in (0, None) for c in codes):
            print(f"[demo] worker exit codes {codes}; logs in {loop.run_dir / 'logs'}", file=sys.stderr)
        if not args.keep and not args.run_dir:
            shutil.rmtree(loop.run_dir, ignore_errors=True)


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the whole live loop locally on a shipped sample",
                       description="Embedded broker + Redis + worker + replay producer + simulated moderator.")
    p.add_argument("--posts", help="JSONL posts with labels (default: the shipped SST-2 sample)")
    p.add_argument("--seeds", help="one seed text per line (default: the shipped LLM-written seeds)")
    p.add_argument("--limit", type=int, help="replay only the first N posts")
    p.add_argument("--tau", type=float, default=DEMO_DETECTOR["tau"], help="detector threshold τ")
    p.add_argument("--dmax", type=int, default=DEMO_DETECTOR["d_max"], help="detector d_max")
    p.add_argument("--audit-rate", type=float, default=DEMO_DETECTOR["audit_rate"],
                   help="share of posts audited to estimate recall without ground truth (0 = none)")
    p.add_argument("--candidates", default=DEMO_DETECTOR["candidates"], choices=["ibg", "policy", *registry.live_names()],
                   help="candidate source: the policy over IBG, GBLE and the classifier (default), or one of them")
    p.add_argument("--k0", type=int, default=DEMO_DETECTOR["k0"], help="K0 of a round (policy, gble, model)")
    p.add_argument("--max-query-ratio", type=float, default=DEMO_DETECTOR["max_query_ratio"],
                   help="the rounds' oracle budget, as a share of the posts")
    p.add_argument("--embedder", default="minilm-onnx",
                   help="minilm-onnx (default), minilm-onnx-int8, minilm (torch extra), or hashing (smoke tests only)")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rate", type=float, default=None, help="posts per second (default: as fast as possible)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--run-dir", help="keep logs and worker data here")
    p.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    p.add_argument("--external", action="store_true", help="use --broker/--redis instead of the embedded stack")
    p.add_argument("--broker-kind", choices=["tansu", "kafka"], default=None,
                   help=f"the embedded stack's broker: tansu (memory-only, fast) or kafka (Apache Kafka 4.x, "
                        f"KRaft); default ${BROKER_ENV_VAR}, else tansu")
    p.add_argument("--no-console", dest="console", action="store_false",
                   help="no review console: the simulated moderator reads the candidates topic itself")
    p.add_argument("--console-port", type=int, default=8088, help="the console's port (default 8088, else a free one)")
    p.add_argument("--moderator-rate", type=float, default=20.0,
                   help="with the console: the simulated moderator's decisions per second (default 20)")
    p.add_argument("--hold", action="store_true", help="keep the stack and the console running after the summary")
    p.add_argument("--broker", default=os.environ.get("SYNAPSE_BROKER_URL", "kafka://localhost:9092"))
    p.add_argument("--redis", default=os.environ.get("SYNAPSE_REDIS_URL", "redis://localhost:6379/0"))
    p.set_defaults(func=lambda args: asyncio.run(_demo(args)))

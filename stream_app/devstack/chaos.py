"""Crash, outage and hostile-input runs against the embedded stack: ``synapse-stream chaos`` / ``make chaos``.

One run, in phases, against one worker (``faust -A stream_app worker``) with a replay oracle answering:

1. **crashes**: posts are replayed in chunks; at random moments the worker is killed with SIGKILL and
   restarted; the time from restart to "every shard recovered" is measured from the worker's log;
2. **broker outage**: a proxy in front of the broker drops every connection for ``outage`` seconds;
3. **Redis outage**: the same in front of Redis, while the moderator keeps answering;
4. **hostile input**: ``bad`` malformed messages across posts, seeds and labels, interleaved with good
   posts, duplicate and conflicting verdicts;
5. **graceful stop**: SIGTERM, which must snapshot and exit 0; its duration is measured.

Then it checks, from the topics, the ledger and the shard snapshots (never from inside the worker):
every post accepted by the broker is in exactly one shard; no post id twice on the candidates topic
per detector; every verdict on the labels topic is in the ledger; the queried set and the confirmed
positives equal a crash-free run of the core engine on the same vectors and data (the end-to-end
test shows the stream equals the core); the worker never restarted because of input. It ends with::

    chaos: crashes=N posts=N missing=0 duplicate_candidates=0 lost_verdicts=0 worker_restarts_from_bad_input=0

``--broker-kind kafka-cluster`` (``make chaos BROKER=kafka-cluster``) runs the same phases on three Apache
Kafka nodes (:class:`~stream_app.devstack.kafka.KafkaCluster`: replication 3, ``min.insync.replicas=2``; the
workers' producers use ``acks=all`` and idempotence, so do the harness's) with three workers (static group
membership): at each crash moment two of the three workers are killed with SIGKILL and restarted; during
the replay the node leading a random ``posts`` partition is killed with SIGKILL, a chunk of posts is sent
without it, and it is restarted on its storage; the last worker runs with the crash-after-produce hook
(:mod:`stream_app.devstack.crash_hook`: it SIGKILLs itself once the broker acknowledged its N-th candidate,
before confirming it in Redis or committing offsets) and is restarted, and each candidate it died with must be
on the topic exactly once. The broker outage through a proxy is left out (the kills are the broker faults);
the Redis outage stays. The line then ends with the broker faults and the crash-after-produce case::

    ... broker_kills=1 broker_restarts=1 crash_after_produce=1 crash_after_produce_not_once=0
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import time
from collections import Counter, deque
from pathlib import Path

from stream_app.devstack.demo import LiveLoop, gauge, load_demo_posts
from stream_app.devstack.embedded import RedisServer, TansuBroker
from stream_app.devstack.faults import TcpProxy
from synapse_stream.messages import dumps

REPO = Path(__file__).resolve().parents[2]


def load_posts(n: int, seed: int = 0) -> list[dict]:
    """n labelled posts: imbalanced SST-2 train from ../shared if present, else the shipped sample, repeated."""
    sst = REPO.parent / "shared" / "data" / "sst2" / "train.tsv"
    if sst.exists():
        from synapse_stream.data import load_pool, make_imbalanced

        pool = make_imbalanced(load_pool(sst), 0.10, seed=seed)
        rng = random.Random(seed)
        rows = rng.sample(range(len(pool)), min(n, len(pool)))
        return [{"id": f"c-{pool.ids[i]}", "text": pool.texts[i], "label": int(pool.labels[i])} for i in rows]
    base = load_demo_posts()
    return [{"id": f"c{k}-{p['id']}", "text": p["text"] + ("" if k == 0 else f" ({k})"), "label": p["label"]}
            for k in range(n // len(base) + 1) for p in base][:n]


def bad_messages(n: int, detector: str, known_post: str, rng: random.Random) -> list[tuple[str, bytes, str]]:
    """``(topic kind, raw value, expected handling)``: a reason for the dead-letter topic, or a rule."""
    makers = [
        ("posts", lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))) + b"\xff", "not_utf8"),
        ("posts", lambda: b"{" + os.urandom(8).hex().encode(), "not_json"),
        ("posts", lambda: json.dumps(rng.choice([[1, 2], "s", 3, None])).encode(), "not_object"),
        ("posts", lambda: json.dumps({"text": "no id"}).encode(), "missing_field:id"),
        ("posts", lambda: json.dumps({"id": f"x{rng.random()}"}).encode(), "missing_field:text"),
        ("posts", lambda: json.dumps({"id": f"x{rng.random()}", "text": " " * rng.randint(0, 5)}).encode(), "empty_text"),
        ("posts", lambda: json.dumps({"id": f"x{rng.random()}", "text": rng.choice([1, [], {}, True])}).encode(),
         "wrong_type:text"),
        ("posts", lambda: json.dumps({"id": {"a": 1}, "text": "t"}).encode(), "wrong_type:id"),
        ("posts", lambda: (b'{"id": "d", "text": ' + b"[" * 200 + b"]" * 200 + b"}"), "too_deep"),
        ("posts", lambda: json.dumps({"id": f"x{rng.random()}", "text": "a" * 25_000}).encode(), "text_too_long"),
        ("posts", lambda: json.dumps({"id": "big", "text": "b" * 300_000}).encode(), "too_large"),
        ("seeds", lambda: json.dumps({"detector": "no-such-detector", "text": "t"}).encode(), "unknown_detector"),
        ("seeds", lambda: json.dumps({"detector": detector, "text": "t", "origin": "alien"}).encode(), "bad_origin"),
        ("seeds", lambda: b"\x00\x01", "not_json"),
        ("labels", lambda: json.dumps({"detector": detector, "post_id": f"never-{rng.random()}", "label": 1,
                                       "labeler": "x"}).encode(), "unknown_post"),
        ("labels", lambda: json.dumps({"detector": detector, "post_id": known_post,
                                       "label": rng.choice([2, -1, "1", 0.5, True, None]), "labeler": "x"}).encode(),
         "bad_label"),
        ("labels", lambda: json.dumps({"detector": "ghost", "post_id": known_post, "label": 1,
                                       "labeler": "x"}).encode(), "unknown_detector"),
        ("labels", lambda: json.dumps({"detector": detector, "post_id": known_post, "label": 1}).encode(),
         "missing_field:labeler"),
        # lone surrogates (valid JSON escapes) in ids: once a partition-stopping crash (issue #19)
        ("posts", lambda: b'{"id": "bad-\\ud800-%d", "text": "an id with a lone surrogate"}' % rng.getrandbits(30),
         "not_utf8:id"),
        ("labels", lambda: b'{"detector": "%s", "post_id": "bad-\\ud800", "label": 1, "labeler": "x"}' % detector.encode(),
         "not_utf8:post_id"),
        ("seeds", lambda: b'{"detector": "%s", "text": "t", "id": "seed-\\udfff"}' % detector.encode(), "not_utf8:id"),
        ("posts", lambda: json.dumps({"id": f"x{rng.random()}", "text": "\u200b\u2060\x00"}).encode(), "empty_text"),
    ]
    out = []
    for _ in range(n):
        kind, make, expect = rng.choice(makers)
        out.append((kind, make(), expect))
    return out


class ChaosLoop(LiveLoop):
    """A :class:`LiveLoop` for the chaos run. Default: the Tansu broker behind a fault-injecting proxy.
    ``cluster=True``: a three-node Apache Kafka cluster (:class:`~stream_app.devstack.kafka.KafkaCluster`,
    replication 3, ``min.insync.replicas=2``; its faults are nodes killed with SIGKILL), the workers with static
    group membership (``chaos-worker-<i>``) and run through :mod:`stream_app.devstack.crash_hook`. Redis sits
    behind a proxy either way."""

    def __init__(self, *args, cluster: bool = False, **kw) -> None:
        super().__init__(*args, replication=3 if cluster else 1, **kw)
        self.cluster = cluster
        self.kafka = None
        self.broker_proxy: TcpProxy | None = None
        self.worker_extra_env: dict[int, dict[str, str]] = {}   # per worker, on top of extra_env
        if cluster:
            self.worker_module = "stream_app.devstack.crash_hook"

    def _start_services(self) -> None:
        if self.cluster:
            from stream_app.devstack.kafka import KafkaCluster

            self.broker_kind = "kafka"   # no Tansu quirks
            self.kafka = KafkaCluster(self.run_dir / "stack", data_dir=self.run_dir / "kafka").start()
        else:
            self.broker_kind = "tansu"  # Tansu here (whatever $SYNAPSE_DEV_BROKER says): its quirk settings apply
            self.broker_proxy = TcpProxy(0)  # its target is set once the broker has a port
            self.tansu = TansuBroker(log_dir=self.run_dir / "stack", advertised_port=self.broker_proxy.port).start()
            self.broker_proxy.target = ("127.0.0.1", self.tansu.port)
            self.broker_proxy.start()
        self.redis_server = RedisServer(log_dir=self.run_dir / "stack", data_dir=self.run_dir / "redis").start()
        self.redis_proxy = TcpProxy(self.redis_server.port).start()

    def _wait_for_leaders(self, parts) -> None:
        if self.kafka is not None:
            self.kafka.wait_for_leaders(list(parts))

    @property
    def broker_description(self) -> str:
        return self.kafka.description if self.kafka is not None else "Tansu (behind a fault-injecting proxy)"

    @property
    def bootstrap(self) -> str:
        if self.kafka is not None:
            return self.kafka.bootstrap
        return f"127.0.0.1:{self.broker_proxy.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_proxy.port}/0"

    def worker_env(self, index: int) -> dict[str, str]:
        env = super().worker_env(index)
        if self.cluster:   # a worker restarted after kill -9 gets its partitions back without a rebalance
            env["SYNAPSE_WORKER_INSTANCE_ID"] = f"chaos-worker-{index}"
        env.update(self.worker_extra_env.get(index, {}))
        return env

    def scrape(self, index: int | None = None) -> dict[str, float]:
        """The metrics of worker *index*, else of the first worker that answers (they share the counters)."""
        if index is not None:
            return super().scrape(index)
        error: OSError | None = None
        for i, w in enumerate(self.workers):
            if w is not None and w.running:
                try:
                    return super().scrape(i)
                except OSError as exc:
                    error = exc
        raise error or ConnectionRefusedError("no worker running")

    def stop_workers(self) -> list[int | None]:
        """SIGTERM every worker at once (each snapshots its shards and exits)."""
        import concurrent.futures

        live = [w for w in self.workers if w is not None]
        if not live:
            return []
        with concurrent.futures.ThreadPoolExecutor(len(live)) as pool:
            return list(pool.map(lambda w: w.stop(), live))

    def stop(self):
        codes = self.stop_workers()
        for x in ("redis_proxy", "broker_proxy"):
            if getattr(self, x, None) is not None:
                getattr(self, x).stop()
        for x in ("redis_server", "tansu", "kafka"):
            if getattr(self, x, None) is not None:
                getattr(self, x).stop()
        return codes


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _resilient_moderator(loop: ChaosLoop, truth: dict[str, int], stop: asyncio.Event, stats: dict,
                               conflicts: float, rng: random.Random) -> None:
    """Answers every candidate from the truth; survives broker outages; sometimes repeats or contradicts."""
    from aiokafka import AIOKafkaConsumer

    seen: set[str] = set()
    while not stop.is_set():
        c = AIOKafkaConsumer(loop.topics.candidates, bootstrap_servers=loop.bootstrap, group_id="chaos-moderator",
                             auto_offset_reset="earliest", enable_auto_commit=True, session_timeout_ms=6000,
                             heartbeat_interval_ms=1000)
        try:
            await c.start()
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=300)
                for msgs in batch.values():
                    for m in msgs:
                        cand = json.loads(m.value)
                        pid = cand["post_id"]
                        stats["candidates_read"] += 1
                        if pid in seen or pid not in truth:
                            continue
                        seen.add(pid)
                        stats.setdefault("answered_ids", []).append(pid)
                        y = int(truth[pid])
                        verdicts = [y]
                        if rng.random() < conflicts:
                            # a duplicate, or a positive first marked negative by mistake and then corrected
                            # (a wrong *positive* would legitimately expand the search, so the crash-free
                            # reference would no longer be comparable)
                            verdicts = rng.choice([[y, y], [0, 1]]) if y == 1 else [0, 0]
                        for v in verdicts:
                            await _send_retrying(loop, loop.topics.labels, dumps({
                                "detector": cand["detector"], "post_id": pid, "label": v,
                                "labeler": "replay-oracle", "ts": time.time()}), pid.encode())
                            stats["labels_sent"] += 1
        except Exception:  # noqa: BLE001 - broker outage: reconnect
            await asyncio.sleep(1.0)
        finally:
            try:
                await c.stop()
            except Exception:  # noqa: BLE001
                pass


async def _send_retrying(loop: LiveLoop, topic: str, value: bytes, key: bytes | None = None, partition=None):
    delay = 0.2
    while True:
        try:
            p = await loop.producer()
            await asyncio.wait_for(p.send_and_wait(topic, value, key=key, partition=partition), 20)
            return
        except Exception:  # noqa: BLE001 - outage: back off and retry with a fresh producer
            try:
                await loop.close()
            except Exception:  # noqa: BLE001
                loop._producer = None
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


def _recovery_times(log_text: str) -> list[float]:
    return [float(x) for x in re.findall(r"shard \d+ recovered: .* in ([0-9.]+)s", log_text)]


async def _wait_recovered(loop: ChaosLoop, timeout: float = 120.0) -> float:
    """Until no worker is recovering a shard and the worker holds shards (several workers: together they hold
    every partition once)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            hs = [await asyncio.to_thread(loop.health, i) for i in range(len(loop.workers))]
            held = [p for h in hs for p in h.get("shards") or []]
            if (not any(h.get("recovering") for h in hs)
                    and (sorted(held) == list(range(loop.partitions)) if len(hs) > 1 else bool(held))):
                return time.monotonic() - t0
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the workers did not recover their shards")


async def _restart(workers, timeout: float = 240.0) -> list[float]:
    """Start the (killed) workers again, all at once; seconds until each is Ready."""
    async def one(w):
        t0 = time.monotonic()
        await asyncio.to_thread(w.start, timeout=timeout)
        return round(time.monotonic() - t0, 2)
    return list(await asyncio.gather(*(one(w) for w in workers)))


async def _watch_crash_hook(loop: ChaosLoop, index: int, report: dict, lock: asyncio.Lock, say,
                            stop: asyncio.Event) -> None:
    """The crash-after-produce case: once worker *index* killed itself through the hook
    (:mod:`stream_app.devstack.crash_hook`), note what it died with, disarm the hook and restart it."""
    from stream_app.devstack.crash_hook import ENV_VAR, acknowledged_before_crash

    w = loop.workers[index]
    while not stop.is_set():
        await asyncio.sleep(0.5)
        async with lock:
            if w.proc is None or w.proc.poll() is None:
                continue
            died_with = acknowledged_before_crash(w.log_text())
            if not died_with:
                continue
            report["crash_after_produce"] += 1
            report["crash_after_produce_candidates"] += [list(x) for x in died_with]
            code = w.proc.returncode
            w.env.pop(ENV_VAR, None)
            ready = (await _restart([w]))[0]
            report["restart_ready_seconds"].append(ready)
            say(f"crash after produce: worker {index} killed itself (exit {code}) "
                f"with {len(died_with)} candidates on the topic, not confirmed; ready again in {ready:.1f}s")
            return


async def run_chaos(args) -> dict:
    cluster = getattr(args, "broker_kind", "tansu") == "kafka-cluster"
    n_workers = args.workers or (3 if cluster else 1)
    partitions = args.partitions or (6 if cluster else 4)
    rng = random.Random(args.seed)
    allp = load_posts(args.posts + 500, args.seed)
    posts = allp[:args.posts]
    truth = {p["id"]: p["label"] for p in posts}
    det = {"name": "chaos", "tau": args.tau, "d_max": args.dmax, "candidates": "ibg"}   # checked against core IBG
    # seeds: positives that are *not* in the stream (as LLM seeds are not); extras for the outage phases
    seeds = [p["text"] for p in allp[args.posts:args.posts + 400] if p["label"] == 1][:args.seeds]
    outage_posts = {"broker": allp[args.posts + 400:args.posts + 450], "redis": allp[args.posts + 450:]}
    loop = ChaosLoop(args.run_dir, detectors=[det], embedder=args.embedder, partitions=partitions,
                     workers=n_workers, cluster=cluster,
                     extra_env={"SYNAPSE_SNAPSHOT_INTERVAL": str(args.snapshot_interval),
                                "SYNAPSE_MAX_MESSAGE_BYTES": "200000",
                                # labels for posts never sent wait this long before their dead letter
                                "SYNAPSE_LABEL_HOLD_SECONDS": "5",
                                "SYNAPSE_HNSW_EF_SEARCH": "400"})
    hooked = n_workers - 1 if cluster and args.crash_after_produce > 0 else None
    if hooked is not None:
        from stream_app.devstack.crash_hook import ENV_VAR

        loop.worker_extra_env[hooked] = {ENV_VAR: str(args.crash_after_produce)}
    say = (lambda m: print(f"[chaos] {m}", flush=True)) if not args.quiet else (lambda m: None)
    report: dict = {"run_dir": str(loop.run_dir), "broker": "kafka-cluster" if cluster else "tansu",
                    "workers": n_workers, "posts": len(posts), "crashes": 0, "recovery_seconds": [],
                    "restart_ready_seconds": [], "outages": {}, "bad_messages": 0}
    if cluster:
        # broker_down_seconds: from a node's kill to its restart (a chunk of posts sent without it, through the
        # failover of the partitions it led); broker_restarts: from its restart until every node lists it
        report.update(broker_kills=0, broker_restarts=[], broker_down_seconds=[], crash_after_produce=0,
                      crash_after_produce_candidates=[])
    await asyncio.to_thread(loop.start, timeout=300)
    workers = loop.workers
    stats: dict = Counter()
    stop = asyncio.Event()
    restart_lock = asyncio.Lock()
    watcher = None
    try:
        if cluster:
            say(f"broker: {loop.broker_description} at {loop.bootstrap}; {n_workers} workers")
            await _wait_recovered(loop, timeout=300)
        await loop.set_truth(det["name"], sum(truth.values()))
        moderator = asyncio.create_task(_resilient_moderator(loop, truth, stop, stats, args.conflicts, rng))
        if hooked is not None:
            watcher = asyncio.create_task(_watch_crash_hook(loop, hooked, report, restart_lock, say, stop))
        await loop.send_seeds(det["name"], seeds)

        # ---- phase 1: crashes (and, on the cluster, a partition leader killed) during the replay
        n_chunks = max(args.crashes * 3, 10)
        chunk = max(1, len(posts) // n_chunks)
        crash_at = set(rng.sample(range(1, n_chunks), min(args.crashes, n_chunks - 1)))
        free = sorted(set(range(1, n_chunks - 1)) - crash_at) or list(range(1, n_chunks - 1))
        broker_kill_at = set(rng.sample(free, min(args.broker_kills, len(free)))) if cluster else set()
        victim: int | None = None
        t_kill = 0.0
        for i in range(0, len(posts), chunk):
            part = posts[i:i + chunk]
            for p in part:
                await _send_retrying(loop, loop.topics.posts, dumps({"id": p["id"], "text": p["text"]}),
                                     p["id"].encode())
            if victim is not None:   # the killed leader missed a whole chunk: back on its storage
                report["broker_down_seconds"].append(round(time.monotonic() - t_kill, 2))
                secs = await asyncio.to_thread(loop.kafka.restart, victim)
                report["broker_restarts"].append(round(secs, 2))
                say(f"broker node {victim} restarted on its storage, listed by every node after {secs:.1f}s")
                victim = None
            if i // chunk in broker_kill_at:
                p_kill = rng.randrange(loop.partitions)
                victim = await asyncio.to_thread(loop.kafka.leader_of, loop.topics.posts, p_kill)
                await asyncio.to_thread(loop.kafka.kill, victim)
                t_kill = time.monotonic()
                report["broker_kills"] += 1
                say(f"broker node {victim} (leader of {loop.topics.posts}/{p_kill}) killed with SIGKILL after "
                    f"{i + len(part)} posts")
            if i // chunk in crash_at:
                await asyncio.sleep(rng.uniform(0.0, 2.0))   # let it get into the middle of something
                async with restart_lock:
                    k = min(args.kill_workers, n_workers) if n_workers > 1 else 1
                    chosen = sorted(rng.sample(range(n_workers), k))
                    # a worker the hook just killed is the watcher's: kill a running one in its place
                    spare = [j for j in range(n_workers) if j not in chosen and workers[j].running]
                    chosen = sorted(j if workers[j].running else spare.pop() for j in chosen
                                    if workers[j].running or spare)
                    pids = []
                    for j in chosen:
                        w = workers[j]
                        pids.append(w.proc.pid)
                        os.kill(w.proc.pid, signal.SIGKILL)
                        w.proc.wait()
                        report["crashes"] += 1
                    ready = await _restart([workers[j] for j in chosen])
                rec = await _wait_recovered(loop, timeout=300)   # unlocked: the hook's worker may die meanwhile
                report["restart_ready_seconds"] += ready
                say(f"crash: killed workers {chosen} (pids {pids}) after {i + len(part)} posts; "
                    f"ready in {', '.join(f'{x:.1f}s' for x in ready)}, shards recovered {rec:.1f}s later")
        if victim is not None:
            report["broker_down_seconds"].append(round(time.monotonic() - t_kill, 2))
            secs = await asyncio.to_thread(loop.kafka.restart, victim)
            report["broker_restarts"].append(round(secs, 2))
            say(f"broker node {victim} restarted on its storage, listed by every node after {secs:.1f}s")
        say(f"replayed {len(posts)} posts")
        if watcher is not None and not watcher.done():   # the hook fires on the N-th candidate; wait for it a while
            try:
                await asyncio.wait_for(asyncio.shield(watcher), timeout=args.timeout / 4)
            except asyncio.TimeoutError:
                say("the crash-after-produce hook did not fire (too few candidates on its worker's partitions)")

        # ---- phase 2 and 3: broker and Redis outages (the cluster's broker faults were the kills above)
        pids_before = [w.proc.pid for w in workers]
        windows: dict[str, list[dict[int, int]]] = {}
        answered = [pid for pid in truth if pid in set(stats.get("answered_ids", []))]
        proxies = [(n, x) for n, x in (("broker", loop.broker_proxy), ("redis", loop.redis_proxy)) if x is not None]
        for name, proxy in proxies if args.outage > 0 else []:
            extra = outage_posts[name]
            for p in extra:
                truth[p["id"]] = p["label"]
            posts += extra
            await loop.close()
            windows.setdefault(name, [await _end_offsets(loop, loop.topics.candidates)])
            proxy.block()
            say(f"{name} unavailable for {args.outage:.0f}s")
            t_block = time.monotonic()
            if name == "redis":   # Kafka is up: posts and verdicts keep arriving while Redis is away
                for p in extra:
                    await _send_retrying(loop, loop.topics.posts, dumps({"id": p["id"], "text": p["text"]}),
                                         p["id"].encode())
                for pid in answered[:20]:   # repeated verdicts: each must reach the ledger's history
                    await _send_retrying(loop, loop.topics.labels, dumps({
                        "detector": det["name"], "post_id": pid, "label": int(truth[pid]),
                        "labeler": "replay-oracle", "ts": time.time()}), pid.encode())
            await asyncio.sleep(max(0.0, args.outage - (time.monotonic() - t_block)))
            proxy.unblock()
            t0 = time.monotonic()
            if name == "broker":
                for p in extra:
                    await _send_retrying(loop, loop.topics.posts, dumps({"id": p["id"], "text": p["text"]}),
                                         p["id"].encode())
            while True:   # resumed = every post sent so far is indexed again
                try:
                    m = await asyncio.to_thread(loop.scrape)
                    if (gauge(m, "synapse_posts_indexed") or 0) >= len(posts):
                        break
                except OSError:
                    pass
                if time.monotonic() - t0 > 180:
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(2.0)   # let in-flight produce retries land before closing the window
            windows[name].append(await _end_offsets(loop, loop.topics.candidates))
            report["outages"][name] = {"seconds": args.outage, "resumed_after": round(time.monotonic() - t0, 2),
                                       "worker_exited": not all(w.running for w in workers)}
            say(f"{name} back; processing resumed after {report['outages'][name]['resumed_after']}s")
        report["worker_survived_outages"] = all(w.running and w.proc.pid == pid for w, pid in zip(workers, pids_before))

        # ---- phase 4: hostile input
        rss_before = _rss_kb(workers[0].proc.pid)
        bad = bad_messages(args.bad, det["name"], posts[0]["id"], rng)
        good = 0
        for j, (kind, value, _expect) in enumerate(bad):
            topic = {"posts": loop.topics.posts, "seeds": loop.topics.seeds, "labels": loop.topics.labels}[kind]
            await _send_retrying(loop, topic, value, b"bad")
            if j % 50 == 0:   # good posts interleaved with the bad ones
                gid = f"good-{j}"
                truth[gid] = 0
                posts.append({"id": gid, "text": f"an ordinary post number {j}", "label": 0})
                await _send_retrying(loop, loop.topics.posts, dumps({"id": gid, "text": posts[-1]["text"]}),
                                     gid.encode())
                good += 1
        report["bad_messages"] = len(bad)
        say(f"sent {len(bad)} bad messages and {good} good posts between them")

        try:
            m = await loop.wait_quiet(det["name"], len(posts), timeout=args.timeout)
            report["quiet"] = True
        except TimeoutError as exc:   # report what went wrong instead of hanging: the checks below say it
            say(str(exc))
            report["quiet"] = False
            m = await asyncio.to_thread(loop.scrape)
        for _ in range(120):   # labels for posts never sent are held, then dead-lettered as unknown_post
            if not gauge(m, "synapse_held_labels"):
                break
            await asyncio.sleep(0.5)
            m = await asyncio.to_thread(loop.scrape)
        report["rss_kb_before_bad"] = rss_before
        report["rss_kb_after_bad"] = _rss_kb(workers[0].proc.pid)
        report["worker_restarts_from_bad_input"] = sum(
            not (w.running and w.proc.pid == pid) for w, pid in zip(workers, pids_before))
        stop.set()
        await moderator
        if watcher is not None:
            watcher.cancel()

        # ---- checks, from the outside
        report.update(await _check(loop, det["name"], posts, truth, bad, m, windows))
        if cluster:
            report.update(await _check_crash_after_produce(loop, report["crash_after_produce_candidates"]))
        report["recovery_seconds"] = [x for w in workers for x in _recovery_times(w.log_text(current_run=False))]

        # ---- phase 5: graceful stop
        await loop.close()
        t0 = time.monotonic()
        codes = await asyncio.to_thread(loop.stop_workers)
        report["graceful_stop"] = {"exit_code": max(codes, key=lambda c: abs(c or 0)) if codes else None,
                                   "exit_codes": codes, "seconds": round(time.monotonic() - t0, 2)}
        report.update(_check_shards(loop, posts))
        report.update(_reference(loop, det, seeds, truth, report))
        return report
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
        await loop.close()
        await asyncio.to_thread(loop.stop)


async def _check_crash_after_produce(loop: ChaosLoop, died_with: list) -> dict:
    """Copies on the candidates topic of each candidate a worker died with (acknowledged by the broker,
    neither confirmed in Redis nor committed): each must be there exactly once."""
    msgs = await loop.read_topic(loop.topics.candidates, timeout=120)
    count = Counter((c["detector"], c["post_id"]) for c in (json.loads(m.value) for m in msgs))
    copies = [count.get((d, p), 0) for d, p in died_with]
    return {"crash_after_produce_copies": copies,
            "crash_after_produce_not_once": sum(1 for n in copies if n != 1)}


async def _end_offsets(loop: ChaosLoop, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    for _ in range(30):
        c = AIOKafkaConsumer(bootstrap_servers=loop.bootstrap, group_id=None, enable_auto_commit=False)
        try:
            await c.start()
            await c.topics()
            tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
            return {tp.partition: off for tp, off in (await c.end_offsets(tps)).items()}
        except Exception:  # noqa: BLE001 - the broker may just be coming back
            await asyncio.sleep(1.0)
        finally:
            await c.stop()
    raise TimeoutError(f"no end offsets for {topic}")


async def _check(loop: ChaosLoop, detector: str, posts, truth, bad, metrics, windows) -> dict:
    import redis.asyncio as aioredis

    from stream_app.worker.state import RedisState

    msgs = await loop.read_topic(loop.topics.candidates, timeout=120)
    cands = [json.loads(m.value) for m in msgs]
    # a repeated candidate whose copy was written while the broker connection was cut is a producer retry
    # (no idempotent producer on the embedded broker); it is counted apart from the crash phases
    seen, dup_outage, dup_other = set(), 0, 0
    for m, c in zip(msgs, cands):
        key = (c["detector"], c["post_id"])
        if key in seen:
            in_outage = any(w[0].get(m.partition, 0) <= m.offset < w[1].get(m.partition, 0)
                            for w in windows.values() if len(w) == 2)
            dup_outage += in_outage
            dup_other += not in_outage
        seen.add(key)
    labels = [json.loads(m.value) for m in await loop.read_topic(loop.topics.labels, timeout=120)]
    dead_msgs = await loop.read_topic(loop.topics.dead_letters, timeout=120)
    # a dead letter is keyed by its source coordinates: one repeated by a replay after a crash has the same key
    dead = list({m.key: json.loads(m.value) for m in dead_msgs}.values())
    dead_repeats = len(dead_msgs) - len(dead)
    r = aioredis.from_url(loop.redis_url, decode_responses=True)
    st = RedisState(r, "synapse:")
    ledger = await st.verdicts.ledger(detector)
    history = Counter((h["post_id"], h["label"]) for h in await st.verdicts.history(detector))
    seeds = await st.seeds.all(detector)
    await r.aclose()
    valid = [x for x in labels if x.get("detector") == detector and isinstance(x.get("label"), int)
             and not isinstance(x.get("label"), bool) and x.get("label") in (0, 1) and x.get("post_id") in truth
             and isinstance(x.get("labeler"), str)]
    last = {}
    for x in valid:
        last[x["post_id"]] = x["label"]
    lost = sum(1 for (pid, y) in Counter((x["post_id"], x["label"]) for x in valid) if history[(pid, y)] == 0)
    latest_wrong = sum(1 for pid, y in last.items() if ledger.get(pid) != y)
    expected = Counter(e for _, _, e in bad)
    got = Counter(d["reason"] for d in dead)
    return {
        "candidates": len(cands), "duplicate_candidates": dup_other,
        "duplicate_candidates_from_producer_retries_in_outages": dup_outage,
        "labels_on_topic": len(labels), "valid_verdicts": len(valid), "lost_verdicts": lost,
        "ledger_latest_mismatch": latest_wrong, "dead_letters": len(dead),
        "dead_letters_repeated_by_replays": dead_repeats,
        "dead_letters_by_reason": dict(sorted(got.items())), "bad_expected_by_reason": dict(sorted(expected.items())),
        "bad_unaccounted": sum((expected - got).values()),
        "queried_metric": gauge(metrics, "synapse_queried", detector=detector),
        "precision_metric": gauge(metrics, "synapse_precision", detector=detector),
        "query_ratio_metric": gauge(metrics, "synapse_query_ratio", detector=detector),
        "queried_set": sorted({c["post_id"] for c in cands}),
        "confirmed_set": sorted(d["id"] for d in seeds if d["origin"] == "confirmed"),
        "synthetic_seeds": [{"id": d["id"], "vector": d["vector"]} for d in seeds if d["origin"] == "synthetic"],
    }


def latest_shards(run_dir) -> dict[int, object]:
    """Each partition's newest shard snapshot over every worker's data directory (the one covering the highest
    offset: with several workers a shard may have moved, and the old holder's copy stays behind)."""
    from synapse_stream.segments import SegmentedIndex

    best: dict[int, tuple[int, object]] = {}
    for p in sorted(Path(run_dir).glob("worker-*/shard-*/index.json")):
        shard = SegmentedIndex.load(p)
        part = int(p.parent.name.split("-", 1)[1])
        off = int(shard.meta.get("offset", -1))
        if part not in best or off > best[part][0]:
            best[part] = (off, shard)
    return {part: shard for part, (_, shard) in sorted(best.items())}


def _check_shards(loop: ChaosLoop, posts) -> dict:
    ids = Counter()
    for shard in latest_shards(loop.run_dir).values():
        for pid in shard.ids():
            ids[pid] += 1
    expected = {p["id"] for p in posts}
    return {"missing": len(expected - set(ids)), "posts_in_two_shards": sum(1 for n in ids.values() if n > 1),
            "unexpected_in_index": len(set(ids) - expected - {"big"})}


def _reference(loop: ChaosLoop, det: dict, seeds, truth, report) -> dict:
    """The crash-free answer: the core engine on the worker's own vectors, instant oracle."""
    from stream_app.worker.state import vec_from_b64
    from synapse_stream.index import PostIndex
    from synapse_stream.online import DetectorConfig, OnlineIBG
    from synapse_stream.seeds import Seed

    shards = list(latest_shards(loop.run_dir).values())
    index = PostIndex(shards[0].dim, ef_search=400)
    for s in shards:
        ids = [i for i in s.ids() if i in truth]
        index.add(ids, s.get_vectors(ids))
    eng = OnlineIBG(DetectorConfig(det["name"], det["tau"], det["d_max"]), index)
    q = deque()
    for d in report.pop("synthetic_seeds"):
        q.extend(eng.on_seed(Seed(d["id"]), vec_from_b64(d["vector"])))
    while q:
        c = q.popleft()
        q.extend(eng.on_verdict(c.post_id, truth[c.post_id]).candidates)
    ref_pos = {p for p, y in eng.labels.items() if y == 1}
    queried, confirmed = set(report.pop("queried_set")), set(report.pop("confirmed_set"))
    n = len(index)
    return {"reference": {"queried": len(eng.queried), "positives": len(ref_pos),
                          "precision": round(len(ref_pos) / max(1, len(eng.queried)), 6),
                          "query_ratio": round(len(eng.queried) / max(1, n), 6)},
            "stream": {"queried": len(queried), "positives": len(confirmed),
                       "precision": round(len(confirmed) / max(1, len(queried)), 6),
                       "query_ratio": round(len(queried) / max(1, n), 6)},
            "queried_equal_reference": queried == eng.queried, "positives_equal_reference": confirmed == ref_pos,
            "queried_only_in_reference": sorted(eng.queried - queried)[:20],
            "queried_only_in_stream": sorted(queried - eng.queried)[:20]}


def chaos_line(r: dict) -> str:
    line = (f"chaos: crashes={r['crashes']} posts={r['posts']} missing={r['missing']} "
            f"duplicate_candidates={r['duplicate_candidates']} lost_verdicts={r['lost_verdicts']} "
            f"worker_restarts_from_bad_input={r['worker_restarts_from_bad_input']}")
    if "broker_kills" in r:   # the cluster run: its broker faults and the crash-after-produce case
        line += (f" broker_kills={r['broker_kills']} broker_restarts={len(r['broker_restarts'])} "
                 f"crash_after_produce={r['crash_after_produce']} "
                 f"crash_after_produce_not_once={r.get('crash_after_produce_not_once', 0)}")
    return line


def chaos_ok(r: dict) -> bool:
    """Every check of the run passed."""
    ok = (r["quiet"] and r["missing"] == 0 and r["posts_in_two_shards"] == 0 and r["duplicate_candidates"] == 0
          and r["lost_verdicts"] == 0 and r["worker_restarts_from_bad_input"] == 0 and r["queried_equal_reference"]
          and r["positives_equal_reference"] and r["bad_unaccounted"] == 0 and r["graceful_stop"]["exit_code"] == 0)
    if "broker_kills" in r:
        ok = ok and len(r["broker_restarts"]) == r["broker_kills"] and r.get("crash_after_produce_not_once", 0) == 0
    return bool(ok)


def add_chaos_parser(sub) -> None:
    p = sub.add_parser("chaos", help="crash, outage and hostile-input run against the embedded stack")
    p.add_argument("--posts", type=int, default=20_000)
    p.add_argument("--crashes", type=int, default=5,
                   help="crash moments: kill -9 of the worker (several workers: of --kill-workers of them)")
    p.add_argument("--broker-kind", choices=["tansu", "kafka-cluster"], default="tansu",
                   help="tansu (behind a fault-injecting proxy) or kafka-cluster (three Apache Kafka nodes, "
                        "replication 3, min.insync.replicas 2; the leader of a posts partition killed with kill -9 "
                        "during the replay and restarted)")
    p.add_argument("--workers", type=int, default=None, help="workers (default 1; 3 on kafka-cluster)")
    p.add_argument("--kill-workers", type=int, default=2, help="workers killed at each crash moment (several workers)")
    p.add_argument("--broker-kills", type=int, default=1, help="kafka-cluster: partition leaders killed during the replay")
    p.add_argument("--crash-after-produce", type=int, default=2, metavar="N",
                   help="kafka-cluster: the last worker kills itself once the broker acknowledged its N-th candidate, "
                        "before confirming it or committing offsets (0: off)")
    p.add_argument("--outage", type=float, default=30.0, help="seconds each of the broker and Redis is cut off")
    p.add_argument("--bad", type=int, default=10_000, help="malformed messages to send")
    p.add_argument("--conflicts", type=float, default=0.05, help="share of candidates answered twice or corrected")
    p.add_argument("--embedder", default="hashing-256", help="hashing-256 (fast) or minilm")
    p.add_argument("--tau", type=float, default=0.55, help="0.55 with hashing-256 queries about 4 %% of SST-2")
    p.add_argument("--dmax", type=int, default=10)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--partitions", type=int, default=None, help="of posts (default 4; 6 on kafka-cluster)")
    p.add_argument("--snapshot-interval", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the loop to go quiet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--report", default="chaos-report.json", help="write the full report (JSON) here")
    p.add_argument("--quiet", action="store_true")

    def main(args):
        import logging

        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)   # the harness's own clients during outages
        r = asyncio.run(run_chaos(args))
        return finish_run(r, args, chaos_line(r), chaos_ok(r), "chaos")

    p.set_defaults(func=main)


def finish_run(r: dict, args, line: str, ok: bool, tag: str) -> int:
    """A harness's end: the report written (``--report``), its one line printed, the run directory removed
    when all went well (unless ``--run-dir`` named it) or kept for a look; the exit code."""
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(r, indent=1))
    print(line, flush=True)
    if ok and not args.run_dir:
        shutil.rmtree(r["run_dir"], ignore_errors=True)
    elif not ok:
        print(f"[{tag}] logs and worker data kept in {r['run_dir']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser()
    add_chaos_parser(ap.add_subparsers(dest="cmd"))
    a = ap.parse_args(["chaos"] + os.sys.argv[1:])
    raise SystemExit(a.func(a))

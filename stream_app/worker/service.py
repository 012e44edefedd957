"""The worker's logic between the topics and the core, without Faust.

The Faust agents (``agents/``) hand raw messages in and publish what comes out; everything here can
be driven directly in tests. Model and index work runs in one worker thread (``_run``), never on the
event loop, and that single thread also serialises every change to the core's engines.

Flow:

* posts: parse -> embed (micro-batch) -> add to the shard of the message's partition -> every
  detector's :class:`~synapse_stream.online.OnlineIBG` compares it with its positives -> claim in
  Redis (never twice) -> candidate messages.
* seeds: parse -> embed -> register in Redis and append to the seed log; every worker reads the seed
  log (a broadcast) and backfills its own shards.
* labels: parse -> look up the partition holding the post -> forward to the internal verdicts topic on
  that partition (co-partitioned with posts, so it reaches the worker holding the post's shard).
* verdicts: ledger in Redis -> engine (refill windows; a positive becomes a confirmed seed, which is
  also put on the seed log so other workers' shards are backfilled too).

Error boundary: every message is handled inside :meth:`DetectionService._each`. A message that fails
validation becomes a dead letter with its reason; any other exception while handling it (in the service, the
model thread, Redis encoding, a replay) becomes a dead letter with reason ``internal_error`` and the
exception's type and place (``stream_app.worker.exceptions.describe``), and the batch goes on. Only transient errors
(Redis or broker connections) leave a ``handle_*`` method, for the runtime to retry. A dead letter's key is
its source coordinates (``topic/partition/offset``), so a message dead-lettered again on a replay after a
crash has the same key: a consumer (or a compacted topic) drops the repeat.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from stream_app.worker.exceptions import INTERNAL_ERROR, describe, frames, is_transient
from stream_app.worker.metrics import Metrics
from stream_app.worker.settings import Settings
from stream_app.worker.state import RedisState
from synapse_stream.audit import AuditSampler, RecallEstimator
from synapse_stream.classifier import ModelVersion, train_model
from synapse_stream.embedders import Embedder, make_embedder
from synapse_stream.exceptions import MessageError, PostIndexError, UnknownDetectorError
from synapse_stream.index import PostIndex, ShardedIndex
from synapse_stream.llm_oracle import Agreement, annotate_for_humans
from synapse_stream.messages import (
    LabelMsg,
    PostMsg,
    candidate_message,
    dead_letter,
    detection_message,
    dumps,
    parse_label,
    parse_post,
    parse_seed,
)
from synapse_stream.online import Candidate, DetectorConfig, OnlineIBG
from synapse_stream.rounds import SOURCES, LiveRounds
from synapse_stream.seeds import Seed, SeedOrigin

log = logging.getLogger("synapse.service")


@dataclass
class RawMsg:
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None   # broker timestamp, seconds


@dataclass
class Outputs:
    candidates: list[tuple[bytes, bytes]] = field(default_factory=list)     # (key, value)
    claims: list[tuple[str, str]] = field(default_factory=list)             # (detector, post id), to confirm once acked
    acked: list[tuple[str, str]] = field(default_factory=list)              # acknowledged, confirmation pending
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    verdicts: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (partition, key, value)
    detections: list[tuple[bytes, bytes]] = field(default_factory=list)     # (key, value)
    released: list[str] = field(default_factory=list)   # held labels to drop in Redis once the above are sent

    def extend(self, other: "Outputs") -> "Outputs":
        self.candidates += other.candidates
        self.claims += other.claims
        self.acked += other.acked
        self.dead_letters += other.dead_letters
        self.verdicts += other.verdicts
        self.detections += other.detections
        self.released += other.released
        return self


@dataclass
class PostsBatch:
    """A micro-batch of posts between :meth:`DetectionService.begin_posts` and :meth:`~DetectionService.finish_posts`."""
    msgs: list[RawMsg]
    out: Outputs                                  # its dead letters (and, once finished, the claimed candidates)
    arrival: dict[str, float] = field(default_factory=dict)   # post id -> broker timestamp (latency metric)
    ingest: "asyncio.Future | None" = None        # its candidates: embed thread, then model thread (submitted)
    queued: bool = False                          # its candidates are in the outbox
    ingested_at: float | None = None              # monotonic time the model thread's work was taken (I/O metric)
    good: list = field(default_factory=list)      # (RawMsg, PostMsg) of the valid, new-in-batch posts


def dead_letter_key(msg: RawMsg) -> bytes | None:
    """A dead letter's key: its source coordinates, the same on every replay of the message (idempotent)."""
    if msg.offset is None:
        return msg.key
    return f"{msg.topic}/{msg.partition}/{msg.offset}".encode()


def held_label_doc(m: RawMsg, post_id: str) -> dict:
    """A held label as stored in Redis: the raw message (base64) and its source coordinates."""
    import base64

    b64 = lambda v: None if v is None else base64.b64encode(bytes(v)).decode("ascii")  # noqa: E731
    return {"post_id": post_id, "topic": m.topic, "partition": m.partition, "offset": m.offset,
            "key": b64(m.key), "value": b64(m.value), "timestamp": m.timestamp,
            "id": f"{m.topic}/{m.partition}/{m.offset}"}


def held_label_msg(doc: dict) -> RawMsg:
    import base64

    unb64 = lambda v: None if v is None else base64.b64decode(v)  # noqa: E731
    return RawMsg(doc["topic"], doc["partition"], doc["offset"], unb64(doc["key"]), unb64(doc["value"]),
                  doc.get("timestamp"))


def seed_id_for(detector: str, text: str) -> str:
    return "s-" + hashlib.sha1(f"{detector}\0{text}".encode("utf-8")).hexdigest()[:16]


class DetectionService:
    def __init__(self, settings: Settings, state: RedisState, *, embedder: Embedder | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics or Metrics()
        self.embedder = embedder or make_embedder(settings.embedder, batch_size=settings.embed_batch_size,
                                                  threads=settings.model_threads())
        self.index = ShardedIndex(self.embedder.dim, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                                  ef_search=settings.hnsw_ef_search)
        self.engines: dict[str, OnlineIBG] = {}
        self._build_engines()
        self.blas_threads: int | None = None   # the BLAS thread limit in force in the model thread
        # two threads off the event loop. The embed thread only embeds (a pure function of the texts); the
        # model thread owns the index, the engines, the rounds and the seed sets, and runs every change to
        # them, one at a time. A batch of posts is embedded in the first and indexed and compared in the
        # second, so batch n+1 is embedded while batch n is indexed, and a round, a verdict or a snapshot on
        # the model thread does not stop the embedder.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="synapse-model", initializer=self._init_model_thread)
        self.embed_executor = (ThreadPoolExecutor(1, thread_name_prefix="synapse-embed") if settings.embed_thread
                               else self.executor)
        self.seedlog_last = "0"
        self._outbox: list[tuple[Candidate, float | None]] = []  # found but not yet claimed/emitted
        self._ready = Outputs()   # claimed in Redis, not yet handed to the runtime for publishing
        self.offsets: dict[int, int] = {}        # partition -> highest offset consumed (indexed or dead-lettered)
        self.last_progress = time.monotonic()   # for the health check
        self.started = False
        self.gc_pauses = None   # a metrics.GCPauses, set by the runtime (one per process)
        self.last_indexed: tuple[float, int] | None = None   # (wall time, posts held) after the last new posts
        self.worker_id = uuid.uuid4().hex[:12]   # owner of this process's in-flight candidates
        self._registered: dict[str, set[str]] = {name: set() for name in self.engines}  # confirmed seeds in Redis
        salt = settings.audit_salt.get_secret_value()
        self.samplers = {d.name: AuditSampler(d.audit_rate, salt) for d in settings.detectors if d.audit_rate > 0}
        self._audited: dict[str, set[str]] = {name: set() for name in self.engines}        # sent as audits
        self._audit_labels: dict[str, dict[str, int]] = {name: {} for name in self.engines}
        self.agreement = {name: Agreement() for name in self.engines}   # LLM vs human verdicts (this worker)
        # the classifier: one shared version per detector (trained by whichever worker holds the training
        # lock, in its own thread so embedding goes on), used by the model source and for detections
        self.models: dict[str, ModelVersion] = {}
        self.trainer = ThreadPoolExecutor(1, thread_name_prefix="synapse-train")
        self._trained_on: dict[str, tuple[int, int]] = {}     # detector -> (verdicts, seeds) of the last training
        self._trained_at: dict[str, float] = {}
        self._detections: deque[tuple[bytes, bytes]] = deque()   # filled by the model thread, drained on the loop

    # ------------------------------------------------------------------ lifecycle
    def _build_engines(self) -> None:
        s = self.settings
        self.engines = {d.name: OnlineIBG(DetectorConfig(d.name, d.tau, d.d_max, online=d.candidates == "ibg"),
                                          self.index)
                        for d in s.detectors}
        # detectors whose candidates come from rounds (the policy, or one of its sources alone)
        self.rounds: dict[str, LiveRounds] = {
            d.name: LiveRounds(self.engines[d.name], self.index,
                               sources=SOURCES if d.candidates == "policy" else (d.candidates,),
                               k0=d.k0, gble_k=s.gble_k, gble_iterations=s.gble_iterations)
            for d in s.detectors if d.candidates != "ibg"}

    def _init_model_thread(self) -> None:
        """Runs once, in the model thread: limit numpy's BLAS (the seed comparison) to ``blas_threads``.

        OpenBLAS splits even a small product over every core and its threads wait for each other when
        another thread (the event loop, the broker, Redis) holds a core; torch's own threads are set by
        the embedder (``Settings.model_threads``). See docs/benchmarks.md, sections 1 and 3.
        """
        n = self.settings.blas_threads
        if not n:
            return
        try:
            from threadpoolctl import threadpool_limits

            self._blas_limiter = threadpool_limits(limits=int(n), user_api="blas")   # kept: the limit stays
            self.blas_threads = int(n)
        except Exception as exc:  # noqa: BLE001 - no threadpoolctl / no BLAS found: the library's default
            log.warning("could not limit BLAS threads to %s: %s", n, exc)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    async def _embed(self, texts: list[str]):
        return await asyncio.get_running_loop().run_in_executor(self.embed_executor, self.embedder.encode, texts)

    async def start(self) -> None:
        """Load the shared state (ledger, queried sets) into the engines."""
        for name, eng in self.engines.items():
            eng.labels.update(await self.state.ledger(name))
            eng.queried.update(await self.state.queried(name))
            self._registered[name] = {d["id"] for d in await self.state.seeds(name) if d["origin"] == "confirmed"}
            self._audited[name] = await self.state.audited(name)
            self._audit_labels[name] = await self.state.audit_ledger(name)
            if name in self.rounds:   # posts sent by earlier rounds: their verdicts still credit their source
                self.rounds[name].adopt(await self.state.sources(name))
        await self.refresh_models()
        self.started = True

    async def stop(self) -> None:
        if self.gc_pauses is not None:
            self.gc_pauses.uninstall()
        self.embed_executor.shutdown(wait=True)
        self.executor.shutdown(wait=True)
        self.trainer.shutdown(wait=True)

    def shard_path(self, partition: int) -> Path:
        return Path(self.settings.data_dir) / f"shard-{partition}" / "index.json"

    async def snapshot(self) -> list[int]:
        """Save every shard (atomically) with the highest offset it covers."""
        def work():
            done = []
            for p, shard in list(self.index.shards.items()):
                shard.meta = {"partition": p, "offset": self.offsets.get(p, -1), "saved_at": time.time()}
                shard.save(self.shard_path(p))
                done.append(p)
            return done
        return await self._run(work)

    async def assign(self, partitions: Sequence[int]) -> Outputs:
        """Take over shards: load their snapshots, then rebuild windows (refill every positive)."""
        def work():
            for p in partitions:
                if p in self.index.shards:
                    continue
                path = self.shard_path(p)
                self.offsets[p] = -1
                if path.exists():
                    try:
                        shard = PostIndex.load(path, ef_search=self.settings.hnsw_ef_search)
                    except PostIndexError as exc:  # a damaged snapshot: rebuild the shard from the topic
                        log.error("shard %s snapshot unusable (%s): replaying the partition", p, exc)
                    else:
                        self.index.attach(p, shard)
                        self.offsets[p] = int(shard.meta.get("offset", -1))
                        log.info("shard %s restored from snapshot: %d posts up to offset %s", p, len(shard),
                                 self.offsets[p])
                self.index.shard(p)
            for r in self.rounds.values():
                r.forget_graph()
            return self._refill_all()
        await self._emit(await self._run(work))
        return self._drain(Outputs())

    async def revoke(self, partitions: Sequence[int]) -> None:
        await self.snapshot()

        def work():
            for p in partitions:
                self.index.drop(p)
                self.offsets.pop(p, None)
            for r in self.rounds.values():
                r.forget_graph()
            self._refill_all()  # windows may have pointed into dropped shards
        await self._run(work)

    def _refill_all(self) -> list[Candidate]:
        out = []
        for eng in self.engines.values():
            for sid in [s.id for s in eng.seeds.seeds]:
                out += eng._refill(sid)
        return out

    # ------------------------------------------------------------------ helpers
    def _dead(self, msg: RawMsg, reason: str, detail: str = "") -> tuple[bytes | None, bytes]:
        self.metrics.dead_letters.labels(msg.topic, reason.split(":")[0]).inc()
        return dead_letter_key(msg), dumps(dead_letter(msg.value, source_topic=msg.topic, partition=msg.partition,
                                                       offset=msg.offset, reason=reason, detail=detail, key=msg.key))

    def _internal(self, msg: RawMsg, exc: BaseException, stage: str) -> tuple[bytes | None, bytes]:
        """The dead letter of a message whose handling raised ``exc`` (not a validation error). The log gets the
        exception's type and frames, never its message (it may quote the post's text)."""
        self.metrics.internal_errors.labels(msg.topic, stage, type(exc).__name__).inc()
        log.error("internal error handling %s[%s]@%s (%s): %s\n%s", msg.topic, msg.partition, msg.offset, stage,
                  type(exc).__name__, frames(exc))
        return self._dead(msg, INTERNAL_ERROR, f"{stage}: {describe(exc)}")

    async def _each(self, items, out: Outputs, stage: str, fn, msg_of=lambda item: item) -> None:
        """The error boundary: ``await fn(item)`` for each item, in order. A ``MessageError`` dead-letters the
        item's message with its reason, any other exception with ``internal_error``; transient errors (Redis,
        broker) propagate, for the runtime to retry the call."""
        for item in items:
            try:
                await fn(item)
            except MessageError as exc:
                out.dead_letters.append(self._dead(msg_of(item), exc.reason, exc.detail))
            except Exception as exc:  # noqa: BLE001 - the boundary: one message never stops the partition
                if is_transient(exc):
                    raise
                out.dead_letters.append(self._internal(msg_of(item), exc, stage))

    def _engine(self, detector: str) -> OnlineIBG:
        eng = self.engines.get(detector)
        if eng is None:
            raise UnknownDetectorError(detector)
        return eng

    async def _emit(self, cands: Sequence[Candidate], arrival: dict[str, float] | None = None) -> None:
        """Claim candidates in Redis (never twice) and build their messages.

        Candidates wait in an outbox until the claim succeeds, so a Redis outage delays them but
        does not lose them; claimed ones wait in ``self._ready`` until a handler returns them
        (:meth:`_drain`), so a later failure in the same handler cannot drop them either. A claimed
        candidate stays "in flight" in Redis until the runtime
        confirms the broker acknowledged it (:meth:`confirm`); if this worker dies first, another
        one re-sends it unless it is already on the topic (:meth:`orphans`).
        """
        self._queue(cands, arrival)
        if not self._outbox:
            return
        batch = list(self._outbox)
        now = time.time()
        values, sets = [], []
        for c, _ in batch:
            if c.reason != "audit" and c.post_id in self._audited[c.detector]:
                # the detector wants a post the audit already sent: never twice to the oracle; the
                # audit's verdict (now or when it comes) is also the detector's
                values.append(b"")
                sets.append("queried")
                continue
            text = self.index.payload(c.post_id) if c.post_id in self.index else None
            msg = candidate_message(c.detector, c.post_id, text or "", c.score, c.matched_seeds, c.reason, now)
            d = self.settings.detector(c.detector)
            if d is not None and d.oracle_mode != "human":
                msg = annotate_for_humans(msg, d.oracle_mode, d.llm_audit_rate)
            values.append(dumps(msg))
            sets.append("audited" if c.reason == "audit" else "queried")
        fresh = await self.state.claim_many([(c.detector, c.post_id) for c, _ in batch], self.worker_id, values,
                                             sets)
        del self._outbox[:len(batch)]
        for (c, arrived), value, ok in zip(batch, values, fresh):
            if c.reason == "audit":
                self._audited[c.detector].add(c.post_id)
            if not ok:
                continue
            if not value:   # re-using an audit verdict, if it is already known
                y = self._audit_labels[c.detector].get(c.post_id)
                if y is not None:
                    await self._detector_verdict(LabelMsg(c.detector, c.post_id, y, "audit", None))
                continue
            # claimed: from here on the message must reach the caller even if a later step of the
            # same handler fails, so it waits in self._ready until a handler returns successfully
            self._ready.candidates.append((c.post_id.encode(), value))
            self._ready.claims.append((c.detector, c.post_id))
            self.metrics.candidates.labels(c.detector, c.reason).inc()
            if arrived is not None:
                self.metrics.latency.observe(max(0.0, now - arrived))

    def _drain(self, out: Outputs) -> Outputs:
        """Hand every claimed, not yet returned candidate (and detection) to the caller (end of a successful handler)."""
        ready, self._ready = self._ready, Outputs()
        while self._detections:
            ready.detections.append(self._detections.popleft())
        return out.extend(ready)

    def _queue(self, cands: Sequence[Candidate], arrival: dict[str, float] | None = None) -> None:
        """Put found candidates in the outbox at once, before any I/O that could fail and lose them."""
        self._outbox.extend((c, (arrival or {}).get(c.post_id) if c.reason == "post" else None) for c in cands)

    async def confirm(self, claims: Sequence[tuple[str, str]]) -> None:
        await self.state.sent(claims)

    async def orphans(self) -> dict[str, dict[str, str]]:
        """In-flight candidates of dead workers, per detector: ``{detector: {post id: message}}``."""
        await self.state.heartbeat(self.worker_id)
        out = {}
        for name in self.engines:
            o = await self.state.orphans(name, self.worker_id)
            if o:
                out[name] = o
        return out

    # ------------------------------------------------------------------ posts
    async def handle_posts(self, msgs: Sequence[RawMsg]) -> Outputs:
        """Both stages of a micro-batch of posts, one after the other (replays; the agent pipelines them)."""
        return await self.finish_posts(await self.begin_posts(msgs))

    async def begin_posts(self, msgs: Sequence[RawMsg]) -> "PostsBatch":
        """Stage 1: parse, record the partition map, and submit the batch to the model thread.

        Returns as soon as the embed thread has the work (it embeds, then hands the vectors to the model
        thread, which indexes and compares them; both in the order batches were begun); :meth:`finish_posts`
        then waits for it and claims its candidates. The runtime's pipeline begins batch n+1 while batch
        n's claims and publishes are awaited. Safe to retry: a failed attempt submitted nothing.
        """
        out = Outputs()
        good: list[tuple[RawMsg, PostMsg]] = []
        seen: set[str] = set()

        async def parse(m: RawMsg) -> None:
            post = parse_post(m.value, max_text_chars=self.settings.max_text_chars,
                              max_bytes=self.settings.max_message_bytes)
            if post.id not in seen:  # the same id twice in one batch: the first wins (as in the index)
                seen.add(post.id)
                good.append((m, post))
        await self._each(msgs, out, "parse", parse)
        batch = PostsBatch(list(msgs), out)
        if good:
            # the partition map first: a post must never be a candidate (through another agent's backfill)
            # before a verdict for it can be routed to its shard
            try:
                await self.state.record_posts({p.id: int(m.partition or 0) for m, p in good})
            except Exception as exc:  # noqa: BLE001 - one post's id broke the batch: record them one by one
                if is_transient(exc):
                    raise
                one = list(good)
                good.clear()

                async def record(item) -> None:
                    m, p = item
                    await self.state.record_posts({p.id: int(m.partition or 0)})
                    good.append(item)
                await self._each(one, out, "record", record, msg_of=lambda item: item[0])
        batch.good = good
        if good:
            now = time.time()
            batch.arrival = {p.id: (m.timestamp or now) for m, p in good}
            handed = asyncio.get_running_loop().run_in_executor(
                self.embed_executor, functools.partial(self._embed_then_index, good))
            batch.ingest = asyncio.ensure_future(self._indexed(handed))
        return batch

    @staticmethod
    async def _indexed(handed):
        """The candidates of a batch: ``handed`` (the embed thread's job) yields the model thread's future."""
        return await asyncio.wrap_future(await handed)

    async def finish_posts(self, batch: "PostsBatch") -> Outputs:
        """Stage 2: wait for the model thread, claim the candidates in Redis, advance the offsets.

        Safe to retry after a Redis error: the candidates wait in the outbox and are queued only once.
        ``self.offsets`` (the snapshot offset and the health check's lag) moves only once the batch's
        candidates are claimed, as before.
        """
        if batch.ingest is not None:
            if not batch.queued:
                try:
                    cands = await batch.ingest
                except Exception as exc:  # noqa: BLE001 - embedding or indexing failed: one post at a time
                    if is_transient(exc):
                        raise
                    cands = await self._ingest_one_by_one(batch)
                batch.ingested_at = time.monotonic()
                self._queue(cands, batch.arrival)
                batch.queued = True
            await self._emit([])
        for m in batch.msgs:   # consumed (indexed or dead-lettered): the snapshot offset and the health check's lag
            if m.partition is not None and m.offset is not None:
                self.offsets[m.partition] = max(self.offsets.get(m.partition, -1), m.offset)
        self.last_progress = time.monotonic()
        return self._drain(batch.out)

    async def _ingest_one_by_one(self, batch: "PostsBatch") -> list[Candidate]:
        """The batch's embedding or indexing raised: embed and index each post alone, so only the post at
        fault is dead-lettered (``internal_error``). Each post is compared with the seeds even if the failed
        attempt had already indexed it (harmless: windows are keyed by post, claims are first-wins)."""
        cands: list[Candidate] = []

        async def one(item) -> None:
            handed = asyncio.get_running_loop().run_in_executor(
                self.embed_executor, functools.partial(self._embed_then_index, [item], True))
            cands.extend(await self._indexed(handed))
        await self._each(batch.good, batch.out, "index", one, msg_of=lambda item: item[0])
        return cands

    def _embed_then_index(self, good: list[tuple[RawMsg, PostMsg]], compare_all: bool = False):
        """Embed thread: embed the batch, then queue its indexing on the model thread (in this order, so
        batches reach the model thread in the order they were begun). Returns the model thread's future."""
        vecs = self._embed_sync(good)
        return self.executor.submit(self._index_sync, good, vecs, compare_all)

    def _embed_sync(self, good: list[tuple[RawMsg, PostMsg]]):
        t0 = time.perf_counter()
        vecs = self.embedder.encode([p.text for _, p in good])
        self.metrics.embed_seconds.observe(time.perf_counter() - t0)
        self.metrics.embed_batch.observe(len(good))
        return vecs

    def _index_sync(self, good: list[tuple[RawMsg, PostMsg]], vecs, compare_all: bool = False) -> list[Candidate]:
        """Model thread: add the batch to its shards and compare the new posts (``compare_all``: every post)
        with every detector's seeds."""
        by_part: dict[int, list[int]] = {}
        for i, (m, _) in enumerate(good):
            by_part.setdefault(int(m.partition or 0), []).append(i)
        new_rows = []
        for part, rows in by_part.items():
            shard = self.index.shard(part)
            ids = [good[i][1].id for i in rows]
            fresh = [i for i, pid in zip(rows, ids) if pid not in self.index]
            if fresh:
                shard.add([good[i][1].id for i in fresh], vecs[fresh], [good[i][1].text for i in fresh])
                new_rows += fresh
        self.metrics.posts.inc(len(new_rows))
        if compare_all:
            new_rows = list(range(len(good)))
        if not new_rows:
            return []
        self.last_indexed = (time.time(), len(self.index))   # one assignment: the health check reads the pair
        ids = [good[i][1].id for i in new_rows]
        cands: list[Candidate] = []
        for eng in self.engines.values():
            cands += eng.on_posts(ids, vecs[new_rows])
        for name, sampler in self.samplers.items():   # audits: chosen by post id alone, never by the detector
            eng = self.engines[name]
            cands += [Candidate(name, pid, 0.0, (), "audit") for pid in ids
                      if sampler.should_audit(pid) and pid not in eng.queried]
        self._after_index(ids, vecs[new_rows])
        return cands

    def _after_index(self, ids: list[str], vecs) -> None:
        """Model thread, after new posts are indexed: rounds learn there is something new; every
        detector's current classifier scores the posts, and those at or above its threshold are queued
        for the detections topic (drained with the handler's outputs)."""
        for r in self.rounds.values():
            r.touch(len(ids))
        now = time.time()
        for d in self.settings.detectors:
            mv = self.models.get(d.name)
            if mv is None or d.detect_threshold is None:
                continue
            probs = mv.predict_proba(vecs)
            for pid, p in zip(ids, probs.tolist()):
                if p >= d.detect_threshold:
                    msg = detection_message(d.name, pid, p, d.detect_threshold, mv.version, now)
                    self._detections.append((pid.encode(), dumps(msg)))
                    self.metrics.detections.labels(d.name).inc()

    # ------------------------------------------------------------------ seeds
    async def handle_seeds(self, msgs: Sequence[RawMsg]) -> Outputs:
        out = Outputs()
        good: list[tuple[RawMsg, object]] = []

        async def parse(m: RawMsg) -> None:
            s = parse_seed(m.value, max_text_chars=self.settings.max_text_chars,
                           max_bytes=self.settings.max_message_bytes)
            self._engine(s.detector)
            good.append((m, s))
        await self._each(msgs, out, "parse", parse)
        if good:
            dets = {s.detector for _, s in good if s.detector in self.rounds}
            for d in dets:   # every worker's rounds wait until the whole uploaded set is registered
                await self.state.seeds_arriving(d, 60.0)
            try:
                vecs = list(await self._embed([s.text for _, s in good]))
            except Exception as exc:  # noqa: BLE001 - embedded one by one below, the seed at fault dead-lettered
                if is_transient(exc):
                    raise
                vecs = [None] * len(good)

            async def register(item) -> None:
                (m, s), v = item
                if v is None:
                    v = (await self._embed([s.text]))[0]
                await self.state.register_seed(s.detector, s.id or seed_id_for(s.detector, s.text), s.origin, s.text, v)
            await self._each(list(zip(good, vecs)), out, "register", register, msg_of=lambda item: item[0][0])
            for d in dets:
                await self.state.seeds_arriving(d, self.settings.round_settle)
        self.last_progress = time.monotonic()
        return self._drain(out)

    async def poll_seedlog(self, block_ms: int | None = 1000) -> Outputs:
        """Apply seed events from the broadcast log (every worker reads all of them)."""
        entries = await self.state.read_seedlog(self.seedlog_last, block_ms=block_ms)
        if not entries:
            return self._drain(Outputs())
        self.seedlog_last = entries[-1][0]
        docs = [doc for _, doc in entries if doc["detector"] in self.engines]

        def work():
            cands = []
            for doc in docs:
                seed = Seed(doc["id"], doc.get("text", ""), SeedOrigin(doc["origin"]))
                cands += self.engines[doc["detector"]].on_seed(seed, doc["vector"])
                if doc["detector"] in self.rounds:   # an uploaded seed set settles; confirmed posts come one by one
                    if seed.origin == SeedOrigin.CONFIRMED:
                        self.rounds[doc["detector"]].touch()
                    else:
                        self.rounds[doc["detector"]].seed_added(time.time())
            return cands
        await self._emit(await self._run(work))
        return self._drain(Outputs())

    # ------------------------------------------------------------------ labels
    async def handle_labels(self, msgs: Sequence[RawMsg]) -> Outputs:
        """Validate verdicts and route each to the partition that holds its post."""
        out = Outputs()

        async def route(m: RawMsg) -> None:
            lab = parse_label(m.value, max_bytes=self.settings.max_message_bytes)
            self._engine(lab.detector)
            part = await self.state.post_partition(lab.post_id)
            if part is not None:
                out.verdicts.append((part, lab.post_id.encode(), m.value))
            elif not await self._hold_label(m, lab):
                raise MessageError("unknown_post", f"post {lab.post_id!r} was never indexed")
        await self._each(msgs, out, "route", route)
        self.last_progress = time.monotonic()
        return self._drain(out)

    async def _hold_label(self, m: RawMsg, lab: LabelMsg) -> bool:
        """A label for a post not seen yet is held (in Redis, ``label_hold_seconds``) and routed when the post
        arrives (:meth:`release_held_labels`). False when holding is off or the hold is full."""
        s = self.settings
        if s.label_hold_seconds <= 0:
            return False
        return await self.state.hold_label(held_label_doc(m, lab.post_id), time.time() + s.label_hold_seconds,
                                           s.label_hold_max)

    async def release_held_labels(self, now: float | None = None) -> Outputs:
        """Route held labels whose post has arrived; dead-letter (``unknown_post``) those whose hold expired.
        Every worker may call it: each held label is taken by exactly one (an atomic removal in Redis)."""
        out = Outputs()
        now = time.time() if now is None else now
        for doc, part in await self.state.take_held_labels(now):
            m = held_label_msg(doc)
            out.released.append(doc["id"])
            if part is not None:
                out.verdicts.append((part, doc["post_id"].encode(), m.value))
            else:
                out.dead_letters.append(self._dead(m, "unknown_post", f"post {doc['post_id']!r} did not arrive "
                                                   f"within {self.settings.label_hold_seconds:g}s"))
        return self._drain(out)

    async def handle_verdicts(self, msgs: Sequence[RawMsg]) -> Outputs:
        """Apply routed verdicts on the worker that holds the posts' shards."""
        out = Outputs()

        async def apply(m: RawMsg) -> None:
            lab = parse_label(m.value, max_bytes=self.settings.max_message_bytes)
            eng = self._engine(lab.detector)
            if lab.post_id in self._audited[lab.detector]:
                await self.state.record_audit_verdict(lab)
                self._audit_labels[lab.detector][lab.post_id] = lab.label
                if lab.post_id not in eng.queried:   # an audit only: not the detector's (no seed, no precision)
                    self.metrics.verdicts.labels(lab.detector, "audit").inc()
                    return
            await self._detector_verdict(lab)   # a MessageError, e.g. the post is not in this worker's shards
        await self._each(msgs, out, "verdict", apply)
        try:
            await self._reconcile()
        except Exception as exc:  # noqa: BLE001 - not one message's fault: logged, the next verdict tries again
            if is_transient(exc):
                raise
            self.metrics.internal_errors.labels(self.settings.topic("verdicts"), "reconcile", type(exc).__name__).inc()
            log.error("reconcile failed: %s\n%s", type(exc).__name__, frames(exc))
        self.last_progress = time.monotonic()
        return self._drain(out)

    async def _detector_verdict(self, lab: LabelMsg):
        """Record a verdict in the detector's ledger and apply it to its engine."""
        _, effective = await self.state.record_verdict(lab)   # a human verdict beats an LLM's
        self.agreement[lab.detector].observe({"post_id": lab.post_id, "label": lab.label, "labeler": lab.labeler})
        self.metrics.llm.record_agreement(lab.detector, self.agreement[lab.detector].get())
        outcome, vec = await self._run(self._apply_verdict_sync, lab.detector, lab.post_id, effective)
        if outcome.changed:
            self.metrics.verdicts.labels(lab.detector, str(lab.label)).inc()
            if vec is not None:   # the classifier's training set (every worker trains from Redis)
                await self.state.store_labelled_vectors(lab.detector, {lab.post_id: vec})
        rounds = self.rounds.get(lab.detector)
        if rounds is not None and outcome.previous is None and outcome.changed:
            src = rounds.observe(lab.post_id, effective, first=True)
            if src is None:   # sent by another worker's round (a rebalance): Redis knows its source
                src = await self.state.source_of(lab.detector, lab.post_id)
            if src is not None:
                await self.state.count_source_verdict(lab.detector, src, effective)
        elif rounds is not None and outcome.changed:
            rounds.touch()
        await self._emit(outcome.candidates)
        return outcome

    def _apply_verdict_sync(self, detector: str, post_id: str, label: int):
        """Model thread, one hop: apply the verdict to the engine; the post's vector if it changed and is here."""
        outcome = self.engines[detector].on_verdict(post_id, label)
        vec = self.index.get_vectors([post_id])[0] if outcome.changed and post_id in self.index else None
        return outcome, vec

    async def reconcile_confirmed(self) -> Outputs:
        await self._reconcile()
        return self._drain(Outputs())

    async def _reconcile(self) -> None:
        """Make every positive verdict on a local post a registered, broadcast, active seed.

        Derived from the ledger rather than done as a side effect of one verdict, so that a crash or
        a Redis outage between recording a verdict and registering its seed loses nothing: the next
        call (after the retry, after a restart) finds the positive and finishes the job.
        """
        for name, eng in self.engines.items():
            todo = [pid for pid, y in list(eng.labels.items())
                    if y == 1 and pid not in self._registered[name] and pid in self.index]
            for pid in todo:
                vec = self.index.get_vectors([pid])[0]
                await self.state.register_seed(name, pid, "confirmed", self.index.payload(pid) or "", vec)
                self._registered[name].add(pid)
                if pid not in eng.seeds:
                    self._queue(await self._run(eng.on_seed, Seed(pid, "", SeedOrigin.CONFIRMED), vec))
        await self._emit([])

    # ------------------------------------------------------------------ candidate rounds
    async def run_rounds(self, now: float | None = None) -> Outputs:
        """Plan a round for every detector whose round is due (``LiveRounds.due``); claim and emit it.

        Before planning, the detector's classifier is retrained if verdicts arrived since its last
        version (as the core's model source refits every round), so the model source and the ranker
        see every verdict of the previous round.
        """
        s = self.settings
        now = time.time() if now is None else now
        for name, rounds in self.rounds.items():
            if not rounds.due(now, min_interval=s.round_min_interval, timeout=s.round_timeout,
                              outstanding=s.round_outstanding, settle=s.round_settle):
                continue
            if not await self.state.seeds_settled(name):   # a seed set is still being embedded somewhere
                continue
            if rounds.model_source is not None:
                await self.maybe_train(name, force=True)
                await self.refresh_models()
            total = await self.state.posts_total()
            share = len(self.index) / total if total else 1.0
            limit = None
            d = s.detector(name)
            if d is not None and d.max_query_ratio is not None:   # the budget, all workers together
                queried = (await self.state.counters(name)).get("queried", 0)
                limit = math.floor(d.max_query_ratio * total) - queried
                if limit > 0 and share < 1.0:
                    limit = max(1, math.ceil(limit * share))
            t0 = time.perf_counter()
            cands = await self._run(rounds.plan, share, now, limit)
            self.metrics.round_seconds.observe(time.perf_counter() - t0)
            if not cands:
                continue
            self._queue(cands)   # in the outbox before any I/O: a Redis error delays them, never loses them
            self.metrics.rounds.labels(name).inc()
            for src in rounds.sources:
                self.metrics.source_share.labels(name, src).set(
                    rounds.rounds[-1].alloc.get(src, 0) / max(1, len(cands)))
            log.info("round %d of %s: %d candidates %s in %.2fs", rounds.rounds[-1].number, name, len(cands),
                     rounds.rounds[-1].alloc, rounds.rounds[-1].seconds)
            await self.state.record_sources(name, {c.post_id: c.reason for c in cands})
            await self._emit([])
        return self._drain(Outputs())

    # ------------------------------------------------------------------ the classifier
    async def refresh_models(self) -> None:
        """Load each detector's newest classifier version from Redis (any worker may have trained it)."""
        for name in self.engines:
            cur = self.models.get(name)
            doc = await self.state.model(name)
            if doc is None or (cur is not None and cur.version >= int(doc.get("version", 0))):
                continue
            try:
                mv = ModelVersion.from_dict(doc)
            except Exception as exc:  # noqa: BLE001 - a damaged document: keep the current version
                log.error("classifier version %s of %s unusable: %s", doc.get("version"), name, exc)
                continue
            self.models[name] = mv
            if name in self.rounds and self.rounds[name].model_source is not None:
                self.rounds[name].model_source.model = mv
            self._export_model(name, mv)

    def _export_model(self, name: str, mv: ModelVersion) -> None:
        m = self.metrics
        m.model_version.labels(name).set(mv.version)
        if mv.cv_precision is not None:
            m.model_cv_precision.labels(name).set(mv.cv_precision)
        if mv.cv_recall is not None:
            m.model_cv_recall.labels(name).set(mv.cv_recall)
        for kind in ("seeds", "positives", "negatives", "provisional"):
            m.model_training_rows.labels(name, kind).set(getattr(mv, f"n_{kind}"))

    async def maybe_train(self, name: str, *, force: bool = False) -> ModelVersion | None:
        """Train and publish a new classifier version for detector ``name`` if its ledger or seeds changed
        since the last training (and, unless ``force``, ``model_retrain_seconds`` have passed). Only the
        worker holding the training lock trains; the others load the version from Redis."""
        eng = self.engines[name]
        c = await self.state.counters(name)   # cheap: the ledger itself is read only to train
        key = (c.get("answered", 0), c.get("positives", 0), c.get("overturned", 0), len(eng.seeds))
        if not len(eng.seeds) or self._trained_on.get(name) == key:
            return None
        if await self.state.model_key(name) == list(key):   # another worker already trained on exactly this
            self._trained_on[name] = key
            return None
        if not force and time.monotonic() - self._trained_at.get(name, -1e9) < self.settings.model_retrain_seconds:
            return None
        if not await self.state.lock(f"train:{name}", self.worker_id, ttl=300):
            return None
        try:
            ledger = await self.state.ledger(name)
            vectors = await self.state.labelled_vectors(name)
            missing = [pid for pid in ledger if pid not in vectors and pid in self.index]
            if missing:   # verdicts recorded before their vector was stored (e.g. across an upgrade)
                got = await self._run(self.index.get_vectors, missing)
                vectors.update(zip(missing, got))
                await self.state.store_labelled_vectors(name, dict(zip(missing, got)))
            t0 = time.perf_counter()
            S = await self._run(self._training_seeds, name)   # the model thread owns the seed set
            version = await self.state.next_model_version(name)
            mv = await asyncio.get_running_loop().run_in_executor(
                self.trainer, functools.partial(self._train_sync, name, version, S, ledger, vectors))
            self._trained_on[name] = key
            self._trained_at[name] = time.monotonic()
            if mv is None:
                return None
            self.metrics.model_train_seconds.observe(time.perf_counter() - t0)
            summary = {k: v for k, v in mv.to_dict().items() if k != "coef"}
            await self.state.publish_model(name, mv.to_dict(), summary, key=list(key))
            log.info("classifier %s v%d: %d seeds, %d/%d labelled +/-, %d provisional; CV precision %s recall %s",
                     name, mv.version, mv.n_seeds, mv.n_positives, mv.n_negatives, mv.n_provisional,
                     mv.cv_precision, mv.cv_recall)
            return mv
        finally:
            await self.state.unlock(f"train:{name}", self.worker_id)

    def _training_seeds(self, name: str) -> np.ndarray:
        """The synthetic and manual seeds (confirmed posts are training rows through the ledger)."""
        eng = self.engines[name]
        rows = [i for i, sd in enumerate(eng.seeds.seeds) if sd.origin != SeedOrigin.CONFIRMED]
        return eng.seeds.matrix[rows].copy() if rows else np.zeros((0, self.index.dim), np.float32)

    def _train_sync(self, name: str, version: int, S: np.ndarray, ledger: dict[str, int],
                    vectors: dict) -> ModelVersion | None:
        """Training thread. Rows: the seeds ``S``; every post with a verdict (all workers', vectors from
        Redis); as many provisional negatives as seeds: the unlabelled posts of this worker's shards with
        the smallest salted hash (a uniform sample of the stream, stable as it grows)."""
        lab = [pid for pid in ledger if pid in vectors]
        X_lab = np.vstack([vectors[p] for p in lab]) if lab else np.zeros((0, self.index.dim), np.float32)
        y_lab = np.asarray([ledger[p] for p in lab], np.int8)
        salt = self.settings.audit_salt.get_secret_value() + ":provisional"
        pool = [pid for shard in list(self.index.shards.values()) for pid in shard.ids() if pid not in ledger]
        pool.sort(key=lambda pid: hashlib.sha1(f"{salt}{pid}".encode()).digest())
        prov = pool[:len(S)]
        X_prov = self.index.get_vectors(prov) if prov else np.zeros((0, self.index.dim), np.float32)
        return train_model(name, version, S, X_lab, y_lab, X_prov, C=self.settings.model_C,
                           folds=self.settings.model_cv_folds)

    # ------------------------------------------------------------------ metrics
    async def refresh_gauges(self) -> None:
        if self.gc_pauses is not None:
            self.gc_pauses.drain(self.metrics.gc_pause)
        total = await self.state.posts_total()
        self.metrics.posts_indexed.set(total)
        self.metrics.held_labels.set(await self.state.held_labels())
        self.metrics.index_size.set(len(self.index))
        self.metrics.shards.set(len(self.index.shards))
        for name, eng in self.engines.items():
            c = await self.state.counters(name)
            queried, answered, pos = c.get("queried", 0), c.get("answered", 0), c.get("positives", 0)
            self.metrics.queried.labels(name).set(queried)
            self.metrics.answered.labels(name).set(answered)
            self.metrics.confirmed.labels(name).set(pos)
            self.metrics.precision.labels(name).set(pos / answered if answered else 0.0)
            self.metrics.query_ratio.labels(name).set(queried / total if total else 0.0)
            for origin, n in eng.seeds.counts().items():
                self.metrics.seeds.labels(name, origin).set(n)
            if name in self.rounds:
                for src, c in (await self.state.source_counters(name)).items():
                    self.metrics.source_queried.labels(name, src).set(c.get("queried", 0))
                    if c.get("answered"):
                        self.metrics.source_precision.labels(name, src).set(c.get("positives", 0) / c["answered"])
            truth = await self.state.truth_positives(name)
            if truth:
                self.metrics.recall.labels(name).set(pos / truth)
            if name in self.samplers:
                est = await self.recall_estimate(name, total, answered, pos)
                for gauge, key in ((self.metrics.recall_estimate, "estimate"), (self.metrics.recall_lower, "lower"),
                                   (self.metrics.recall_upper, "upper"), (self.metrics.audit_prevalence, "prevalence")):
                    if est[key] is not None:
                        gauge.labels(name).set(est[key])
                self.metrics.audit_size.labels(name).set(est["audit_size"])
                self.metrics.audit_share.labels(name).set(est["audit_share"])

    async def recall_estimate(self, name: str, posts: int, answered: int, positives: int) -> dict:
        """Recall from the audit (stratified estimator, ``synapse_stream.audit``), from Redis state."""
        audits = await self.state.audit_ledger(name)
        detector = await self.state.detector_labels(name, list(audits))
        est = RecallEstimator(confidence=self.settings.audit_confidence)
        est.set_posts(posts)
        est.set_detector(answered, positives)
        for pid, y in audits.items():
            est.update_audit(pid, y, queried_by_detector=pid in detector)
        return est.get()

    def health(self) -> dict:
        return {"started": self.started, "worker_id": self.worker_id, "index_size": len(self.index),
                "shards": sorted(self.index.shards), "offsets": {str(k): v for k, v in sorted(self.offsets.items())},
                "seconds_since_progress": round(time.monotonic() - self.last_progress, 1),
                "last_indexed": None if self.last_indexed is None else
                {"at": self.last_indexed[0], "index_size": self.last_indexed[1]}}


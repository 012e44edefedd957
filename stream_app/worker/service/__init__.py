"""The worker's logic between the topics and the core, without Faust.

The Faust agents (``agents/``) hand raw messages to the runtime, which calls this service and publishes
what comes out; everything here can be driven directly in tests. :class:`DetectionService` holds the
shared data (the embedder, the sharded index, the engines and rounds, the executors, the offsets) and is
made of parts with one responsibility each, one module per part:

* ``boundary.py`` :class:`ErrorBoundary`: every message inside one error boundary (dead letters);
* ``posts.py`` :class:`PostsPipeline`: parse -> embed (embed thread) -> index and compare (model thread);
* ``seeds.py`` :class:`SeedIntake`: seeds topic -> Redis registry + seed log; the seed log -> every engine;
* ``verdicts.py`` :class:`VerdictApplier`: labels routed (or held), verdicts applied, audits, reconcile;
* ``scheduler.py`` :class:`RoundScheduler`: candidate rounds and their budget;
* ``trainer.py`` :class:`ClassifierTrainer`: the shared, versioned classifier;
* ``outbox.py`` :class:`CandidateOutbox`: claims, the ready list, confirmation, orphans;
* ``shards.py`` :class:`ShardKeeper`: snapshots, assignment and revocation of shards;
* ``gauges.py`` :class:`Gauges`: gauges from Redis and the recall estimate;
* ``trends.py`` :class:`TrendKeeper`: posts no detector claims -> emerging-trend proposals (docs/trends.md).

Model and index work runs in one model thread (``_run``), never on the event loop, and that single
thread serialises every change to the core's engines; embedding runs in its own thread, and the heavy step of
a candidate round (``LiveRounds.compute``) in a third one, reading the index through its locks. Only transient
errors (Redis or broker connections) leave a ``handle_*`` operation, for the runtime to retry; every
other failure of one message becomes its dead letter (see ``boundary.py``), keyed by its source
coordinates so a replay's repeat has the same key.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from stream_app.worker import memory
from stream_app.worker.metrics import Metrics
from stream_app.worker.service.boundary import ErrorBoundary
from stream_app.worker.service.catalog import DetectorCatalog
from stream_app.worker.service.gauges import Gauges
from stream_app.worker.service.outbox import CandidateOutbox
from stream_app.worker.service.posts import PostsPipeline
from stream_app.worker.service.records import (
    Outputs,
    PostsBatch,
    RawMsg,
    dead_letter_key,
    held_label_doc,
    held_label_msg,
    seed_id_for,
)
from stream_app.worker.service.retention import RetentionKeeper
from stream_app.worker.service.scheduler import RoundScheduler
from stream_app.worker.service.seeds import SeedIntake
from stream_app.worker.service.shards import ShardKeeper
from stream_app.worker.service.trainer import ClassifierTrainer
from stream_app.worker.service.trends import TrendKeeper
from stream_app.worker.service.verdicts import VerdictApplier
from stream_app.worker.settings import DetectorSettings, Settings
from stream_app.worker.state import State
from synapse_stream.audit import AuditSampler
from synapse_stream.classifier import ModelVersion
from synapse_stream.embedders import Embedder, make_embedder
from synapse_stream.exceptions import UnknownDetectorError
from synapse_stream.index import ShardedIndex
from synapse_stream.llm_oracle import Agreement
from synapse_stream.online import Candidate, OnlineIBG
from synapse_stream.rounds import LiveRounds

__all__ = ["DetectionService", "Outputs", "PostsBatch", "RawMsg", "dead_letter_key", "held_label_doc",
           "held_label_msg", "seed_id_for"]

log = logging.getLogger("synapse.service")


class DetectionService:
    """A worker's detection logic: the shared data and its parts (see the module docstring)."""

    def __init__(self, settings: Settings, state: State, *, embedder: Embedder | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics or Metrics()
        self.embedder = embedder or make_embedder(settings.embedder, batch_size=settings.batch_size(),
                                                  threads=settings.model_threads(),
                                                  device=settings.device)
        memory.fix_mmap_threshold(settings.malloc_mmap_threshold)   # before the index allocates (process-wide)
        self.index = ShardedIndex(self.embedder.dim, settings.retention_policy(), m=settings.hnsw_m,
                                  ef_construction=settings.hnsw_ef_construction, ef_search=settings.hnsw_ef_search,
                                  insert_threads=settings.hnsw_insert_threads)
        # per detector (created, changed and retired live by the catalog, from the ``detectors`` topic)
        self.detectors: dict[str, DetectorSettings] = {}
        self.engines: dict[str, OnlineIBG] = {}
        self.rounds: dict[str, LiveRounds] = {}
        self.samplers: dict[str, AuditSampler] = {}
        self.registered: dict[str, set[str]] = {}     # confirmed seeds in Redis
        self.audited: dict[str, set[str]] = {}        # sent as audits
        self.audit_labels: dict[str, dict[str, int]] = {}
        self.agreement: dict[str, Agreement] = {}     # LLM vs human verdicts (this worker)
        # set by the runtime: waits until the detectors topic is applied to its current end (a few seconds
        # at most), so a message for a detector created a moment ago is not refused as unknown
        self.catch_up_detectors = None
        self.blas_threads: int | None = None   # the BLAS thread limit in force in the model thread
        # two threads off the event loop. The embed thread only embeds (a pure function of the texts); the
        # model thread owns the index, the engines, the rounds and the seed sets, and runs every change to
        # them, one at a time. A batch of posts is embedded in the first and indexed and compared in the
        # second, so batch n+1 is embedded while batch n is indexed, and a round, a verdict or a snapshot on
        # the model thread does not stop the embedder.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="synapse-model", initializer=self._init_model_thread)
        self.embed_executor = (ThreadPoolExecutor(1, thread_name_prefix="synapse-embed") if settings.embed_thread
                               else self.executor)
        # the rounds' heavy step (snapshot, graph, sources, policy: ``LiveRounds.compute``) runs in a third thread,
        # so a round never stops the model thread from indexing; only its gather and commit (copies of the
        # books, marking the batch queried) run on the model thread
        self.round_executor = ThreadPoolExecutor(1, thread_name_prefix="synapse-round",
                                                 initializer=self._init_model_thread)
        self.seedlog_last = "0"
        self.pending: list[tuple[Candidate, float | None]] = []  # found but not yet claimed/emitted
        self.ready = Outputs()   # claimed in Redis, not yet handed to the runtime for publishing
        self.offsets: dict[int, int] = {}        # partition -> highest offset consumed (indexed or dead-lettered)
        self.last_progress = time.monotonic()   # for the health check
        self.started = False
        self.gc_pauses = None   # a metrics.GCPauses, set by the runtime (one per process)
        self.last_indexed: tuple[float, int] | None = None   # (wall time, posts held) after the last new posts
        self.worker_id = uuid.uuid4().hex[:12]   # owner of this process's in-flight candidates
        # the classifier: one shared version per detector (trained by whichever worker holds the training
        # lock, in its own thread so embedding goes on), used by the model source and for detections
        self.models: dict[str, ModelVersion] = {}
        self.train_executor = ThreadPoolExecutor(1, thread_name_prefix="synapse-train")
        self.trained_on: dict[str, tuple[int, int]] = {}     # detector -> (verdicts, seeds) of the last training
        self.trained_at: dict[str, float] = {}
        self.detections: deque[tuple[bytes, bytes]] = deque()   # filled by the model thread, drained on the loop
        self.trend_records: deque[tuple[bytes, bytes]] = deque()   # trend proposals, likewise

        # the service's parts, one responsibility each; they share the data above through ``svc``
        self.boundary = ErrorBoundary(self)
        self.outbox = CandidateOutbox(self)
        self.posts = PostsPipeline(self)
        self.seeds = SeedIntake(self)
        self.verdicts = VerdictApplier(self)
        self.scheduler = RoundScheduler(self)
        self.trainer = ClassifierTrainer(self)
        self.shards = ShardKeeper(self)
        self.gauges = Gauges(self)
        self.catalog = DetectorCatalog(self)
        self.retention = RetentionKeeper(self)
        self.trends = TrendKeeper(self)
        for d in settings.detectors:   # SYNAPSE_DETECTORS; the detectors topic then rules (detector_feed.py)
            self.catalog.build(d)
        # the operations the runtime and the agents call, each one part's method
        self.handle_posts, self.begin_posts, self.finish_posts = self.posts.handle, self.posts.begin, self.posts.finish
        self.handle_seeds, self.poll_seedlog = self.seeds.handle, self.seeds.poll_log
        self.handle_labels, self.handle_verdicts = self.verdicts.handle_labels, self.verdicts.handle_verdicts
        self.release_held_labels, self.reconcile_confirmed = (self.verdicts.release_held_labels,
                                                              self.verdicts.reconcile_confirmed)
        self.run_rounds = self.scheduler.run
        self.maybe_train, self.refresh_models = self.trainer.maybe_train, self.trainer.refresh_models
        self.snapshot, self.assign, self.revoke = self.shards.snapshot, self.shards.assign, self.shards.revoke
        self.confirm, self.orphans, self.send_waiting = self.outbox.confirm, self.outbox.orphans, self.outbox.send_waiting
        self.refresh_gauges = self.gauges.refresh
        self.expire_window = self.retention.expire

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

    async def in_model_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    async def in_round_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.round_executor, functools.partial(fn, *args))

    async def embed(self, texts: list[str]):
        return await asyncio.get_running_loop().run_in_executor(self.embed_executor, self.embedder.encode, texts)

    async def start(self) -> None:
        """Load the shared state (ledger, queried sets) into the engines."""
        for name in list(self.engines):
            await self.catalog.load(name)
        await self.trainer.refresh_models()
        self.started = True

    async def stop(self) -> None:
        if self.gc_pauses is not None:
            self.gc_pauses.uninstall()
        self.embed_executor.shutdown(wait=True)
        self.round_executor.shutdown(wait=True)
        self.trends.stop()
        self.executor.shutdown(wait=True)
        self.train_executor.shutdown(wait=True)

    def engine(self, detector: str) -> OnlineIBG:
        eng = self.engines.get(detector)
        if eng is None:
            raise UnknownDetectorError(detector)
        return eng

    def health(self) -> dict:
        return {"started": self.started, "worker_id": self.worker_id, "index_size": len(self.index),
                "shards": sorted(self.index.shards), "offsets": {str(k): v for k, v in sorted(self.offsets.items())},
                "seconds_since_progress": round(time.monotonic() - self.last_progress, 1),
                "last_indexed": None if self.last_indexed is None else
                {"at": self.last_indexed[0], "index_size": self.last_indexed[1]}}

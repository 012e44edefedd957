"""Prometheus metrics of the worker (prometheus-client; names follow Prometheus naming rules).

Per-detector gauges are read from Redis (shared by all workers), so every worker exports the same
value for them: aggregate them with ``max``, not ``sum``. Counters and histograms are per worker:
aggregate with ``sum``.

``synapse_recall`` is exported only when a replay (evaluation) oracle has stored the true number of
positives in Redis; in production there is no truth, and no recall is shown.
"""
from __future__ import annotations

import collections
import gc
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401  (re-exported for the web page)
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        if registry is None:
            process_collector.ProcessCollector(registry=r)
            platform_collector.PlatformCollector(registry=r)
            gc_collector.GCCollector(registry=r)
        self.posts = Counter("synapse_posts", "Posts embedded and indexed by this worker", registry=r)
        self.candidates = Counter("synapse_candidates", "Candidates sent to the oracle", ["detector", "reason"], registry=r)
        self.verdicts = Counter("synapse_verdicts", "Verdicts applied", ["detector", "label"], registry=r)
        self.dead_letters = Counter("synapse_dead_letters", "Messages sent to the dead-letter topic",
                                    ["topic", "reason"], registry=r)
        self.internal_errors = Counter("synapse_internal_errors", "Messages whose handling raised an unexpected "
                                       "exception (dead-lettered as internal_error)", ["topic", "stage", "error"],
                                       registry=r)
        self.agent_crashes = Counter("synapse_agent_crashes", "Agent or background task failures (each one restarts "
                                     "or retries)", ["agent"], registry=r)
        self.held_labels = Gauge("synapse_held_labels", "Labels for posts not seen yet, held until the post arrives "
                                 "or the hold expires (all workers)", registry=r)
        self.detector_changes = Counter("synapse_detector_changes", "Detector changes applied from the detectors "
                                        "topic (created, updated, paused, resumed, retired)", ["detector", "change"],
                                        registry=r)
        self.detector_paused = Gauge("synapse_detector_paused", "1 while a detector is paused", ["detector"],
                                     registry=r)
        self.seeds = Gauge("synapse_seeds", "Positive seeds by origin", ["detector", "origin"], registry=r)
        self.queried = Gauge("synapse_queried", "Posts sent to the oracle (all workers)", ["detector"], registry=r)
        self.answered = Gauge("synapse_answered", "Queried posts with a verdict (all workers)", ["detector"], registry=r)
        self.confirmed = Gauge("synapse_confirmed_positives", "Posts the oracle confirmed positive", ["detector"], registry=r)
        self.tau = Gauge("synapse_tau", "IBG similarity threshold in use: the detector's tau, or the automatic one "
                         "this worker's rounds chose from the seeds and posts and moved by the verdicts", ["detector"],
                         registry=r)
        self.precision = Gauge("synapse_precision", "Confirmed positives / answered candidates", ["detector"], registry=r)
        self.query_ratio = Gauge("synapse_query_ratio", "Queried posts / posts indexed", ["detector"], registry=r)
        self.recall = Gauge("synapse_recall", "True recall (evaluation runs with a replay oracle only)", ["detector"],
                            registry=r)
        self.recall_estimate = Gauge("synapse_recall_estimate",
                                     "Recall estimated from the audit sample (stratified; no ground truth needed)",
                                     ["detector"], registry=r)
        self.recall_lower = Gauge("synapse_recall_estimate_lower", "Lower bound of the recall estimate's interval",
                                  ["detector"], registry=r)
        self.recall_upper = Gauge("synapse_recall_estimate_upper", "Upper bound of the recall estimate's interval",
                                  ["detector"], registry=r)
        self.audit_size = Gauge("synapse_audit_size", "Audited posts with a verdict", ["detector"], registry=r)
        self.audit_share = Gauge("synapse_audit_share", "Audits / (audits + detector verdicts): the audit's oracle cost",
                                 ["detector"], registry=r)
        self.audit_prevalence = Gauge("synapse_audit_prevalence", "Share of positives among audited posts",
                                      ["detector"], registry=r)
        self.posts_indexed = Gauge("synapse_posts_indexed", "Posts indexed by all workers", registry=r)
        self.index_size = Gauge("synapse_index_size", "Posts held in this worker's HNSW shards", registry=r)
        self.posts_late = Counter("synapse_posts_late", "Posts older than the retention window when they arrived "
                                  "(a replay from an old offset): not indexed", registry=r)
        self.posts_expired = Counter("synapse_posts_expired", "Posts dropped from this worker's shards with their "
                                     "segment when it left the retention window", registry=r)
        self.segments = Gauge("synapse_index_segments", "HNSW segments held by this worker (all shards)", registry=r)
        self.shards = Gauge("synapse_index_shards", "HNSW shards (partitions) held by this worker", registry=r)
        self.embed_seconds = Histogram("synapse_embed_batch_seconds", "Time to embed one micro-batch",
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=r)
        self.embed_batch = Histogram("synapse_embed_batch_size", "Posts per micro-batch",
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.posts_io_seconds = Histogram(
            "synapse_posts_batch_io_seconds",
            "Per micro-batch of posts, after the model thread is done: Redis claims, publishing and the broker's "
            "acknowledgements (what the posts pipeline overlaps with the next batch's embedding)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r)
        self.posts_stage_seconds = Counter(
            "synapse_posts_stage_seconds",
            "Seconds spent in each stage of the posts path (event loop: events, parse, record, claim, publish; embed "
            "thread: embed; model thread: index, compare, classify, trends); the threads overlap", ["stage"], registry=r)
        self._stage_children: dict = {}
        self.thread_cpu = Gauge("synapse_thread_cpu_seconds", "CPU seconds used so far by each of the worker's "
                                "threads, by name (MainThread = the event loop); read at each scrape", ["thread"],
                                registry=r)
        self.gc_pause = Histogram("synapse_gc_pause_seconds",
                                  "Python garbage-collector pauses (every thread of the worker waits), by generation",
                                  ["generation"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
                                  registry=r)
        self.latency = Histogram("synapse_post_to_candidate_seconds",
                                 "From a post's arrival on the broker to its candidate message",
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        # candidate rounds (detectors whose candidates come from the policy or one of its sources)
        self.rounds = Counter("synapse_rounds", "Candidate rounds planned by this worker", ["detector"], registry=r)
        self.round_seconds = Histogram("synapse_round_seconds", "Time to plan one candidate round (this worker)",
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.graph_lag = Gauge("synapse_graph_lag_posts", "Posts indexed by this worker and not yet in the detector's "
                               "kNN graph (grown between rounds; a round adds the rest)", ["detector"], registry=r)
        self.rate_spent = Gauge("synapse_rate_budget_spent", "Candidates sent in the last hour (all workers), "
                                "counted against max_candidates_per_hour", ["detector"], registry=r)
        self.rate_limit = Gauge("synapse_rate_budget_limit", "max_candidates_per_hour (absent without one)",
                                ["detector"], registry=r)
        self.rate_used = Gauge("synapse_rate_budget_used", "Share of the hourly candidate budget used (all workers)",
                               ["detector"], registry=r)
        self.deferred = Gauge("synapse_candidates_deferred", "Candidates found and waiting in this worker's outbox "
                              "for room in the hourly budget", ["detector"], registry=r)
        self.source_share = Gauge("synapse_policy_share", "Share of this worker's last round given to each source",
                                  ["detector", "source"], registry=r)
        self.source_precision = Gauge("synapse_source_precision",
                                      "Confirmed positives / answered candidates, per candidate source (all workers)",
                                      ["detector", "source"], registry=r)
        self.source_queried = Gauge("synapse_source_queried", "Posts sent per candidate source (all workers)",
                                    ["detector", "source"], registry=r)
        # the classifier (model-guided source and detections)
        self.model_version = Gauge("synapse_model_version", "Current classifier version", ["detector"], registry=r)
        self.model_cv_precision = Gauge("synapse_model_cv_precision",
                                        "Cross-validated precision of the current classifier version on the ledger",
                                        ["detector"], registry=r)
        self.model_cv_recall = Gauge("synapse_model_cv_recall",
                                     "Cross-validated recall of the current classifier version on the ledger",
                                     ["detector"], registry=r)
        self.model_training_rows = Gauge("synapse_model_training_rows", "Training rows of the current classifier",
                                         ["detector", "kind"], registry=r)
        self.model_train_seconds = Histogram("synapse_model_train_seconds", "Time to train and cross-validate one version",
                                             buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.detections = Counter("synapse_detections", "Posts sent to the detections topic", ["detector"], registry=r)
        # emerging trends (docs/trends.md)
        self.trend_proposals_raised = Counter("synapse_trend_proposals_raised", "New trend proposals raised by "
                                              "this worker", registry=r)
        self.trend_proposals_accepted = Counter("synapse_trend_proposals_accepted", "Trend proposals accepted "
                                                "(made detectors), as read from the trends topic", registry=r)
        self.trend_proposals_rejected = Counter("synapse_trend_proposals_rejected", "Trend proposals rejected "
                                                "(muted), as read from the trends topic", registry=r)
        self.trend_updates = Counter("synapse_trend_proposal_updates", "Updates of open trend proposals published",
                                     registry=r)
        self.trend_batches_skipped = Counter("synapse_trend_batches_skipped", "Batches of unclaimed posts the "
                                             "trends thread could not take (its backlog was full)", registry=r)
        self.trend_seconds = Histogram("synapse_trend_stage_seconds", "Time of the trends stage per batch of posts",
                                       buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
                                       registry=r)

        from synapse_stream.llm_oracle import LLMRaterMetrics

        self.llm = LLMRaterMetrics(r)   # synapse_llm_*: calls, failures, tokens, budget, agreement

    def stage(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` to the posts path's ``stage`` timer (``synapse_posts_stage_seconds_total``).

        >>> m = Metrics(CollectorRegistry()); m.stage("parse", 0.25); m.stage("parse", 0.25)
        >>> m.posts_stage_seconds.labels("parse")._value.get()
        0.5
        """
        child = self._stage_children.get(stage)
        if child is None:
            child = self._stage_children[stage] = self.posts_stage_seconds.labels(stage)
        child.inc(seconds)

    def exposition(self) -> bytes:
        for name, seconds in thread_cpu_seconds().items():
            self.thread_cpu.labels(name).set(seconds)
        return generate_latest(self.registry)


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of each live Python thread of this process, by thread name with the
    pool's index dropped (``synapse-model_0`` -> ``synapse-model``; the threads of one name are summed), from
    ``/proc/self/task/<tid>/stat``; empty where there is no ``/proc``.

    >>> isinstance(thread_cpu_seconds().get("MainThread", 0.0), float)
    True
    """
    import os
    import re
    import threading

    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {}
    for t in threading.enumerate():
        tid = getattr(t, "native_id", None)
        if tid is None:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        name = re.sub(r"_\d+$", "", t.name)
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick   # utime, stime
    return out


class GCPauses:
    """Times every pass of Python's garbage collector (``gc.callbacks``) while installed.

    A pass stops every thread of the worker (the event loop and the model thread alike), so its length
    adds to post-to-candidate latency. The callback runs inside the collection, which may start in any
    thread, possibly while that thread holds a lock (a metric's among them): it only appends to a deque,
    and :meth:`drain` moves the pauses into a histogram from ordinary code.

    >>> import gc
    >>> g = GCPauses().install()
    >>> _ = gc.collect()
    >>> 2 in [gen for gen, _ in g.drain_list()]   # a full collection was timed
    True
    >>> g.uninstall()
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        self._pauses: collections.deque[tuple[int, float]] = collections.deque(maxlen=maxlen)
        self._t0: float | None = None

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self._t0 is not None:
            self._pauses.append((int(info.get("generation", -1)), time.perf_counter() - self._t0))
            self._t0 = None

    def install(self) -> "GCPauses":
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def drain_list(self) -> list[tuple[int, float]]:
        out = []
        while self._pauses:
            out.append(self._pauses.popleft())
        return out

    def drain(self, histogram) -> None:
        """Observe every recorded pause in ``histogram`` (labelled by generation)."""
        for gen, seconds in self.drain_list():
            histogram.labels(str(gen)).observe(seconds)


def freeze_heap() -> int:
    """Collect once, then move every live object into the permanent generation (``gc.freeze``).

    For a worker that has just loaded its model: those objects live as long as the process, and later
    full collections no longer walk them. Returns the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def parse_exposition(text: str) -> dict[str, float]:
    """``{'name{label="v",...}': value}`` from the text format (for tests and the demo summary)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out

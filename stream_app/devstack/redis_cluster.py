"""A three-master Redis Cluster on loopback for dev and tests (:class:`RedisClusterServer`).

Three ``redis-server`` processes with ``--cluster-enabled yes`` (each with its own data folder and
``nodes.conf``), joined by ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes``, which splits the
16,384 hash slots between them. ``start()`` blocks until every node reports ``cluster_state:ok``.

    with RedisClusterServer() as cluster:
        settings = Settings(redis_url=cluster.url, redis_cluster=True)

Needs ``redis-server`` and ``redis-cli`` (Debian package ``redis-server``, which brings ``redis-tools``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from stream_app.devstack.embedded import (
    LOCALHOST,
    EmbeddedStackError,
    RedisServer,
    _Managed,
    _read_line,
    _resp,
    find_redis_server,
    free_port,
    serve_until_stopped,
)

__all__ = ["RedisClusterServer", "find_redis_cli", "cluster_state"]


def find_redis_cli() -> Path:
    """Path of ``redis-cli``: ``$SYNAPSE_REDIS_CLI``, on PATH, or beside ``redis-server``."""
    override = os.environ.get("SYNAPSE_REDIS_CLI")
    if override:
        return Path(override)
    on_path = shutil.which("redis-cli")
    if on_path:
        return Path(on_path)
    beside = find_redis_server().parent / "redis-cli"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    raise EmbeddedStackError("redis-cli not found: `apt-get install redis-tools` (comes with redis-server), "
                             "or set $SYNAPSE_REDIS_CLI.")


def cluster_state(host: str, port: int, timeout: float = 1.0) -> str:
    """The ``cluster_state`` field of ``CLUSTER INFO`` on one node (``ok``, ``fail``), or ``""`` if unreachable."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_resp("CLUSTER", "INFO"))
            head = _read_line(sock)
            if not head.startswith(b"$"):
                return ""
            n = int(head[1:])
            buf = b""
            while len(buf) < n + 2:
                chunk = sock.recv(n + 2 - len(buf))
                if not chunk:
                    break
                buf += chunk
    except (OSError, ValueError):
        return ""
    for line in buf.decode("utf-8", "replace").splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""


class RedisClusterServer(_Managed):
    """``masters`` cluster-enabled ``redis-server`` processes on loopback joined into one cluster (no replicas,
    no persistence). ``url`` names the first node; a cluster client finds the others."""

    def __init__(self, masters: int = 3, data_dir: Optional[os.PathLike[str] | str] = None, *,
                 host: str = LOCALHOST, node_timeout_ms: int = 5000, startup_timeout: float = 30.0) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.masters = masters
        self.host = host
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir: Optional[Path] = None
        self.nodes: list[RedisServer] = []
        self.cli = find_redis_cli()
        self.startup_seconds: Optional[float] = None

    @property
    def url(self) -> str:
        if not self.nodes:
            raise EmbeddedStackError("the Redis Cluster is not running")
        return f"redis://{self.host}:{self.nodes[0].port}/0"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(n.host, n.port) for n in self.nodes]

    def start(self) -> "RedisClusterServer":
        if self.nodes:
            return self
        t0 = time.monotonic()
        self.data_dir = self._given_dir or Path(tempfile.mkdtemp(prefix="synapse-redis-cluster-"))
        try:
            for i in range(self.masters):
                self.nodes.append(self._start_node(self.data_dir / f"node{i}"))
            cmd = [str(self.cli), "--cluster", "create", *(f"{h}:{p}" for h, p in self.addresses),
                   "--cluster-replicas", "0", "--cluster-yes"]
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
            if res.returncode != 0:
                raise EmbeddedStackError(f"redis-cli --cluster create failed ({res.returncode}):\n"
                                         f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
            deadline = time.monotonic() + self.startup_timeout
            while not all(cluster_state(h, p) == "ok" for h, p in self.addresses):
                if time.monotonic() > deadline:
                    raise EmbeddedStackError(f"the Redis Cluster on {self.addresses} did not reach cluster_state:ok "
                                             f"within {self.startup_timeout:.0f}s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _start_node(self, node_dir: Path) -> RedisServer:
        # the cluster bus port is set explicitly (by default it is the port + 10000, which may not exist)
        last: Exception | None = None
        for _ in range(3):   # free_port() can race
            node = RedisServer(port=free_port(self.host), data_dir=node_dir, host=self.host, extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-port", str(free_port(self.host)), "--cluster-node-timeout", str(self.node_timeout_ms)])
            try:
                return node.start()
            except EmbeddedStackError as exc:
                last = exc
                node.stop()
        raise EmbeddedStackError(f"a Redis Cluster node did not start: {last}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self._given_dir is None and self.data_dir is not None and os.environ.get("SYNAPSE_KEEP_LOGS") != "1":
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir = None

    def __repr__(self) -> str:
        return f"<RedisClusterServer {self.addresses or 'stopped'}>"


def connect(url: str, **kwargs):
    """An asyncio client (``decode_responses=True``) for a dev/test Redis URL: a ``RedisCluster`` when the node
    it names is cluster-enabled (it answers ``CLUSTER INFO``), else a ``Redis``. Production code chooses by
    the ``redis_cluster`` setting instead (``stream_app.worker.state.redis.redis_client``)."""
    from urllib.parse import urlparse

    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster

    kwargs.setdefault("decode_responses", True)
    u = urlparse(url)
    if u.hostname and cluster_state(u.hostname, u.port or 6379):
        return RedisCluster.from_url(url, **kwargs)
    return aioredis.from_url(url, **kwargs)


def main(argv=None) -> int:
    """``python -m stream_app.devstack.redis_cluster``: a three-master Redis Cluster on loopback; prints the
    settings for it and runs until Ctrl-C (``--once``: stop right after start-up)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m stream_app.devstack.redis_cluster", description=main.__doc__)
    p.add_argument("--masters", type=int, default=3)
    p.add_argument("--once", action="store_true")
    args = p.parse_args(argv)
    with RedisClusterServer(args.masters) as cluster:
        print(f"Redis Cluster of {args.masters} masters on {', '.join(f'{h}:{p}' for h, p in cluster.addresses)} "
              f"(cluster_state:ok in {cluster.startup_seconds:.1f}s)", flush=True)
        print(f"export SYNAPSE_REDIS_URL={cluster.url}\nexport SYNAPSE_REDIS_CLUSTER=true", flush=True)
        serve_until_stopped(lambda: all(n.running for n in cluster.nodes), once=args.once)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

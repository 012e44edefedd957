"""Fault injection for the embedded stack: a TCP proxy that can cut a service off and bring it back.

The embedded Tansu broker is memory-only (a restarted broker is empty) and a restarted Redis loses
unsaved state, so an *outage* is simulated in front of them: clients talk to a :class:`TcpProxy`;
``block()`` drops every open connection and refuses new ones (connections are accepted and closed
at once, as a dead host behind a load balancer looks), ``unblock()`` lets traffic through again.
For Kafka the broker advertises the proxy's port, so clients never bypass it.
"""
from __future__ import annotations

import contextlib
import socket
import threading

from stream_app.devstack.embedded import LOCALHOST, free_port


class TcpProxy:
    def __init__(self, target_port: int, *, target_host: str = LOCALHOST, port: int | None = None) -> None:
        self.target = (target_host, int(target_port))
        self.port = int(port or free_port())
        self.blocked = False
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = False

    def start(self) -> "TcpProxy":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((LOCALHOST, self.port))
        srv.listen(256)
        self._server = srv
        self._running = True
        threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True).start()
        return self

    def _accept_loop(self) -> None:
        while self._running:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.blocked:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.blocked:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
                with self._lock:
                    self._conns.discard(s)

    def block(self) -> None:
        """Cut every connection and refuse new ones until :meth:`unblock`."""
        self.blocked = True
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def unblock(self) -> None:
        self.blocked = False

    def stop(self) -> None:
        self._running = False
        self.block()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

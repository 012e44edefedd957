"""A fake OpenAI-compatible chat-completions endpoint for tests (``http.server`` in a thread, free port).

Used by the LLM seed, LLM oracle and live LLM-oracle tests; no test needs the internet.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    """Scripted answers: ``script`` is consumed one entry per request, then ``default`` is used.

    An entry is ``(status, body)`` or ``(status, body, headers)`` (body: dict -> JSON, str -> text),
    ``"hang"`` (no answer until :meth:`stop`), or a callable ``(request_body) -> entry``. Every request
    is kept in ``requests`` (path, headers, parsed body).
    """

    def __init__(self, default=None) -> None:
        self.script: list = []
        self.default = default
        self.requests: list[dict] = []      # {"path": ..., "headers": {...}, "body": {...}}
        self.release = threading.Event()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    entry = fake.script.pop(0) if fake.script else fake.default
                if callable(entry):
                    entry = entry(body)
                if entry == "hang":
                    fake.release.wait(10)
                    return
                if entry is None:
                    entry = (500, {"error": {"message": "no scripted answer"}})
                status, payload, headers = (*entry, {})[:3]
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def bodies(self) -> list:
        """The parsed JSON body of every request so far."""
        with self.lock:
            return [r["body"] for r in self.requests]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

"""The console over memory parts (no broker, no Redis): a factory for the app and logged-in test clients."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import pytest

from stream_app.console.auth import UserStore
from stream_app.console.catalog import MemoryCatalog
from stream_app.console.queue import MemoryReviewQueue
from stream_app.console.settings import ConsoleSettings
from stream_app.console.stats import MemoryRecords
from stream_app.console.web import Parts
from stream_app.worker.state import MemoryState

PASSWORD = "correct horse battery"
DETECTORS = [{"name": "scam", "description": "Posts promising to double crypto sent to a wallet.", "tau": 0.6,
              "audit_rate": 0.01}]


@dataclass
class Console:
    app: object
    parts: Parts
    settings: ConsoleSettings


def fast_users(path) -> UserStore:
    from argon2 import PasswordHasher

    return UserStore(path, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))   # tests only: fast hashes


@pytest.fixture
def make_console(tmp_path):
    def make(**settings) -> Console:
        from stream_app.console.app import create_app

        s = ConsoleSettings(console_secret="test-secret", console_users_file=str(tmp_path / "users.json"),
                            console_undo_seconds=settings.pop("undo", 10.0), **settings)
        users = fast_users(s.users_path())
        users.add("ana", PASSWORD, "moderator")
        users.add("bo", PASSWORD, "moderator")
        users.add("ian", PASSWORD, "analyst")
        parts = Parts(queue=MemoryReviewQueue(s.console_lease_seconds, s.console_undo_seconds),
                      catalog=MemoryCatalog(DETECTORS), users=users, state=MemoryState(), records=MemoryRecords())
        return Console(create_app(s, parts), parts, s)
    return make


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def login(client, name: str, password: str = PASSWORD):
    page = client.get("/login")
    r = client.post("/login", data={"user": name, "password": password, "csrf": csrf_of(page.text)},
                    follow_redirects=False)
    return r


@pytest.fixture
def client_for(make_console):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Starlette prefers httpx2 for its test client; httpx works
        from starlette.testclient import TestClient

    clients = []

    def make(console: Console, name: str | None = None):
        c = TestClient(console.app, base_url="http://testserver")
        c.__enter__()
        clients.append(c)
        if name:
            r = login(c, name)
            assert r.status_code == 303, r.text
            c.csrf = csrf_of(c.get("/review").text)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)

"""Server-side sessions: the store's contract over a real redis-server and memory (create, expire, revoke one,
revoke a user's, only a digest stored), and what it means for a cookie: replayed after log-out, after
``console revoke-sessions``, after ``remove-user`` or a new password, or after the server-side expiry, it is
refused; the other users' sessions go on."""
from __future__ import annotations

import asyncio
import io
import sys
import time
import uuid

import pytest

from console_helpers import PASSWORD, csrf_of, login
from stream_app.cli import main
from stream_app.console.sessions import MemorySessions, digest
from stream_app.console.sessions_redis import RedisSessions

T0 = 1_700_000_000.0
COOKIE = "synapse_console"


def run(store, fn, ttl: float = 100.0, prefix: str | None = None):
    from stream_app.devstack.redis_cluster import connect

    async def go():
        if store is None:
            return await fn(MemorySessions(ttl))
        r = connect(store)
        try:
            return await fn(RedisSessions(r, prefix or f"t-{uuid.uuid4().hex}:", ttl))
        finally:
            await r.aclose()
    return asyncio.run(go())


def test_a_session_lives_until_its_expiry(store):
    async def go(s):
        sid = await s.create("ana", "moderator", T0)
        return (await s.get(sid, T0 + 1), await s.get(sid, T0 + 99.9), await s.get(sid, T0 + 100),
                await s.get("not-a-session", T0), await s.count("ana", T0 + 1), await s.count("ana", T0 + 100))

    first, late, expired, unknown, live, after = run(store, go)
    assert (first.user, first.role, first.created, first.expires) == ("ana", "moderator", T0, T0 + 100)
    assert late is not None and expired is None and unknown is None
    assert (live, after) == (1, 0)


def test_revoke_ends_one_session_and_revoke_user_all_of_a_users(store):
    async def go(s):
        a1, a2, b = [await s.create(u, "moderator", T0) for u in ("ana", "ana", "bo")]
        one = await s.revoke(a1)
        again = await s.revoke(a1)
        after_one = [await s.get(x, T0 + 1) is not None for x in (a1, a2, b)]
        a3 = await s.create("ana", "analyst", T0 + 2)
        n = await s.revoke_user("ana")
        after_all = [await s.get(x, T0 + 3) is not None for x in (a1, a2, a3, b)]
        return one, again, after_one, n, after_all, await s.revoke_user("nobody")

    one, again, after_one, n, after_all, none = run(store, go)
    assert one is True and again is False
    assert after_one == [False, True, True]
    assert n == 2 and after_all == [False, False, False, True] and none == 0


def test_redis_keeps_a_digest_of_the_id_and_lets_the_key_expire(redis_url):
    prefix = f"t-{uuid.uuid4().hex}:"

    async def go(s):
        sid = await s.create("ana", "moderator", time.time())
        keys = [k async for k in s.r.scan_iter(prefix + "*")]
        values = [await s.r.hgetall(k) if await s.r.type(k) == "hash" else await s.r.zrange(k, 0, -1) for k in keys]
        return sid, keys, values, await s.r.pttl(s._session(digest(sid)))

    sid, keys, values, pttl = run(redis_url, go, ttl=100.0, prefix=prefix)
    assert sorted(keys) == sorted([f"{prefix}console/session:{digest(sid)}", f"{prefix}console/sessions:ana"])
    assert sid not in repr(keys) + repr(values)
    assert 95_000 < pttl <= 101_000


# ------------------------------------------------------------------ the cookie, through the app
def _logged_in(client_for, con, name: str):
    c = client_for(con, name)
    return c, c.cookies.get(COOKIE)


def _replay(c, cookie, csrf: str | None = None):
    """A request carrying ``cookie`` (and the CSRF token of its session), as a thief who copied it would send.
    ``cookie`` may be a ``(cookie, csrf)`` pair."""
    if isinstance(cookie, tuple):
        cookie, csrf = cookie
    c.cookies.clear()
    c.cookies.set(COOKIE, cookie)
    return c.post("/api/queue/lease", json={}, headers={"X-CSRF-Token": csrf or c.csrf})


def _log_in_fresh(c, name: str) -> tuple[str, str]:
    """Log in as from a fresh browser (log-in ends the session it came with): the cookie and its CSRF token."""
    c.cookies.clear()
    assert login(c, name).status_code == 303
    return c.cookies.get(COOKIE), csrf_of(c.get("/review").text)


def test_a_cookie_replayed_after_log_out_is_refused(make_console, client_for):
    con = make_console()
    ana, stolen = _logged_in(client_for, con, "ana")
    bo, bo_cookie = _logged_in(client_for, con, "bo")
    assert _replay(ana, stolen).status_code == 200             # a copy works while the session lives
    ana.cookies.set(COOKIE, stolen)
    assert ana.post("/logout", data={"csrf": ana.csrf}, follow_redirects=False).status_code == 303
    assert _replay(ana, stolen).status_code == 401
    assert ana.get("/review", follow_redirects=False).headers["location"] == "/login"
    assert _replay(bo, bo_cookie).status_code == 200           # bo is not logged out


def test_log_out_everywhere_ends_every_session_of_the_user(make_console, client_for):
    con = make_console()
    (a1, c1), (a2, c2), (bo, cb) = (_logged_in(client_for, con, n) for n in ("ana", "ana", "bo"))
    assert 'name="everywhere" value="1" id="logout-everywhere"' in a1.get("/review").text
    a1.post("/logout", data={"csrf": a1.csrf, "everywhere": "1"})
    assert _replay(a2, c2).status_code == 401 and _replay(a1, c1).status_code == 401
    assert _replay(bo, cb).status_code == 200


def test_revoked_and_removed_users_lose_their_sessions_others_keep_theirs(make_console, client_for):
    con = make_console()
    (ana, ca), (bo, cb), (ian, ci) = (_logged_in(client_for, con, n) for n in ("ana", "bo", "ian"))
    assert asyncio.run(con.parts.sessions.revoke_user("ana")) == 1      # what revoke-sessions does
    assert _replay(ana, ca).status_code == 401
    # a removed user's session ends, and stays ended when the name is added again
    con.parts.users.remove("bo")
    assert _replay(bo, cb).status_code == 401
    con.parts.users.add("bo", PASSWORD, "moderator")
    assert _replay(bo, cb).status_code == 401
    assert _replay(ian, ci).status_code == 200
    assert login(ana, "ana").status_code == 303               # logging in again makes a new session


def test_a_session_ends_at_its_server_side_expiry_whatever_the_cookie_says(make_console, client_for):
    con = make_console()
    con.parts.sessions = MemorySessions(ttl=0.6)             # the cookie itself is good for 12 hours
    ana, cookie = _logged_in(client_for, con, "ana")
    assert _replay(ana, cookie).status_code == 200
    time.sleep(0.7)
    assert _replay(ana, cookie).status_code == 401


def test_log_in_replaces_the_session_it_came_with(make_console, client_for):
    con = make_console()
    ana, first = _logged_in(client_for, con, "ana")
    r = ana.post("/login", data={"user": "ana", "password": PASSWORD, "csrf": csrf_of(ana.get("/login").text)},
                 follow_redirects=False)
    assert r.status_code == 303
    second = ana.cookies.get(COOKIE)
    assert second != first
    assert asyncio.run(con.parts.sessions.count("ana", time.time())) == 1


# ------------------------------------------------------------------ the CLI against a console on Redis
@pytest.fixture
def redis_console(make_console, redis_url, monkeypatch):
    """The console with its sessions in Redis, and the environment the CLI reads to reach the same ones."""
    import redis.asyncio as aioredis

    prefix = f"t-{uuid.uuid4().hex}:"
    monkeypatch.setenv("SYNAPSE_REDIS_URL", redis_url)
    monkeypatch.setenv("SYNAPSE_REDIS_PREFIX", prefix)
    con = make_console()
    client = aioredis.from_url(redis_url, decode_responses=True)   # first used on the app's own event loop
    con.parts.sessions = RedisSessions(client, prefix, 3600)
    con.parts.closers.append(client.aclose)
    return con


def _cli(con, *args: str) -> int:
    return main(["console", "--users-file", str(con.settings.users_path()), *args])


def test_revoke_sessions_ends_a_users_sessions_in_the_running_console(redis_console, client_for, capsys):
    con = redis_console
    c = client_for(con)                                     # one client (one event loop), three cookies
    assert c.get("/healthz").json() == {"ok": True}         # Redis answers the ping
    cookies = {}
    for name in ("ana", "bo", "ana"):
        cookies.setdefault(name, []).append(_log_in_fresh(c, name))
    assert all(_replay(c, k).status_code == 200 for ks in cookies.values() for k in ks)
    assert _cli(con, "revoke-sessions", "ana") == 0
    assert "2 sessions of ana ended" in capsys.readouterr().out
    assert [_replay(c, k).status_code for k in cookies["ana"]] == [401, 401]
    assert _replay(c, cookies["bo"][0]).status_code == 200


def test_remove_user_and_a_new_password_end_the_sessions(redis_console, client_for, capsys, monkeypatch):
    con = redis_console
    c = client_for(con)
    cookies = {name: _log_in_fresh(c, name) for name in ("ana", "bo", "ian")}
    assert _cli(con, "remove-user", "ana") == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("a brand new password\n"))
    assert _cli(con, "add-user", "bo", "--role", "moderator", "--password-stdin") == 0
    out = capsys.readouterr().out
    assert "1 session of ana ended" in out and "1 session of bo ended" in out
    assert [_replay(c, cookies[n]).status_code for n in ("ana", "bo", "ian")] == [401, 401, 200]


def test_without_redis_the_cli_says_the_sessions_were_not_ended(tmp_path, monkeypatch, capsys):
    users = tmp_path / "users.json"
    monkeypatch.setenv("SYNAPSE_REDIS_URL", "redis://127.0.0.1:1/0")        # nothing listens there
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    assert main(["console", "--users-file", str(users), "add-user", "ana", "--role", "analyst",
                 "--password-stdin"]) == 0                    # a new name: no session to end, Redis not asked
    assert main(["console", "--users-file", str(users), "revoke-sessions", "ana"]) == 2
    assert "cannot end ana's sessions: Redis at redis://127.0.0.1:1/0" in capsys.readouterr().err
    assert main(["console", "--users-file", str(users), "remove-user", "ana"]) == 1
    err = capsys.readouterr().err
    assert "ana is removed" in err and "console revoke-sessions ana" in err


def test_an_empty_secret_is_no_secret_not_an_empty_key(monkeypatch):
    from stream_app.console.settings import ConsoleSettings

    monkeypatch.setenv("SYNAPSE_CONSOLE_SECRET", "")
    s = ConsoleSettings(_env_file=None)
    assert s.console_secret is None and len(s.session_secret()) >= 32
    monkeypatch.setenv("SYNAPSE_CONSOLE_SECRET", "a-real-secret")
    assert ConsoleSettings(_env_file=None).session_secret() == "a-real-secret"


def test_healthz_answers_without_log_in_and_fails_when_the_session_store_is_away(make_console, client_for):
    con = make_console()
    c = client_for(con)
    r = c.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True} and "set-cookie" not in r.headers

    class Away(MemorySessions):
        async def ping(self):
            raise ConnectionError("redis is down")

    con.parts.sessions = Away(60)
    r = c.get("/healthz")
    assert r.status_code == 503 and r.json() == {"ok": False, "sessions": "ConnectionError"}
    assert "redis is down" not in r.text

"""Server-side sessions: the cookie holds a random session id, the store holds who it belongs to and until
when. Log-out deletes that session; ``synapse-stream console revoke-sessions NAME`` (and ``remove-user``, and
``add-user`` for an existing name: a new password) deletes every session of a user; a session ends at its
expiry whatever its cookie says. A session also remembers its user's password stamp (``auth.UserStore.stamp``):
a new password or a name removed and added again ends it even if the store was not reached. A stolen cookie
therefore works only until one of those, never after.

:class:`SessionStore` is the interface, :class:`MemorySessions` the in-memory one (one process: tests);
``sessions_redis.RedisSessions`` is the shared one the console runs on (several console processes, restarts,
and the CLI reaching the sessions of a running console). ``tests/console/test_sessions.py`` runs one contract
over both. The store keeps only a SHA-256 of each id (:func:`digest`): a copy of the store holds no cookie.

>>> import asyncio
>>> s = MemorySessions(ttl=3600)
>>> sid = asyncio.run(s.create("ana", "moderator", now=0.0))
>>> asyncio.run(s.get(sid, now=10.0)).user
'ana'
>>> asyncio.run(s.get(sid, now=3600.0)) is None          # expired
True
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Session:
    user: str
    role: str           # the role at log-in (a changed role ends the session's rights: web.current_user)
    created: float
    expires: float
    stamp: str = ""     # the user's password stamp at log-in (auth.UserStore: a new password or a re-added name ends it)


def new_id() -> str:
    """A session id: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(sid: str) -> str:
    """What the store keeps of a session id."""
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


class SessionStore(Protocol):
    """Sessions by id (every method a coroutine; ``now`` is the wall clock, passed in so tests control time)."""

    ttl: float

    async def create(self, user: str, role: str, now: float, stamp: str = "") -> str: ...
    async def get(self, sid: str, now: float) -> Session | None: ...
    async def revoke(self, sid: str) -> bool: ...
    async def revoke_user(self, user: str) -> int: ...
    async def count(self, user: str, now: float) -> int: ...
    async def ping(self) -> None: ...


class MemorySessions:
    """Sessions in a dict (one process). Expired ones are dropped when met and on every log-in."""

    def __init__(self, ttl: float) -> None:
        self.ttl = float(ttl)
        self._by_id: dict[str, Session] = {}

    def _prune(self, now: float) -> None:
        for k in [k for k, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[k]

    async def create(self, user: str, role: str, now: float, stamp: str = "") -> str:
        self._prune(now)
        sid = new_id()
        self._by_id[digest(sid)] = Session(user, role, now, now + self.ttl, stamp)
        return sid

    async def get(self, sid: str, now: float) -> Session | None:
        s = self._by_id.get(digest(sid))
        if s is None or s.expires <= now:
            return None
        return s

    async def revoke(self, sid: str) -> bool:
        return self._by_id.pop(digest(sid), None) is not None

    async def revoke_user(self, user: str) -> int:
        gone = [k for k, s in self._by_id.items() if s.user == user]
        for k in gone:
            del self._by_id[k]
        return len(gone)

    async def count(self, user: str, now: float) -> int:
        return sum(1 for s in self._by_id.values() if s.user == user and s.expires > now)

    async def ping(self) -> None:
        return None

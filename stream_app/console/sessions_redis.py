"""Server-side sessions in Redis (:class:`RedisSessions`): shared by every console process and reached by
``synapse-stream console revoke-sessions``. The rules are in ``sessions.py``.

Keys (``P`` = the Redis prefix + ``console/``, as the review queue's; ``D`` = SHA-256 of a session id):

==========================  ======================================================================
``Psession:D``              HASH user, role, stamp, created, expires; Redis deletes it after ``ttl``
``Psessions:<user>``        ZSET D -> expires: the user's sessions (revoke them all at once)
==========================  ======================================================================
"""
from __future__ import annotations

from stream_app.worker.state.keys import RedisKeys

from stream_app.console.sessions import Session, digest, new_id

# Every key a script touches is in KEYS (one hash slot on a cluster: {console}); the caller reads first what
# names them (the session's user, the user's sessions) and the script checks it still holds.

# KEYS: the session, the user's set; ARGV: the user, D. -1: the session is another user's (read again)
_REVOKE = """
local u = redis.call('HGET', KEYS[1], 'user')
if not u then return 0 end
if u ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS: the user's set, then the session keys of ARGV's digests (same order); ARGV: the digests read from the set.
# Returns {sessions deleted, sessions left in the set (added meanwhile: the caller goes on)}
_REVOKE_USER = """
local n = 0
for i, d in ipairs(ARGV) do
    if redis.call('ZSCORE', KEYS[1], d) then
        n = n + redis.call('DEL', KEYS[i + 1])
        redis.call('ZREM', KEYS[1], d)
    end
end
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[1]) end
return {n, left}
"""


class RedisSessions:
    def __init__(self, redis, prefix: str = "synapse:", ttl: float = 12 * 3600.0) -> None:
        self.r = redis
        self.p = RedisKeys.for_client(redis, prefix).console("")   # P{console}/ on a Redis Cluster: one slot
        self.ttl = float(ttl)
        self._revoke = redis.register_script(_REVOKE)
        self._revoke_user = redis.register_script(_REVOKE_USER)

    def _session(self, d: str) -> str:
        return f"{self.p}session:{d}"

    def _user(self, user: str) -> str:
        return f"{self.p}sessions:{user}"

    async def create(self, user: str, role: str, now: float, stamp: str = "") -> str:
        sid = new_id()
        d, expires = digest(sid), now + self.ttl
        # Redis drops the keys ``ttl`` after now by its own clock (a second more: ``get`` decides by ``expires``)
        ttl_ms = int(self.ttl * 1000) + 1000
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self._session(d), mapping={"user": user, "role": role, "stamp": stamp, "created": repr(now),
                                                 "expires": repr(expires)})
            pipe.pexpire(self._session(d), ttl_ms)
            pipe.zremrangebyscore(self._user(user), "-inf", now)     # the user's expired ones
            pipe.zadd(self._user(user), {d: expires})
            pipe.pexpire(self._user(user), ttl_ms)                   # the newest session expires last
            await pipe.execute()
        return sid

    async def get(self, sid: str, now: float) -> Session | None:
        h = await self.r.hgetall(self._session(digest(sid)))
        if not h:
            return None
        try:
            s = Session(h["user"], h["role"], float(h["created"]), float(h["expires"]), h.get("stamp", ""))
        except (KeyError, ValueError):
            return None
        return s if s.expires > now else None

    async def revoke(self, sid: str) -> bool:
        d = digest(sid)
        for _ in range(3):
            user = await self.r.hget(self._session(d), "user")
            if user is None:
                return False
            res = int(await self._revoke(keys=[self._session(d), self._user(user)], args=[user, d]))
            if res >= 0:
                return bool(res)
        return False   # pragma: no cover - a session id names one user for its whole life

    async def revoke_user(self, user: str) -> int:
        total = 0
        for _ in range(100):   # sessions created while revoking: go on until none is left
            digests = await self.r.zrange(self._user(user), 0, -1)
            n, left = await self._revoke_user(keys=[self._user(user), *(self._session(d) for d in digests)],
                                              args=digests)
            total += int(n)
            if int(left) == 0:
                break
        return total

    async def count(self, user: str, now: float) -> int:
        return int(await self.r.zcount(self._user(user), f"({now!r}", "+inf"))

    async def ping(self) -> None:
        await self.r.ping()

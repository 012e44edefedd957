"""The review queue in Redis (:class:`RedisReviewQueue`): shared by every console process, survives a restart.
The rules are in ``queue.py``; every change is one Lua script, so leases are atomic across processes.

Keys (``P`` = the Redis prefix + ``console/``, which no detector name can clash with; a key ``K`` of a candidate is ``"<detector>\\n<post id>"``):

==========================  ======================================================================
``Pqueue``                  ZSET K -> free from (arrival time; a lease's expiry while leased)
``Pitems``                  HASH K -> the candidate (``ReviewItem`` JSON)
``Powner``                  HASH K -> moderator holding (or who last held) its lease
``Pmine:<moderator>``       ZSET K -> order in which the moderator took it (undone ones first)
``Pskipped:<moderator>``    SET of K the moderator skipped (a day to live)
``Pdone``                   SET of K decided here or answered elsewhere: never queued again
``Pheld``                   ZSET K -> free for a publisher from (the decision's due time, then a publish lease)
``Pdecisions``              HASH K -> held decision JSON
``Pundo:<moderator>``       LIST of the moderator's latest decisions, newest first
==========================  ======================================================================
"""
from __future__ import annotations

from stream_app.worker.state.keys import RedisKeys

import json
from typing import Iterable, Sequence

from stream_app.console.items import Decision, Lease, ReviewItem, split_key
from stream_app.console.queue import PUBLISH_LEASE, UNDO_DEPTH, QueueStats

_ADD = """
local n = 0
for i = 2, #ARGV, 2 do
    local k = ARGV[i]
    if redis.call('SISMEMBER', KEYS[3], k) == 0 and not redis.call('ZSCORE', KEYS[1], k)
       and redis.call('HEXISTS', KEYS[4], k) == 0 then
        redis.call('HSET', KEYS[2], k, ARGV[i + 1])
        -- 10 us apart, the last at ``now``: the order of arrival (equal scores would sort by key: p1, p10, p2)
        redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + n * 0.00001, k)
        n = n + 1
    end
end
return n
"""

# KEYS: queue, items, owner, mine, skipped; ARGV: now, lease seconds, n, moderator, scan limit, detectors JSON ('' = all)
_LEASE = """
local now, ttl, n, me, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local want = nil
if ARGV[6] ~= '' then
    want = {}
    for _, d in ipairs(cjson.decode(ARGV[6])) do want[d] = true end
end
local function ok(k)
    if want == nil then return true end
    local nl = string.find(k, '\\n', 1, true)
    return nl ~= nil and want[string.sub(k, 1, nl - 1)] == true
end
local out = {}
local mine = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, k in ipairs(mine) do
    if redis.call('HGET', KEYS[3], k) ~= me or not redis.call('ZSCORE', KEYS[1], k) then
        redis.call('ZREM', KEYS[4], k)
    elseif #out < n * 2 and ok(k) then
        redis.call('ZADD', KEYS[1], now + ttl, k)
        out[#out + 1] = k
        out[#out + 1] = redis.call('HGET', KEYS[2], k)
    end
end
local offset, scanned = 0, 0
while #out < n * 2 and scanned < limit do
    local free = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', offset, 100)
    if #free == 0 then break end
    offset = offset + #free
    for _, k in ipairs(free) do
        scanned = scanned + 1
        if #out >= n * 2 then break end
        if ok(k) and redis.call('SISMEMBER', KEYS[5], k) == 0 and not redis.call('ZSCORE', KEYS[4], k) then
            redis.call('ZADD', KEYS[1], now + ttl, k)
            redis.call('HSET', KEYS[3], k, me)
            redis.call('ZADD', KEYS[4], now + (#out / 2) * 0.00001, k)
            out[#out + 1] = k
            out[#out + 1] = redis.call('HGET', KEYS[2], k)
            offset = offset - 1     -- this one is no longer free: the next page starts one earlier
        end
    end
end
return out
"""

# KEYS: queue, owner, mine, skipped; ARGV: key, moderator, now
_SKIP = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('EXPIRE', KEYS[4], 86400)
return 1
"""

# KEYS: queue, owner, mine; ARGV: moderator, now
_RELEASE = """
local n = 0
for _, k in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if redis.call('HGET', KEYS[2], k) == ARGV[1] and redis.call('ZSCORE', KEYS[1], k) then
        redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), k)
        redis.call('HDEL', KEYS[2], k)
        n = n + 1
    end
end
redis.call('DEL', KEYS[3])
return n
"""

# KEYS: queue, items, owner, mine, done, held, decisions, undo; ARGV: key, moderator, label, now, due, depth
# (the item stays in ``items`` until published, for undo; the decision's JSON is put together as text, since
# cjson would turn an empty list of the candidate into an object and round its numbers)
_DECIDE = """
local k, me = ARGV[1], ARGV[2]
if redis.call('HGET', KEYS[3], k) ~= me or not redis.call('ZSCORE', KEYS[1], k) then return false end
local item = redis.call('HGET', KEYS[2], k)
redis.call('ZREM', KEYS[1], k)
redis.call('HDEL', KEYS[3], k)
redis.call('ZREM', KEYS[4], k)
redis.call('SADD', KEYS[5], k)
local d = '{"item":' .. item .. ',"moderator":' .. cjson.encode(me) .. ',"label":' .. ARGV[3] ..
          ',"decided_at":' .. ARGV[4] .. ',"due":' .. ARGV[5] .. '}'
redis.call('ZADD', KEYS[6], tonumber(ARGV[5]), k)
redis.call('HSET', KEYS[7], k, d)
redis.call('LPUSH', KEYS[8], k)
redis.call('LTRIM', KEYS[8], 0, tonumber(ARGV[6]) - 1)
return d
"""

# KEYS: queue, items, owner, mine, done, held, decisions, undo; ARGV: moderator, now, lease seconds
_UNDO = """
local me, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
while true do
    local k = redis.call('LPOP', KEYS[8])
    if not k then return false end
    local raw = redis.call('HGET', KEYS[7], k)
    if raw then
        local d = cjson.decode(raw)
        if d['moderator'] == me then
            if tonumber(d['due']) <= now then
                redis.call('DEL', KEYS[8])
                return false
            end
            redis.call('ZREM', KEYS[6], k)
            redis.call('HDEL', KEYS[7], k)
            redis.call('SREM', KEYS[5], k)
            local item = redis.call('HGET', KEYS[2], k)
            redis.call('ZADD', KEYS[1], now + ttl, k)
            redis.call('HSET', KEYS[3], k, me)
            redis.call('ZADD', KEYS[4], -now, k)
            return item
        end
    end
end
"""

# KEYS: held, decisions; ARGV: now, publish lease, limit
_DUE = """
local now = tonumber(ARGV[1])
local out = {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
    local d = redis.call('HGET', KEYS[2], k)
    if d then
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), k)
        out[#out + 1] = d
    else
        redis.call('ZREM', KEYS[1], k)
    end
end
return out
"""

# KEYS: queue, items, owner, done, held, then the "mine" set of each moderator named in ARGV; ARGV: the number M
# of moderators, their names (in the order of their KEYS), then the candidate keys. The caller read the owners
# first; if one changed meanwhile to a moderator not passed, nothing is changed and -1 asks it to read again
# (so every key the script touches is declared: one hash slot on a cluster, {console}).
_ANSWERED = """
local m_count = tonumber(ARGV[1])
local mine = {}
for i = 1, m_count do mine[ARGV[1 + i]] = KEYS[5 + i] end
for i = 2 + m_count, #ARGV do
    local m = redis.call('HGET', KEYS[3], ARGV[i])
    if m and not mine[m] and not redis.call('ZSCORE', KEYS[5], ARGV[i]) and redis.call('ZSCORE', KEYS[1], ARGV[i]) then
        return -1
    end
end
local n = 0
for i = 2 + m_count, #ARGV do
    local k = ARGV[i]
    if not redis.call('ZSCORE', KEYS[5], k) then
        if redis.call('ZSCORE', KEYS[1], k) then
            redis.call('ZREM', KEYS[1], k)
            redis.call('HDEL', KEYS[2], k)
            local m = redis.call('HGET', KEYS[3], k)
            if m then
                redis.call('ZREM', mine[m], k)
                redis.call('HDEL', KEYS[3], k)
            end
            n = n + 1
        end
        redis.call('SADD', KEYS[4], k)
    end
end
return n
"""


class RedisReviewQueue:
    """:class:`~stream_app.console.queue.ReviewQueue` over a ``redis.asyncio.Redis`` (``decode_responses=True``)."""

    SCAN_LIMIT = 2_000   # free candidates looked at per lease call at most (the moderator's skipped ones are passed over)

    def __init__(self, redis, prefix: str = "synapse:", lease_seconds: float = 120.0,
                 grace_seconds: float = 10.0) -> None:
        self.r = redis
        # "/" is never in a detector name: no clash with the workers' keys; on a Redis Cluster every key here
        # carries the hash tag {console} (one slot: the scripts move candidates between these keys)
        self.p = RedisKeys.for_client(redis, prefix).console("")
        self.lease_seconds = float(lease_seconds)
        self.grace_seconds = float(grace_seconds)
        self._scripts = {name: redis.register_script(src) for name, src in (
            ("add", _ADD), ("lease", _LEASE), ("skip", _SKIP), ("release", _RELEASE), ("decide", _DECIDE),
            ("undo", _UNDO), ("due", _DUE), ("answered", _ANSWERED))}

    def k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    async def add(self, items: Sequence[ReviewItem], now: float) -> int:
        if not items:
            return 0
        n = 0
        for i in range(0, len(items), 500):
            argv: list = [now - (len(items) - n) * 0.00001]   # the last one free at ``now``
            for it in items[i:i + 500]:
                argv += [it.key, it.to_json()]
            n += int(await self._scripts["add"](keys=[self.k("queue"), self.k("items"), self.k("done"),
                                                      self.k("decisions")], args=argv))
        return n

    async def lease(self, moderator: str, n: int, now: float, detectors: Iterable[str] | None = None) -> list[Lease]:
        want = "" if detectors is None else json.dumps(sorted(detectors))
        raw = await self._scripts["lease"](
            keys=[self.k("queue"), self.k("items"), self.k("owner"), self.k("mine", moderator),
                  self.k("skipped", moderator)],
            args=[now, self.lease_seconds, int(n), moderator, self.SCAN_LIMIT, want])
        exp = now + self.lease_seconds
        return [Lease(ReviewItem.from_json(raw[i + 1]), moderator, exp) for i in range(0, len(raw), 2)]

    async def skip(self, moderator: str, key: str, now: float) -> bool:
        return bool(await self._scripts["skip"](
            keys=[self.k("queue"), self.k("owner"), self.k("mine", moderator), self.k("skipped", moderator)],
            args=[key, moderator, now]))

    async def release(self, moderator: str, now: float) -> int:
        return int(await self._scripts["release"](
            keys=[self.k("queue"), self.k("owner"), self.k("mine", moderator)], args=[moderator, now]))

    def _decision_keys(self, moderator: str) -> list[str]:
        return [self.k("queue"), self.k("items"), self.k("owner"), self.k("mine", moderator), self.k("done"),
                self.k("held"), self.k("decisions"), self.k("undo", moderator)]

    async def decide(self, moderator: str, key: str, label: int, now: float) -> Decision | None:
        if label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {label!r}")
        raw = await self._scripts["decide"](keys=self._decision_keys(moderator),
                                            args=[key, moderator, int(label), now, now + self.grace_seconds,
                                                  UNDO_DEPTH])
        return Decision.from_json(raw) if raw else None

    async def undo(self, moderator: str, now: float) -> ReviewItem | None:
        raw = await self._scripts["undo"](keys=self._decision_keys(moderator), args=[moderator, now, self.lease_seconds])
        return ReviewItem.from_json(raw) if raw else None

    async def due(self, now: float, limit: int = 500) -> list[Decision]:
        raw = await self._scripts["due"](keys=[self.k("held"), self.k("decisions")], args=[now, PUBLISH_LEASE, limit])
        return [Decision.from_json(d) for d in raw]

    async def published(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zrem(self.k("held"), *keys)
            pipe.hdel(self.k("decisions"), *keys)
            pipe.hdel(self.k("items"), *keys)
            await pipe.execute()

    async def answered(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        keys = list(keys)
        for _ in range(10):   # a lease taken between the read and the script by a moderator not read: read again
            owners = sorted({m for m in await self.r.hmget(self.k("owner"), keys) if m is not None})
            n = int(await self._scripts["answered"](
                keys=[self.k("queue"), self.k("items"), self.k("owner"), self.k("done"), self.k("held"),
                      *(self.k("mine", m) for m in owners)],
                args=[len(owners), *owners, *keys]))
            if n >= 0:
                return n
        raise RuntimeError("the review queue's owners kept changing while answered candidates were removed")

    async def stats(self, now: float) -> QueueStats:
        queued: dict[str, int] = {}
        leased: dict[str, int] = {}
        async for k, score in self.r.zscan_iter(self.k("queue")):
            det = split_key(k)[0]
            queued[det] = queued.get(det, 0) + 1
            if score > now:
                leased[det] = leased.get(det, 0) + 1
        return QueueStats(queued, leased, int(await self.r.zcard(self.k("held"))))

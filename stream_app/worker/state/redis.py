"""The shared state in Redis (the production implementation of :class:`~stream_app.worker.state.base.State`):
what must be common to all workers and survive any one of them. One class per store (posts, held labels,
claims, workers, verdicts, seeds, round sources, rate budget, models) over one client and one key prefix.

Keys (``P`` = the configured ``redis_prefix``, ``D`` = a detector name). On a Redis Cluster (``redis_cluster``) the
braces of ``{D}`` are part of the name, the hash tag that keeps a detector's keys on one slot, and the post map
and held labels (``Ppost-partition``, ``Pposts-seen``, ``Pheld-labels``, ``Pheld-labels:lease``) are named
``P{posts}:post-partition`` etc.; on one Redis the names have no braces (:mod:`stream_app.worker.state.keys`).
Every Lua script declares all its keys in ``KEYS``, and they share one slot:

=============================  =====================================================================
``P{D}:queried``               SET of post ids ever sent to the oracle (SADD = atomic claim: never twice)
``P{D}:inflight``              HASH post id -> "owner|candidate JSON" from claim until the broker acked it
``P{D}:audited``               SET of post ids sent to the oracle as audits (a uniform sample, reason "audit")
``P{D}:audit-ledger``          HASH post id -> audit verdict (kept out of the detector's ledger and precision)
``Pworker:<id>``               STRING with a TTL: a worker's heartbeat (its in-flight claims are orphans once it expires)
``P{D}:ledger``                HASH post id -> latest verdict JSON (the latest verdict wins)
``P{D}:verdicts``              STREAM of every verdict received, conflicting ones included (audit trail)
``P{D}:seeds``                 HASH seed id -> seed JSON (text, origin, unit vector as base64 float32)
``P{D}:counters``              HASH queried / answered / positives / duplicates_ignored ...
``P{D}:truth_positives``       STRING, set only by a replay (evaluation) oracle: enables true recall
``Pseedlog``                   STREAM of seed events (every detector) that every worker reads: broadcast
``Ppost-partition``            HASH post id -> partition holding it (verdict routing), while the post is in the window
``Pposts-seen``                STRING count of posts ever recorded (the query-ratio denominator; never decreases)
``P{D}:parked``                HASH post id -> vector and text of a candidate that left the window unanswered
``P{D}:sources``               HASH post id -> candidate source of a round ("ibg", "gble", "model")
``P{D}:source-counters``       HASH "<source>:queried" / "<source>:answered" / "<source>:positives"
``P{D}:rate``                  HASH minute -> candidates sent (the per-hour rate budget; minutes older than an hour removed)
``P{D}:labelled-vectors``      HASH post id -> unit vector (base64 float32) of every post with a verdict (the classifier's training set)
``P{D}:model``                 STRING the current classifier version (JSON, ``ModelVersion.to_dict``)
``P{D}:model-version``         STRING counter of classifier versions
``P{D}:seeds-arriving``        STRING with a TTL: an uploaded seed set is still being embedded (rounds wait for it)
``P{D}:model-key``             STRING what the current version was trained on (verdict counters, seeds): no worker retrains it
``P{D}:models``                LIST one JSON summary per version (CV precision/recall, training rows; no weights)
=============================  =====================================================================
"""
from __future__ import annotations

import json
import time
from typing import Iterable, Sequence

import numpy as np

from stream_app.worker.state.keys import RedisKeys
from stream_app.worker.state.base import State, vec_from_b64, vec_to_b64, verdict_change
from synapse_stream.messages import LabelMsg


class _Store:
    """One store: the shared client and the key names (:class:`~stream_app.worker.state.keys.RedisKeys`)."""

    def __init__(self, redis, prefix: str | RedisKeys) -> None:
        self.r = redis  # a redis.asyncio.Redis or RedisCluster with decode_responses=True
        self.keys = prefix if isinstance(prefix, RedisKeys) else RedisKeys.for_client(redis, prefix)
        self.p = self.keys.p

    def k(self, *parts: str) -> str:
        """A key used alone (heartbeats, locks, the seed log)."""
        return self.keys.plain(*parts)

    def dk(self, detector: str, *parts: str) -> str:
        """A detector's key (tagged with the detector on a cluster)."""
        return self.keys.detector(detector, *parts)

    def pk(self, *parts: str) -> str:
        """A key of the post map / held labels (tagged ``{posts}`` on a cluster)."""
        return self.keys.posts(*parts)


class RedisPosts(_Store):
    """``Ppost-partition``, ``Pposts-seen`` and ``P{D}:parked``."""

    # One round trip, atomic: record where the posts are and count the ones never seen before (HSET returns
    # how many fields are new). A deployment from before the counter starts it at the map's size.
    _RECORD = """
    if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], redis.call('HLEN', KEYS[1])) end
    local new = redis.call('HSET', KEYS[1], unpack(ARGV))
    return redis.call('INCRBY', KEYS[2], new)
    """

    async def record(self, partitions: dict[str, int]) -> None:
        if not partitions:
            return
        items = list(partitions.items())
        for i in range(0, len(items), 2_000):      # Lua's unpack takes a few thousand values at most
            argv = [x for pid, part in items[i:i + 2_000] for x in (pid, int(part))]
            await self.r.eval(self._RECORD, 2, self.pk("post-partition"), self.pk("posts-seen"), *argv)

    async def partition_of(self, post_id: str) -> int | None:
        v = await self.r.hget(self.pk("post-partition"), post_id)
        return int(v) if v is not None else None

    async def total(self) -> int:
        v = await self.r.get(self.pk("posts-seen"))
        return int(v) if v is not None else int(await self.r.hlen(self.pk("post-partition")))

    async def forget(self, post_ids: Sequence[str]) -> None:
        """Posts that left the window: no verdict will be routed to them (their count stays in ``posts-seen``)."""
        for i in range(0, len(post_ids), 10_000):
            await self.r.hdel(self.pk("post-partition"), *post_ids[i:i + 10_000])

    async def park(self, detector: str, items: dict[str, tuple[np.ndarray, str]]) -> None:
        if items:
            await self.r.hset(self.dk(detector, "parked"), mapping={
                pid: json.dumps({"v": vec_to_b64(v), "text": t}) for pid, (v, t) in items.items()})

    async def parked(self, detector: str, post_id: str) -> tuple[np.ndarray, str] | None:
        raw = await self.r.hget(self.dk(detector, "parked"), post_id)
        if raw is None:
            return None
        doc = json.loads(raw)
        return vec_from_b64(doc["v"]), doc.get("text", "")

    async def unpark(self, detector: str, post_id: str) -> None:
        await self.r.hdel(self.dk(detector, "parked"), post_id)


class RedisHeldLabels(_Store):
    """``Pheld-labels`` (HASH id -> document) and ``Pheld-labels:lease`` (ZSET id -> leased until; 0: free)."""

    # A held label is a JSON document in the hash ``held-labels`` (by its source coordinates) and an entry in
    # the sorted set ``held-labels:lease`` whose score is the time until which a worker has taken it (0: free).
    _HOLD = """
    if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
    if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    redis.call('ZADD', KEYS[2], 0, ARGV[1])
    return 1
    """
    # Take (lease) every free held label whose post has arrived or whose hold has expired; one call, atomic,
    # so each label goes to exactly one worker. The taker drops it once its verdict or dead letter is sent
    # (drop); if the taker dies first, the lease runs out and another worker takes it.
    _TAKE = """
    local now, lease, out = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
    local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
    for _, id in ipairs(ids) do
        local doc = redis.call('HGET', KEYS[1], id)
        if not doc then
            redis.call('ZREM', KEYS[2], id)
        else
            local d = cjson.decode(doc)
            local part = redis.call('HGET', KEYS[3], d['post_id'])
            if part or tonumber(d['expires']) <= now then
                redis.call('ZADD', KEYS[2], now + lease, id)
                out[#out + 1] = doc
                out[#out + 1] = part or ''
            end
        end
    end
    return out
    """

    async def hold(self, doc: dict, expires: float, max_held: int) -> bool:
        """Hold a label (``doc`` from ``service.held_label_doc``) until ``expires``; False if ``max_held`` are held."""
        doc = {**doc, "expires": expires}
        ok = await self.r.eval(self._HOLD, 2, self.pk("held-labels"), self.pk("held-labels", "lease"), doc["id"],
                               json.dumps(doc), max_held)
        return bool(ok)

    async def take(self, now: float, lease: float = 60.0, count: int = 10_000) -> list[tuple[dict, int | None]]:
        """``(doc, partition)`` of the held labels whose post arrived (partition known) or whose hold expired
        (partition None), leased to the caller for ``lease`` seconds."""
        raw = await self.r.eval(self._TAKE, 3, self.pk("held-labels"), self.pk("held-labels", "lease"),
                                self.pk("post-partition"), now, lease, count)
        return [(json.loads(raw[i]), int(raw[i + 1]) if raw[i + 1] != "" else None) for i in range(0, len(raw), 2)]

    async def drop(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(self.pk("held-labels"), *ids)
            pipe.zrem(self.pk("held-labels", "lease"), *ids)
            await pipe.execute()

    async def count(self) -> int:
        return int(await self.r.hlen(self.pk("held-labels")))


class RedisClaims(_Store):
    """``P{D}:queried``, ``P{D}:audited``, ``P{D}:inflight`` and the ``queried`` / ``audited`` counters."""

    def __init__(self, redis, prefix: str, workers: RedisWorkers) -> None:
        super().__init__(redis, prefix)
        self.workers = workers

    # Atomic per detector: claim each post (SADD) and, where this call is the first, record the candidate
    # message as in flight (owner worker + message) and count it. KEYS: the detector's queried, audited, inflight
    # and counters (one hash slot: the detector's tag); ARGV: per item the set (1 queried, 2 audited), post, owner,
    # message.
    _CLAIM = """
    local out = {}
    local names = {'queried', 'audited'}
    for i = 1, #ARGV, 4 do
        local which, pid, owner, msg = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
        local first = redis.call('SADD', KEYS[which], pid)
        if first == 1 then
            if msg ~= '' then
                redis.call('HSET', KEYS[3], pid, owner .. '|' .. msg)
            end
            redis.call('HINCRBY', KEYS[4], names[which], 1)
        end
        out[#out + 1] = first
    end
    return out
    """
    _SETS = {"queried": 1, "audited": 2}

    async def claim_many(self, items: Sequence[tuple[str, str]], owner: str = "-",
                         messages: Sequence[bytes | str] | None = None,
                         sets: Sequence[str] | None = None) -> list[bool]:
        """Claim ``(detector, post_id)`` pairs for the oracle; True where this call was first.

        ``sets``: per item, ``queried`` (a detector candidate, the default) or ``audited`` (an audit).
        A first claim with a message also records it under ``P{D}:inflight`` with its ``owner`` (a
        worker id) until :meth:`sent` confirms the broker acknowledged it, so a worker that dies in
        between leaves a trace that :meth:`orphans` hands to another worker. An empty message claims
        without sending (the detector re-using an audit verdict). One script per detector (its keys share a
        hash slot), all in one pipelined round trip.
        """
        if not items:
            return []
        by_det: dict[str, tuple[list[int], list]] = {}
        for i, (det, pid) in enumerate(items):
            msg = messages[i] if messages is not None else b""
            which = self._SETS.get(sets[i] if sets is not None else "queried")
            if which is None:
                raise ValueError(f"a claim's set is 'queried' or 'audited', got {sets[i]!r}")
            idx, argv = by_det.setdefault(det, ([], []))
            idx.append(i)
            argv += [which, pid, owner, msg.decode("utf-8") if isinstance(msg, bytes) else msg]
        out = [False] * len(items)
        async with self.r.pipeline(transaction=False) as pipe:
            for det, (_idx, argv) in by_det.items():
                pipe.eval(self._CLAIM, 4, self.dk(det, "queried"), self.dk(det, "audited"), self.dk(det, "inflight"),
                          self.dk(det, "counters"), *argv)
            results = await pipe.execute()
        for (idx, _argv), res in zip(by_det.values(), results):
            for i, x in zip(idx, res):
                out[i] = bool(x)
        return out

    async def sent(self, items: Sequence[tuple[str, str]]) -> None:
        """The broker acknowledged these candidates: they are no longer in flight."""
        if not items:
            return
        async with self.r.pipeline(transaction=False) as pipe:
            for det, pid in items:
                pipe.hdel(self.dk(det, "inflight"), pid)
            await pipe.execute()

    async def inflight(self, detector: str) -> dict[str, tuple[str, str]]:
        raw = await self.r.hgetall(self.dk(detector, "inflight"))
        return {pid: tuple(v.split("|", 1)) for pid, v in raw.items()}

    async def orphans(self, detector: str, me: str) -> dict[str, str]:
        """In-flight candidates whose owner is dead (no heartbeat) or is this worker's earlier life."""
        out = {}
        owners: dict[str, bool] = {}
        for pid, (owner, msg) in (await self.inflight(detector)).items():
            if owner == me:
                continue
            if owner not in owners:
                owners[owner] = await self.workers.alive(owner)
            if not owners[owner]:
                out[pid] = msg
        return out

    async def queried(self, detector: str) -> set[str]:
        return set(await self.r.smembers(self.dk(detector, "queried")))

    async def audited(self, detector: str) -> set[str]:
        return set(await self.r.smembers(self.dk(detector, "audited")))


class RedisWorkers(_Store):
    """``Pworker:<id>`` (heartbeats) and ``Plock:<name>``, both with a time to live."""

    async def heartbeat(self, worker_id: str, ttl: float = 15.0) -> None:
        await self.r.set(self.k("worker", worker_id), str(time.time()), px=int(ttl * 1000))

    async def alive(self, worker_id: str) -> bool:
        return bool(await self.r.exists(self.k("worker", worker_id)))

    async def lock(self, name: str, owner: str, ttl: float = 60.0) -> bool:
        return bool(await self.r.set(self.k("lock", name), owner, nx=True, px=int(ttl * 1000)))

    async def unlock(self, name: str, owner: str) -> None:
        if await self.r.get(self.k("lock", name)) == owner:
            await self.r.delete(self.k("lock", name))


class RedisVerdicts(_Store):
    """``P{D}:ledger``, ``P{D}:verdicts`` (history), ``P{D}:counters``, ``P{D}:audit-ledger``,
    ``P{D}:truth_positives``."""

    async def record(self, msg: LabelMsg) -> tuple[int | None, int]:
        """Append to the history stream and update the ledger; returns ``(previous, effective)`` labels.

        Precedence: a human verdict always wins over an LLM's (labelers ``llm:<model>``): an LLM verdict
        arriving after a human one is kept in the history but does not change the ledger. Otherwise
        the latest verdict wins.
        """
        entry = {"label": msg.label, "labeler": msg.labeler, "ts": msg.ts, "received_at": time.time()}
        ledger = self.dk(msg.detector, "ledger")
        prev_raw = await self.r.hget(ledger, msg.post_id)
        prev, overruled, deltas = verdict_change(json.loads(prev_raw) if prev_raw else None, msg)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dk(msg.detector, "verdicts"),
                      {"post_id": msg.post_id, **{k: json.dumps(v) for k, v in entry.items()}})
            if not overruled:
                pipe.hset(ledger, msg.post_id, json.dumps(entry))
            for name, n in deltas.items():
                pipe.hincrby(self.dk(msg.detector, "counters"), name, n)
            await pipe.execute()
        return prev, (prev if overruled else msg.label)

    async def ledger(self, detector: str) -> dict[str, int]:
        raw = await self.r.hgetall(self.dk(detector, "ledger"))
        return {pid: json.loads(v)["label"] for pid, v in raw.items()}

    async def labels_of(self, detector: str, post_ids: Sequence[str]) -> dict[str, int]:
        if not post_ids:
            return {}
        vals = await self.r.hmget(self.dk(detector, "ledger"), list(post_ids))
        return {pid: json.loads(v)["label"] for pid, v in zip(post_ids, vals) if v is not None}

    async def history(self, detector: str) -> list[dict]:
        out = []
        for _id, fields in await self.r.xrange(self.dk(detector, "verdicts")):
            out.append({"post_id": fields["post_id"], **{k: json.loads(v) for k, v in fields.items() if k != "post_id"}})
        return out

    async def counters(self, detector: str) -> dict[str, int]:
        raw = await self.r.hgetall(self.dk(detector, "counters"))
        return {k: int(v) for k, v in raw.items()}

    async def record_audit(self, msg: LabelMsg) -> None:
        """An audit verdict: kept apart from the detector's ledger (it never counts in its precision)."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dk(msg.detector, "verdicts"), {"post_id": msg.post_id, "label": json.dumps(msg.label),
                                                         "labeler": json.dumps(msg.labeler), "audit": "1",
                                                         "ts": json.dumps(msg.ts), "received_at": json.dumps(time.time())})
            pipe.hset(self.dk(msg.detector, "audit-ledger"), msg.post_id, msg.label)
            await pipe.execute()

    async def audit_ledger(self, detector: str) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.r.hgetall(self.dk(detector, "audit-ledger"))).items()}

    async def set_truth_positives(self, detector: str, n: int) -> None:
        await self.r.set(self.dk(detector, "truth_positives"), int(n))

    async def truth_positives(self, detector: str) -> int | None:
        v = await self.r.get(self.dk(detector, "truth_positives"))
        return int(v) if v is not None else None


class RedisSeeds(_Store):
    """``P{D}:seeds``, ``Pseedlog`` (the broadcast) and ``P{D}:seeds-arriving``."""

    async def register(self, detector: str, seed_id: str, origin: str, text: str, vector: np.ndarray) -> bool:
        """Add a seed to the registry and the broadcast log; False if the id was already registered."""
        doc = {"detector": detector, "id": seed_id, "origin": origin, "text": text, "vector": vec_to_b64(vector)}
        if not await self.r.hsetnx(self.dk(detector, "seeds"), seed_id, json.dumps(doc)):
            return False
        await self.r.xadd(self.k("seedlog"), {"doc": json.dumps(doc)})
        return True

    async def all(self, detector: str) -> list[dict]:
        return [json.loads(v) for v in (await self.r.hgetall(self.dk(detector, "seeds"))).values()]

    async def read_log(self, last_id: str = "0", block_ms: int | None = 1000, count: int = 500):
        """New seed events after ``last_id``: ``[(entry_id, doc), ...]`` (waits up to ``block_ms``)."""
        res = await self.r.xread({self.k("seedlog"): last_id}, count=count, block=block_ms)
        out = []
        for _stream, entries in res or []:
            for entry_id, fields in entries:
                doc = json.loads(fields["doc"])
                doc["vector"] = vec_from_b64(doc["vector"])
                out.append((entry_id, doc))
        return out

    async def arriving(self, detector: str, seconds: float) -> None:
        """Seeds for ``detector`` are being embedded or were just registered: rounds wait ``seconds``."""
        await self.r.set(self.dk(detector, "seeds-arriving"), "1", px=max(1, int(seconds * 1000)))

    async def settled(self, detector: str) -> bool:
        return not await self.r.exists(self.dk(detector, "seeds-arriving"))


class RedisRoundSources(_Store):
    """``P{D}:sources`` and ``P{D}:source-counters``."""

    async def record(self, detector: str, sources: dict[str, str]) -> None:
        """Posts a round sent, with their source (claimed ones only)."""
        if not sources:
            return
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(self.dk(detector, "sources"), mapping=sources)
            for src in sources.values():
                pipe.hincrby(self.dk(detector, "source-counters"), f"{src}:queried", 1)
            await pipe.execute()

    async def all(self, detector: str) -> dict[str, str]:
        return await self.r.hgetall(self.dk(detector, "sources"))

    async def source_of(self, detector: str, post_id: str) -> str | None:
        return await self.r.hget(self.dk(detector, "sources"), post_id)

    async def count_verdict(self, detector: str, source: str, label: int) -> None:
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hincrby(self.dk(detector, "source-counters"), f"{source}:answered", 1)
            pipe.hincrby(self.dk(detector, "source-counters"), f"{source}:positives", int(label))
            await pipe.execute()

    async def counters(self, detector: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for key, v in (await self.r.hgetall(self.dk(detector, "source-counters"))).items():
            src, _, what = key.partition(":")
            out.setdefault(src, {})[what] = int(v)
        return out


class RedisRateBudget(_Store):
    """``P{D}:rate``: candidates per minute over the last hour; a grant is read, capped and counted atomically."""

    # KEYS[1] the hash; ARGV: the current minute, the candidates wanted, the hourly cap (-1: none, only count).
    # Returns {granted, spent in the last hour including the grant}.
    _RESERVE = """
    local minute = tonumber(ARGV[1])
    local used = 0
    local h = redis.call('HGETALL', KEYS[1])
    for i = 1, #h, 2 do
      if tonumber(h[i]) <= minute - 60 then redis.call('HDEL', KEYS[1], h[i]) else used = used + tonumber(h[i + 1]) end
    end
    local grant = tonumber(ARGV[2])
    local cap = tonumber(ARGV[3])
    if cap >= 0 then grant = math.max(0, math.min(grant, cap - used)) end
    if grant ~= 0 then
      redis.call('HINCRBY', KEYS[1], ARGV[1], grant)
      redis.call('EXPIRE', KEYS[1], 7200)
    end
    return {grant, used + grant}
    """

    @staticmethod
    def _minute(now: float | None) -> int:
        return int((time.time() if now is None else now) // 60)

    async def reserve(self, detector: str, n: int, per_hour: int | None, now: float | None = None) -> int:
        cap = -1 if per_hour is None else max(0, int(per_hour))
        got = await self.r.eval(self._RESERVE, 1, self.dk(detector, "rate"), self._minute(now), int(n), cap)
        return int(got[0])

    async def refund(self, detector: str, n: int, now: float | None = None) -> None:
        if n > 0:
            await self.r.eval(self._RESERVE, 1, self.dk(detector, "rate"), self._minute(now), -int(n), -1)

    async def spent(self, detector: str, now: float | None = None) -> int:
        return int((await self.r.eval(self._RESERVE, 1, self.dk(detector, "rate"), self._minute(now), 0, -1))[1])


class RedisModels(_Store):
    """``P{D}:labelled-vectors``, ``P{D}:model``, ``P{D}:model-version``, ``P{D}:model-key``, ``P{D}:models``."""

    async def store_vectors(self, detector: str, vectors: dict[str, np.ndarray]) -> None:
        if vectors:
            await self.r.hset(self.dk(detector, "labelled-vectors"),
                              mapping={pid: vec_to_b64(v) for pid, v in vectors.items()})

    async def vectors(self, detector: str) -> dict[str, np.ndarray]:
        raw = await self.r.hgetall(self.dk(detector, "labelled-vectors"))
        return {pid: vec_from_b64(v) for pid, v in raw.items()}

    async def next_version(self, detector: str) -> int:
        return int(await self.r.incr(self.dk(detector, "model-version")))

    async def publish(self, detector: str, doc: dict, summary: dict, key: list | None = None) -> None:
        """Make ``doc`` the detector's current classifier, unless a newer version is already current.
        ``key``: what it was trained on (counters and seeds), so other workers do not train it again."""
        cur = await self.current(detector)
        if cur is not None and int(cur["version"]) >= int(doc["version"]):
            return
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.set(self.dk(detector, "model"), json.dumps(doc))
            pipe.rpush(self.dk(detector, "models"), json.dumps(summary))
            if key is not None:
                pipe.set(self.dk(detector, "model-key"), json.dumps(key))
            await pipe.execute()

    async def key(self, detector: str) -> list | None:
        raw = await self.r.get(self.dk(detector, "model-key"))
        return json.loads(raw) if raw else None

    async def current(self, detector: str) -> dict | None:
        raw = await self.r.get(self.dk(detector, "model"))
        return json.loads(raw) if raw else None

    async def history(self, detector: str) -> list[dict]:
        return [json.loads(v) for v in await self.r.lrange(self.dk(detector, "models"), 0, -1)]


def redis_client(settings, **overrides):
    """The asyncio client for ``settings.redis_url`` (``decode_responses=True``): a ``RedisCluster`` when
    ``settings.redis_cluster`` (the URL names any one node; the client finds the others and follows the slots),
    else a ``Redis``. Used by the worker, the console and the CLI alike."""
    kw = dict(decode_responses=True, health_check_interval=10, socket_timeout=10, socket_connect_timeout=5,
              **settings.redis_kwargs())
    kw.update(overrides)
    if getattr(settings, "redis_cluster", False):
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url, **kw)
    import redis.asyncio as aioredis

    return aioredis.from_url(settings.redis_url, retry_on_timeout=True, **kw)


class RedisState(State):
    """Every store over one ``redis.asyncio.Redis`` or ``RedisCluster`` client (``decode_responses=True``) and one
    key prefix; on a cluster client the keys carry hash tags (:mod:`stream_app.worker.state.keys`)."""

    def __init__(self, redis, prefix: str = "synapse:", keys: RedisKeys | None = None) -> None:
        self.r = redis
        self.p = prefix
        # hash-tagged names on a cluster client, the single-node names otherwise (``keys``: another choice)
        self.keys = keys if keys is not None else RedisKeys.for_client(redis, prefix)
        prefix = self.keys
        self.posts = RedisPosts(redis, prefix)
        self.held = RedisHeldLabels(redis, prefix)
        self.workers = RedisWorkers(redis, prefix)
        self.claims = RedisClaims(redis, prefix, self.workers)
        self.verdicts = RedisVerdicts(redis, prefix)
        self.seeds = RedisSeeds(redis, prefix)
        self.rounds = RedisRoundSources(redis, prefix)
        self.rate = RedisRateBudget(redis, prefix)
        self.models = RedisModels(redis, prefix)

    @classmethod
    def from_settings(cls, settings) -> "RedisState":
        return cls(redis_client(settings), settings.redis_prefix)

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def close(self) -> None:
        await self.r.aclose()

    async def wipe(self, detectors: Iterable[str]) -> None:
        """Delete this prefix's keys (tests and demo only)."""
        keys = [k async for k in self.r.scan_iter(match=self.p + "*")]
        if keys:
            await self.r.delete(*keys)

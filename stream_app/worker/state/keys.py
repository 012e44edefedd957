"""Redis key names of the shared state, for one Redis or a Redis Cluster.

On a Redis Cluster every Lua script, MULTI/EXEC transaction and multi-key command must touch keys of one hash
slot. Keys that are updated together therefore share a *hash tag* (the part of a key between the first ``{`` and
the next ``}``, the only part Redis hashes when present):

* a detector's keys carry the detector's name as tag: ``P{D}:ledger``, ``P{D}:verdicts``, ``P{D}:counters`` ...
  (a detector's claims, verdicts and classifier live on one slot; detectors spread over the cluster);
* the post map and the held labels, which the label-hold scripts read together, carry ``{posts}``:
  ``P{posts}:post-partition``, ``P{posts}:posts-seen``, ``P{posts}:held-labels``, ``P{posts}:held-labels:lease``;
* the console's keys (review queue, sessions, records) carry ``{console}``: ``P{console}/queue`` ...;
* keys always used alone (heartbeats ``Pworker:<id>``, locks ``Plock:<name>``, the seed log ``Pseedlog``) have no
  tag and land wherever their name hashes.

On one Redis (``tags=False``, the default for a plain client) the names stay those of earlier releases, without
braces (``P<D>:ledger``, ``Ppost-partition``, ``Pconsole/queue``), so an existing deployment keeps its state.
Moving a deployment onto a cluster starts from fresh state or copies the keys under their tagged names
(docs/redis-cluster.md).

>>> k = RedisKeys("synapse:", tags=True)
>>> k.detector("scam", "ledger"), k.posts("held-labels", "lease"), k.plain("worker", "w1"), k.console("queue")
('synapse:{scam}:ledger', 'synapse:{posts}:held-labels:lease', 'synapse:worker:w1', 'synapse:{console}/queue')
>>> k = RedisKeys("synapse:", tags=False)
>>> k.detector("scam", "ledger"), k.posts("held-labels", "lease"), k.plain("worker", "w1"), k.console("queue")
('synapse:scam:ledger', 'synapse:held-labels:lease', 'synapse:worker:w1', 'synapse:console/queue')
"""
from __future__ import annotations

#: the hash tag of the post map and the held labels (tagged mode)
POSTS_TAG = "posts"
#: the hash tag of every console key (tagged mode)
CONSOLE_TAG = "console"


def is_cluster_client(client) -> bool:
    """True for a ``redis.asyncio.cluster.RedisCluster`` (or its sync twin): its keys need hash tags."""
    try:
        from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
        from redis.cluster import RedisCluster
    except ImportError:   # pragma: no cover - redis is a dependency
        return False
    return isinstance(client, (AsyncRedisCluster, RedisCluster))


class RedisKeys:
    """Key names under one prefix; ``tags``: hash-tagged names (Redis Cluster) or the single-node names."""

    def __init__(self, prefix: str, tags: bool = False) -> None:
        self.p = prefix
        self.tags = bool(tags)

    @classmethod
    def for_client(cls, client, prefix: str) -> "RedisKeys":
        """Tagged names on a cluster client, the single-node names otherwise."""
        return cls(prefix, tags=is_cluster_client(client))

    def plain(self, *parts: str) -> str:
        """A key used alone (no tag): ``P<part>:<part>...``."""
        return self.p + ":".join(parts)

    def detector(self, detector: str, *parts: str) -> str:
        """A key of one detector: ``P{D}:<parts>`` (tagged) or ``PD:<parts>``."""
        d = "{" + detector + "}" if self.tags else detector
        return self.p + ":".join((d, *parts))

    def posts(self, *parts: str) -> str:
        """A key of the post map / held labels group: ``P{posts}:<parts>`` (tagged) or ``P<parts>``."""
        return self.p + ":".join((("{" + POSTS_TAG + "}",) if self.tags else ()) + parts)

    def console(self, rest: str) -> str:
        """A console key: ``P{console}/<rest>`` (tagged) or ``Pconsole/<rest>``."""
        return self.p + ("{" + CONSOLE_TAG + "}" if self.tags else CONSOLE_TAG) + "/" + rest

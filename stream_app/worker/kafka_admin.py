"""Kafka topic administration and reading, for the worker, the CLI and the dev stack alike (aiokafka,
imported lazily): create topics, read their partition counts, read a topic to its end.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from stream_app.worker.exceptions import TopicAdminError


def _run_sync(coro_factory):
    """Run a coroutine to completion from sync code, even if a loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    result: dict[str, Any] = {}

    def runner() -> None:
        try:
            result["value"] = asyncio.run(coro_factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    t = threading.Thread(target=runner, name="kafka-admin-sync", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    replication: int = 1,
    *,
    timeout: float = 15.0,
    configs: Optional[Mapping[str, Mapping[str, str]]] = None,
    **client: Any,
) -> dict[str, int]:
    """Create ``{name: partitions}`` topics; already-existing topics are fine. ``client``: extra aiokafka admin
    settings (security, :func:`stream_app.worker.transport.aiokafka_security`).

    Returns ``{name: partitions}`` as the broker reports them afterwards (an
    existing topic keeps its partition count). Raises TopicAdminError on any
    other CreateTopics error.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **client)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        new = [
            NewTopic(name, int(parts), int(replication), topic_configs=dict((configs or {}).get(name, {})))
            for name, parts in topics.items()
        ]
        if new:
            resp = await asyncio.wait_for(admin.create_topics(new, timeout_ms=int(timeout * 1000)), timeout)
            errors = []
            for entry in resp.topic_errors:
                name, code = entry[0], entry[1]
                msg = entry[2] if len(entry) > 2 else None
                if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
                    errors.append(f"{name}: error {code} {msg or ''}".strip())
            if errors:
                raise TopicAdminError("CreateTopics failed: " + "; ".join(errors))
        return await _describe(admin, list(topics), timeout, wait=True)
    finally:
        await admin.close()


async def _describe(admin: Any, names: Iterable[str], timeout: float, *, wait: bool = False) -> dict[str, int]:
    """``{topic: partitions}`` of the topics that exist. ``wait``: topics just created may take a moment to appear in
    the broker's metadata (Apache Kafka answers CreateTopics before that): ask again until all do, at most
    ``timeout`` seconds."""
    wanted = list(names)
    deadline = time.monotonic() + timeout
    while True:
        desc = await asyncio.wait_for(admin.describe_topics(wanted), timeout)
        out: dict[str, int] = {}
        for t in desc:
            if t.get("error_code", 0) == 0 and t.get("partitions"):
                out[t["topic"]] = len(t["partitions"])
        if not wait or len(out) == len(wanted) or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.1)


async def topic_partitions(
    bootstrap: str, names: Optional[Iterable[str]] = None, *, timeout: float = 15.0, **client: Any
) -> dict[str, int]:
    """``{topic: partition count}`` from broker metadata (all topics if *names* is None). ``client``: extra
    aiokafka admin settings (security)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **client)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        if names is None:
            names = await asyncio.wait_for(admin.list_topics(), timeout)
        return await _describe(admin, names, timeout)
    finally:
        await admin.close()


async def read_to_end(bootstrap: str, topic: str, *, timeout: float = 30.0, **client: Any) -> list:
    """Every record on ``topic`` from the beginning up to its end offsets as of the call (all partitions,
    each in offset order). ``client``: extra aiokafka consumer settings (security). Raises
    :class:`TimeoutError` if the end is not reached within ``timeout`` seconds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **client)
    await c.start()
    out: list = []
    try:
        # the cluster's metadata as the broker reports it now (``c.topics()`` does not update the consumer's own
        # view on Apache Kafka, so ``c.partitions_for_topic`` would be None there)
        cluster = await c._client.fetch_all_metadata()
        parts = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or [])]
        if not parts:
            return out
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        end = await c.end_offsets(parts)
        deadline = time.monotonic() + timeout
        for tp in parts:
            while await c.position(tp) < end[tp]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic} to its end within {timeout}s")
                out.extend(m for m in (await c.getmany(tp, timeout_ms=300)).get(tp, []) if m.offset < end[tp])
    finally:
        await c.stop()
    return out


def create_topics_sync(
    bootstrap: str,
    topics: Mapping[str, int],
    replication: int = 1,
    *,
    timeout: float = 15.0,
    configs: Optional[Mapping[str, Mapping[str, str]]] = None,
    **client: Any,
) -> dict[str, int]:
    """Blocking :func:`create_topics` (safe to call from inside a running loop's thread)."""
    return _run_sync(lambda: create_topics(bootstrap, topics, replication, timeout=timeout, configs=configs,
                                           **client))


def topic_partitions_sync(
    bootstrap: str, names: Optional[Iterable[str]] = None, *, timeout: float = 15.0, **client: Any
) -> dict[str, int]:
    """Blocking :func:`topic_partitions`."""
    return _run_sync(lambda: topic_partitions(bootstrap, names, timeout=timeout, **client))

"""The worker's shared state: one interface (:class:`State`), two implementations, ``redis.RedisState``
(production: shared by every worker, survives any one of them) and ``memory.MemoryState`` (one process;
the service's fast unit tests). ``tests/worker/test_state.py`` runs the same contract over both.

Also the one rule for verdicts (:func:`verdict_change`: a human beats an LLM, otherwise the latest wins),
which both implementations call.
"""
from __future__ import annotations

import base64
from typing import Iterable, Protocol, Sequence

import numpy as np

from synapse_stream.messages import LabelMsg


def is_llm(labeler: str) -> bool:
    """Verdicts from an LLM rater carry ``labeler = "llm:<model>"``; everything else counts as human."""
    return labeler.startswith("llm:")


def vec_to_b64(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def vec_from_b64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").copy()


def verdict_change(prev_entry: dict | None, msg: LabelMsg) -> tuple[int | None, bool, dict[str, int]]:
    """What a new verdict does to a post's ledger entry: ``(previous label, overruled, counter deltas)``.

    A human verdict always wins over an LLM's: an LLM verdict after a human one is ``overruled`` (kept in the
    history, the ledger unchanged). Otherwise the latest verdict wins.

    >>> verdict_change({"label": 1, "labeler": "moderator:ana"}, LabelMsg("d", "p", 0, "llm:gpt", None))
    (1, True, {'llm_after_human': 1})
    >>> verdict_change(None, LabelMsg("d", "p", 1, "llm:gpt", None))
    (None, False, {'answered': 1, 'positives': 1})
    >>> verdict_change({"label": 1, "labeler": "llm:gpt"}, LabelMsg("d", "p", 0, "moderator:bo", None))
    (1, False, {'positives': -1, 'overturned': 1})
    """
    prev = prev_entry["label"] if prev_entry else None
    if prev_entry is not None and is_llm(msg.labeler) and not is_llm(str(prev_entry.get("labeler", ""))):
        return prev, True, {"llm_after_human": 1}
    if prev is None:
        return prev, False, {"answered": 1, "positives": msg.label}
    if prev != msg.label:
        return prev, False, {"positives": msg.label - prev, "overturned": 1}
    return prev, False, {"repeated": 1}


class PostsStore(Protocol):
    """Where each post is (verdict routing); how many posts there are (the query-ratio denominator)."""

    async def record(self, partitions: dict[str, int]) -> None: ...
    async def partition_of(self, post_id: str) -> int | None: ...
    async def total(self) -> int: ...


class HeldLabels(Protocol):
    """Labels for posts not seen yet, held until their post arrives or the hold expires; each leased to one
    worker at a time."""

    async def hold(self, doc: dict, expires: float, max_held: int) -> bool: ...
    async def take(self, now: float, lease: float = 60.0, count: int = 10_000) -> list[tuple[dict, int | None]]: ...
    async def drop(self, ids: Sequence[str]) -> None: ...
    async def count(self) -> int: ...


class Claims(Protocol):
    """Candidates: claimed once per detector (never sent twice), in flight until the broker acknowledged
    them, orphans of dead workers; the same for audits."""

    async def claim_many(self, items: Sequence[tuple[str, str]], owner: str = "-",
                         messages: Sequence[bytes | str] | None = None,
                         sets: Sequence[str] | None = None) -> list[bool]: ...
    async def sent(self, items: Sequence[tuple[str, str]]) -> None: ...
    async def inflight(self, detector: str) -> dict[str, tuple[str, str]]: ...
    async def orphans(self, detector: str, me: str) -> dict[str, str]: ...
    async def queried(self, detector: str) -> set[str]: ...
    async def audited(self, detector: str) -> set[str]: ...


class Workers(Protocol):
    """Heartbeats (a dead worker's claims become orphans) and locks with a time to live."""

    async def heartbeat(self, worker_id: str, ttl: float = 15.0) -> None: ...
    async def alive(self, worker_id: str) -> bool: ...
    async def lock(self, name: str, owner: str, ttl: float = 60.0) -> bool: ...
    async def unlock(self, name: str, owner: str) -> None: ...


class Verdicts(Protocol):
    """The ledger (latest verdict per post, by :func:`verdict_change`), the history of every verdict, the
    counters, audit verdicts (kept apart) and, for evaluation runs only, the true number of positives."""

    async def record(self, msg: LabelMsg) -> tuple[int | None, int]: ...
    async def ledger(self, detector: str) -> dict[str, int]: ...
    async def labels_of(self, detector: str, post_ids: Sequence[str]) -> dict[str, int]: ...
    async def history(self, detector: str) -> list[dict]: ...
    async def counters(self, detector: str) -> dict[str, int]: ...
    async def record_audit(self, msg: LabelMsg) -> None: ...
    async def audit_ledger(self, detector: str) -> dict[str, int]: ...
    async def set_truth_positives(self, detector: str, n: int) -> None: ...
    async def truth_positives(self, detector: str) -> int | None: ...


class SeedRegistry(Protocol):
    """Every detector's seeds, and the seed log every worker reads (a broadcast)."""

    async def register(self, detector: str, seed_id: str, origin: str, text: str, vector: np.ndarray) -> bool: ...
    async def all(self, detector: str) -> list[dict]: ...
    async def read_log(self, last_id: str = "0", block_ms: int | None = 1000, count: int = 500): ...
    async def arriving(self, detector: str, seconds: float) -> None: ...
    async def settled(self, detector: str) -> bool: ...


class RoundSources(Protocol):
    """Which candidate source proposed each post a round sent, and each source's counts."""

    async def record(self, detector: str, sources: dict[str, str]) -> None: ...
    async def all(self, detector: str) -> dict[str, str]: ...
    async def source_of(self, detector: str, post_id: str) -> str | None: ...
    async def count_verdict(self, detector: str, source: str, label: int) -> None: ...
    async def counters(self, detector: str) -> dict[str, dict[str, int]]: ...


class Models(Protocol):
    """The classifier: its training vectors, its versions (one current, a history of summaries)."""

    async def store_vectors(self, detector: str, vectors: dict[str, np.ndarray]) -> None: ...
    async def vectors(self, detector: str) -> dict[str, np.ndarray]: ...
    async def next_version(self, detector: str) -> int: ...
    async def publish(self, detector: str, doc: dict, summary: dict, key: list | None = None) -> None: ...
    async def key(self, detector: str) -> list | None: ...
    async def current(self, detector: str) -> dict | None: ...
    async def history(self, detector: str) -> list[dict]: ...


class State(Protocol):
    """Everything the worker shares with the other workers, one store per concern (every method a coroutine)."""

    posts: PostsStore
    held: HeldLabels
    claims: Claims
    workers: Workers
    verdicts: Verdicts
    seeds: SeedRegistry
    rounds: RoundSources
    models: Models

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...
    async def wipe(self, detectors: Iterable[str]) -> None: ...

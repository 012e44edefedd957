"""What the detector pages show (:class:`DetectorReport`, built by :func:`report` from the shared state the workers
write), the console's own records (:class:`Records`: samples of each detector's numbers over time, for the chart,
and the latest detections), and :class:`Sampler`, which takes a sample of every detector periodically."""
from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Protocol

from synapse_stream.audit import RecallEstimator

SAMPLES = 2_880          # kept per detector (a day at one every 30 s)
DETECTIONS = 50          # latest detections kept per detector


@dataclass(frozen=True)
class SourceRow:
    source: str
    queried: int
    answered: int
    positives: int

    @property
    def precision(self) -> float | None:
        return self.positives / self.answered if self.answered else None


@dataclass(frozen=True)
class ModelRow:
    version: int
    cv_precision: float | None
    cv_recall: float | None
    cv_folds: int
    trained_at: float | None
    rows: int


@dataclass(frozen=True)
class DetectorReport:
    name: str
    settings: dict
    posts: int                      # posts seen by the workers (the query-ratio denominator)
    queried: int
    answered: int
    positives: int
    audit: dict | None              # recall estimate: estimate, lower, upper, audit_size, confidence (None: no audit)
    sources: list[SourceRow] = field(default_factory=list)
    model: ModelRow | None = None
    models: list[ModelRow] = field(default_factory=list)
    waiting: int = 0                # candidates in the console's queue

    @property
    def paused(self) -> bool:
        return bool(self.settings.get("paused"))

    @property
    def precision(self) -> float | None:
        return self.positives / self.answered if self.answered else None

    @property
    def query_ratio(self) -> float | None:
        return self.queried / self.posts if self.posts else None

    @property
    def budget_used(self) -> float | None:
        """Share of the oracle budget (``max_query_ratio`` of the posts seen, the rounds' limit) used; None without a
        budget or rounds (online IBG: ``d_max`` per positive bounds it instead)."""
        cap = self.settings.get("max_query_ratio")
        if not cap or not self.posts or self.settings.get("candidates") == "ibg":
            return None
        return self.queried / (float(cap) * self.posts)

    def sample(self, now: float) -> dict:
        a = self.audit or {}
        return {"t": now, "precision": self.precision, "recall": a.get("estimate"), "recall_lower": a.get("lower"),
                "recall_upper": a.get("upper"), "budget_used": self.budget_used, "answered": self.answered,
                "positives": self.positives, "cv_precision": self.model.cv_precision if self.model else None,
                "cv_recall": self.model.cv_recall if self.model else None}


def _model_row(doc: dict) -> ModelRow:
    rows = sum(int(doc.get(k) or 0) for k in ("n_seeds", "n_positives", "n_negatives", "n_provisional"))
    return ModelRow(int(doc.get("version") or 0), doc.get("cv_precision"), doc.get("cv_recall"),
                    int(doc.get("cv_folds") or 0), doc.get("trained_at"), rows)


async def report(state, name: str, settings: dict, *, confidence: float = 0.95, waiting: int = 0) -> DetectorReport:
    """A detector's numbers from the shared state (``stream_app.worker.state.State``: Redis or memory)."""
    c = await state.verdicts.counters(name)
    posts = await state.posts.total()
    queried, answered, positives = int(c.get("queried", 0)), int(c.get("answered", 0)), int(c.get("positives", 0))
    audit = None
    if float(settings.get("audit_rate") or 0) > 0:
        audits = await state.verdicts.audit_ledger(name)
        mine = await state.verdicts.labels_of(name, list(audits))
        est = RecallEstimator(confidence=confidence)
        est.set_posts(posts)
        est.set_detector(answered, positives)
        for pid, y in audits.items():
            est.update_audit(pid, y, queried_by_detector=pid in mine)
        audit = {**est.get(), "confidence": confidence}
    sources = [SourceRow(src, int(v.get("queried", 0)), int(v.get("answered", 0)), int(v.get("positives", 0)))
               for src, v in sorted((await state.rounds.counters(name)).items())]
    cur = await state.models.current(name)
    models = [_model_row(d) for d in await state.models.history(name)]
    return DetectorReport(name, settings, posts, queried, answered, positives, audit, sources,
                          _model_row(cur) if cur else None, models[-20:], waiting)


class Records(Protocol):
    async def add_sample(self, detector: str, sample: dict) -> None: ...
    async def samples(self, detector: str) -> list[dict]: ...
    async def add_detection(self, detector: str, msg: dict) -> None: ...
    async def detections(self, detector: str, n: int = 20) -> list[dict]: ...


class MemoryRecords:
    def __init__(self) -> None:
        self._samples: dict[str, deque] = defaultdict(lambda: deque(maxlen=SAMPLES))
        self._detections: dict[str, deque] = defaultdict(lambda: deque(maxlen=DETECTIONS))

    async def add_sample(self, detector: str, sample: dict) -> None:
        self._samples[detector].append(sample)

    async def samples(self, detector: str) -> list[dict]:
        return list(self._samples[detector])

    async def add_detection(self, detector: str, msg: dict) -> None:
        self._detections[detector].appendleft(msg)

    async def detections(self, detector: str, n: int = 20) -> list[dict]:
        return list(self._detections[detector])[:n]


class RedisRecords:
    """``Pconsole/samples:<detector>`` and ``Pconsole/detections:<detector>``: capped lists, newest first."""

    def __init__(self, redis, prefix: str = "synapse:") -> None:
        self.r = redis
        self.p = prefix + "console/"   # "/" is never in a detector name: no clash with the workers' keys

    async def _push(self, key: str, doc: dict, cap: int) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.lpush(key, json.dumps(doc))
            pipe.ltrim(key, 0, cap - 1)
            await pipe.execute()

    async def add_sample(self, detector: str, sample: dict) -> None:
        await self._push(f"{self.p}samples:{detector}", sample, SAMPLES)

    async def samples(self, detector: str) -> list[dict]:
        return [json.loads(v) for v in reversed(await self.r.lrange(f"{self.p}samples:{detector}", 0, -1))]

    async def add_detection(self, detector: str, msg: dict) -> None:
        await self._push(f"{self.p}detections:{detector}", msg, DETECTIONS)

    async def detections(self, detector: str, n: int = 20) -> list[dict]:
        return [json.loads(v) for v in await self.r.lrange(f"{self.p}detections:{detector}", 0, n - 1)]


class Sampler:
    """Every detector's numbers, one sample each call (the console runs it every ``console_stats_seconds``)."""

    def __init__(self, state, catalog, records: Records, confidence: float = 0.95) -> None:
        self.state, self.catalog, self.records, self.confidence = state, catalog, records, confidence

    async def sample(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        dets = await self.catalog.all()
        for name, d in dets.items():
            r = await report(self.state, name, d, confidence=self.confidence)
            await self.records.add_sample(name, r.sample(now))
        return len(dets)


def as_dict(r: DetectorReport) -> dict:
    d = asdict(r)
    d.update(precision=r.precision, query_ratio=r.query_ratio, budget_used=r.budget_used, paused=r.paused)
    return d

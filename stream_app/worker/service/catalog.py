"""The detector catalog: which detectors this worker runs, changed live from the ``detectors`` topic.

The compacted ``detectors`` topic is the source of truth (key = detector name, value = its settings as JSON, a
tombstone retires it), read whole by every worker (``stream_app/worker/detector_feed.py``), the way Kafka
Connect keeps its configuration; ``SYNAPSE_DETECTORS`` only seeds the topic on first start. What a change does:

* **create**: the detector's books are loaded from Redis (ledger, posts sent, seeds registered earlier: a
  re-created detector keeps its history), its engine and rounds are built, every seed backfills its window
  (online IBG) or the next round plans over the posts already indexed;
* **update** of ``tau``, ``d_max`` or ``candidates``: the engine (and its rounds) are rebuilt over the same books,
  windows refilled with the new values, the bandit starts from its prior; of ``k0``: the rounds are rebuilt (K0 is
  the policy's), the books and the classifier stay; of anything else: read where it is used
  (``max_query_ratio`` at the next round, ``max_candidates_per_hour`` at the next round and candidate, ``detect_threshold`` and ``audit_rate`` at the next post,
  ``oracle_mode`` and ``llm_audit_rate`` at the next candidate, ``description`` in the LLM's prompts);
* **pause / resume** (``paused``): no candidates, rounds or audits, while posts are still indexed and labels
  applied; on resume every window is refilled (a backfill over the posts that came meanwhile) and rounds plan again;
* **retire** (a tombstone): the engine, rounds, sampler and classifier leave this worker; the ledger, the verdict
  history and the seeds stay in Redis (the audit trail, and a later re-create).

A record that does not parse or validate changes nothing and becomes a dead letter (reason
``bad_detector:<field>``), sent once for all workers.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace

from pydantic import ValidationError

from stream_app.worker.service.records import ServicePart
from stream_app.worker.settings import ONLINE_TAU, DetectorSettings
from stream_app.worker.state.base import vec_from_b64
from synapse_stream.audit import AuditSampler
from synapse_stream.checkpoints import RoundCheckpoints
from synapse_stream.exceptions import MessageError
from synapse_stream.graph import GraphShares
from synapse_stream.llm_oracle import Agreement
from synapse_stream.online import Candidate, DetectorConfig, OnlineIBG
from synapse_stream.rounds import SOURCES, LiveRounds
from synapse_stream.seeds import Seed, SeedOrigin
from synapse_stream.sources import SourceParams

log = logging.getLogger("synapse.catalog")

#: settings whose change rebuilds the engine (and the rounds); ``k0`` rebuilds the rounds only
ENGINE_FIELDS = ("tau", "d_max", "candidates")
ROUNDS_FIELDS = ("k0",)


class DetectorError(MessageError):
    """A ``detectors`` record that cannot be applied (``reason`` is the dead letter's)."""


def parse_detector(key: bytes | None, value: bytes | None) -> tuple[str, DetectorSettings | None]:
    """``(name, settings)`` of one ``detectors`` record (``settings`` None: a tombstone, retire)."""
    try:
        name = (key or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise DetectorError("bad_detector:key", "the record key is not UTF-8") from None
    if not name:
        raise DetectorError("bad_detector:key", "a detectors record needs the detector name as its key")
    if value is None:
        return name, None
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        raise DetectorError("not_json", "the detector settings are not JSON") from None
    if not isinstance(doc, dict):
        raise DetectorError("bad_detector:value", "the detector settings must be a JSON object")
    doc.setdefault("name", name)
    try:
        d = DetectorSettings.model_validate(doc)
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0].get("loc", ())) or "value"
        raise DetectorError(f"bad_detector:{field}", exc.errors()[0].get("msg", "invalid")) from None
    if d.name != name:
        raise DetectorError("bad_detector:name", f"the settings name {d.name!r} differs from the key {name!r}")
    return name, d


class DetectorCatalog(ServicePart):
    """Creates, changes and retires detectors while the worker runs (see the module docstring)."""

    def build(self, d: DetectorSettings, books=None) -> None:
        """This worker's objects for ``d``: engine (over ``books``, new ones if None), rounds, sampler. Runs where
        the engines are used: in the model thread once the worker runs (so no loop there sees a dict change)."""
        svc, s = self.svc, self.svc.settings
        eng = OnlineIBG(DetectorConfig(d.name, d.tau if d.tau is not None else ONLINE_TAU, d.d_max, online=d.candidates == "ibg" and not d.paused),
                        svc.index, books)
        svc.engines[d.name] = eng
        svc.rounds.pop(d.name, None)
        if d.candidates != "ibg":   # the policy, or one of its sources alone
            svc.rounds[d.name] = LiveRounds(
                eng.books, svc.index, name=d.name, sources=SOURCES if d.candidates == "policy" else (d.candidates,),
                params=SourceParams(tau=d.tau if d.tau is not None else "auto", d_max=d.d_max, k0=d.k0, gble_k=s.gble_k,
                                    gble_ef=s.gble_ef, gble_scope=s.gble_scope,
                                    gble_iterations=s.gble_iterations), k0=d.k0)
            svc.rounds[d.name].live.shares = GraphShares(s.data_dir)   # sealed segments' graph rows, beside their snapshots
            # IBG's lists, the automatic tau, the bandit's counts: a restart goes on from them (synapse_stream.checkpoints)
            svc.rounds[d.name].keep_checkpoints(RoundCheckpoints(s.data_dir), s.snapshot_interval)
            svc.rounds[d.name].graph_first = s.graph_upkeep_posts > 0   # the scheduler grows the graph between rounds
            if d.name in svc.models:
                svc.rounds[d.name].use_model(svc.models[d.name])
        self._sampler(d)
        svc.detectors[d.name] = d
        for table in (svc.registered, svc.audited, svc.audit_labels):
            table.setdefault(d.name, set() if table is not svc.audit_labels else {})
        svc.agreement.setdefault(d.name, Agreement())

    def _sampler(self, d: DetectorSettings) -> None:
        if d.audit_rate > 0:
            self.svc.samplers[d.name] = AuditSampler(d.audit_rate, self.svc.settings.audit_salt.get_secret_value())
        else:
            self.svc.samplers.pop(d.name, None)

    async def load(self, name: str) -> None:
        """The detector's shared books from Redis (after :meth:`build`, before it proposes anything)."""
        svc, eng = self.svc, self.svc.engines[name]
        eng.labels.update(await svc.state.verdicts.ledger(name))
        eng.queried.update(await svc.state.claims.queried(name))
        svc.registered[name] = {d["id"] for d in await svc.state.seeds.all(name) if d["origin"] == "confirmed"}
        svc.audited[name] = await svc.state.claims.audited(name)
        svc.audit_labels[name] = await svc.state.verdicts.audit_ledger(name)
        if name in svc.rounds:   # posts sent by earlier rounds: their verdicts still credit their source
            svc.rounds[name].credit.adopt(await svc.state.rounds.all(name))

    async def apply(self, key: bytes | None, value: bytes | None) -> str:
        """Apply one ``detectors`` record; what it did (``created``, ``updated``, ``paused``, ``resumed``,
        ``retired``, ``unchanged``). Raises :class:`DetectorError` (nothing changed) for a bad record."""
        name, d = parse_detector(key, value)
        old = self.svc.detectors.get(name)
        if d is None:
            if old is None:
                return "unchanged"
            await self.retire(name)
            return "retired"
        if old is None:
            await self.create(d)
            return "created"
        if d == old:
            return "unchanged"
        return await self.update(old, d)

    async def create(self, d: DetectorSettings) -> None:
        svc = self.svc
        await svc.in_model_thread(self.build, d)
        try:
            await self.load(d.name)
            docs = await svc.state.seeds.all(d.name)   # seeds registered before (a re-created detector)
        except BaseException:   # Redis away: not created; the feed applies the record again
            svc.detectors.pop(d.name, None)
            raise
        eng = svc.engines[d.name]

        def work() -> list[Candidate]:
            cands = []
            for doc in docs:
                cands += eng.on_seed(Seed(doc["id"], doc.get("text", ""), SeedOrigin(doc["origin"])),
                                     vec_from_b64(doc["vector"]))
            if d.name in svc.rounds:
                svc.rounds[d.name].touch()
            return cands
        await svc.outbox.emit(await svc.in_model_thread(work))
        await svc.trainer.refresh_models()
        svc.metrics.detector_changes.labels(d.name, "created").inc()
        log.info("detector %s created (%d seeds from the registry)", d.name, len(docs))

    async def update(self, old: DetectorSettings, new: DetectorSettings) -> str:
        svc = self.svc
        eng = svc.engines[new.name]
        what = "updated"
        if old.paused != new.paused and all(getattr(old, f) == getattr(new, f) for f in ENGINE_FIELDS + ROUNDS_FIELDS):
            what = "paused" if new.paused else "resumed"
        rebuild = any(getattr(old, f) != getattr(new, f) for f in ENGINE_FIELDS)
        if rebuild or any(getattr(old, f) != getattr(new, f) for f in ROUNDS_FIELDS):
            def work() -> list[Candidate]:
                self.build(new, eng.books)   # the same books, a new engine: its windows are computed afresh
                return [] if new.paused else svc.engines[new.name].refill_all()
            cands = await svc.in_model_thread(work)
            if new.name in svc.rounds:
                svc.rounds[new.name].credit.adopt(await svc.state.rounds.all(new.name))
                svc.rounds[new.name].touch()
            await svc.outbox.emit(cands)
        else:
            def work() -> list[Candidate]:
                svc.detectors[new.name] = new
                self._sampler(new)
                eng.config = replace(eng.config, online=new.candidates == "ibg" and not new.paused)
                # resumed: backfill over the posts that came meanwhile
                return eng.refill_all() if old.paused and not new.paused else []
            await svc.outbox.emit(await svc.in_model_thread(work))
            if old.paused and not new.paused and new.name in svc.rounds:
                svc.rounds[new.name].touch()
        svc.metrics.detector_changes.labels(new.name, what).inc()
        log.info("detector %s %s", new.name, what)
        return what

    async def retire(self, name: str) -> None:
        svc = self.svc

        def work() -> None:
            for table in (svc.engines, svc.rounds, svc.samplers, svc.models, svc.detectors, svc.registered,
                          svc.audited, svc.audit_labels, svc.agreement, svc.trained_on, svc.trained_at):
                table.pop(name, None)
            RoundCheckpoints(svc.settings.data_dir).remove(name)   # a detector created again under this name starts anew
        await svc.in_model_thread(work)   # its pending candidates are dropped by the outbox
        svc.metrics.detector_changes.labels(name, "retired").inc()
        log.info("detector %s retired (its ledger and seeds stay in Redis)", name)

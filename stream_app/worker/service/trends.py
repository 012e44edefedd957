"""The trends stage in the worker: posts no active detector claims -> proposals on the ``trends`` topic.

:meth:`TrendKeeper.observe_sync` runs on the model thread, right after a batch is indexed (``posts.py``): it
drops the posts some active detector claims (their best cosine to one of its seeds is above its τ: what
online IBG would compare them against; a simple, documented filter, not the classifier), and feeds the rest
to :class:`~synapse_stream.trends.stage.TrendStage`, whose novelty probe searches the worker's own index (the
window). Proposals raised or rebuilt are queued in ``svc.trend_records`` and published with the handler's
outputs (``outbox.drain``), keyed by proposal id on the compacted ``trends`` topic, so a growing group
updates its record.

Accept and reject come back as *decision* records on the same topic (key ``<id>/decision``, value
``{"id", "status", "detector"}``; written by the CLI and the console); :meth:`apply_decisions` applies them
(a rejected group is muted, an accepted one is no longer re-published) and counts them once each. Each worker
runs its own stage over the partitions it holds: with several workers, one wave may be proposed by each.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np

from stream_app.trend_board import DECISION_SUFFIX, _decision
from stream_app.worker.service.records import ServicePart
from synapse_stream.trends import TrendParams, TrendStage
from synapse_stream.trends.proposals import Proposal

log = logging.getLogger("synapse.service")

def decision_key(proposal_id: str) -> bytes:
    return (proposal_id + DECISION_SUFFIX).encode()


def decision_doc(proposal_id: str, status: str, detector: str = "", by: str = "") -> dict:
    return _decision(proposal_id, status, detector, by)


class TrendKeeper(ServicePart):
    """The worker's trends stage (see the module docstring)."""

    def __init__(self, svc) -> None:
        super().__init__(svc)
        self.stage: TrendStage | None = None
        if svc.settings.trends:
            self.stage = TrendStage(svc.index, svc.embedder.dim, TrendParams())
        self._decided: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.stage is not None

    # ------------------------------------------------------------------ model thread
    def unclaimed(self, vecs: np.ndarray) -> np.ndarray:
        """Rows no active detector claims: for every active detector with seeds, best seed cosine <= τ."""
        keep = np.ones(len(vecs), bool)
        for name, eng in list(self.svc.engines.items()):
            d = self.svc.detectors.get(name)
            if d is None or d.paused or not len(eng.seeds):
                continue
            keep &= (vecs @ eng.seeds.matrix.T).max(axis=1) <= eng.config.tau
        return keep

    def observe_sync(self, ids: list[str], texts: list[str], vecs: np.ndarray, ts: list[float]) -> int:
        """Model thread: the batch's unclaimed posts through the stage; returns how many records were queued."""
        if self.stage is None or not ids:
            return 0
        t0 = time.perf_counter()
        keep = np.flatnonzero(self.unclaimed(vecs))
        queued = 0
        if len(keep):
            found = self.stage.observe([ids[i] for i in keep], [texts[i] for i in keep], vecs[keep],
                                       [ts[i] for i in keep])
            for prop, new in found:
                if prop.status != "open":
                    continue
                self.svc.trend_records.append((prop.id.encode(), json.dumps(prop.record()).encode()))
                queued += 1
                (self.svc.metrics.trend_proposals_raised if new else self.svc.metrics.trend_updates).inc()
                if new:
                    log.info("trend proposal %s raised: %d posts, growth x%.1f, terms %s", prop.id, prop.size,
                             prop.growth, prop.terms[:5])
        self.svc.metrics.trend_seconds.observe(time.perf_counter() - t0)
        return queued

    def apply_decisions_sync(self, records: list[tuple[bytes | None, bytes | None]]) -> int:
        """Model thread: apply decision records read from the trends topic; returns how many were new here."""
        if self.stage is None:
            return 0
        book, applied = self.stage.book, 0
        for key, value in records:
            k = (key or b"").decode("utf-8", "replace")
            if value is None:
                continue
            try:
                doc = json.loads(value)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            if not k.endswith(DECISION_SUFFIX):
                if k and k not in book.proposals and doc.get("id") == k:   # a restarted worker: its proposals back
                    try:
                        book.restore(Proposal.from_record(doc))
                    except TypeError:
                        pass
                continue
            pid, status = str(doc.get("id", "")), doc.get("status")
            if status not in ("accepted", "rejected") or self._decided.get(pid) == status:
                continue
            self._decided[pid] = status
            if pid in book.proposals:
                if status == "rejected":
                    book.reject(pid)
                else:
                    book.accept(pid, str(doc.get("detector", "")))
            (self.svc.metrics.trend_proposals_rejected if status == "rejected"
             else self.svc.metrics.trend_proposals_accepted).inc()
            applied += 1
        return applied

    # ------------------------------------------------------------------ event loop
    async def apply_decisions(self, records) -> int:
        return await self.svc.in_model_thread(self.apply_decisions_sync, list(records))

    def proposals(self) -> list[Proposal]:
        return [] if self.stage is None else self.stage.book.ranked(None)

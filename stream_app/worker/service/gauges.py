"""Gauges read from Redis (shared by all workers) and the audit-based recall estimate."""
from __future__ import annotations

import logging

from stream_app.worker.service.records import ServicePart
from synapse_stream.audit import RecallEstimator

log = logging.getLogger("synapse.service")


class Gauges(ServicePart):
    """Refreshes the gauges from the shared state."""

    async def refresh(self) -> None:
        if self.svc.gc_pauses is not None:
            self.svc.gc_pauses.drain(self.svc.metrics.gc_pause)
        total = await self.svc.state.posts.total()
        self.svc.metrics.posts_indexed.set(total)
        self.svc.metrics.held_labels.set(await self.svc.state.held.count())
        self.svc.metrics.index_size.set(len(self.svc.index))
        for name, d in list(self.svc.detectors.items()):
            self.svc.metrics.detector_paused.labels(name).set(int(d.paused))
        self.svc.metrics.shards.set(len(self.svc.index.shards))
        self.svc.metrics.segments.set(self.svc.index.segment_count())
        for name, eng in list(self.svc.engines.items()):
            c = await self.svc.state.verdicts.counters(name)
            queried, answered, pos = c.get("queried", 0), c.get("answered", 0), c.get("positives", 0)
            self.svc.metrics.queried.labels(name).set(queried)
            self.svc.metrics.answered.labels(name).set(answered)
            self.svc.metrics.confirmed.labels(name).set(pos)
            self.svc.metrics.precision.labels(name).set(pos / answered if answered else 0.0)
            self.svc.metrics.query_ratio.labels(name).set(queried / total if total else 0.0)
            for origin, n in eng.seeds.counts().items():
                self.svc.metrics.seeds.labels(name, origin).set(n)
            if name in self.svc.rounds:
                for src, c in (await self.svc.state.rounds.counters(name)).items():
                    self.svc.metrics.source_queried.labels(name, src).set(c.get("queried", 0))
                    if c.get("answered"):
                        self.svc.metrics.source_precision.labels(name, src).set(c.get("positives", 0) / c["answered"])
            tau = self.svc.rounds[name].tau if name in self.svc.rounds else eng.config.tau
            if tau is not None:
                self.svc.metrics.tau.labels(name).set(tau)
            d = self.svc.detectors.get(name)
            if d is not None and d.max_candidates_per_hour is not None:
                spent = await self.svc.state.rate.spent(name)
                self.svc.metrics.rate_spent.labels(name).set(spent)
                self.svc.metrics.rate_limit.labels(name).set(d.max_candidates_per_hour)
                self.svc.metrics.rate_used.labels(name).set(spent / d.max_candidates_per_hour)
            truth = await self.svc.state.verdicts.truth_positives(name)
            if truth:
                self.svc.metrics.recall.labels(name).set(pos / truth)
            if name in self.svc.samplers:
                est = await self.recall_estimate(name, total, answered, pos)
                for gauge, key in ((self.svc.metrics.recall_estimate, "estimate"), (self.svc.metrics.recall_lower, "lower"),
                                   (self.svc.metrics.recall_upper, "upper"), (self.svc.metrics.audit_prevalence, "prevalence")):
                    if est[key] is not None:
                        gauge.labels(name).set(est[key])
                self.svc.metrics.audit_size.labels(name).set(est["audit_size"])
                self.svc.metrics.audit_share.labels(name).set(est["audit_share"])

    async def recall_estimate(self, name: str, posts: int, answered: int, positives: int) -> dict:
        """Recall from the audit (stratified estimator, ``synapse_stream.audit``), from Redis state."""
        audits = await self.svc.state.verdicts.audit_ledger(name)
        detector = await self.svc.state.verdicts.labels_of(name, list(audits))
        est = RecallEstimator(confidence=self.svc.settings.audit_confidence)
        est.set_posts(posts)
        est.set_detector(answered, positives)
        for pid, y in audits.items():
            est.update_audit(pid, y, queried_by_detector=pid in detector)
        return est.get()

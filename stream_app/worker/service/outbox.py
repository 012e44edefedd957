"""Found candidates on their way out: queued before any I/O, claimed in Redis (never twice), held until a
handler returns them, confirmed once the broker acknowledged them; in-flight candidates of dead workers."""
from __future__ import annotations

import logging
import time
from typing import Sequence

from stream_app.worker.service.records import (
    Outputs,
    ServicePart,
)
from synapse_stream.explain import evidence
from synapse_stream.llm_oracle import annotate_for_humans
from synapse_stream.messages import (
    LabelMsg,
    candidate_message,
    dumps,
)
from synapse_stream.online import Candidate

log = logging.getLogger("synapse.service")


class CandidateOutbox(ServicePart):
    """Candidates between being found and being confirmed as sent."""

    def __init__(self, svc) -> None:
        super().__init__(svc)
        self._taking: set[int] = set()   # id() of the waiting entries an emit is claiming now (it holds them)

    def queue(self, cands: Sequence[Candidate], arrival: dict[str, float] | None = None) -> None:
        """Put found candidates in the outbox at once, before any I/O that could fail and lose them."""
        self.svc.pending.extend((c, (arrival or {}).get(c.post_id) if c.reason == "post" else None) for c in cands)

    async def emit(self, cands: Sequence[Candidate], arrival: dict[str, float] | None = None) -> None:
        """Claim candidates in Redis (never twice) and build their messages.

        Candidates wait in an outbox until the claim succeeds, so a Redis outage delays them but
        does not lose them; claimed ones wait in ``self.svc.ready`` until a handler returns them
        (:meth:`drain`), so a later failure in the same handler cannot drop them either. A claimed
        candidate stays "in flight" in Redis until the runtime
        confirms the broker acknowledged it (:meth:`confirm`); if this worker dies first, another
        one re-sends it unless it is already on the topic (:meth:`orphans`).
        """
        self.queue(cands, arrival)
        taken = self._take()
        if not taken:
            return
        try:
            await self._claim(taken)
        finally:
            self._taking.difference_update(map(id, taken))

    def _take(self) -> list:
        """The waiting entries no other :meth:`emit` is claiming now (emits overlap: the posts pipeline's, a
        round's, the verdicts'; each claims and removes only what it took, so an entry queued or dropped by the
        window meanwhile is neither lost nor claimed twice)."""
        taking = self._taking
        taken = [x for x in self.svc.pending if id(x) not in taking]
        taking.update(map(id, taken))
        return taken

    def discard(self, post_ids: set[str]) -> set[tuple[str, str]]:
        """Drop the waiting candidates of these posts (they left the window before going out): ``(detector,
        post id)`` of each; the rounds that chose them stop waiting for their verdicts. An entry an emit is claiming
        now goes out (it counts as sent, so its post is parked like any sent candidate's)."""
        def leaving(x) -> bool:
            return x[0].post_id in post_ids and id(x) not in self._taking
        gone = {(c.detector, c.post_id) for c, _ in filter(leaving, self.svc.pending)}
        if gone:
            self.svc.pending[:] = [x for x in self.svc.pending if not leaving(x)]
            self._not_sent(gone)
        return gone

    def _not_sent(self, items) -> None:
        """Round candidates that will not reach the oracle from here: their round does not wait for them."""
        by_det: dict[str, list[str]] = {}
        for det, pid in items:
            by_det.setdefault(det, []).append(pid)
        for det, pids in by_det.items():
            rounds = self.svc.rounds.get(det)
            if rounds is not None:
                rounds.credit.unsent(pids)

    async def _claim(self, taken: list) -> None:
        # candidates of a detector retired since they were found are dropped (its books are gone here)
        batch = [x for x in taken if x[0].detector in self.svc.audited]   # the same entries (their id() counts)
        batch, deferred, grants = await self._within_rate(batch)
        now = time.time()
        values, sets = [], []
        # on the model thread: it reads the index and the seed sets, which that thread owns (and it is numpy work)
        why = await self.svc.in_model_thread(self._why, [c for c, _ in batch]) if batch else {}
        auditing = {(c.detector, c.post_id) for c, _ in batch if c.reason == "audit"}
        for c, _ in batch:
            audited = c.post_id in self.svc.audited[c.detector] or (c.detector, c.post_id) in auditing
            if c.reason != "audit" and audited:
                # the detector wants a post the audit already sent: never twice to the oracle; the
                # audit's verdict (now or when it comes) is also the detector's
                values.append(b"")
                sets.append("queried")
                continue
            text = self.svc.index.payload(c.post_id) if c.post_id in self.svc.index else None
            msg = candidate_message(c.detector, c.post_id, text or "", c.score, c.matched_seeds, c.reason, now)
            if (c.detector, c.post_id) in why:
                msg["why"] = why[(c.detector, c.post_id)]
            d = self.svc.detectors.get(c.detector)
            if d is not None and d.oracle_mode != "human":
                msg = annotate_for_humans(msg, d.oracle_mode, d.llm_audit_rate)
            values.append(dumps(msg))
            sets.append("audited" if c.reason == "audit" else "queried")
        fresh = await self.svc.state.claims.claim_many([(c.detector, c.post_id) for c, _ in batch], self.svc.worker_id, values,
                                             sets)
        done = {id(x) for x in taken} - {id(x) for x in deferred}   # deferred ones wait for room in the hour
        self.svc.pending[:] = [x for x in self.svc.pending if id(x) not in done]
        unused: dict[str, int] = {}
        refused = []
        for (c, arrived), value, ok in zip(batch, values, fresh):
            if c.reason == "audit":
                self.svc.audited[c.detector].add(c.post_id)
            if (not ok or not value) and c.detector in grants:
                unused[c.detector] = unused.get(c.detector, 0) + 1
            if not ok:
                if c.reason != "audit":
                    refused.append((c.detector, c.post_id))
                continue
            if not value:   # re-using an audit verdict, if it is already known
                y = self.svc.audit_labels[c.detector].get(c.post_id)
                if y is not None:
                    await self.svc.verdicts.detector_verdict(LabelMsg(c.detector, c.post_id, y, "audit", None))
                continue
            # claimed: from here on the message must reach the caller even if a later step of the
            # same handler fails, so it waits in self.svc.ready until a handler returns successfully
            self.svc.ready.candidates.append((c.post_id.encode(), value))
            self.svc.ready.claims.append((c.detector, c.post_id))
            self.svc.metrics.candidates.labels(c.detector, c.reason).inc()
            if arrived is not None:
                self.svc.metrics.latency.observe(max(0.0, now - arrived))

        self._not_sent(refused)   # claimed before (by another worker, or as this batch's audit of the post)
        for det, n in unused.items():   # not sent after all (claimed before, or an audit's verdict reused)
            await self.svc.state.rate.refund(det, n)
        if grants or deferred:
            self._count_deferred()

    async def _within_rate(self, batch: list) -> tuple[list, list, dict[str, int]]:
        """Split the batch by the detectors' hourly budgets (``max_candidates_per_hour``, all workers
        together): what Redis grants goes out now, the rest stays in the outbox (``deferred``) for a later
        call. Audits are counted but never held back (they are the recall estimate's random sample)."""
        wanted: dict[str, list[int]] = {}
        audits: dict[str, int] = {}
        for i, (c, _) in enumerate(batch):
            d = self.svc.detectors.get(c.detector)
            if d is None or d.max_candidates_per_hour is None:
                continue
            if c.reason == "audit":
                audits[c.detector] = audits.get(c.detector, 0) + 1
            else:
                wanted.setdefault(c.detector, []).append(i)
        if not wanted and not audits:
            return batch, [], {}
        grants: dict[str, int] = {}
        held: set[int] = set()
        rate = self.svc.state.rate
        for det in sorted(set(wanted) | set(audits)):
            got = await rate.reserve(det, audits[det], None) if det in audits else 0
            idx = wanted.get(det, [])
            if idx:
                granted = await rate.reserve(det, len(idx), self.svc.detectors[det].max_candidates_per_hour)
                held.update(idx[granted:])
                got += granted
            grants[det] = got
        return ([x for i, x in enumerate(batch) if i not in held], [x for i, x in enumerate(batch) if i in held],
                grants)

    def _count_deferred(self) -> None:
        counts: dict[str, int] = {name: 0 for name, d in self.svc.detectors.items() if d.max_candidates_per_hour}
        for c, _ in self.svc.pending:
            if c.detector in counts:
                counts[c.detector] += 1
        for det, n in counts.items():
            self.svc.metrics.deferred.labels(det).set(n)

    async def send_waiting(self) -> Outputs:
        """Claim and hand out what waits in the outbox (candidates held for the hourly budget; those a Redis
        outage delayed)."""
        await self.emit([])
        return self.drain(Outputs())

    def _why(self, cands: Sequence[Candidate]) -> dict[tuple[str, str], dict]:
        """Why each candidate was suggested (``synapse_stream.explain``: its nearest seeds, the classifier's
        probability), for the reviewers; best effort: a failure here never holds a candidate back."""
        out: dict[tuple[str, str], dict] = {}
        try:
            known = [c for c in cands if c.detector in self.svc.engines and c.post_id in self.svc.index]
            if not known:
                return out
            vecs = self.svc.index.get_vectors([c.post_id for c in known])
            seeds: dict[str, tuple[list[str], object, frozenset]] = {}
            for c, v in zip(known, vecs):
                if c.detector not in seeds:
                    eng = self.svc.engines[c.detector]
                    ids = [s.id for s in eng.seeds.seeds]
                    seeds[c.detector] = (ids, eng.seeds.matrix, eng.retracted)
                ids, mat, retracted = seeds[c.detector]
                out[(c.detector, c.post_id)] = evidence(v, ids, mat, retracted, self.svc.models.get(c.detector))
        except Exception as exc:  # noqa: BLE001 - an explanation is optional
            log.warning("no explanation for %d candidates: %s: %s", len(cands), type(exc).__name__, exc)
        return out

    def drain(self, out: Outputs) -> Outputs:
        """Hand every claimed, not yet returned candidate (and detection) to the caller (end of a successful handler)."""
        ready, self.svc.ready = self.svc.ready, Outputs()
        while self.svc.detections:
            ready.detections.append(self.svc.detections.popleft())
        while self.svc.trend_records:
            ready.trends.append(self.svc.trend_records.popleft())
        return out.extend(ready)

    async def confirm(self, claims: Sequence[tuple[str, str]]) -> None:
        await self.svc.state.claims.sent(claims)

    async def orphans(self) -> dict[str, dict[str, str]]:
        """In-flight candidates of dead workers, per detector: ``{detector: {post id: message}}``."""
        await self.svc.state.workers.heartbeat(self.svc.worker_id)
        out = {}
        for name in list(self.svc.engines):
            o = await self.svc.state.claims.orphans(name, self.svc.worker_id)
            if o:
                out[name] = o
        return out

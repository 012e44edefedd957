"""Labels and verdicts: labels routed to the partition holding their post (held while the post is not seen
yet), verdicts applied to the ledger and the engines, audits, confirmed positives made seeds (reconcile)."""
from __future__ import annotations

import logging
import time
from typing import Sequence

from stream_app.worker.exceptions import frames, is_transient
from stream_app.worker.service.records import (
    Outputs,
    RawMsg,
    ServicePart,
    held_label_doc,
    held_label_msg,
)
from synapse_stream.exceptions import MessageError
from synapse_stream.messages import (
    LabelMsg,
    parse_label,
)
from synapse_stream.seeds import Seed, SeedOrigin

log = logging.getLogger("synapse.service")


class VerdictApplier(ServicePart):
    """Labels, verdicts, audits and confirmed seeds."""

    async def handle_labels(self, msgs: Sequence[RawMsg]) -> Outputs:
        """Validate verdicts and route each to the partition that holds its post."""
        out = Outputs()

        async def route(m: RawMsg) -> None:
            lab = parse_label(m.value, max_bytes=self.svc.settings.max_message_bytes)
            self.svc.engine(lab.detector)
            part = await self.svc.state.posts.partition_of(lab.post_id)
            if part is not None:
                out.verdicts.append((part, lab.post_id.encode(), m.value))
            elif not await self._hold_label(m, lab):
                raise MessageError("unknown_post", f"post {lab.post_id!r} was never indexed")
        await self.svc.boundary.each(msgs, out, "route", route)
        self.svc.last_progress = time.monotonic()
        return self.svc.outbox.drain(out)

    async def _hold_label(self, m: RawMsg, lab: LabelMsg) -> bool:
        """A label for a post not seen yet is held (in Redis, ``label_hold_seconds``) and routed when the post
        arrives (:meth:`release_held_labels`). False when holding is off or the hold is full."""
        s = self.svc.settings
        if s.label_hold_seconds <= 0:
            return False
        return await self.svc.state.held.hold(held_label_doc(m, lab.post_id), time.time() + s.label_hold_seconds,
                                           s.label_hold_max)

    async def release_held_labels(self, now: float | None = None) -> Outputs:
        """Route held labels whose post has arrived; dead-letter (``unknown_post``) those whose hold expired.
        Every worker may call it: each held label is taken by exactly one (an atomic removal in Redis)."""
        out = Outputs()
        now = time.time() if now is None else now
        for doc, part in await self.svc.state.held.take(now):
            m = held_label_msg(doc)
            out.released.append(doc["id"])
            if part is not None:
                out.verdicts.append((part, doc["post_id"].encode(), m.value))
            else:
                out.dead_letters.append(self.svc.boundary.dead(m, "unknown_post", f"post {doc['post_id']!r} did not arrive "
                                                   f"within {self.svc.settings.label_hold_seconds:g}s"))
        return self.svc.outbox.drain(out)

    async def handle_verdicts(self, msgs: Sequence[RawMsg]) -> Outputs:
        """Apply routed verdicts on the worker that holds the posts' shards."""
        out = Outputs()

        async def apply(m: RawMsg) -> None:
            lab = parse_label(m.value, max_bytes=self.svc.settings.max_message_bytes)
            eng = self.svc.engine(lab.detector)
            if lab.post_id in self.svc.audited[lab.detector]:
                await self.svc.state.verdicts.record_audit(lab)
                self.svc.audit_labels[lab.detector][lab.post_id] = lab.label
                if lab.post_id not in eng.queried:   # an audit only: not the detector's (no seed, no precision)
                    self.svc.metrics.verdicts.labels(lab.detector, "audit").inc()
                    return
            await self.detector_verdict(lab)   # a MessageError, e.g. the post is not in this worker's shards
        await self.svc.boundary.each(msgs, out, "verdict", apply)
        try:
            await self.reconcile()
        except Exception as exc:  # noqa: BLE001 - not one message's fault: logged, the next verdict tries again
            if is_transient(exc):
                raise
            self.svc.metrics.internal_errors.labels(self.svc.settings.topic("verdicts"), "reconcile", type(exc).__name__).inc()
            log.error("reconcile failed: %s\n%s", type(exc).__name__, frames(exc))
        self.svc.last_progress = time.monotonic()
        return self.svc.outbox.drain(out)

    async def detector_verdict(self, lab: LabelMsg):
        """Record a verdict in the detector's ledger and apply it to its engine."""
        _, effective = await self.svc.state.verdicts.record(lab)   # a human verdict beats an LLM's
        self.svc.agreement[lab.detector].observe({"post_id": lab.post_id, "label": lab.label, "labeler": lab.labeler})
        self.svc.metrics.llm.record_agreement(lab.detector, self.svc.agreement[lab.detector].get())
        outcome, vec = await self.svc.in_model_thread(self._apply_verdict_sync, lab.detector, lab.post_id, effective)
        if outcome.changed and vec is None and lab.post_id not in self.svc.index:
            vec = await self._parked_verdict(lab.detector, lab.post_id, effective)
        if outcome.changed:
            self.svc.metrics.verdicts.labels(lab.detector, str(lab.label)).inc()
            if vec is not None:   # the classifier's training set (every worker trains from Redis)
                await self.svc.state.models.store_vectors(lab.detector, {lab.post_id: vec})
        rounds = self.svc.rounds.get(lab.detector)
        if rounds is not None and outcome.previous is None and outcome.changed:
            src = rounds.observe(lab.post_id, effective, first=True)
            if src is None:   # sent by another worker's round (a rebalance): Redis knows its source
                src = await self.svc.state.rounds.source_of(lab.detector, lab.post_id)
            if src is not None:
                await self.svc.state.rounds.count_verdict(lab.detector, src, effective)
        elif rounds is not None and outcome.changed:
            rounds.touch()
        await self.svc.outbox.emit(outcome.candidates)
        return outcome

    async def _parked_verdict(self, detector: str, post_id: str, label: int):
        """A verdict for a candidate that left the window before it was answered: its vector was parked
        (retention.py). A positive still becomes a seed (registered, broadcast, in the engine); the vector is
        returned for the classifier's training set. None if nothing was parked (an older verdict took it)."""
        got = await self.svc.state.posts.parked(detector, post_id)
        if got is None:
            return None
        vec, text = got
        if label == 1:
            await self.svc.state.seeds.register(detector, post_id, "confirmed", text, vec)
            self.svc.registered.setdefault(detector, set()).add(post_id)
            eng = self.svc.engines[detector]
            self.svc.outbox.queue(await self.svc.in_model_thread(
                eng.on_seed, Seed(post_id, "", SeedOrigin.CONFIRMED), vec))
        await self.svc.state.posts.unpark(detector, post_id)
        return vec

    def _apply_verdict_sync(self, detector: str, post_id: str, label: int):
        """Model thread, one hop: apply the verdict to the engine; the post's vector if it changed and is here."""
        outcome = self.svc.engines[detector].on_verdict(post_id, label)
        vec = self.svc.index.get_vectors([post_id])[0] if outcome.changed and post_id in self.svc.index else None
        return outcome, vec

    async def reconcile_confirmed(self) -> Outputs:
        await self.reconcile()
        return self.svc.outbox.drain(Outputs())

    async def reconcile(self) -> None:
        """Make every positive verdict on a local post a registered, broadcast, active seed.

        Derived from the ledger rather than done as a side effect of one verdict, so that a crash or
        a Redis outage between recording a verdict and registering its seed loses nothing: the next
        call (after the retry, after a restart) finds the positive and finishes the job.
        """
        for name, eng in list(self.svc.engines.items()):
            registered = self.svc.registered.get(name, set())
            todo = [pid for pid, y in list(eng.labels.items())
                    if y == 1 and pid not in registered and pid in self.svc.index]
            for pid in todo:
                vec = self.svc.index.get_vectors([pid])[0]
                await self.svc.state.seeds.register(name, pid, "confirmed", self.svc.index.payload(pid) or "", vec)
                registered.add(pid)
                if pid not in eng.seeds:
                    self.svc.outbox.queue(await self.svc.in_model_thread(eng.on_seed, Seed(pid, "", SeedOrigin.CONFIRMED), vec))
        await self.svc.outbox.emit([])

"""The retention window: segments whose posts left it are dropped, and with them what is keyed by those posts.

In this order, so that a crash at any point leaves nothing behind (the same segments are due again after a
restart, and each step is idempotent): candidates found but not sent yet (waiting for room in the hourly
budget) are let go with their posts; the vectors of candidates still waiting for a verdict are parked in
Redis (a late positive verdict still makes a seed); the routing of posts no detector sent is forgotten (a
verdict may still come for a sent one, so theirs stays: it grows with the candidates, not with the stream);
then, on the model thread, the segments go, the online windows that held their posts are refilled, and the
rounds' kNN graph lets go of them.

When: every ``retention_check_seconds``, and as soon as a segment seals (:meth:`RetentionKeeper.sealed`, polled
twice a second): a worker catching up a backlog after a restart ingests thousands of posts a second, and with
the periodic check alone would hold the window plus that many seconds of backlog; with the seal check it holds
the window plus about one segment, as :class:`~synapse_stream.segments.Retention` promises. One check at a time."""
from __future__ import annotations

import asyncio
import logging

from stream_app.worker.crashpoints import crash_point
from stream_app.worker.service.records import Outputs, ServicePart
from synapse_stream.online import Candidate

log = logging.getLogger("synapse.service")


class RetentionKeeper(ServicePart):
    """Drops what left the window (see the module docstring)."""

    def __init__(self, svc) -> None:
        super().__init__(svc)
        self._lock = asyncio.Lock()
        self._seals = 0        # the index's seal count at the last check

    def sealed(self) -> bool:
        """A segment sealed since the last check (an int read on the event loop, no model-thread work)."""
        return self.svc.index.seals() != self._seals

    async def expire(self) -> Outputs:
        async with self._lock:
            self._seals = self.svc.index.seals()
            return await self._expire()

    async def _expire(self) -> Outputs:
        due = await self.svc.in_model_thread(self.svc.index.expirable)
        if due:
            ids = [pid for e in due.values() for pid in e.ids]
            idset = set(ids)
            # found but never sent (waiting for room in the hourly budget): they leave with their posts
            unsent = self.svc.outbox.discard(idset)
            parked, sent = await self.svc.in_model_thread(self._sent_sync, ids, unsent)
            for det, items in parked.items():
                await self.svc.state.posts.park(det, items)
            await self.svc.state.posts.forget([pid for pid in ids if pid not in sent])
            crash_point("retention.drop")   # chaos-expiry: killed here, the restart finds the same segments due
            cands = await self.svc.in_model_thread(self._drop_sync, due, ids)
            self.svc.metrics.posts_expired.inc(len(ids))
            log.info("retention: %d posts in %d segments left the window (shards %s); %d unanswered candidates "
                     "parked", len(ids), sum(len(e.segments) for e in due.values()), sorted(due),
                     sum(len(v) for v in parked.values()))
            await self.svc.outbox.emit(cands)
        return self.svc.outbox.drain(Outputs())

    def _sent_sync(self, ids: list[str], unsent: set[tuple[str, str]]) -> tuple[dict[str, dict], set[str]]:
        """Model thread: per detector, the vectors and texts of the expiring posts sent and not answered yet;
        and every expiring post sent by any detector or as an audit (``unsent``: found, never sent)."""
        idset = set(ids)
        parked: dict[str, dict] = {}
        sent: set[str] = set()
        for name, eng in list(self.svc.engines.items()):
            mine = {pid for pid in idset & eng.queried if (name, pid) not in unsent}
            sent |= mine | (idset & self.svc.audited.get(name, set()))
            waiting = sorted(pid for pid in mine if pid not in eng.labels)
            if waiting:
                vecs = self.svc.index.get_vectors(waiting)
                parked[name] = {pid: (vecs[i], self.svc.index.payload(pid) or "") for i, pid in enumerate(waiting)}
        return parked, sent

    def _drop_sync(self, due: dict, ids: list[str]) -> list[Candidate]:
        """Model thread: drop the segments, then let the engines and the rounds forget their posts."""
        for key, e in due.items():
            shard = self.svc.index.shards.get(key)
            if shard is not None:       # revoked meanwhile: nothing to drop here
                shard.drop(e.segments)
        out: list[Candidate] = []
        for eng in list(self.svc.engines.values()):
            out += eng.forget_posts(ids)
        for r in list(self.svc.rounds.values()):
            r.expire(ids)
        return out

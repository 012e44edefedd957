"""Seeds: validated and embedded from the seeds topic, registered in Redis and the seed log; every worker
applies the seed log (a broadcast) to its engines and backfills its shards."""
from __future__ import annotations

import logging
import time
from typing import Sequence

from stream_app.worker.exceptions import is_transient
from stream_app.worker.service.records import (
    Outputs,
    RawMsg,
    ServicePart,
    seed_id_for,
)
from synapse_stream.messages import (
    parse_seed,
)
from synapse_stream.seeds import Seed, SeedOrigin

log = logging.getLogger("synapse.service")


class SeedIntake(ServicePart):
    """Seeds from the seeds topic and from the seed log."""

    async def handle(self, msgs: Sequence[RawMsg]) -> Outputs:
        out = Outputs()
        good: list[tuple[RawMsg, object]] = []
        caught_up = False

        async def parse(m: RawMsg) -> None:
            nonlocal caught_up
            s = parse_seed(m.value, max_text_chars=self.svc.settings.max_text_chars,
                           max_bytes=self.svc.settings.max_message_bytes)
            if s.detector not in self.svc.engines and self.svc.catch_up_detectors is not None and not caught_up:
                # seeds published right after their detector was created (`seeds generate --create`): the
                # detectors topic may be a little behind the seeds topic here; read it to its end first (once a
                # batch, a few seconds at most: seeds for detectors that never exist must not stall the agent)
                caught_up = True
                await self.svc.catch_up_detectors()
            self.svc.engine(s.detector)
            good.append((m, s))
        await self.svc.boundary.each(msgs, out, "parse", parse)
        if good:
            dets = {s.detector for _, s in good if s.detector in self.svc.rounds}
            for d in dets:   # every worker's rounds wait until the whole uploaded set is registered
                await self.svc.state.seeds.arriving(d, 60.0)
            try:
                vecs = list(await self.svc.embed([s.text for _, s in good]))
            except Exception as exc:  # noqa: BLE001 - embedded one by one below, the seed at fault dead-lettered
                if is_transient(exc):
                    raise
                vecs = [None] * len(good)

            async def register(item) -> None:
                (m, s), v = item
                if v is None:
                    v = (await self.svc.embed([s.text]))[0]
                await self.svc.state.seeds.register(s.detector, s.id or seed_id_for(s.detector, s.text), s.origin, s.text, v)
            await self.svc.boundary.each(list(zip(good, vecs)), out, "register", register, msg_of=lambda item: item[0][0])
            for d in dets:
                await self.svc.state.seeds.arriving(d, self.svc.settings.round_settle)
        self.svc.last_progress = time.monotonic()
        return self.svc.outbox.drain(out)

    async def poll_log(self, block_ms: int | None = 1000) -> Outputs:
        """Apply seed events from the broadcast log (every worker reads all of them)."""
        entries = await self.svc.state.seeds.read_log(self.svc.seedlog_last, block_ms=block_ms)
        if not entries:
            return self.svc.outbox.drain(Outputs())
        self.svc.seedlog_last = entries[-1][0]
        docs = [doc for _, doc in entries if doc["detector"] in self.svc.engines]

        def work():
            cands = []
            for doc in docs:
                seed = Seed(doc["id"], doc.get("text", ""), SeedOrigin(doc["origin"]))
                cands += self.svc.engines[doc["detector"]].on_seed(seed, doc["vector"])
                if doc["detector"] in self.svc.rounds:   # an uploaded seed set settles; confirmed posts come one by one
                    if seed.origin == SeedOrigin.CONFIRMED:
                        self.svc.rounds[doc["detector"]].touch()
                    else:
                        self.svc.rounds[doc["detector"]].seed_added(time.time())
            return cands
        await self.svc.outbox.emit(await self.svc.in_model_thread(work))
        return self.svc.outbox.drain(Outputs())

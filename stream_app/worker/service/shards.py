"""Shards: snapshots (with the offset they cover), taking partitions over (load the snapshot, refill every
window) and giving them up."""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from stream_app.worker.service.records import (
    Outputs,
    ServicePart,
)
from synapse_stream.exceptions import PostIndexError
from synapse_stream.segments import SegmentedIndex
from synapse_stream.online import Candidate

log = logging.getLogger("synapse.service")


class ShardKeeper(ServicePart):
    """Keeps this worker's shards: snapshots, assignment, revocation."""

    def path(self, partition: int) -> Path:
        return Path(self.svc.settings.data_dir) / f"shard-{partition}" / "index.json"

    async def snapshot(self) -> list[int]:
        """Save every shard (atomically) with the highest offset it covers."""
        def work():
            done = []
            for p, shard in list(self.svc.index.shards.items()):
                shard.meta = {"partition": p, "offset": self.svc.offsets.get(p, -1), "saved_at": time.time()}
                shard.save(self.path(p))
                done.append(p)
            return done
        done = await self.svc.in_model_thread(work)
        await self.svc.trends.snapshot()      # the trends stage's state, on the same cadence
        return done

    async def assign(self, partitions: Sequence[int]) -> Outputs:
        """Take over shards: load their snapshots, then rebuild windows (refill every positive)."""
        def work():
            for p in partitions:
                if p in self.svc.index.shards:
                    continue
                path = self.path(p)
                self.svc.offsets[p] = -1
                if path.exists():
                    try:
                        shard = SegmentedIndex.load(path, self.svc.index.retention,
                                                    ef_search=self.svc.settings.hnsw_ef_search)
                    except PostIndexError as exc:  # a damaged snapshot: rebuild the shard from the topic
                        log.error("shard %s snapshot unusable (%s): replaying the partition", p, exc)
                    else:
                        self.svc.index.attach(p, shard)
                        self.svc.offsets[p] = int(shard.meta.get("offset", -1))
                        log.info("shard %s restored from snapshot: %d posts up to offset %s", p, len(shard),
                                 self.svc.offsets[p])
                self.svc.index.shard(p)
            for r in list(self.svc.rounds.values()):
                r.forget()
            return self._refill_all()
        await self.svc.outbox.emit(await self.svc.in_model_thread(work))
        return self.svc.outbox.drain(Outputs())

    async def revoke(self, partitions: Sequence[int]) -> None:
        await self.snapshot()

        def work():
            for p in partitions:
                self.svc.index.drop(p)
                self.svc.offsets.pop(p, None)
            for r in list(self.svc.rounds.values()):
                r.forget()
            self._refill_all()  # windows may have pointed into dropped shards
        await self.svc.in_model_thread(work)

    def _refill_all(self) -> list[Candidate]:
        out = []
        for eng in list(self.svc.engines.values()):
            out += eng.refill_all()
        return out

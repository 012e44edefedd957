"""The trends stage in the worker: posts no active detector claims -> proposals on the ``trends`` topic.

:meth:`TrendKeeper.observe_sync` is called on the model thread, right after a batch is indexed (``posts.py``): it
drops the posts some active detector claims (their best cosine to one of its seeds is above its τ: what
online IBG would compare them against; a simple, documented filter, not the classifier), and feeds the rest
to :class:`~synapse_stream.trends.stage.TrendStage`, whose novelty probe searches the worker's own index (the
window). The stage runs in a thread of its own (``trends_thread``; its state is only touched there, the index is
read through its locks), so it never slows the indexing of posts: a batch waits in a bounded backlog
(``trends_backlog`` batches) and is skipped, and counted (``synapse_trend_batches_skipped_total``), when the
thread cannot keep up. With ``trends_thread=false`` it runs inline on the model thread. Proposals raised or rebuilt are queued in ``svc.trend_records`` and published with the handler's
outputs (``outbox.drain``), keyed by proposal id on the compacted ``trends`` topic, so a growing group
updates its record.

Accept and reject come back as *decision* records on the same topic (key ``<id>/decision``, value
``{"id", "status", "detector"}``; written by the CLI and the console); :meth:`apply_decisions` applies them
(a rejected group is muted, an accepted one is no longer re-published) and counts them once each (a wave
several workers proposed has one decision per member, counted once: under its kept id, ``of``). Each worker
runs its own stage over the partitions it holds: with several workers, one wave may be proposed by each, and
the board (``stream_app/trend_board.py``, ``combine``) shows them as one.

With ``trends_llm_naming``, each new proposal is named by the LLM endpoint (``llm_base_url``/``llm_model``;
:mod:`synapse_stream.trends.naming`, its posts passed as JSON data): :meth:`name_pending` runs the calls in a
thread of their own (never on the event loop, never on the model thread) and returns the named records to
publish; a failed call leaves the proposal unnamed.

The stage's state (micro-clusters, groups, rate bins, near-duplicate sketches, proposals) is snapshotted with
the shards (``ShardKeeper.snapshot``: every ``snapshot_interval`` s and on shutdown) to
``<data_dir>/trends/stage-<worker_instance_id or "worker">.npz`` (:mod:`synapse_stream.trends.snapshot`: atomic,
version-tagged) and loaded when the worker starts, so a restarted worker keeps its groups, their proposal ids,
its warm-up and its mutes. A snapshot it cannot read is logged and the stage starts afresh.

The stage forgets what no post used for its ``horizon`` of event time (micro-clusters, near-duplicate groups and
buckets: :mod:`synapse_stream.trends.stage`, *Bounds*): :func:`trend_params` sets it to the retention window
(``retention``) when that is shorter than the stage's own default, so the stage holds nothing older than the
window whose posts its novelty probe searches.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from stream_app.trend_board import DECISION_SUFFIX, _decision, decode
from stream_app.worker.service.records import Outputs, ServicePart
from synapse_stream.exceptions import DataError
from synapse_stream.segments import parse_duration
from synapse_stream.trends import TrendParams, TrendStage
from synapse_stream.trends.snapshot import load_stage, save_stage
from synapse_stream.trends.proposals import Proposal

log = logging.getLogger("synapse.service")

def decision_key(proposal_id: str) -> bytes:
    return (proposal_id + DECISION_SUFFIX).encode()


def decision_doc(proposal_id: str, status: str, detector: str = "", by: str = "") -> dict:
    return _decision(proposal_id, status, detector, by)


def trend_params(settings) -> TrendParams:
    """The stage's parameters in this worker: the defaults, with the ``horizon`` cut to the retention window
    (``settings.retention``, event time) when one is set and is shorter."""
    params = TrendParams()
    window = parse_duration(settings.retention)
    if window is not None and window < params.horizon:
        params = dataclasses.replace(params, horizon=window)
    return params


class TrendKeeper(ServicePart):
    """The worker's trends stage (see the module docstring)."""

    def __init__(self, svc) -> None:
        super().__init__(svc)
        self.stage: TrendStage | None = None
        if svc.settings.trends:
            self.stage = self._restored(TrendStage(svc.index, svc.embedder.dim, trend_params(svc.settings)))
        self._decided: dict[str, str] = {}
        self._to_name: deque[str] = deque(maxlen=1000)    # new proposals waiting for the LLM's name
        self._chat = None
        # the stage's own thread (None: inline on the model thread); batches handed to it, not yet done
        self.executor = (ThreadPoolExecutor(1, thread_name_prefix="synapse-trends")
                         if self.stage is not None and svc.settings.trends_thread else None)
        self._backlog: deque[Future] = deque()

    async def _run(self, fn, *args):
        """``fn`` where the stage's state lives: its thread, or the model thread when it runs inline."""
        if self.executor is None:
            return await self.svc.in_model_thread(fn, *args)
        return await asyncio.wrap_future(self.executor.submit(fn, *args))

    async def flush(self) -> None:
        """Wait for the batches handed to the stage's thread (tests, shutdown)."""
        while self._backlog:
            fut = self._backlog.popleft()
            try:
                await asyncio.wrap_future(fut)
            except Exception:  # noqa: BLE001 - logged and counted where it ran
                pass

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    # ------------------------------------------------------------------ snapshot
    @property
    def snapshot_path(self) -> Path:
        return (Path(self.svc.settings.data_dir) / "trends"
                / f"stage-{self.svc.settings.worker_instance_id or 'worker'}.npz")

    def _restored(self, stage: TrendStage) -> TrendStage:
        """``stage`` with the state of the last snapshot, if there is a readable one (else as it is)."""
        path = self.snapshot_path
        if not path.exists():
            return stage
        fresh = TrendStage(stage.index, stage.clusters.dim, stage.p)
        try:
            load_stage(stage, path)
        except DataError as exc:
            log.error("trends stage snapshot unusable (%s): starting afresh", exc)
            return fresh
        log.info("trends stage restored from %s: %d posts seen, %d groups, %d proposals", path, stage.seen,
                 stage.group_count(), len(stage.book))
        return stage

    def _save(self) -> bool:
        if self.stage is None:
            return False
        t0 = time.perf_counter()
        try:
            save_stage(self.stage, self.snapshot_path)
        except (OSError, DataError) as exc:
            log.warning("trends stage snapshot failed: %s: %s", type(exc).__name__, exc)
            self.svc.metrics.internal_errors.labels("snapshot", "trends", type(exc).__name__).inc()
            return False
        log.debug("trends stage snapshot saved in %.3fs", time.perf_counter() - t0)
        return True

    async def snapshot(self) -> bool:
        """Save the stage's state where it lives (its thread, or the model thread): with the shard snapshots."""
        if self.stage is None:
            return False
        return await self._run(self._save)

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
        """Model thread: the batch's unclaimed posts to the stage (its thread, or inline); returns how many records
        were queued inline (0 when handed to the thread: they are queued there)."""
        if self.stage is None or not ids:
            return 0
        keep = np.flatnonzero(self.unclaimed(vecs))   # here: the engines' seed sets belong to the model thread
        if not len(keep):
            return 0
        batch = ([ids[i] for i in keep], [texts[i] for i in keep], vecs[keep].copy(), [ts[i] for i in keep])
        if self.executor is None:
            return self._observe(*batch)
        while self._backlog and self._backlog[0].done():
            self._backlog.popleft()
        if len(self._backlog) >= self.svc.settings.trends_backlog:
            self.svc.metrics.trend_batches_skipped.inc()
            return 0
        self._backlog.append(self.executor.submit(self._observe_logged, *batch))
        return 0

    def _observe_logged(self, ids, texts, vecs, ts) -> int:
        try:
            return self._observe(ids, texts, vecs, ts)
        except Exception as exc:  # noqa: BLE001 - logged and counted; the posts are indexed and compared already
            log.warning("trends stage failed on a batch of %d posts: %s: %s", len(ids), type(exc).__name__, exc)
            self.svc.metrics.internal_errors.labels("posts", "trends", type(exc).__name__).inc()
            return 0

    def _observe(self, ids: list[str], texts: list[str], vecs: np.ndarray, ts: list[float]) -> int:
        """The stage's thread (or the model thread, inline): unclaimed posts through the stage."""
        t0 = time.perf_counter()
        queued = 0
        if ids:
            found = self.stage.observe(ids, texts, vecs, ts)
            for prop, new in found:
                if prop.status != "open":
                    continue
                self.svc.trend_records.append((prop.id.encode(), json.dumps(prop.record()).encode()))
                queued += 1
                (self.svc.metrics.trend_proposals_raised if new else self.svc.metrics.trend_updates).inc()
                if new and self.svc.settings.trends_llm_naming:
                    self._to_name.append(prop.id)
                if new:
                    log.info("trend proposal %s raised: %d posts, growth x%.1f, terms %s", prop.id, prop.size,
                             prop.growth, prop.terms[:5])
        self.svc.metrics.trend_seconds.observe(time.perf_counter() - t0)
        return queued

    def apply_decisions_sync(self, records: list[tuple[bytes | None, bytes | None]]) -> int:
        """The stage's thread: apply decision records read from the trends topic; returns how many were new here."""
        if self.stage is None:
            return 0
        book, applied = self.stage.book, 0
        for key, value in records:
            k, doc = decode(key, value)
            if doc is None:    # a tombstone or a bad record
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
            if str(doc.get("of") or pid) == pid:    # a wave several workers proposed: counted once, by its kept id
                (self.svc.metrics.trend_proposals_rejected if status == "rejected"
                 else self.svc.metrics.trend_proposals_accepted).inc()
            applied += 1
        return applied

    # ------------------------------------------------------------------ event loop
    def _client(self):
        if self._chat is None:
            from synapse_stream.llm import ChatClient

            s = self.svc.settings
            self._chat = ChatClient(s.llm_base_url, s.llm_model, s.llm_api_key, max_calls_per_minute=s.llm_calls_per_minute)
        return self._chat

    async def name_pending(self, limit: int = 10) -> Outputs:
        """Name up to ``limit`` new proposals with the LLM (in a thread); their updated records, to publish."""
        from synapse_stream.trends.naming import name_proposal

        out = Outputs()
        for _ in range(min(limit, len(self._to_name))):
            pid = self._to_name.popleft()
            prop = self.stage.book.get(pid) if self.stage is not None else None
            if prop is None or prop.status != "open" or prop.name:
                continue
            copy = dataclasses.replace(prop, medoids=list(prop.medoids), terms=list(prop.terms))
            if not await asyncio.to_thread(name_proposal, self._client(), copy):
                continue
            out.trends.append(await self._run(self._set_name, pid, copy.name, copy.description))
        out.trends = [r for r in out.trends if r is not None]
        return out

    def _set_name(self, pid: str, name: str, description: str):
        """The stage's thread: the name onto the proposal (the stage may have updated it meanwhile); its record."""
        prop = self.stage.book.get(pid)
        if prop is None or prop.status != "open":
            return None
        prop.name, prop.description = name, description
        prop.version += 1
        return prop.id.encode(), json.dumps(prop.record()).encode()

    async def apply_decisions(self, records) -> int:
        return await self._run(self.apply_decisions_sync, list(records))

    def proposals(self) -> list[Proposal]:
        return [] if self.stage is None else self.stage.book.ranked(None)

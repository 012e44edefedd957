"""The classifier: one shared, versioned model per detector, trained by whichever worker holds the lock, in
its own thread; every worker loads the newest version from Redis."""
from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time

import numpy as np

from stream_app.worker.service.records import ServicePart
from synapse_stream.classifier import ModelVersion, train_model
from synapse_stream.seeds import SeedOrigin

log = logging.getLogger("synapse.service")


class ClassifierTrainer(ServicePart):
    """Trains, publishes and loads classifier versions."""

    async def refresh_models(self) -> None:
        """Load each detector's newest classifier version from Redis (any worker may have trained it)."""
        for name in list(self.svc.engines):
            cur = self.svc.models.get(name)
            doc = await self.svc.state.models.current(name)
            if doc is None or (cur is not None and cur.version >= int(doc.get("version", 0))):
                continue
            try:
                mv = ModelVersion.from_dict(doc)
            except Exception as exc:  # noqa: BLE001 - a damaged document: keep the current version
                log.error("classifier version %s of %s unusable: %s", doc.get("version"), name, exc)
                continue
            self.svc.models[name] = mv
            if name in self.svc.rounds:
                self.svc.rounds[name].use_model(mv)
            self._export_model(name, mv)

    def _export_model(self, name: str, mv: ModelVersion) -> None:
        m = self.svc.metrics
        m.model_version.labels(name).set(mv.version)
        if mv.cv_precision is not None:
            m.model_cv_precision.labels(name).set(mv.cv_precision)
        if mv.cv_recall is not None:
            m.model_cv_recall.labels(name).set(mv.cv_recall)
        for kind in ("seeds", "positives", "negatives", "provisional"):
            m.model_training_rows.labels(name, kind).set(getattr(mv, f"n_{kind}"))

    async def maybe_train(self, name: str, *, force: bool = False) -> ModelVersion | None:
        """Train and publish a new classifier version for detector ``name`` if its ledger or seeds changed
        since the last training (and, unless ``force``, ``model_retrain_seconds`` have passed). Only the
        worker holding the training lock trains; the others load the version from Redis."""
        eng = self.svc.engines[name]
        c = await self.svc.state.verdicts.counters(name)   # cheap: the ledger itself is read only to train
        key = (c.get("answered", 0), c.get("positives", 0), c.get("overturned", 0), len(eng.seeds))
        if not len(eng.seeds) or self.svc.trained_on.get(name) == key:
            return None
        if await self.svc.state.models.key(name) == list(key):   # another worker already trained on exactly this
            self.svc.trained_on[name] = key
            return None
        if not force and time.monotonic() - self.svc.trained_at.get(name, -1e9) < self.svc.settings.model_retrain_seconds:
            return None
        if not await self.svc.state.workers.lock(f"train:{name}", self.svc.worker_id, ttl=300):
            return None
        try:
            ledger = await self.svc.state.verdicts.ledger(name)
            vectors = await self.svc.state.models.vectors(name)
            missing = [pid for pid in ledger if pid not in vectors and pid in self.svc.index]
            if missing:   # verdicts recorded before their vector was stored (e.g. across an upgrade)
                got = await self.svc.in_model_thread(self.svc.index.get_vectors, missing)
                vectors.update(zip(missing, got))
                await self.svc.state.models.store_vectors(name, dict(zip(missing, got)))
            t0 = time.perf_counter()
            S = await self.svc.in_model_thread(self._training_seeds, name)   # the model thread owns the seed set
            version = await self.svc.state.models.next_version(name)
            mv = await asyncio.get_running_loop().run_in_executor(
                self.svc.train_executor, functools.partial(self._train_sync, name, version, S, ledger, vectors))
            self.svc.trained_on[name] = key
            self.svc.trained_at[name] = time.monotonic()
            if mv is None:
                return None
            self.svc.metrics.model_train_seconds.observe(time.perf_counter() - t0)
            summary = {k: v for k, v in mv.to_dict().items() if k != "coef"}
            await self.svc.state.models.publish(name, mv.to_dict(), summary, key=list(key))
            log.info("classifier %s v%d: %d seeds, %d/%d labelled +/-, %d provisional; CV precision %s recall %s",
                     name, mv.version, mv.n_seeds, mv.n_positives, mv.n_negatives, mv.n_provisional,
                     mv.cv_precision, mv.cv_recall)
            return mv
        finally:
            await self.svc.state.workers.unlock(f"train:{name}", self.svc.worker_id)

    def _training_seeds(self, name: str) -> np.ndarray:
        """The synthetic and manual seeds (confirmed posts are training rows through the ledger)."""
        eng = self.svc.engines[name]
        rows = [i for i, sd in enumerate(eng.seeds.seeds) if sd.origin != SeedOrigin.CONFIRMED]
        return eng.seeds.matrix[rows].copy() if rows else np.zeros((0, self.svc.index.dim), np.float32)

    def _train_sync(self, name: str, version: int, S: np.ndarray, ledger: dict[str, int],
                    vectors: dict) -> ModelVersion | None:
        """Training thread. Rows: the seeds ``S``; every post with a verdict (all workers', vectors from
        Redis); as many provisional negatives as seeds: the unlabelled posts of this worker's shards with
        the smallest salted hash (a uniform sample of the stream, stable as it grows)."""
        lab = [pid for pid in ledger if pid in vectors]
        X_lab = np.vstack([vectors[p] for p in lab]) if lab else np.zeros((0, self.svc.index.dim), np.float32)
        y_lab = np.asarray([ledger[p] for p in lab], np.int8)
        salt = self.svc.settings.audit_salt.get_secret_value() + ":provisional"
        pool = [pid for shard in list(self.svc.index.shards.values()) for pid in shard.ids() if pid not in ledger]
        pool.sort(key=lambda pid: hashlib.sha1(f"{salt}{pid}".encode()).digest())
        prov = pool[:len(S)]
        X_prov = self.svc.index.get_vectors(prov) if prov else np.zeros((0, self.svc.index.dim), np.float32)
        return train_model(name, version, S, X_lab, y_lab, X_prov, C=self.svc.settings.model_C,
                           folds=self.svc.settings.model_cv_folds)

"""What a detector's live rounds learned, on disk, so that a restart goes on from it (:class:`RoundCheckpoints`).

Most of a detector's round state is rebuilt cheaply after a restart or is shared elsewhere: the posts come back
from the segments' snapshots and the topic, the kNN graph from the sealed segments' saved shares
(:class:`~synapse_stream.graph.GraphShares`), labels, seeds and the classifier from Redis. What is left is what the
rounds learned themselves: IBG's kept lists (without them the first round after a restart compares every positive
with the whole window: 22 s at a 200 k window with 7,600 positives, soak G), the automatic τ moved by the verdicts
(without it τ starts again from the seeds), and the bandit's counts. Each source gives its share as arrays
(:meth:`~synapse_stream.sources.base.CandidateSource.checkpoint`); one file per detector,
``<root>/rounds/<detector>.npz`` (no pickle), written atomically (a temporary file, then a rename) at most every
``interval`` seconds by the thread that runs the rounds, and read back once, before the first round with posts.

A checkpoint is used only by the same kind of detector: the same sources, the same τ setting and d_max, and no more
verdicts than the detector has now (a detector created again under the same name starts with fewer); otherwise, or
if the file is unreadable, the rounds start from nothing, as before. What happened between the last checkpoint and
the crash is caught up the usual way: the posts consumed again are new to IBG, the verdicts since count from the
next round. Cost: O(p · (d_max + slack)) strings for p positives, plus the verdicts booked by the automatic τ.

>>> import tempfile
>>> import numpy as np
>>> store = RoundCheckpoints(tempfile.mkdtemp())
>>> store.load("scam") is None
True
>>> _ = store.save("scam", {"fingerprint": "x"}, {"ibg": {"sims": np.array([0.7, 0.65])}})
>>> meta, arrays = store.load("scam")
>>> meta["fingerprint"], arrays["ibg"]["sims"].tolist()
('x', [0.7, 0.65])
"""
from __future__ import annotations

import glob
import json
import logging
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np

__all__ = ["RoundCheckpoints", "RoundsCheckpoint"]
log = logging.getLogger(__name__)


class RoundCheckpoints:
    """One file per detector under ``<root>/rounds/``: a JSON document and each source's arrays."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, detector: str) -> Path:
        return self.root / "rounds" / f"{quote(detector, safe='')}.npz"

    def save(self, detector: str, meta: dict, sources: dict[str, dict[str, np.ndarray]]) -> Path:
        path = self.path(detector)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{src}/{key}": np.asarray(value) for src, got in sources.items() for key, value in got.items()}
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp.npz")
        np.savez(tmp, meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
        os.replace(tmp, path)
        for stale in path.parent.glob(f"{glob.escape(path.name)}.*.tmp.npz"):   # left by a crash mid-write
            stale.unlink(missing_ok=True)
        return path

    def load(self, detector: str) -> tuple[dict, dict[str, dict[str, np.ndarray]]] | None:
        """The document and each source's arrays, or None (none saved, or a file that is not a checkpoint)."""
        try:
            with np.load(self.path(detector), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                sources: dict[str, dict[str, np.ndarray]] = {}
                for name in z.files:
                    if "/" in name:
                        src, key = name.split("/", 1)
                        sources.setdefault(src, {})[key] = z[name]
        except (OSError, ValueError, KeyError, EOFError):
            return None
        return (meta, sources) if isinstance(meta, dict) else None

    def remove(self, detector: str) -> None:
        try:
            self.path(detector).unlink()
        except OSError:
            pass


class RoundsCheckpoint:
    """One detector's checkpoint: taken back once (:meth:`restore`), written every ``interval`` s (:meth:`save`).

    ``fingerprint``: what must be the same for a checkpoint to be used (the sources and their parameters)."""

    def __init__(self, store: RoundCheckpoints, detector: str, fingerprint: dict, interval: float = 60.0) -> None:
        self.store = store
        self.detector = detector
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.interval = float(interval)
        self.restored: bool | None = None      # None: not looked yet; then whether a checkpoint was taken back
        self.saved_at = float("-inf")
        self.saves = 0
        self.failures = 0
        self._reported = False

    def restore(self, policy, labels: int) -> bool:
        """Once: the saved state into the policy's sources and counts, if it is this detector's (see the module
        docstring). Returns whether it was taken back."""
        if self.restored is not None:
            return False
        self.restored = False
        got = self.store.load(self.detector)
        if got is None:
            return False
        meta, arrays = got
        if meta.get("fingerprint") != self.fingerprint or int(meta.get("labels", 1 << 62)) > labels:
            return False
        counts = meta.get("counts", {})
        for name, src in policy.sources.items():
            if name in arrays:
                try:
                    src.restore(arrays[name])
                except (KeyError, ValueError, TypeError):
                    src.forget()
        for name, ab in counts.items():
            if name in policy.counts and isinstance(ab, list) and len(ab) == 2:
                policy.counts[name] = [float(ab[0]), float(ab[1])]
        self.restored = True
        return True

    def take_restored(self) -> bool:
        """True once after a checkpoint was taken back (for the worker's log)."""
        if self.restored and not self._reported:
            self._reported = True
            return True
        return False

    def due(self, now: float) -> bool:
        return now - self.saved_at >= self.interval

    def save(self, policy, labels: int, now: float) -> None:
        """Each source's :meth:`~synapse_stream.sources.base.CandidateSource.checkpoint`, the counts, the
        fingerprint."""
        sources = {name: got for name, src in policy.sources.items() if (got := src.checkpoint()) is not None}
        meta = {"fingerprint": self.fingerprint, "labels": int(labels),
                "counts": {s: [float(a), float(b)] for s, (a, b) in policy.counts.items()}}
        self.saved_at = now
        try:
            self.store.save(self.detector, meta, sources)
        except OSError as exc:      # a full or read-only disk costs the next restart its head start, not the round
            self.failures += 1
            log.warning("rounds checkpoint of %s not written: %s", self.detector, exc)
            return
        self.saves += 1

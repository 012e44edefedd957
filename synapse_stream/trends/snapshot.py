"""The trends stage's state on disk: micro-clusters, groups, rate bins, near-duplicate sketches and proposals.

A restarted worker that loads this file goes on where it stopped: its groups keep their first posts and rate
histories (so a wave under way keeps its proposal id and is not raised again), the warm-up is not repeated
and rejected groups stay muted. :func:`save_stage` writes one ``.npz`` file (numpy arrays; no pickle) holding
the arrays (micro-cluster centres, member vectors as float16, LSH band keys, founder signatures and the event
times they were last used, muted centres) and one JSON document (everything else, post texts included as JSON strings: data, never code), tagged with
:data:`FORMAT` and :data:`VERSION`. The write is atomic (a temporary file in the same directory, fsynced, then
renamed), so a crash mid-write leaves the previous snapshot. :func:`load_stage` refuses a file of another
format, version, dimension or capacity with :class:`~synapse_stream.exceptions.DataError` (the caller then
starts afresh). Its size is bounded by the stage's own caps (docs/trends.md, *Bounds*).

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from synapse_stream.segments import SegmentedIndex
>>> stage = TrendStage(SegmentedIndex(4), 4)
>>> _ = stage.observe(["a", "b"], ["some text here for a", "other"], np.eye(4, dtype=np.float32)[:2], [0.0, 1.0])
>>> path = Path(tempfile.mkdtemp()) / "stage.npz"
>>> save_stage(stage, path)
>>> again = load_stage(TrendStage(SegmentedIndex(4), 4), path)
>>> again.seen, sorted(again.groups) == sorted(stage.groups), again.now
(2, True, 1.0)
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections import OrderedDict, deque
from dataclasses import asdict
from pathlib import Path

import numpy as np

from synapse_stream.exceptions import DataError

from .bursts import RateHistory
from .clusters import FadingMicroClusters
from .dupes import HASH
from .proposals import Proposal
from .stage import Group, TrendStage

FORMAT = "synapse-trends-stage"
VERSION = 1


def _rate_state(r: RateHistory) -> dict:
    return {"head": r._head, "counts": [[b, c] for b, c in r._counts.items()]}


def _rate_load(r: RateHistory, doc: dict) -> RateHistory:
    r._head = int(doc["head"])
    r._counts = {int(b): float(c) for b, c in doc["counts"]}
    return r


def _groups_state(groups, vec_parts: list[np.ndarray]) -> list[dict]:
    out = []
    for g in groups.values():
        out.append({"key": g.key, "kind": g.kind, "first_id": g.first_id, "first_seen": g.first_seen,
                    "size": g.size, "last_seen": g.last_seen, "probed": g.probed, "novel": g.novel,
                    "built_size": g.built_size, "built_at": g.built_at, "rate": _rate_state(g.rate),
                    "members": [[m[0], m[1], m[2]] for m in g.members]})
        vec_parts.extend(m[3] for m in g.members)
    return out


def _clusters_state(mc: FadingMicroClusters) -> tuple[dict, dict[str, np.ndarray]]:
    used = np.flatnonzero(mc._id >= 0)
    doc = {"next_id": mc._next_id, "seen": mc._seen, "max_clusters": mc.max_clusters, "dim": mc.dim}
    return doc, {"mc_slots": used.astype(np.int64), "mc_centres": mc._c[used], "mc_w": mc._w[used],
                 "mc_t": mc._t[used], "mc_id": mc._id[used]}


def _clusters_load(mc: FadingMicroClusters, doc: dict, arr) -> None:
    if int(doc["max_clusters"]) != mc.max_clusters or int(doc["dim"]) != mc.dim:
        raise DataError(f"trends snapshot: micro-clusters of {doc['max_clusters']} x {doc['dim']}, the stage has "
                        f"{mc.max_clusters} x {mc.dim}")
    slots = arr["mc_slots"]
    mc._c[:] = 0.0
    mc._w[:] = 0.0
    mc._t[:] = 0.0
    mc._id[:] = -1
    mc._mask[:] = -4.0
    mc._c[slots], mc._w[slots], mc._t[slots], mc._id[slots] = arr["mc_centres"], arr["mc_w"], arr["mc_t"], arr["mc_id"]
    mc._mask[slots] = 0.0
    mc._slot = {int(mc._id[s]): int(s) for s in slots}
    used = set(int(s) for s in slots)
    mc._free = [s for s in range(mc.max_clusters - 1, -1, -1) if s not in used]
    mc._hw = max(used, default=-1) + 1
    mc._next_id, mc._seen = int(doc["next_id"]), int(doc["seen"])


def save_stage(stage: TrendStage, path: str | Path) -> None:
    """Write the stage's state to ``path`` atomically (see the module docstring)."""
    if not isinstance(stage.clusters, FadingMicroClusters):
        raise DataError(f"trends snapshot: cannot save a {type(stage.clusters).__name__} clusterer")
    path = Path(path)
    vec_parts: list[np.ndarray] = []
    mc_doc, arrays = _clusters_state(stage.clusters)
    book = stage.book
    doc = {
        "format": FORMAT, "version": VERSION, "params": asdict(stage.p), "clusters": mc_doc,
        "now": stage.now, "start": stage.start, "seen": stage.seen, "total": _rate_state(stage.total),
        "background": list(stage._background),
        "groups": _groups_state(stage.groups, vec_parts),
        "dup_groups": _groups_state(stage._dup_groups, vec_parts),
        "book": {"proposals": [asdict(p) for p in book.proposals.values()], "alias": list(book._alias.items()),
                 "muted": list(book._muted), "counts": book.counts},
    }
    dim = stage.clusters.dim
    arrays["member_vecs"] = (np.stack(vec_parts).astype(np.float16) if vec_parts
                             else np.zeros((0, dim), np.float16))
    arrays["muted"] = (np.stack(list(book._muted.values())).astype(np.float32) if book._muted
                       else np.zeros((0, dim), np.float32))
    if stage.dupes is not None:
        d = stage.dupes
        doc["dupes"] = {"next": d._next, "now": d.now, "hash": HASH,
                        "bucket_groups": [g for g, _ in d._buckets.values()], "founders": list(d._founders)}
        arrays["dup_keys"] = (np.frombuffer(b"".join(d._buckets), np.uint8).reshape(len(d._buckets), -1)
                              if d._buckets else np.zeros((0, 1 + 4 * d.rows), np.uint8))
        arrays["dup_key_ts"] = np.array([t for _, t in d._buckets.values()], np.float64)
        arrays["dup_sigs"] = (np.stack([f for f, _ in d._founders.values()]) if d._founders
                              else np.zeros((0, d.bands * d.rows), np.uint32))
        arrays["dup_sig_ts"] = np.array([t for _, t in d._founders.values()], np.float64)
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode("utf-8"), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load_groups(stage: TrendStage, docs: list[dict], vecs: np.ndarray, at: int, into) -> int:
    p = stage.p
    for gd in docs:
        g = Group(gd["key"], gd["kind"], gd["first_id"], float(gd["first_seen"]),
                  _rate_load(RateHistory(p.bin_seconds, p.history_bins), gd["rate"]), deque(maxlen=p.max_members),
                  int(gd["size"]), float(gd["last_seen"]), int(gd["probed"]), int(gd["novel"]),
                  int(gd["built_size"]), float(gd["built_at"]))
        for pid, t, text in gd["members"]:
            g.members.append((str(pid), float(t), str(text), vecs[at]))
            at += 1
        into[g.key] = g
    return at


def load_stage(stage: TrendStage, path: str | Path) -> TrendStage:
    """Put the state saved in ``path`` into ``stage`` (freshly made with the same dimension and caps); returns
    it. A file that is not such a snapshot, or one of another version, dimension or capacity: DataError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
        doc = json.loads(arr["meta"].tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a trends stage snapshot ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not a trends stage snapshot")
    if doc.get("version") != VERSION:
        raise DataError(f"{path}: trends snapshot version {doc.get('version')!r}, this code reads {VERSION}")
    if not isinstance(stage.clusters, FadingMicroClusters):
        raise DataError(f"trends snapshot: cannot load into a {type(stage.clusters).__name__} clusterer")
    if (stage.dupes is None) != ("dupes" not in doc):
        raise DataError(f"{path}: near-duplicate groups {'off' if 'dupes' not in doc else 'on'} in the snapshot, "
                        f"{'off' if stage.dupes is None else 'on'} in the stage")
    try:
        _clusters_load(stage.clusters, doc["clusters"], arr)
        stage.now, stage.start, stage.seen = float(doc["now"]), float(doc["start"]), int(doc["seen"])
        _rate_load(stage.total, doc["total"])
        stage._background.clear()
        stage._background.extend(str(t) for t in doc["background"])
        vecs = arr["member_vecs"]
        stage.groups, stage._dup_groups = {}, OrderedDict()
        at = _load_groups(stage, doc["groups"], vecs, 0, stage.groups)
        _load_groups(stage, doc["dup_groups"], vecs, at, stage._dup_groups)
        book = stage.book
        book.proposals = OrderedDict((p["id"], Proposal.from_record(p)) for p in doc["book"]["proposals"])
        book._alias = OrderedDict((str(k), str(v)) for k, v in doc["book"]["alias"])
        book._muted = OrderedDict(zip((str(m) for m in doc["book"]["muted"]), arr["muted"]))
        book.counts.update(doc["book"]["counts"])
        if stage.dupes is not None:
            d, dd = stage.dupes, doc["dupes"]
            d._next = int(dd["next"])                   # kept in any case: new groups' ids follow the held ones'
            d.now = float(dd.get("now", stage.now))
            if dd.get("hash") != HASH:
                # signed by another hash family (before "mas32": none recorded): its buckets and founders match
                # nothing new, so the index starts empty; the groups already held keep their posts and rates
                return stage
            # a snapshot written before the horizon has no times: its entries count as used at its last post
            kts = arr.get("dup_key_ts", np.full(len(arr["dup_keys"]), stage.now)).tolist()
            sts = arr.get("dup_sig_ts", np.full(len(arr["dup_sigs"]), stage.now)).tolist()
            shared: dict[tuple[str, float], tuple[str, float]] = {}      # one (group, time) per text, as kept
            d._buckets = OrderedDict(zip((k.tobytes() for k in arr["dup_keys"]),
                                         (shared.setdefault(v, v) for v in
                                          zip((str(g) for g in dd["bucket_groups"]), kts, strict=True))))
            d._founders = OrderedDict(zip((str(g) for g in dd["founders"]), zip(arr["dup_sigs"], sts, strict=True)))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: damaged trends snapshot ({type(exc).__name__}: {exc})") from None
    return stage

"""Proposals: a new, dense, growing group written up for an analyst, deduplicated under a stable id.

A :class:`Proposal` holds what the console and the ``trends`` topic show: size, growth, first seen, the
medoid posts, the distinctive terms (:func:`ctfidf_terms`), a timeline, and, once named, a one-line name and
description. :class:`ProposalBook` keeps them: a group that grows again updates its proposal (same id,
``version`` + 1) rather than raising a new one, and so does any group whose centre lies within ``merge_sim``
of an open proposal's centre (a sibling micro-cluster of the same wave, a near-duplicate flood and its
micro-cluster). A rejected proposal mutes its centre: a later group within ``merge_sim`` of it is never
proposed. Bounds: at most ``max_proposals`` proposals and ``max_muted`` muted centres (oldest dropped first).

The id is ``trend-`` + 12 hex digits of the SHA-1 of the group's kind and the id of its first post: the same
replay gives the same ids.

>>> stable_id("cluster", "post-17")
'trend-a157bb0c3f97'
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from synapse_stream.embedders.base import l2_normalise

#: what a proposal's record may hold, at most (the topic record and the LLM prompt stay small)
MAX_MEDOIDS = 8
MAX_TERMS = 12
MAX_MEDOID_CHARS = 500


_NOISE = re.compile(r"https?://\S+|www\.\S+|@\w+|&\w+;|#(?=\w)")


def stable_id(kind: str, first_post: str) -> str:
    return "trend-" + hashlib.sha1(f"{kind}\0{first_post}".encode("utf-8", "surrogatepass")).hexdigest()[:12]


@dataclass
class Proposal:
    id: str
    kind: str                       # "cluster" (a dense micro-cluster) or "dupes" (a near-duplicate flood)
    first_seen: float               # event time of the group's first post
    raised_at: float                # event time it was first proposed
    updated_at: float
    size: int                       # posts the group has drawn (all of them, not only those still held)
    recent: int                     # its posts in the recent bins of the burst test
    growth: float                   # recent share of the traffic / share before (the ranking key)
    p_value: float
    medoids: list[dict] = field(default_factory=list)     # [{"id", "text"}], most central first
    terms: list[str] = field(default_factory=list)
    timeline: list[list[float]] = field(default_factory=list)   # [[bin start, posts]]
    name: str = ""
    description: str = ""
    status: str = "open"            # open | accepted | rejected
    detector: str = ""              # the detector an accepted proposal became
    version: int = 1
    centre: list[float] | None = None   # the group's centre (unit vector), for dedupe and mutes

    def record(self) -> dict:
        """The JSON document published on the ``trends`` topic (the centre rounded to 4 decimals: a restarted
        worker needs it to dedupe and to keep a rejected group muted)."""
        doc = asdict(self)
        if self.centre is not None:
            doc["centre"] = [round(float(x), 4) for x in self.centre]
        doc["medoids"] = [{"id": m["id"], "text": str(m["text"])[:MAX_MEDOID_CHARS]} for m in self.medoids]
        return doc

    @classmethod
    def from_record(cls, doc: dict) -> "Proposal":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})


def medoid_rows(vecs: np.ndarray, k: int) -> list[int]:
    """Rows of the ``k`` most central posts: highest mean cosine to the others (unit rows).

    >>> medoid_rows(np.array([[1, 0], [0.9, 0.44], [0, 1]], np.float32), 1)
    [1]
    """
    v = l2_normalise(vecs)
    if len(v) == 0:
        return []
    score = (v @ v.T).mean(axis=1)
    return [int(i) for i in np.argsort(-score, kind="stable")[:k]]


def ctfidf_terms(group_texts: Sequence[str], background_texts: Sequence[str], k: int = MAX_TERMS, *,
                 ngram_range: tuple[int, int] = (1, 2)) -> list[str]:
    """The ``k`` terms most distinctive of the group against the background: c-TF-IDF (Grootendorst 2022,
    BERTopic), ``tf(t, c) · log(1 + A / f(t))`` with the group and the background as the two classes, ``A`` the
    mean number of words per class and ``f(t)`` the term's frequency over both. English stop words, @mentions,
    links and HTML entities are left out.

    >>> ctfidf_terms(["free bitcoin giveaway now", "bitcoin giveaway claim now"],
    ...              ["the match was great", "great weather now", "the council meets"], k=2)
    ['bitcoin', 'giveaway']
    """
    from sklearn.feature_extraction.text import CountVectorizer

    docs = [_NOISE.sub(" ", " ".join(group_texts)), _NOISE.sub(" ", " ".join(background_texts))]
    try:
        cv = CountVectorizer(ngram_range=ngram_range, stop_words="english", token_pattern=r"(?u)\b\w[\w']+\b")
        tf = cv.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:                     # nothing but stop words
        return []
    vocab = cv.get_feature_names_out()
    f = tf.sum(axis=0)
    A = tf.sum() / 2.0
    idf = np.log(1.0 + A / np.maximum(f, 1.0))
    tfn = tf / np.maximum(tf.sum(axis=1, keepdims=True), 1.0)
    score = tfn[0] * idf
    score[tf[0] < 2] = 0.0                 # a term of one post alone says nothing of the group
    order = [int(i) for i in np.argsort(-score, kind="stable") if score[i] > 0]
    out: list[str] = []
    for i in order:
        t = str(vocab[i])
        if any(t in o.split() or o in t.split() for o in out):   # "bitcoin giveaway" after "bitcoin"
            continue
        out.append(t)
        if len(out) >= k:
            break
    return out


class ProposalBook:
    """Proposals by id, deduplicated and mutable (see the module docstring)."""

    def __init__(self, *, merge_sim: float = 0.8, max_proposals: int = 1000, max_muted: int = 1000) -> None:
        self.merge_sim = float(merge_sim)
        self.max_proposals, self.max_muted = int(max_proposals), int(max_muted)
        self.proposals: OrderedDict[str, Proposal] = OrderedDict()
        self._alias: OrderedDict[str, str] = OrderedDict()     # group key -> proposal id
        self._muted: OrderedDict[str, np.ndarray] = OrderedDict()
        self.counts = {"raised": 0, "updated": 0, "accepted": 0, "rejected": 0, "muted_skips": 0}

    def __len__(self) -> int:
        return len(self.proposals)

    def get(self, pid: str) -> Proposal | None:
        return self.proposals.get(pid)

    def ranked(self, status: str | None = "open") -> list[Proposal]:
        ps = [p for p in self.proposals.values() if status is None or p.status == status]
        return sorted(ps, key=lambda p: (-p.growth, -p.size, p.id))

    def _near(self, centre: np.ndarray | None, pool) -> str | None:
        if centre is None:
            return None
        best, who = self.merge_sim, None
        for key, c in pool:
            if c is None:
                continue
            s = float(np.dot(np.asarray(c, np.float32), centre))
            if s >= best:
                best, who = s, key
        return who

    def is_muted(self, centre: np.ndarray | None) -> bool:
        return self._near(centre, self._muted.items()) is not None

    def owner(self, group_key: str, centre: np.ndarray | None) -> str | None:
        """The proposal a group belongs to, if any (by its key, else by the nearest open or accepted centre)."""
        pid = self._alias.get(group_key)
        if pid in self.proposals:
            return pid
        pid = self._near(centre, ((p.id, p.centre) for p in self.proposals.values() if p.status != "rejected"))
        if pid is not None:
            self._alias[group_key] = pid
            self._trim(self._alias, self.max_proposals * 8)
        return pid

    def upsert(self, group_key: str, fresh: Proposal) -> tuple[Proposal, bool] | None:
        """Raise ``fresh`` or update the proposal its group already has; ``(proposal, is_new)``; None if muted."""
        centre = None if fresh.centre is None else np.asarray(fresh.centre, np.float32)
        if self.is_muted(centre):
            self.counts["muted_skips"] += 1
            return None
        pid = self.owner(group_key, centre)
        if pid is None:
            self.proposals[fresh.id] = fresh
            self._alias[group_key] = fresh.id
            self.counts["raised"] += 1
            self._trim(self.proposals, self.max_proposals)
            return fresh, True
        old = self.proposals[pid]
        if old.status == "rejected":
            return None
        old.updated_at = max(old.updated_at, fresh.updated_at)
        old.first_seen = min(old.first_seen, fresh.first_seen)
        old.size = max(old.size, fresh.size)
        old.recent, old.growth, old.p_value = fresh.recent, fresh.growth, fresh.p_value
        if fresh.medoids:
            old.medoids, old.terms, old.timeline, old.centre = fresh.medoids, fresh.terms, fresh.timeline, fresh.centre
        old.version += 1
        self.counts["updated"] += 1
        self.proposals.move_to_end(pid)
        return old, False

    def accept(self, pid: str, detector: str) -> Proposal:
        p = self._need(pid)
        p.status, p.detector = "accepted", detector
        p.version += 1
        self.counts["accepted"] += 1
        return p

    def reject(self, pid: str) -> Proposal:
        p = self._need(pid)
        p.status = "rejected"
        p.version += 1
        if p.centre is not None:
            self._muted[pid] = np.asarray(p.centre, np.float32)
            self._trim(self._muted, self.max_muted)
        self.counts["rejected"] += 1
        return p

    def restore(self, p: Proposal) -> None:
        """Put back a proposal read from the topic (a restarted worker); a rejected one mutes its centre."""
        self.proposals[p.id] = p
        if p.status == "rejected" and p.centre is not None:
            self._muted[p.id] = np.asarray(p.centre, np.float32)
        self._trim(self.proposals, self.max_proposals)

    def _need(self, pid: str) -> Proposal:
        p = self.proposals.get(pid)
        if p is None:
            raise KeyError(f"no proposal {pid!r}")
        return p

    @staticmethod
    def _trim(d: OrderedDict, cap: int) -> None:
        while len(d) > cap:
            d.popitem(last=False)

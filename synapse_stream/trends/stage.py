"""The trends stage: posts that match no detector in, proposals out.

:meth:`TrendStage.observe` takes a batch of posts (ids, texts, unit vectors, event times) that are already in
the window's index and that no active detector claims. Each post joins a micro-cluster
(:mod:`~synapse_stream.trends.clusters`) and, if its text is long enough, a near-duplicate group
(:mod:`~synapse_stream.trends.dupes`); its arrival is counted in the group's :class:`~synapse_stream.trends.
bursts.RateHistory`; the first ``probes`` posts of a group are probed for novelty against the window
(:mod:`~synapse_stream.trends.novelty`) once it has a second post. After the batch, each group it touched is a proposal
(:mod:`~synapse_stream.trends.proposals`) when it is

* **big enough**: at least ``min_size`` posts in all, ``min_recent`` of them in the recent bins;
* **new**: at least ``novel_share`` of its probed posts were novel when they came (a micro-cluster; a
  near-duplicate group is new by construction, its text founded it, and its own history tells a recurring
  template from a flood);
* **dense**: its held posts have a mean cosine of at least ``density`` to their mean;
* **growing**: the burst test on its share of the recent traffic gives ``p <= alpha``.

Nothing is raised before the stage has seen ``warmup`` seconds of event time (at the start every group is
new and every share a burst); posts probed for novelty before then count as not novel. A group already proposed updates its proposal (rebuilt when it has grown by a quarter or a bin has passed).

Bounds (whatever the length of the stream): ``max_clusters`` micro-clusters and ``max_dup_groups``
near-duplicate groups, each holding at most ``max_members`` posts (text cut to 500 characters, vector as
float16) and ``history_bins`` rate bins; ``background`` recent texts for c-TF-IDF; the proposal book's caps.
With the defaults and 384-d vectors: about (4000 + 4000) x 24 x (0.8 + 0.5) kB = 250 MB in the worst case of
every group full; measured by ``bench/trends_core.py`` (docs/trends.md). And by event time: micro-clusters,
near-duplicate groups and the near-duplicate index's buckets and founder signatures not used for ``horizon``
seconds (default ``history_bins * bin_seconds``, the stage's own memory of rates; the worker passes the
retention window when it is shorter) are dropped, so a steady stream holds about ``horizon`` seconds' worth
of them rather than filling the caps. The proposal book is left to its count caps: it holds decisions
(proposals, mutes) that must outlive the groups they came from, and grows only with proposals raised.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from synapse_stream.embedders.base import l2_normalise

from .bursts import RateHistory, burst_test
from .clusters import FadingMicroClusters
from .dupes import NearDupIndex
from .novelty import WindowNovelty
from .proposals import MAX_MEDOIDS, Proposal, ProposalBook, ctfidf_terms, medoid_rows, stable_id


@dataclass(frozen=True)
class TrendParams:
    radius: float = 0.5              # cosine radius of a micro-cluster
    half_life: float = 6 * 3600.0    # fading of micro-cluster weights (event-time seconds)
    novelty_sim: float = 0.6         # a post is novel when no prior window post is this close
    probes: int = 5                  # the first posts of a group probed for novelty
    novel_share: float = 0.6
    density: float = 0.55
    min_size: int = 6
    min_recent: int = 4
    bin_seconds: float = 3600.0
    recent_bins: int = 3
    history_bins: int = 48
    p_floor: float = 0.002           # the traffic share assumed for a group with no history
    alpha: float = 1e-5
    merge_sim: float = 0.8
    max_clusters: int = 4000
    max_dup_groups: int = 4000
    max_members: int = 24
    background: int = 2000
    medoids: int = 5
    terms: int = 8
    dupes: bool = True
    knn: int = 8
    novelty_ef: int | None = 32      # ef of the novelty probe's search (None: the index's ef_search; docs/trends.md)
    warmup: float = 6 * 3600.0       # raise nothing until the stage has seen this much event time (a history)
    # forget micro-clusters, near-duplicate groups and buckets unused for this much event time (None: the
    # rate history's span, history_bins * bin_seconds; resolved when made, so dataclasses.replace keeps it)
    horizon: float | None = None

    def __post_init__(self) -> None:
        if self.horizon is None:
            object.__setattr__(self, "horizon", float(self.history_bins * self.bin_seconds))
        if not self.horizon > 0:
            raise ValueError(f"horizon must be > 0, got {self.horizon!r}")


@dataclass
class Group:
    key: str
    kind: str
    first_id: str
    first_seen: float
    rate: RateHistory
    members: deque = field(default_factory=deque)    # (id, ts, text, float16 vector)
    size: int = 0
    last_seen: float = -math.inf
    probed: int = 0
    novel: int = 0
    built_size: int = 0
    built_at: float = -math.inf

    def member_ids(self) -> set[str]:
        return {m[0] for m in self.members}


class TrendStage:
    """Novelty + micro-clusters + near-duplicate floods + bursts -> deduplicated proposals."""

    def __init__(self, index, dim: int, params: TrendParams | None = None, *, book: ProposalBook | None = None,
                 clusterer=None) -> None:
        self.p = p = params or TrendParams()
        self.index = index
        self.clusters = clusterer or FadingMicroClusters(dim, radius=p.radius, half_life=p.half_life,
                                                         max_clusters=p.max_clusters, horizon=p.horizon)
        self.dupes = NearDupIndex(horizon=p.horizon) if p.dupes else None
        self.novelty = WindowNovelty(index, novelty_sim=p.novelty_sim, k=p.knn, ef=p.novelty_ef)
        self.book = book or ProposalBook(merge_sim=p.merge_sim)
        self.total = RateHistory(p.bin_seconds, p.history_bins)
        self.groups: dict[str, Group] = {}
        self._dup_groups: OrderedDict[str, Group] = OrderedDict()
        self._background: deque[str] = deque(maxlen=p.background)
        self.now = -math.inf
        self.start = math.inf
        self.seen = 0

    # ------------------------------------------------------------------ bounds
    def held_posts(self) -> int:
        """Posts held by all groups (the memory the stage's groups use is about this x 1.3 kB)."""
        return sum(len(g.members) for g in self.groups.values()) + sum(len(g.members) for g in self._dup_groups.values())

    def group_count(self) -> int:
        return len(self.groups) + len(self._dup_groups)

    # ------------------------------------------------------------------ the stream
    def observe(self, ids: Sequence[str], texts: Sequence[str], vecs: np.ndarray,
                ts: Sequence[float]) -> list[tuple[Proposal, bool]]:
        """Take a batch (already in the index); returns the proposals raised (True) or updated (False)."""
        if not len(ids):
            return []
        vecs = l2_normalise(vecs)
        ts = [float(t) for t in ts]
        self.now = max(self.now, max(ts))
        self.start = min(self.start, min(ts))
        self.total.advance(self.now)
        for t in ts:
            self.total.add(t)
        cids = self.clusters.learn(vecs, ts)
        dids = self.dupes.assign_batch(texts, ts) if self.dupes is not None else [None] * len(ids)
        v16 = vecs.astype(np.float16)
        touched: dict[str, Group] = {}
        for i, (pid, text, cid, did, t) in enumerate(zip(ids, texts, cids, dids, ts)):
            member = (pid, t, text[:500], v16[i].copy())   # one tuple for both groups; its own row, not a view
            gs = (self._new_group("cluster", cid, pid, t),)
            if did is not None:
                gs += (self._new_group("dupes", did, pid, t),)
            for g in gs:
                g.members.append(member)
                g.size += 1
                if t > g.last_seen:
                    g.last_seen = t
                g.rate.add(t)
                touched[g.key] = g
        self._probe(touched.values())
        self._background.extend(t[:500] for t in texts)
        self.seen += len(ids)
        self._forget_dead_clusters()
        self._forget_idle_dup_groups()
        out = []
        for g in touched.values():
            r = self._consider(g)
            if r is not None:
                out.append(r)
        return out

    def _new_group(self, kind: str, gid, pid: str, t: float) -> Group:
        """The group ``gid`` of ``kind`` ("cluster": a micro-cluster id; "dupes": a near-duplicate group id),
        created with ``pid`` as its first post if it is not held yet. Near-duplicate groups are kept in
        least-recently-used order and capped at ``max_dup_groups``; micro-cluster groups follow their
        micro-clusters (:meth:`_forget_dead_clusters`)."""
        book = self.groups if kind == "cluster" else self._dup_groups
        key = f"c{gid}" if kind == "cluster" else f"d:{gid}"
        g = book.get(key)
        if g is None:
            g = book[key] = Group(key, kind, pid, t, RateHistory(self.p.bin_seconds, self.p.history_bins),
                                  deque(maxlen=self.p.max_members))
            if kind == "dupes":
                while len(self._dup_groups) > self.p.max_dup_groups:
                    self._dup_groups.popitem(last=False)
        elif kind == "dupes":
            self._dup_groups.move_to_end(key)
        return g

    def _probe(self, touched) -> None:
        """Probe the first ``probes`` posts of each touched group of two posts or more for novelty (a singleton
        is not probed until a second post joins it: most groups stay singletons, and probing them all would
        double the stage's cost). Excluded from each probe: the post itself and its group's members. Before the
        warm-up a probe counts as not novel whatever it finds, so it is counted without a search."""
        warm = self.now - self.start >= self.p.warmup    # before that the window is too short to judge
        todo = self._probes(touched)
        if not todo:
            return
        if not warm:                # nothing probed before the warm-up counts as novel: no search needed
            for g, _, _ in todo:
                g.probed += 1
            return
        prior = self.novelty.prior_similarity(np.stack([v for _, v, _ in todo]).astype(np.float32),
                                              [ex for _, _, ex in todo])
        for (g, _, _), s in zip(todo, prior):
            g.probed += 1
            g.novel += int(warm and self.novelty.is_novel(s))

    def _probes(self, touched) -> list[tuple[Group, np.ndarray, set[str]]]:
        """What :meth:`_probe` searches: (group, member vector, ids to exclude) for each member still to probe."""
        todo: list[tuple[Group, np.ndarray, set[str]]] = []
        for g in touched:
            if g.kind != "cluster" or g.size < 2 or g.probed >= self.p.probes:
                continue
            members = list(g.members)
            ex = g.member_ids()
            for m in members[g.probed:min(len(members), self.p.probes)]:
                todo.append((g, m[3], ex))
        return todo

    def _forget_dead_clusters(self) -> None:
        if len(self.groups) <= len(self.clusters):
            return
        alive = getattr(self.clusters, "alive", None)
        if alive is None:
            return
        for key in [k for k in self.groups if not alive(int(k[1:]))]:
            del self.groups[key]

    def _forget_idle_dup_groups(self) -> None:
        """Drop the near-duplicate groups no post joined for ``horizon`` seconds (from the old end of their
        least-recently-used order; a group touched by a late post waits there until it reaches that end)."""
        cut = self.now - self.p.horizon
        while self._dup_groups and next(iter(self._dup_groups.values())).last_seen < cut:
            self._dup_groups.popitem(last=False)

    # ------------------------------------------------------------------ proposals
    def _consider(self, g: Group) -> tuple[Proposal, bool] | None:
        p = self.p
        if g.size < p.min_size or self.now - self.start < p.warmup:
            return None
        if g.kind == "cluster" and (g.probed == 0 or g.novel / g.probed < p.novel_share):
            return None                 # a near-duplicate group is new by construction: its text founded it
        test = burst_test(g.rate, self.total, now=self.now, recent_bins=p.recent_bins, p_floor=p.p_floor)
        if test.k < p.min_recent or test.p_value > p.alpha:
            return None
        vecs = l2_normalise(np.stack([m[3] for m in g.members]).astype(np.float32))
        centre = vecs.mean(axis=0)
        centre /= np.linalg.norm(centre) or 1.0
        if g.kind == "cluster" and float((vecs @ centre).mean()) < p.density:
            return None
        owner = self.book.owner(g.key, centre)
        if owner is not None and g.built_size and g.size < 1.25 * g.built_size and self.now - g.built_at < p.bin_seconds:
            prop = self.book.get(owner)         # grown too little to rebuild: update the numbers only
            prop.recent, prop.growth, prop.p_value = test.k, test.lift, test.p_value
            prop.size, prop.updated_at = max(prop.size, g.size), self.now
            return None
        rows = medoid_rows(vecs, min(p.medoids, MAX_MEDOIDS))
        members = list(g.members)
        fresh = Proposal(
            id=stable_id(g.kind, g.first_id), kind=g.kind, first_seen=g.first_seen, raised_at=self.now,
            updated_at=self.now, size=g.size, recent=test.k, growth=test.lift, p_value=test.p_value,
            medoids=[{"id": members[r][0], "text": members[r][2]} for r in rows],
            terms=ctfidf_terms([m[2] for m in members], list(self._background), k=p.terms),
            timeline=[[b, c] for b, c in g.rate.series(self.now)],
            centre=[float(x) for x in centre])
        res = self.book.upsert(g.key, fresh)
        g.built_size, g.built_at = g.size, self.now
        return res

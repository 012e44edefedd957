"""Live candidate rounds: the candidate policy (IBG, GBLE, the classifier) over the posts a worker holds.

The batch methods (:mod:`synapse_stream.methods`) run on a fixed pool. In the live loop the pool
grows and verdicts arrive one by one, so the policy runs in *rounds*: :meth:`LiveRounds.plan`
builds a :class:`~synapse_stream.methods.base.LoopState` from the posts in this worker's shards
and the detector's books (:class:`~synapse_stream.books.DetectorBooks`: labels, queried posts and
positives), gives every source a :class:`~synapse_stream.sources.base.LiveView` (``refresh``) and the
verdicts since the last round (``learn``), and asks the core
:class:`~synapse_stream.methods.policy.Policy` for one batch. The sources are the registry's live forms
(:mod:`synapse_stream.sources`); nothing here names one. The
same ``Policy`` code chooses the batch in ``synapse-stream eval``, so a live round *is* a core
round on the same data. What differs:

* posts sent but not answered yet are ``pending``: never proposed again, not yet labelled;
* **IBG** is the core :class:`~synapse_stream.methods.ibg.IBG` source on the snapshot (positives:
  the seeds, every confirmed post of this worker's shards, and confirmed posts of other workers'
  shards, which arrive as broadcast seeds);
* **GBLE** propagates on a kNN graph kept *incrementally* (:class:`~synapse_stream.graph.KNNGraph`,
  updated here when a source ``uses_graph``): each round only the
  posts and seeds new since the last round are searched, posts through the HNSW shards
  (``ShardedIndex.knn``), seeds by brute force; symmetrised as the core's ``knn_graph``, so when
  every post is present at the first round the graph equals the core's up to HNSW's recall;
* **model** scores with the detector's current shared classifier version
  (:class:`~synapse_stream.classifier.ModelVersion`, trained on every worker's verdicts; the
  streaming layer trains and publishes it), and ranks the other sources' proposals;
* the bandit's counts are updated per verdict (:meth:`observe`) and discounted once per round,
  which gives exactly the core's discounted counts when each round waits for its verdicts.

Several workers: each worker plans rounds over its own shards (a partition of the stream by post
key), with ``K0`` scaled by its share of all posts, so the detector's total budget per round stays
about ``K0 / p_prev``; Redis claims keep a post from ever being sent twice; confirmed positives are
broadcast as seeds, so every worker's IBG and GBLE see them.

A round is three steps (:meth:`LiveRounds.gather` on the thread that owns the books, :meth:`LiveRounds.compute`
in any one thread, the worker's round thread, :meth:`LiveRounds.commit` on the owner's thread again), so the heavy
step never holds up the indexing of posts; expiry and rebalances are applied by the next compute. Sealed
segments' shares of the kNN graph are saved once (:class:`~synapse_stream.graph.GraphShares`) and loaded after a
restart instead of searched again.

Cost of a round (n local posts in the window, Δn new since the last round, m seeds, p positives, d dims, k graph
degree): reading the vectors O(n d) (one copy, segment by segment), IBG O(Δn p d) plus O(n d) per new or
exhausted positive, the graph update O(Δn (log n + m) d), propagation O(iterations · n k), the classifier
O(Δn d) (each post once per version); memory O(n d) for the snapshot plus O(n k) for the graph.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .books import DetectorBooks
from .checkpoints import RoundCheckpoints, RoundsCheckpoint
from .credit import RoundRecord, SourceCredit
from .graph import KNNGraph
from .index import ShardedIndex
from .live_graph import LiveGraph
from .methods.base import LoopState
from .methods.policy import Policy
from .online import Candidate
from .round_snapshot import RoundSnapshot
from .sources import registry
from .sources.base import CandidateSource, LiveView, SourceParams
from .window_changes import WindowChanges

#: the sources of a detector with ``candidates = "policy"``
SOURCES = registry.POLICY_DEFAULT
__all__ = ["SOURCES", "KNNGraph", "LiveRounds", "RoundInput", "RoundOutput", "RoundRecord"]


class LiveRounds:
    """One detector's candidate rounds on one worker.

    ``books``: the detector's :class:`~synapse_stream.books.DetectorBooks`; ``sources``: names of live sources
    in :mod:`synapse_stream.sources.registry` (by default the policy's); ``params``: what their factories need
    (τ, d_max, the graph's k, ...). The other parameters are the core
    :class:`~synapse_stream.methods.policy.Policy`'s (``k0``; ``k_max``, by default ``2 · k0``; the bandit's
    ``floor``, ``discount``, ``prior_strength``, ``growth``).
    """

    def __init__(self, books: DetectorBooks, index: ShardedIndex, *, name: str = "", sources: Sequence[str] = SOURCES,
                 params: SourceParams | None = None, k0: int = 100, k_max: int | None = None, seed: int = 0,
                 **policy_options) -> None:
        self.name = name
        self.books = books
        self.index = index
        params = params or SourceParams(k0=k0, seed=seed)
        built: dict[str, CandidateSource] = registry.build(sources, params, live=True)
        self.live = LiveGraph(index, KNNGraph(params.gble_k, params.gble_ef, params.gble_scope), name)
        self._needs_graph = any(src.uses_graph for src in built.values())
        self.k0 = int(k0)
        self.k_max = int(k_max) if k_max else 2 * self.k0
        self.policy = Policy(built, k0=self.k0, k_max=self.k_max, seed=seed, **policy_options)
        self.policy.reset()
        self.rng = np.random.default_rng(seed)
        self.credit = SourceCredit(built)        # which source sent what, the verdicts since the last round
        self.rounds = self.credit.rounds         # the last few rounds' records
        self.planned = 0                         # rounds planned so far
        self.changes = 0                         # posts, seeds or verdicts since the last round
        self.last_seed_at = float("-inf")        # when the last seed arrived (rounds wait for the seed set to settle)
        # asked for by the owner's thread (expiry, rebalance), applied by the next compute (see gather/compute/commit)
        self.window_changes = WindowChanges()
        self.snap = RoundSnapshot(index, self.rng)   # the rounds' snapshot of the window
        self.dropped = 0                         # posts that left the window applied by the last compute
        # True when the graph grows between rounds (:meth:`advance`): a round then plans over the posts the graph
        # has taken, so its time does not follow a lag; the posts after them wait for the next round
        self.graph_first = False
        self.params = params
        self.checkpoint: RoundsCheckpoint | None = None   # what the rounds learned, saved for a restart

    def keep_checkpoints(self, store: RoundCheckpoints, interval: float = 60.0) -> RoundsCheckpoint:
        """Save what the sources and the bandit learned every ``interval`` s (the round thread) and take it back
        before the first round after a restart (:mod:`synapse_stream.checkpoints`)."""
        p = self.params
        self.checkpoint = RoundsCheckpoint(store, self.name, {"sources": list(self.policy.sources), "tau": p.tau,
                                                              "d_max": p.d_max}, interval)
        return self.checkpoint

    @property
    def graph(self) -> KNNGraph:
        """The detector's kNN graph (:class:`~synapse_stream.live_graph.LiveGraph` keeps it)."""
        return self.live.graph

    @property
    def sources(self) -> list[str]:
        return list(self.policy.sources)

    @property
    def tau(self) -> float | None:
        """The τ of this detector's IBG source in use (automatic: as last chosen; None before the first round)."""
        ibg = self.policy.sources.get("ibg")
        return getattr(ibg, "tau", None)

    @property
    def tau_info(self) -> dict | None:
        """The automatic τ's summary (start, floor, verdicts booked, moves), None with an explicit τ."""
        ibg = self.policy.sources.get("ibg")
        auto = getattr(ibg, "auto", None)
        return auto.summary() if auto is not None else None

    @property
    def uses_graph(self) -> bool:
        """Whether a source needs the kNN graph (GBLE)."""
        return self._needs_graph

    @property
    def uses_model(self) -> bool:
        """Whether a source scores with the detector's shared classifier (the trainer keeps one then)."""
        return any(src.uses_model for src in self.policy.sources.values())

    def use_model(self, model: object) -> None:
        """The detector's shared classifier changed: every source that scores with it gets it."""
        for src in self.policy.sources.values():
            src.use_model(model)

    # ------------------------------------------------------------------ events
    def touch(self, n: int = 1) -> None:
        """Something changed (posts indexed, a seed, a verdict): a new round may find something new."""
        self.changes += n

    def seed_added(self, now: float) -> None:
        """A synthetic or manual seed arrived (a confirmed post is just a change: :meth:`touch`)."""
        self.changes += 1
        self.last_seed_at = now

    def observe(self, post_id: str, label: int, first: bool) -> str | None:
        """A verdict for ``post_id``: a change, and credit for the source that proposed it
        (:meth:`SourceCredit.observe`; ``credit.unsent`` and ``credit.adopt`` for posts that never went out and
        posts sent before a restart)."""
        self.changes += 1
        return self.credit.observe(post_id, label, first)

    def forget(self) -> None:
        """Shards were dropped or replaced: the kNN graph and what sources built over the old posts go, but for
        what a source keeps over a rebalance (``CandidateSource.rebalanced``; at the start of the next
        :meth:`compute`, which may be running in another thread now)."""
        self.window_changes.forget()

    def expire(self, post_ids: Sequence[str]) -> None:
        """Posts left the window: the kNN graph drops them (no rebuild) and the sources drop what they built
        over the old node numbering, at the start of the next :meth:`compute`; what was sent stays in
        ``owner`` (a late verdict still credits its source). Confirmed positives among them stay positives, as
        seeds (their vectors are in the seed registry, read here on the owner's thread): the graph keeps their nodes
        as seed nodes (:meth:`KNNGraph.to_seed`) instead of searching them again in every segment."""
        seeds, retracted = self.books.seeds, self.books.retracted
        moving = {p: seeds.vector(p).copy() for p in post_ids if p in seeds and p not in retracted}
        self.window_changes.expire(post_ids, moving)

    def _apply_changes(self) -> None:
        """Compute side: the resets and drops asked for since the last compute."""
        reset, drops, moving = self.window_changes.take()
        if reset:
            self.live.reset()
        self.dropped = len(drops) if not reset else 0
        if reset:
            for src in self.policy.sources.values():
                src.rebalanced()
        elif drops and self.graph.drop(drops, moving):
            for src in self.policy.sources.values():
                src.expired()

    # ------------------------------------------------------------------ scheduling
    def due(self, now: float, *, min_interval: float, timeout: float, outstanding: float,
            settle: float = 0.0) -> bool:
        """Whether to plan a round now: something changed; no seed arrived in the last ``settle`` s (a
        batch of seeds being uploaded is used whole); and the previous round is answered (all but
        ``outstanding`` of it, a fraction) and at least ``min_interval`` s old, or ``timeout`` s passed."""
        if self.changes == 0 or not len(self.books.seeds) or now - self.last_seed_at < settle:
            return False
        if not self.rounds:
            return True
        last = self.rounds[-1]
        age = now - last.started
        if age < min_interval:
            return False
        return last.outstanding <= math.floor(outstanding * len(last.sent)) or age >= timeout

    # ------------------------------------------------------------------ the round
    # A round is three steps so that the heavy one runs off the thread that owns the books and the index's writes:
    # gather (owner's thread, O(labels + queried + seeds): copies of the books), compute (any one thread at a
    # time: the snapshot, the graph, the sources, the policy) and commit (owner's thread: the batch is marked
    # queried, less what was answered, sent or dropped meanwhile). ``plan`` runs the three in one call.
    def gather(self, share: float = 1.0, now: float | None = None, limit: int | None = None) -> RoundInput | None:
        """Step 1 (the thread that owns the books): what the round needs of them, copied; None if the budget is
        spent."""
        now = time.time() if now is None else now
        self.changes = 0
        if limit is not None and limit <= 0:
            return None     # nothing to do until the stream grows (new posts touch it again)
        verdicts, fresh = self.credit.take()
        return self._read_books(share, now, limit, verdicts, fresh)

    def _read_books(self, share, now, limit, verdicts, fresh) -> RoundInput:
        books = self.books
        retracted = frozenset(books.retracted)
        seeds = books.seeds
        external = {s.id: seeds.matrix[i].copy() for i, s in enumerate(seeds.seeds) if s.id not in retracted}
        last = self.credit.last_answers()
        return RoundInput(share, now, limit, dict(books.labels), frozenset(books.queried), retracted, external,
                          verdicts, fresh, last, time.perf_counter())

    def compute(self, inp: RoundInput) -> RoundOutput:
        """Step 2 (one thread at a time, not necessarily the owner's): the policy's batch on a snapshot of the
        shards. Reads the index through its locks; writes only the graph, the sources and the policy."""
        t0 = time.perf_counter()
        marks = [t0]

        def mark() -> None:
            marks.append(time.perf_counter())
        self._apply_changes()
        mark()
        upto = self.live.upto() if self.graph_first and self._needs_graph else None
        state, ext = self.snap.take(inp, upto)
        mark()
        if state.n == 0:
            self.live.built = self.live.built or not len(self.index)   # the graph over no posts is built
            return RoundOutput(inp, [], [], time.perf_counter() - t0)
        if self.checkpoint is not None and self.checkpoint.restored is None:
            self.checkpoint.restore(self.policy, len(inp.labels))
        self._prepare_sources(state, ext, inp)
        mark()
        # the bandit: discount once per round, then count the verdicts since the last one (the core's order)
        self.policy.decay()
        for s, (a, b) in inp.fresh.items():
            self.policy.counts[s][0] += a
            self.policy.counts[s][1] += b
        k0 = max(1, round(self.k0 * min(1.0, max(inp.share, 0.0))))
        self.policy.k0, self.policy.k_max = k0, max(k0, round(self.k_max * k0 / self.k0))
        batch = self.policy.plan(state)
        mark()
        self.snap.release()       # no reference to dropped segments beyond the round
        if inp.limit is not None:
            batch = batch[:inp.limit]
        if self._needs_graph:
            self.live.save_shares()
        mark()
        if self.checkpoint is not None and self.checkpoint.due(time.monotonic()):
            if self._needs_graph:      # the graph of the segments being written, for the restart
                self.live.save_growing()
            self.checkpoint.save(self.policy, len(inp.labels), time.monotonic())
        mark()
        steps = ("changes", "snapshot", "graph+learn", "plan", "shares", "checkpoint")
        phases = {name: b - a for name, a, b in zip(steps, marks, marks[1:])}
        phases.update({f"plan:{src}": sec for src, sec in self.policy.seconds.items()})
        return RoundOutput(inp, state.ids, batch, marks[-1] - t0, phases)

    def commit(self, out: RoundOutput) -> list[Candidate]:
        """Step 3 (the owner's thread): mark the batch queried and record the round. A post answered, sent or
        gone from the shards since ``gather`` is left out."""
        books = self.books
        rec = RoundRecord(self.planned + 1, out.input.now)
        cands = []
        for r, score, src in out.batch:
            pid = out.ids[r]
            if pid in books.labels or pid in books.queried or pid not in self.index:
                continue
            books.queried.add(pid)
            rec.sent[pid] = src
            cands.append(Candidate(self.name, pid, float(score), (), src))
        rec.alloc = {s: sum(1 for v in rec.sent.values() if v == s) for s in self.policy.sources}
        rec.seconds = out.seconds
        rec.phases = out.phases
        if cands:
            self.planned += 1
            self.credit.record(rec)
        return cands

    def plan(self, share: float = 1.0, now: float | None = None, limit: int | None = None) -> list[Candidate]:
        """Choose one round's batch (the posts are marked queried in the books); ``share``: this
        worker's fraction of all posts (scales K0); ``limit``: the oracle budget left (the batch is cut
        to it, best first, as the core loop cuts its last batch). :meth:`gather`, :meth:`compute` and
        :meth:`commit` in one call."""
        inp = self.gather(share, now, limit)
        return [] if inp is None else self.commit(self.compute(inp))

    def snapshot(self) -> LoopState:
        """The loop state of this worker's posts now (vectors, labels, pending, seeds not held here), in arrays of
        its own (a round's state is in the kept buffer the next round rewrites)."""
        return self.snap.take(self._read_books(1.0, time.time(), None, {}, {}), kept=False)[0]

    def _prepare_sources(self, state: LoopState, external: dict[str, np.ndarray], inp: RoundInput) -> None:
        """The live view (the graph updated first if a source needs it), then the verdicts since the last round."""
        if self._needs_graph:
            self.live.build(state.ids, external, state.X, self.snap.parts)
        view = LiveView(self.index, state.ids, state.X, external, inp.retracted,
                        self.graph if self._needs_graph else None, self.snap.parts)
        row_of = state.row_of() if inp.verdicts else {}
        got = [(row_of[p], y) for p, y in inp.verdicts.items() if p in row_of]
        rows, ys = [r for r, _ in got], [y for _, y in got]
        for src in self.policy.sources.values():
            src.refresh(view)
            if rows:
                src.learn(state, rows, ys)

    # ------------------------------------------------------------------ the graph between rounds
    def advance(self, limit: int = 2048) -> int:
        """The kNN graph takes up to ``limit`` posts indexed since it last grew (:meth:`LiveGraph.advance`; the round
        thread, between rounds, every ``round_check_interval``), after the expiry and rebalances asked for since
        the last compute. Returns how many posts it took; ``live.lag`` is how many it has yet to take."""
        if not self._needs_graph:
            return 0
        self._apply_changes()
        return self.live.advance(limit)


@dataclass
class RoundInput:
    """What :meth:`LiveRounds.gather` copies from the books for one round."""

    share: float
    now: float
    limit: int | None
    labels: dict[str, int]
    queried: frozenset[str]
    retracted: frozenset[str]
    external: dict[str, np.ndarray]     # seeds (and posts confirmed elsewhere) by id, overturned ones left out
    verdicts: dict[str, int]            # since the last round (the sources' learn)
    fresh: dict[str, list[float]]       # per source, verdicts since the last round (the bandit's counts)
    last: dict | None                   # the previous round's answers (p_prev)
    started: float


@dataclass
class RoundOutput:
    """What :meth:`LiveRounds.compute` chose: ``(row, score, source)`` of ``ids``, in sending order."""

    input: RoundInput
    ids: list[str]
    batch: list[tuple[int, float, str]]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)   # seconds per step (``LiveRounds.compute``)

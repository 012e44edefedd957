"""The one seam for candidate sources: :class:`CandidateSource`.

A candidate source only *ranks*: given a shared view of one detector's state (a
:class:`~synapse_stream.methods.base.LoopState`: the posts' unit vectors, the seeds, every label obtained so far
whoever obtained it, and the posts sent but not answered yet) it proposes up to ``k`` posts it would send to the
oracle next, best first. The :class:`~synapse_stream.methods.policy.Policy` decides which proposals are sent, in
``synapse-stream eval`` (:meth:`~synapse_stream.methods.base.ActiveMethod.run`) and in the live rounds
(:class:`~synapse_stream.rounds.LiveRounds`) alike, and feeds the verdicts back through :meth:`learn`.

One abstract method, :meth:`CandidateSource.propose`; the other hooks have do-nothing defaults:

* :meth:`prepare` once before the first proposal on a fixed pool (batch runs: build a graph, draw a sample);
* :meth:`refresh` before every live round, with a :class:`LiveView` of what the worker holds (live runs only);
* :meth:`learn` after verdicts came in (rows of the state the verdicts are for);
* :meth:`use_model` when the detector's shared classifier changed (live runs only);
* :meth:`forget` when what a source built no longer holds: drop it; :meth:`rebalanced` when the worker's shards
  changed (by default :meth:`forget`) and :meth:`expired` when posts left the window (the same, unless kept);
* :meth:`checkpoint` / :meth:`restore`: what a restart would lose (IBG's kept lists and its automatic τ), saved by
  the live rounds every so often and taken back before the first round after a restart
  (:class:`~synapse_stream.checkpoints.RoundCheckpoints`).

A source that can *rank* the others' proposals (the classifier) sets ``ranks = True`` and leaves its scores of
the last proposal in ``last_scores`` (one float per row of the state).

Names and factories live in :mod:`synapse_stream.sources.registry`; adding a source is one new module with a
subclass and a ``register(SourceSpec(...))`` call (see ``docs/candidate-policy.md``, "Adding a source").
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:   # methods.base imports nothing from here; the annotation only
    from ..methods.base import LoopState


@dataclass(frozen=True)
class SourceParams:
    """What a factory may need to build a source: one detector's parameters (``eval``'s flags, or the worker's
    detector settings)."""

    tau: float | str | None = 0.6   # IBG's edge threshold (None or "auto": AutoTau)
    d_max: int = 10              # IBG's neighbours kept per positive
    k0: int = 100                # K0 (single-source batch runs)
    gble_k: int = 10             # neighbours per node of GBLE's kNN graph
    gble_ef: int | None = None   # ef of the graph's HNSW searches (None: the index's ef_search)
    gble_scope: str = "window"   # where a new post's neighbours are searched (synapse_stream.graph.SCOPES)
    gble_iterations: int = 20    # propagation steps per round
    seed: int = 0                # random seed (sampling sources)


@dataclass
class LiveView:
    """What a live source may look at before a round, besides the round's :class:`LoopState`.

    ``index``: the worker's :class:`~synapse_stream.index.ShardedIndex`; ``ids`` / ``vectors``: its posts (the
    state's rows); ``external``: positives that are not rows of the state (seeds, and posts confirmed on other
    workers), by id; ``retracted``: confirmed positives overturned since; ``graph``: the worker's incremental
    kNN graph over posts and external positives (:class:`~synapse_stream.graph.KNNGraph`), kept up to date
    only when a source sets ``uses_graph``; ``parts``: ``(part, first row, rows)`` for each segment of the shards
    (``ShardedIndex.vectors_parts``): segments only append, so a source can tell the rows new since its last look.
    """

    index: object
    ids: Sequence[str]
    vectors: np.ndarray
    external: dict[str, np.ndarray] = field(default_factory=dict)
    retracted: frozenset[str] = frozenset()
    graph: object | None = None
    parts: list = field(default_factory=list)   # (part, first row, rows): the index's segments in the state's rows


class CandidateSource(abc.ABC):
    """Base of every candidate source. Subclasses implement :meth:`propose`.

    Contract (checked for every registered source by ``tests/core/test_sources.py``): at most ``k`` pairs
    ``(row, score)``, best first, each row at most once, never a labelled row nor a pending one
    (``state.unlabelled_mask()``), the same answer for the same state and seed.
    """

    name: ClassVar[str] = "source"
    ranks: ClassVar[bool] = False        # True: leaves scores of every row in ``last_scores`` (a ranker)
    uses_graph: ClassVar[bool] = False   # True: needs ``LiveView.graph`` kept up to date (live rounds)
    uses_model: ClassVar[bool] = False   # True: scores with the detector's shared classifier (live rounds)
    last_scores: np.ndarray | None = None

    @abc.abstractmethod
    def propose(self, state: LoopState, k: int) -> list[tuple[int, float]]:
        """Up to ``k`` unlabelled, non-pending rows of ``state`` this source would query next, best first."""

    def prepare(self, state: LoopState) -> None:
        """Once before the first proposal on a fixed pool."""

    def refresh(self, view: LiveView) -> None:
        """Before every live round."""

    def learn(self, state: LoopState, rows: Sequence[int], labels: Sequence[int]) -> None:
        """Verdicts came in for ``rows`` of ``state`` (1 = positive)."""

    def use_model(self, model: object) -> None:
        """The detector's shared classifier (a :class:`~synapse_stream.classifier.ModelVersion`) changed."""

    def forget(self) -> None:
        """The posts changed under the source (shards dropped or replaced): rebuild from the next view."""

    def expired(self) -> None:
        """Posts left the window (segments dropped; the graph's nodes renumbered). By default :meth:`forget`; a
        source whose state is keyed by post id and that drops departed posts as it drops answered ones keeps it."""
        self.forget()

    def rebalanced(self) -> None:
        """The worker's shards changed (a partition taken over or given up): by default :meth:`forget`. A source
        whose state is keyed by post id, and that can tell the parts of the window it has seen by their posts,
        keeps it (IBG: a part taken over is new to it, posts of a part given up leave as departed ones)."""
        self.forget()

    def checkpoint(self) -> dict[str, np.ndarray] | None:
        """What this source learned that a restart would lose and could not get back within a round, as arrays
        (a checkpoint holds no pickle), or None (nothing: it rebuilds from the next view)."""
        return None

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take back what :meth:`checkpoint` gave, after a restart and before the first round's :meth:`refresh`.
        Arrays that are not such a checkpoint raise ``KeyError`` or ``ValueError`` and leave the source as it was."""

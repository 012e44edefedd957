"""Emerging trends found in the stream itself: proposals for detectors nobody has asked for yet.

Posts no detector claims go through :class:`~synapse_stream.trends.stage.TrendStage`: first-story novelty against
the window (:mod:`.novelty`), fading micro-clusters (:mod:`.clusters`), near-duplicate floods (:mod:`.dupes`) and
a burst test on each group's share of the traffic (:mod:`.bursts`); a group that is new, dense and growing
becomes a deduplicated :class:`~synapse_stream.trends.proposals.Proposal` with a stable id, medoids and c-TF-IDF
terms, optionally named by an LLM (:mod:`.naming`). :mod:`.evaluation` replays a labelled pool with planted
events and measures it (``synapse-stream trends eval``). Method and measured numbers: docs/trends.md.
"""
from .proposals import Proposal, ProposalBook, stable_id
from .stage import TrendParams, TrendStage

__all__ = ["Proposal", "ProposalBook", "TrendParams", "TrendStage", "stable_id"]

"""Why a candidate was suggested: the view model of the review page's panel (:func:`explain`). Pure, no I/O.

What the panel shows: the **source** (``ibg``, ``gble``, ``model`` or another candidate source of the registry;
``post`` and ``backfill``, online IBG's reasons, show as ``ibg``), the source's **score**, the **matched seeds**
with their cosine similarity to the post (the worker's ``why.seeds``, computed when it sent the candidate; an
older worker sends only ``matched_seeds``, shown without similarity) and the classifier's **probability**
(``why.probability``, with its model version).

**Audit items are not marked.** A moderator who knew an item was drawn at random would judge it differently, so
the page (and the JSON the page reads) never says ``audit``: an audit item shows the same evidence as any other
item, computed the same way by the worker (its nearest seeds and the classifier's probability), under the
source that evidence points to: ``ibg`` with the best seed's similarity as its score when that similarity
reaches the detector's τ, else ``model`` with the classifier's probability as its score (``ibg`` with the best
similarity when there is no classifier yet). Analysts see audits counted apart on the detector pages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from stream_app.console.items import ReviewItem

IBG_REASONS = ("post", "backfill", "ibg")
MAX_SEEDS = 5


@dataclass(frozen=True)
class SeedMatch:
    seed_id: str
    text: str                   # "" when the seed is unknown (e.g. its detector was wiped)
    similarity: float | None    # cosine with the post; None when the worker did not send it
    origin: str = ""            # synthetic / manual / confirmed


@dataclass(frozen=True)
class WhySuggested:
    source: str
    score: float | None
    seeds: tuple[SeedMatch, ...] = field(default_factory=tuple)
    probability: float | None = None
    model_version: int | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "score": self.score,
                "seeds": [{"text": s.text, "similarity": s.similarity, "origin": s.origin} for s in self.seeds],
                "probability": self.probability, "model_version": self.model_version}


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return None
    return round(float(x), 4)


def _evidence(doc: dict) -> tuple[list[tuple[str, float | None]], float | None, int | None]:
    """``(seed id, similarity)`` pairs, most similar first, and the classifier's probability and version."""
    why = doc.get("why") if isinstance(doc.get("why"), dict) else {}
    pairs: list[tuple[str, float | None]] = []
    for entry in why.get("seeds") or []:
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], (str, int)):
            pairs.append((str(entry[0]), _num(entry[1])))
    if not pairs:
        pairs = [(str(s), None) for s in doc.get("matched_seeds") or []]
    pairs.sort(key=lambda p: -(p[1] if p[1] is not None else -2.0))
    version = why.get("model_version")
    return pairs[:MAX_SEEDS], _num(why.get("probability")), int(version) if isinstance(version, int) else None


def explain(item: ReviewItem, seeds: Mapping[str, dict], tau: float = 0.6) -> WhySuggested:
    """The panel for ``item``; ``seeds``: seed id -> ``{"text", "origin"}`` for (at least) the seeds it names;
    ``tau``: the detector's similarity threshold (used only to present an audit item)."""
    pairs, prob, version = _evidence(item.doc)
    matches = tuple(SeedMatch(sid, str((seeds.get(sid) or {}).get("text") or ""), sim,
                              str((seeds.get(sid) or {}).get("origin") or "")) for sid, sim in pairs)
    reason = item.reason
    if reason == "audit":
        best = pairs[0][1] if pairs and pairs[0][1] is not None else None
        if best is not None and best >= tau or prob is None:
            return WhySuggested("ibg", best, matches, prob, version)
        return WhySuggested("model", prob, matches, prob, version)
    source = "ibg" if reason in IBG_REASONS else (reason or "ibg")
    return WhySuggested(source, _num(item.doc.get("score")), matches, prob, version)


def seed_ids(item: ReviewItem) -> list[str]:
    """The seeds :func:`explain` will want the text of."""
    return [sid for sid, _ in _evidence(item.doc)[0]]

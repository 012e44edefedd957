"""Online IBG: the paper's Algorithm 2 as a continuous, event-driven process.

The engine keeps one invariant: for every known positive ``v`` (synthetic, manual or confirmed
seed), its *window* ``W(v)`` -- its ``d_max`` most similar still-unlabelled posts with cos > τ --
has been sent to the oracle. Three events maintain it:

* **post** arrives (already embedded and added to the shared :class:`~synapse_stream.index.PostIndex`):
  it is compared with every positive (one matrix product); where cos > τ and it beats the weakest
  member of that positive's window (or the window has room), it joins the window and, unless it
  was sent before, becomes a candidate (``reason="post"``).
* **seed** arrives: its window is filled from the index (backfill, ``reason="backfill"``).
* **verdict** arrives: it is recorded (the latest verdict for a post wins); the post leaves every
  window it was in and those windows are refilled from the index (the next-best unlabelled
  neighbours become candidates); a positive becomes a confirmed seed and fills its own window.

No post is ever sent twice. ``d_max`` bounds how many unanswered candidates each positive has
out at once, exactly as it bounds each positive's neighbours per round in the batch algorithm.

**Relation to batch IBG.** Batch IBG run to convergence labels the least fixed point "every post
with cos > τ to a seed or to a confirmed positive". When all posts are indexed before the seeds
arrive and the oracle answers at once, this engine reaches the same fixed point, so its labelled
set equals batch IBG's on the same data and parameters (``tests/core/test_online.py`` checks it);
only the order of queries differs (depth-first here, round by round there).

Costs: a post costs O(|V_P| · d) to compare (brute force; for tens of thousands of seeds an index
would win); a backfill costs one index search, O(ef log n) (widened while labelled posts crowd the
top); memory is O(|V_P| · (d + d_max)) plus the sets of queried and labelled ids.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .books import DetectorBooks
from .embedders.base import l2_normalise
from .exceptions import ConfigError, MessageError
from .index import PostIndex
from .seeds import Seed, SeedOrigin, SeedSet


@dataclass(frozen=True)
class Candidate:
    detector: str
    post_id: str
    score: float                    # highest cosine to a positive whose window holds the post
    matched_seeds: tuple[str, ...]  # those positives, most similar first (at most 5)
    reason: str                     # "post" | "backfill" (online IBG); a round's source (a name in
                                    # synapse_stream.sources.registry); "audit"


@dataclass(frozen=True)
class DetectorConfig:
    name: str
    tau: float = 0.6
    d_max: int = 10
    # False: the engine only keeps the books (labels, queried, positives); candidates come from
    # rounds (``synapse_stream.rounds``) instead of from its windows
    online: bool = True

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("a detector needs a non-empty name")
        if not -1 <= self.tau < 1:
            raise ConfigError(f"detector {self.name}: tau must be in [-1, 1), got {self.tau}")
        if self.d_max < 1:
            raise ConfigError(f"detector {self.name}: d_max must be >= 1, got {self.d_max}")


@dataclass
class VerdictOutcome:
    changed: bool                   # False for an exact repeat of the current verdict
    previous: int | None
    candidates: list[Candidate] = field(default_factory=list)


class OnlineIBG:
    """One detector's online IBG windows over a shared post index, beside the detector's
    :class:`~synapse_stream.books.DetectorBooks` (``books``: seeds, labels, queried, retracted)."""

    def __init__(self, config: DetectorConfig, index: PostIndex, books: DetectorBooks | None = None) -> None:
        self.config = config
        self.index = index
        self.books = books if books is not None else DetectorBooks(index.dim)
        self._window: dict[str, dict[str, float]] = {}  # positive id -> {post id: cos}
        self._owners: dict[str, set[str]] = {}        # post id -> positives whose window holds it

    # the books, by their names (read through the engine by the streaming layer)
    @property
    def seeds(self) -> SeedSet:
        return self.books.seeds

    @property
    def labels(self) -> dict[str, int]:
        return self.books.labels

    @property
    def queried(self) -> set[str]:
        return self.books.queried

    @property
    def retracted(self) -> frozenset[str]:
        """Confirmed positives overturned to negative (they no longer count as positives)."""
        return self.books.retracted

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------------ events
    def on_posts(self, post_ids: Sequence[str], vectors: np.ndarray) -> list[Candidate]:
        """New posts (already in the index). Returns the ones that became candidates."""
        if not len(post_ids) or not len(self.seeds) or not self.config.online:
            return []
        V = l2_normalise(vectors)
        sims = V @ self.seeds.matrix.T  # [b, |V_P|]
        tau, d_max = self.config.tau, self.config.d_max
        out: list[Candidate] = []
        rows, cols = np.nonzero(sims > tau)
        by_post: dict[int, list[int]] = {}
        for r, c in zip(rows.tolist(), cols.tolist()):
            by_post.setdefault(r, []).append(c)
        for r, cols_r in by_post.items():
            pid = str(post_ids[r])
            if pid in self.labels or pid in self.queried:
                continue
            joined = []
            retracted = self.books.retracted
            for c in cols_r:
                sid = self.seeds.seeds[c].id
                if sid in retracted:
                    continue
                w = self._window.setdefault(sid, {})
                s = float(sims[r, c])
                if len(w) < d_max:
                    w[pid] = s
                else:
                    weakest = min(w, key=w.__getitem__)
                    if not s > w[weakest]:
                        continue
                    del w[weakest]
                    self._owners.get(weakest, set()).discard(sid)
                    w[pid] = s
                self._owners.setdefault(pid, set()).add(sid)
                joined.append((s, sid))
            if joined:
                out.append(self._candidate(pid, joined, "post"))
        return out

    def on_seed(self, seed: Seed, vector: np.ndarray) -> list[Candidate]:
        """A new positive (synthetic, manual or confirmed): add it and backfill its window."""
        if not self.seeds.add(seed, vector):
            return []
        return self._refill(seed.id)

    def on_verdict(self, post_id: str, label: int) -> VerdictOutcome:
        """Record a verdict (latest wins) and return the candidates it releases."""
        if label not in (0, 1) or isinstance(label, bool):
            raise MessageError("bad_label", f"label must be 0 or 1, got {label!r}")
        post_id, label = str(post_id), int(label)
        if post_id not in self.queried and post_id not in self.index:
            raise MessageError("unknown_post", f"post {post_id!r} was never seen by this shard")
        previous = self.labels.get(post_id)
        if previous == label:
            return VerdictOutcome(False, previous)
        self.books.record(post_id, label)
        out: list[Candidate] = []
        for sid in sorted(self._owners.pop(post_id, ())):
            self._window.get(sid, {}).pop(post_id, None)
            out.extend(self._refill(sid))
        if label == 1 and post_id in self.index:
            vec = self.index.get_vectors([post_id])[0]
            if self.books.reinstate(post_id, vec):  # overturned back to positive: it counts again
                out.extend(self._refill(post_id))
            else:
                out.extend(self.on_seed(Seed(post_id, "", SeedOrigin.CONFIRMED), vec))
        elif previous == 1 and label == 0:
            self._retract(post_id)
        return VerdictOutcome(True, previous, _dedupe(out))

    def forget_posts(self, post_ids: Iterable[str]) -> list[Candidate]:
        """Posts left the index (their segment expired): every window that held one is refilled from what is
        left; returns the candidates that releases. The books keep their verdicts and what was sent."""
        touched: set[str] = set()
        for pid in post_ids:
            for sid in self._owners.pop(pid, ()):
                self._window.get(sid, {}).pop(pid, None)
                touched.add(sid)
        out: list[Candidate] = []
        for sid in sorted(touched):
            out += self._refill(sid)
        return _dedupe(out)

    def refill_all(self) -> list[Candidate]:
        """Recompute every positive's window (the index changed under them: shards added or dropped)."""
        out: list[Candidate] = []
        for sid in [s.id for s in self.seeds.seeds]:
            out += self._refill(sid)
        return out

    # ------------------------------------------------------------------ helpers
    def _refill(self, sid: str) -> list[Candidate]:
        """Recompute positive ``sid``'s window from the index; send what was never sent."""
        if sid in self.books.retracted or not self.config.online:
            return []
        vec = self.seeds.vector(sid)
        found = self.index.search(vec, self.config.d_max, exclude=self.labels, min_sim=self.config.tau)[0]
        for pid in self._window.get(sid, {}):
            self._owners.get(pid, set()).discard(sid)
        self._window[sid] = dict(found)
        out = []
        for pid, s in found:
            self._owners.setdefault(pid, set()).add(sid)
            if pid not in self.queried:
                out.append(self._candidate(pid, [(s, sid)], "backfill"))
        return out

    def _retract(self, sid: str) -> None:
        """A confirmed positive was overturned: it stops pulling in candidates (its vector is zeroed: cos 0
        with everything, never > τ ≥ 0)."""
        if not self.books.retract(sid):
            return
        for pid in self._window.pop(sid, {}):
            self._owners.get(pid, set()).discard(sid)

    def _candidate(self, pid: str, joined: list[tuple[float, str]], reason: str) -> Candidate:
        self.queried.add(pid)
        joined.sort(key=lambda t: (-t[0], t[1]))
        return Candidate(self.name, pid, joined[0][0], tuple(s for _, s in joined[:5]), reason)

    # ------------------------------------------------------------------ state
    def pending(self) -> set[str]:
        return self.books.pending()

    def stats(self) -> dict:
        return self.books.stats(self.name)


def _dedupe(cands: Iterable[Candidate]) -> list[Candidate]:
    seen, out = set(), []
    for c in cands:
        if c.post_id not in seen:
            seen.add(c.post_id)
            out.append(c)
    return out

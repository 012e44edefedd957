"""IBG as a candidate source: the top of the round's Algorithm-2 batch, by strongest kept edge.

* batch: :class:`~synapse_stream.methods.ibg.IBG` itself (V_P: the seeds plus every positive of the state; each
  round compares every positive with every unlabelled post);
* live: :class:`LiveIBG`, the same batch kept **incrementally** over the worker's window: each positive keeps
  its best ``d_max + slack`` unlabelled posts with cos > τ; a round compares only the posts new since the last
  one (``LiveView.parts``) with every positive, and only the positives new since then with the window. A
  positive whose kept list has fewer than ``d_max`` open posts (not answered, pending or expired) above the best
  one it left out is compared with the window again. Cost of a round: O(Δn · p · d) for Δn new posts and p positives,
  plus O(n · d) per new or exhausted positive, instead of O(p · n · d); memory O(p · (d_max + slack)). The new
  positives' whole-window comparisons are capped at ``rescan_comparisons`` post x positive pairs a round; those
  beyond the cap wait for a later round, oldest first (after a move of τ every positive is new: IBG fills in over a
  few rounds instead of one long round). A restart does not start over: the kept lists, the parts they have seen
  and the automatic τ are in the rounds' checkpoint (:meth:`LiveIBG.checkpoint`, :mod:`synapse_stream.checkpoints`).

The batch is the same as the batch form's on the same state (``tests/core/test_rounds.py``: live rounds equal
core rounds), up to ties at a positive's ``d_max``-th similarity, whenever the cap is not reached.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..methods.base import LoopState
from ..methods.ibg import IBG
from ..tau import AutoTau, best_similarity
from .base import CandidateSource, LiveView, SourceParams
from .registry import SourceSpec, register


class LiveIBG(CandidateSource):
    """Algorithm 2's batch over the live window, kept incrementally (see the module docstring)."""

    name = "ibg"

    def __init__(self, tau: float | str | None = 0.6, d_max: int = 10, slack: int | None = None,
                 rescan_comparisons: int = 50_000_000) -> None:
        self.d_max = int(d_max)
        # at most this many post x positive comparisons a round for new positives compared with the whole window
        # (after a restart or a move of τ every positive is new): about 0.35 s on one core at 384-d. The others
        # wait for a later round (oldest first) and propose nothing meanwhile. Positives whose kept list ran short
        # are compared again without a cap (capping them too evened IBG's work out over the rounds, but made the
        # soak's rounds slower: docs/live-rounds.md, "IBG's whole-window comparisons").
        self.rescan_comparisons = int(rescan_comparisons)
        self._room = 0                              # positives that may still be compared with the window this round
        self._waiting: dict[str, None] = {}         # new positives whose comparison with the window was put off
        # an automatic τ (None or "auto"): started from the seeds and the window, moved by the verdicts, as the
        # batch IBG's (synapse_stream.tau.AutoTau); the kept lists are rebuilt when it moves
        self.auto = AutoTau(self.d_max) if tau is None or tau == "auto" else None
        self._booked: set[str] = set()     # the posts whose verdicts the automatic τ has booked
        self._tau = None if self.auto is not None else float(tau)
        self._lists_tau: float | None = None
        self.slack = int(slack) if slack is not None else 2 * self.d_max
        # positive -> (its kept posts, best first; the best similarity of a post left out, -inf if none)
        self.lists: dict[str, tuple[list[tuple[float, str]], float]] = {}
        self._vecs: dict[str, np.ndarray] = {}    # positive -> its unit vector
        # id(part) -> (part, rows of it compared, the id of its first row, of the last row compared)
        self._done: dict[int, tuple[object, int, str | None, str | None]] = {}
        self._restored: dict[str, tuple[int, str]] = {}   # a checkpoint's parts: first id -> (rows compared, last id)
        self._parts: list = []
        self._external: list[str] = []
        self.compared = 0     # post x positive comparisons so far (the cost, for tests)
        # at most this many similarities at once when the new posts are compared with the kept lists (64 MB: the
        # posts since a checkpoint with 7,600 positives would be ~0.5 GB in one product)
        self.block = 1 << 24

    @property
    def tau(self) -> float | None:
        return self.auto.tau if self.auto is not None else self._tau

    def learn(self, state: LoopState, rows, labels) -> None:
        """Automatic τ: each verdict booked by its best cosine to the positives other than the verdict rows."""
        if self.auto is None or self.auto.tau is None or not len(rows):
            return
        # each post once: a verdict consumed again (at least once, after a restart: the checkpoint may have booked
        # it already) or given again is not booked twice
        keep = [i for i, r in enumerate(rows) if state.ids[r] not in self._booked]
        if not keep:
            return
        rows = np.asarray(rows, np.int64)[keep]
        labels = np.asarray(labels)[keep]
        self._booked.update(state.ids[r] for r in rows.tolist())
        pos = np.setdiff1d(state.positive_rows(), rows)
        self.auto.observe(best_similarity(np.vstack([state.S, state.X[pos]]), state.X[rows]), labels)

    def _current_tau(self, state: LoopState) -> float:
        if self.auto is not None and (self.auto.tau is None or self.auto.observed == 0):
            P = state.S if len(state.S) else state.X[state.positive_rows()]
            if len(P) and state.n:
                self.auto.start(P, state.X)
        tau = self.tau
        if tau is None:
            return 1.0     # nothing to start from yet: no edge
        if tau != self._lists_tau:     # τ moved: every kept list was cut at the old one
            self.forget()
            self._lists_tau = tau
        return tau

    def refresh(self, view: LiveView) -> None:
        self._parts = list(view.parts)
        self._external = list(view.external)     # the ids of the state's S rows, in order

    def forget(self) -> None:
        self.lists, self._vecs, self._done, self._waiting, self._restored = {}, {}, {}, {}, {}

    def expired(self) -> None:
        """Kept: the lists are by post id and lose departed posts as they lose answered ones (``_propose``); a
        departed positive leaves with its list, or keeps it as the seed it becomes (``_moved``); parts no longer
        held are not compared again."""

    def rebalanced(self) -> None:
        """Kept over a rebalance: the parts seen are remembered by their posts (first id, last id compared), so a
        part still held, or given up and taken back from its snapshot before the next round, is not compared
        again; any other part is new; the posts of a part given up leave the lists as departed ones do (a list run
        short is compared with the window again)."""
        self._restored = {first: (seen, last) for _, seen, first, last in self._done.values()
                          if first is not None and seen}
        self._done = {}

    # ------------------------------------------------------------------ upkeep
    def _keep(self, sims: np.ndarray, ids: list[str], limit: int, open_: np.ndarray | None = None
              ) -> tuple[list[tuple[float, str]], float]:
        """The best ``limit`` of these (similarity, post) pairs above τ (only where ``open_``, if given), best
        first; and the best similarity left out (-inf: none), below which the kept list is not the whole story."""
        above = np.flatnonzero(sims > self._lists_tau)
        if open_ is not None:
            above = above[open_[above]]
        bound = -np.inf
        if len(above) > limit:
            part = np.argpartition(-sims[above], limit - 1)
            bound = float(sims[above[part[limit:]]].max())
            above = above[part[:limit]]
        return sorted(((float(sims[i]), ids[i]) for i in above.tolist()), key=lambda t: (-t[0], t[1])), bound

    def _scan(self, names: list[str], state: LoopState, free: np.ndarray) -> None:
        """Compare these positives with the open posts (``free``, a mask of the state's rows) and keep their best:
        one product per chunk of positives with the whole snapshot (no copy of its open rows: at a 200 k window
        that copy was 300 MB a scan; at most ``block`` similarities a product: 83 positives at 200 k), the rows not
        open left out after it."""
        if not names:
            return
        chunk = max(1, self.block // max(1, state.n))
        n_open = int(free.sum())
        limit = self.d_max + self.slack
        for lo in range(0, len(names), chunk):
            part = names[lo:lo + chunk]
            sims = np.vstack([self._vecs[n] for n in part]) @ state.X.T
            self.compared += len(part) * n_open
            for i, name in enumerate(part):
                self.lists[name] = self._keep(sims[i], state.ids, limit, free)

    def _update(self, state: LoopState) -> None:
        free = state.unlabelled_mask()
        names = self._external if len(self._external) == len(state.S) else [f"#{i}" for i in range(len(state.S))]
        positives = {"seed:" + n: v for n, v in zip(names, state.S)}     # seeds and posts confirmed elsewhere
        positives.update({state.ids[r]: state.X[r] for r in state.positive_rows().tolist()})
        self._moved(positives)
        for name in [p for p in self.lists if p not in positives]:     # no longer a positive (gone, overturned)
            self.lists.pop(name)
            self._vecs.pop(name, None)
        for name in [p for p in self._waiting if p not in positives]:
            del self._waiting[name]
        for name in [p for p in self._vecs if p in positives and not np.array_equal(self._vecs[p], positives[p])]:
            self.lists.pop(name)                       # the same name, another vector (no ids known): again
            self._vecs.pop(name)
        parts = self._parts or [(None, 0, state.n)]
        if parts[0][0] is None:   # no parts known (a batch state): everything is new every time
            self._done = {}
        new_rows, done = [], {}
        for part, start, count in parts:
            seen = self._seen(part, start, count, state.ids) if part is not None else 0
            if count > seen:
                new_rows.append(np.arange(start + seen, start + count))
            total = max(seen, count)
            done[id(part)] = (part, total, state.ids[start] if count else None,
                              state.ids[start + total - 1] if total else None)
        # the parts remembered over a restart or a rebalance hold only for this round: the next _propose drops
        # from the lists the posts of parts not held now, so such a part coming back later is new again
        self._restored = {}
        known = [p for p in positives if p in self.lists]
        rows = np.concatenate(new_rows) if new_rows else np.zeros(0, np.int64)
        rows = rows[free[rows]]
        if known and len(rows) and parts[0][0] is not None:
            P = np.vstack([positives[p] for p in known])
            step = max(1, self.block // len(known))    # after a restart the posts since the checkpoint: in blocks
            for lo in range(0, len(rows), step):
                self._merge_new(P, known, rows[lo:lo + step], state)
        self._done = done
        for name, v in positives.items():     # copies: a row of the snapshot is rewritten by the next round's
            if name not in self._vecs:       # (LiveRounds reuses its buffer), and a view would pin the snapshot
                self._vecs[name] = np.array(v, np.float32)
        if parts[0][0] is None:     # a batch state: every positive against every post, every time
            self._room = len(positives) + len(self.lists) + 1
            self._scan(list(positives), state, free)
        else:
            self._room = max(1, self.rescan_comparisons // max(1, state.n))
            self._scan(self._budgeted([n for n in positives if n not in self.lists]), state, free)

    def _merge_new(self, P: np.ndarray, known: list[str], rows: np.ndarray, state: LoopState) -> None:
        """The kept lists of ``known`` (their vectors ``P``) merged with these new rows of the state: the best
        ``d_max + slack`` of the old and the new, whatever the blocks (a top-k of a union is the top-k of the
        blocks' top-ks)."""
        sims = P @ state.X[rows].T
        self.compared += sims.size
        limit = self.d_max + self.slack
        # only the positives with a new post above τ change (most have none): one pass finds them, grouped by
        # positive (row-major order), and each is merged with its hits alone, as _keep would pick from its row
        hit_p, hit_c = np.nonzero(sims > self._lists_tau)
        cuts = np.r_[0, np.flatnonzero(np.diff(hit_p)) + 1, len(hit_p)].tolist() if len(hit_p) else [0]
        for a, b in itertools.pairwise(cuts):
            i, cols = int(hit_p[a]), hit_c[a:b]
            name = known[i]
            kept, bound = self.lists[name]
            add, more = self._keep(sims[i, cols], [state.ids[r] for r in rows[cols].tolist()], limit)
            merged = sorted(kept + add, key=lambda t: (-t[0], t[1]))
            if len(merged) > limit:
                bound = max(bound, merged[limit][0])
            self.lists[name] = (merged[:limit], max(bound, more))

    def _seen(self, part, start: int, count: int, ids) -> int:
        """How many of the part's first rows the kept lists have seen: as the last round left it, or after a
        restart as the checkpoint did, if the part's rows still begin with the same posts up to the last one
        compared (a segment restored from its snapshot, the posts after it consumed again in the same order)."""
        got = self._done.get(id(part))
        if got is not None:
            return got[1]
        seen, last = self._restored.get(ids[start], (0, None)) if count else (0, None)
        return seen if 0 < seen <= count and ids[start + seen - 1] == last else 0

    # ------------------------------------------------------------------ a restart
    def checkpoint(self) -> dict[str, np.ndarray] | None:
        """The kept lists, the parts they have seen (by their first and last post ids), the cut τ and the
        automatic τ's state: after a restart the first round compares only the posts consumed since, instead of
        every positive with the whole window (soak G: 22 s, then about 30 rounds catching up). O(p · (d_max +
        slack)) strings."""
        if self._lists_tau is None and self.auto is None:
            return None
        names = list(self.lists)
        flat = [e for n in names for e in self.lists[n][0]]
        parts = [(first, seen, last) for _, seen, first, last in self._done.values() if first is not None and seen]
        out = {"names": np.asarray(names, dtype=str),
               "bound": np.asarray([self.lists[n][1] for n in names], np.float64),
               "sizes": np.asarray([len(self.lists[n][0]) for n in names], np.int64),
               "sims": np.asarray([sim for sim, _ in flat], np.float64),
               "posts": np.asarray([p for _, p in flat], dtype=str),
               "lists_tau": np.float64(np.nan if self._lists_tau is None else self._lists_tau),
               "part_first": np.asarray([f for f, _, _ in parts], dtype=str),
               "part_seen": np.asarray([n for _, n, _ in parts], np.int64),
               "part_last": np.asarray([la for _, _, la in parts], dtype=str)}
        if self.auto is not None and self.auto.tau is not None:
            out.update({"auto." + k: v for k, v in self.auto.state().items()})
            out["auto_booked"] = np.asarray(sorted(self._booked), dtype=str)
        return out

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        names, posts = np.asarray(arrays["names"]).tolist(), np.asarray(arrays["posts"]).tolist()
        bound, sizes = np.asarray(arrays["bound"], np.float64), np.asarray(arrays["sizes"], np.int64)
        sims = np.asarray(arrays["sims"], np.float64)
        first, last = np.asarray(arrays["part_first"]).tolist(), np.asarray(arrays["part_last"]).tolist()
        seen = np.asarray(arrays["part_seen"], np.int64)
        if not (len(names) == len(bound) == len(sizes) and (sizes >= 0).all() and int(sizes.sum()) == len(sims)
                == len(posts) and len(first) == len(seen) == len(last)):
            raise ValueError("not an IBG checkpoint")
        ends = np.cumsum(sizes).tolist()
        lists = {n: (list(zip(sims[e - c:e].tolist(), posts[e - c:e])), float(b))
                 for n, b, c, e in zip(names, bound.tolist(), sizes.tolist(), ends)}
        cut = float(arrays["lists_tau"])
        auto = {k[5:]: v for k, v in arrays.items() if k.startswith("auto.")}
        if self.auto is not None and auto:
            booked = set(np.asarray(arrays["auto_booked"]).tolist())
            self.auto.load_state(auto)
            self._booked = booked
        self.forget()
        self.lists, self._lists_tau = lists, None if np.isnan(cut) else cut
        self._restored = {f: (int(n), la) for f, n, la in zip(first, seen.tolist(), last)}

    def _budgeted(self, names: list[str]) -> list[str]:
        """Of these positives due for a comparison with the whole window, those this round's room allows (the ones put
        off longest first); the rest wait (``_waiting``) for a later round."""
        waiting = self._waiting
        wanted = set(names)
        order = [n for n in waiting if n in wanted] + [n for n in names if n not in waiting]
        now, later = order[:self._room], order[self._room:]
        self._room -= len(now)
        for n in now:
            waiting.pop(n, None)
        for n in later:
            waiting.setdefault(n, None)
        return now

    def _moved(self, positives: dict[str, np.ndarray]) -> None:
        """Confirmed posts that left the window come back as seeds (``"seed:" + id``, the registry's copy of the
        post's vector): each keeps its list under the new name (it is the same positive; its list holds the best
        open posts of the window, less the departed, as every list does) instead of a scan of the whole window."""
        for name, v in positives.items():
            old = name[5:]
            if not name.startswith("seed:") or name in self.lists or old not in self.lists or old in positives:
                continue
            mine = self._vecs.get(old)
            if mine is not None and mine.shape == v.shape and float(np.abs(mine - v).max()) <= 1e-6:
                self.lists[name] = self.lists.pop(old)
                self._vecs[name] = np.array(v, np.float32)
                del self._vecs[old]

    # ------------------------------------------------------------------ the batch
    def propose(self, state: LoopState, k: int) -> list[tuple[int, float]]:
        if k <= 0:
            return []
        out = self._propose(state, k)
        while not out and self.auto is not None and self.auto.tau is not None and self.auto.exhausted():
            out = self._propose(state, k)      # the closure at τ is labelled: one band lower, as the batch IBG
        return out

    def _propose(self, state: LoopState, k: int) -> list[tuple[int, float]]:
        if self._current_tau(state) >= 1.0:
            return []
        self._update(state)
        row_of = state.row_of()
        free = state.unlabelled_mask()
        best: dict[int, float] = {}
        short = []
        for name in list(self.lists):
            kept, bound = self.lists[name]
            live = [(s, p) for s, p in kept if p in row_of and free[row_of[p]]]
            self.lists[name] = (live, bound)
            # only the kept posts above everything left out are surely this positive's best: fewer than
            # d_max of them while something was left out, and the positive is compared with the window again
            if bound > -np.inf and sum(1 for s, _ in live if s > bound) < self.d_max:
                short.append(name)
        self._scan(short, state, free)
        for name in list(self.lists):
            live = self.lists[name][0]
            for s, p in live[:self.d_max]:
                r = row_of[p]
                if s > best.get(r, -np.inf):
                    best[r] = s
        order = sorted(best.items(), key=lambda t: (-t[1], t[0]))
        return [(r, float(s)) for r, s in order[:k]]


def _ibg(p: SourceParams) -> IBG:
    return IBG(tau=p.tau, d_max=p.d_max)


register(SourceSpec("ibg", batch=_ibg, live=lambda p: LiveIBG(tau=p.tau, d_max=p.d_max),
                    summary="Algorithm 2's batch: unlabelled posts with cos > tau to a positive, d_max per positive"))

"""One detector's kNN graph in the live rounds (:class:`LiveGraph`): built by the first round over its snapshot,
grown between rounds from the rows each part of the index gained since, and its sealed segments' shares saved once
and loaded after a restart instead of searched again. :class:`~synapse_stream.rounds.LiveRounds` owns one per
detector whose sources use the graph (GBLE) and applies expiry and rebalances to it.

Cost of :meth:`LiveGraph.advance`: O(limit · searched parts · log n · d) HNSW searches (``KNNGraph.scope``) and
O(parts) bookkeeping; no O(n) pass over the window.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .graph import GraphShares, KNNGraph
from .index import ShardedIndex


class LiveGraph:
    """The graph (``graph``), how far it has taken each part's rows (``grown``) and its shares on disk (``shares``)."""

    def __init__(self, index: ShardedIndex, graph: KNNGraph, name: str = "") -> None:
        self.index = index
        self.graph = graph
        self.name = name                          # the detector (the shares' file names)
        self.shares: GraphShares | None = None    # where sealed segments' shares of the kNN graph are kept
        self._shares_done: set[tuple[object, str]] = set()   # (shard, segment) shares saved or loaded
        self._growing_done: set[tuple[object, str]] = set()  # (shard, segment) first posts' shares looked at
        self._growing_read: dict[tuple[object, str], tuple] = {}   # read, for a segment still being restored
        self.shares_loaded = [0, 0]               # graph shares loaded (segments, posts) since the last look
        self.grown: dict[object, int] = {}        # part (a segment's PostIndex) -> its first rows in the graph
        self.lag = 0                              # posts indexed here and not in the graph yet (last look)
        self.built = False                        # a round built the graph since the last reset (the upkeep waits)

    def take_loaded(self) -> tuple[int, int]:
        """The (segments, posts) of the shares loaded since the last call."""
        loaded, self.shares_loaded = tuple(self.shares_loaded), [0, 0]
        return loaded

    def reset(self) -> None:
        """Shards were dropped or replaced: the graph starts again (the next round builds it whole)."""
        self.graph.reset()
        self._shares_done.clear()
        self._growing_done.clear()
        self._growing_read.clear()
        self.grown.clear()
        self.built = False

    def upto(self) -> dict[object, int] | None:
        """How many first rows of each part a round may plan over (those the graph has), or None before it is built."""
        return self.grown if self.built else None

    def build(self, post_ids: Sequence[str], external: dict[str, np.ndarray], X: np.ndarray, parts) -> None:
        """A round's update over its snapshot (``parts`` as ``ShardedIndex.vectors_parts`` gives them): the saved
        shares of sealed segments first, then every post and seed not in the graph yet."""
        self.load_shares()
        self.graph.update(self.index, post_ids, external, X, parts)
        # what the snapshot held is in the graph now; a segment dropped since is no longer referenced
        self.grown = {part: max(self.grown.get(part, 0), count) for part, _first, count in parts}
        self.built = True

    def advance(self, limit: int = 2048) -> int:
        """The graph takes up to ``limit`` posts indexed since it last grew (the round thread, between rounds): a
        round's own update then covers only the posts of its last seconds, so its time does not grow with the time
        since the previous round (which waits for the oracle). Saved shares of sealed segments are loaded first and
        the shares of segments now complete are saved. Returns how many posts the graph took; ``lag`` is how many it
        has yet to take.

        The graph is the one the rounds would build, up to HNSW's recall: a node's list is searched among the nodes
        present when it joins (as in a round), and symmetrisation gives earlier nodes their edges to it.
        """
        if not self.built and len(self.index):
            # the first round (after a start or a reset) builds it over its posts in one update, as the core does
            # over a fixed set (the live-equals-core tests); the upkeep follows it (or starts on an empty window)
            self.lag = len(self.index)
            return 0
        self.built = True
        self.load_shares()
        parts = self.index.parts()
        held = {part for part, _ in parts}
        self.grown = {part: n for part, n in self.grown.items() if part in held}   # dropped segments go
        took = 0
        for part, hi in self._plan(parts, max(0, int(limit))):
            lo = self.grown.get(part, 0)
            ids, vecs = part.rows(lo, hi)
            # rows already in the graph (a loaded share) are skipped; the scope is searched from this part
            self.graph.update(self.index, ids, {}, vecs, [(part, 0, len(ids))])
            self.grown[part] = hi
            took += hi - lo
        self.lag = sum(count - self.grown.get(part, 0) for part, count in parts)
        if took:
            self.save_shares()
        return took

    def _plan(self, parts, room: int) -> list[tuple[object, int]]:
        """How far each part's rows go in this upkeep: the room shared evenly among the parts with rows waiting
        (what one of them does not need goes to the others, oldest part first), so when the graph cannot keep up
        every shard lags alike instead of the last ones starving."""
        todo = {part: count - self.grown.get(part, 0) for part, count in parts if count > self.grown.get(part, 0)}
        give = dict.fromkeys(todo, 0)
        while room > 0 and todo:
            share = max(1, room // len(todo))
            for part in list(todo):
                n = min(share, todo[part], room)
                give[part] += n
                todo[part] -= n
                room -= n
                if not todo[part]:
                    del todo[part]
                if room == 0:
                    break
        return [(part, self.grown.get(part, 0) + n) for part, n in give.items() if n]

    # ------------------------------------------------------------------ the shares of sealed segments
    def _sealed_segments(self):
        """(shard key, segment) for every sealed segment of the shards (segmented shards only)."""
        for key, shard in list(self.index.shards.items()):
            for seg in list(getattr(shard, "segments", ())):
                if seg.sealed:
                    yield key, seg

    def load_shares(self) -> None:
        """Before an update: the saved shares of sealed segments not in the graph yet (after a restart or a
        rebalance), so their posts are not searched again."""
        if self.shares is None:
            return
        for key, seg in self._sealed_segments():
            if (key, seg.name) in self._shares_done:
                continue
            share = self.shares.load(key, seg.name, self.name, self.graph.k)
            if share is not None and self.graph.add_share(*share):
                self._shares_done.add((key, seg.name))
                self.shares_loaded[0] += 1
                self.shares_loaded[1] += len(share[0])
        for key, shard in list(self.index.shards.items()):     # the first posts of segments not sealed (or not saved)
            for seg in list(getattr(shard, "segments", ())):
                if (key, seg.name) in self._shares_done or (key, seg.name) in self._growing_done:
                    continue
                got = self._growing_read.pop((key, seg.name), None)
                share = got if got is not None else self.shares.load(key, seg.name, self.name, self.graph.k,
                                                                     growing=True)
                ids = seg.index.ids() if share is not None else []
                if share is not None and len(ids) < len(share[0]):   # still being restored: look again later
                    self._growing_read[(key, seg.name)] = share
                    continue
                self._growing_done.add((key, seg.name))        # looked at once a start or a reset
                # used only if the segment's rows begin with those posts (its snapshot, then the topic again)
                if share is not None and ids[:len(share[0])] == list(share[0]) and self.graph.add_share(*share):
                    self.shares_loaded[0] += 1
                    self.shares_loaded[1] += len(share[0])

    def save_growing(self) -> int:
        """The shares of the first posts the graph holds of each segment not saved whole (the segments being
        written): at every rounds checkpoint, so a restart searches again only the posts after them. Returns how
        many posts the files hold."""
        if self.shares is None:
            return 0
        held = 0
        for key, shard in list(self.index.shards.items()):
            for seg in list(getattr(shard, "segments", ())):
                n = self.grown.get(seg.index, 0)
                if (key, seg.name) in self._shares_done or n == 0:
                    continue
                share = self.graph.share(seg.index.ids()[:n])
                if share is not None:
                    self.shares.save(key, seg.name, self.name, self.graph.k, *share, growing=True)
                    held += n
        return held

    def save_shares(self) -> None:
        """After a round or an upkeep: each sealed segment whose posts all have their graph rows is saved once, and
        the shares of segments dropped since are removed (the round thread owns these files)."""
        if self.shares is None:
            return
        held = {key: {seg.name for seg in list(getattr(shard, "segments", ()))}
                for key, shard in list(self.index.shards.items())}
        for key, names in held.items():
            self.shares.prune(key, self.name, names)
        self._shares_done = {(k, n) for k, n in self._shares_done if n in held.get(k, ())}
        self._growing_done = {(k, n) for k, n in self._growing_done if n in held.get(k, ())}
        self._growing_read = {kn: v for kn, v in self._growing_read.items() if kn[1] in held.get(kn[0], ())}
        for key, seg in self._sealed_segments():
            if (key, seg.name) in self._shares_done:
                continue
            share = self.graph.share(seg.index.ids())
            if share is not None:
                self.shares.save(key, seg.name, self.name, self.graph.k, *share)
                self._shares_done.add((key, seg.name))

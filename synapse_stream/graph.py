"""An incremental symmetric kNN graph over a worker's posts and the seeds (GBLE's graph in the live rounds).

Cost of an update: O(Δn (log n + m) d) for the Δn new posts (HNSW searches) and m seeds (brute force); memory
O(n k). ``tests/core/test_rounds.py`` checks it equals the core's ``knn_graph`` up to HNSW's recall.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
from scipy import sparse

from .embedders.base import l2_normalise
from .exceptions import ConfigError
from .index import ShardedIndex

#: Where a new post's k nearest neighbours are searched. ``"window"``: every part of the index (every shard's every
#: segment: the core's graph up to HNSW's recall). ``"recent"``: the post's own part and the ``RECENT_PARTS`` newest
#: parts of every shard (the segment being written and the last sealed one), so a post's cost does not grow with the
#: number of sealed segments. The posts of one stretch of time then link to those of the stretch before it (a chain
#: the propagation walks), older posts join a new one through their own rows and the symmetrisation, and the seeds
#: search every part. With at most two parts per shard (no retention, or a window that has sealed at most one
#: segment) both are the same graph. Measured in docs/live-rounds.md, "The graph's scope".
SCOPES = ("window", "recent")
RECENT_PARTS = 2


class KNNGraph:
    """A symmetric binary kNN graph over posts and seeds that grows node by node.

    Nodes are numbered in order of arrival (posts by id; seeds by ``"seed:" + id``). A new node's
    ``k`` nearest neighbours are found among *all* current nodes (posts through the index, seeds by
    brute force, new nodes included); existing nodes keep their lists, and symmetrisation gives them
    the new node's edges (as ``knn_graph`` symmetrises). Building it in one call over a fixed set of
    nodes gives the core's exact graph up to the index's recall.

    >>> import numpy as np
    >>> from synapse_stream.index import ShardedIndex
    >>> idx = ShardedIndex(2); _ = idx.add(0, ["a", "b", "c"], np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32))
    >>> g = KNNGraph(k=1)
    >>> g.update(idx, ["a", "b", "c"], {"s": np.array([0.1, 1.0], np.float32)})
    4
    >>> sorted(g.neighbours("c"))
    ['seed:s']
    """

    def __init__(self, k: int = 10, ef: int | None = None, scope: str = "window") -> None:
        if k < 1:
            raise ConfigError("the kNN graph needs k >= 1")
        if scope not in SCOPES:
            raise ConfigError(f"the kNN graph's scope is one of {', '.join(SCOPES)}, not {scope!r}")
        self.k = int(k)
        self.ef = int(ef) if ef else None          # the searches' ef (None: the index's ef_search)
        self.scope = scope                         # where a new post's neighbours are searched (SCOPES)
        self.node_of: dict[str, int] = {}
        self.names: list[str] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._seed_names: list[str] = []
        self._seed_vecs: list[np.ndarray] = []
        self._W: sparse.csr_matrix | None = None
        self._A: sparse.csr_matrix | None = None   # the symmetric adjacency of the edge chunks _rows[:_A_chunks]
        self._A_chunks = 0
        self._waiting: dict[str, list[str]] = {}   # name not a node yet -> loaded nodes whose row points at it
        self._nodes_of: tuple[Sequence[str], np.ndarray] | None = None   # (post ids of the last update, nodes)

    def __len__(self) -> int:
        return len(self.names)

    def reset(self) -> None:
        self.__init__(self.k, self.ef, self.scope)

    def update(self, index: ShardedIndex, post_ids: Sequence[str], seeds: dict[str, np.ndarray],
               vectors: np.ndarray | None = None, parts: Sequence[tuple[object, int, int]] | None = None) -> int:
        """Add the posts (already in ``index``) and seeds not yet in the graph; returns how many were new.

        ``parts``: where the posts are, ``(part, first row, rows)`` over ``post_ids`` as
        ``ShardedIndex.vectors_parts`` gives them; with the ``"recent"`` scope a new post's neighbours are then
        searched in its own part and the newest parts of every shard only (without ``parts``: in every part).

        ``vectors``: optionally the posts' unit vectors as ``index.vectors()`` returns them, row i for
        ``post_ids[i]`` (a round passes its snapshot): the new posts' query vectors are taken from it
        instead of read back from the index (``get_items`` costs 30-40 µs of CPU a post: at 1 M posts
        that was 30-40 s and a second copy of every vector in the first round). They are the same
        vectors, so the graph is the same (``tests/core/test_rounds.py``).
        """
        if vectors is not None and len(vectors) != len(post_ids):
            raise ConfigError(f"{len(vectors)} vectors for {len(post_ids)} posts")
        of = self.node_of
        nodes = np.fromiter((of.get(p, -1) for p in post_ids), np.int64, len(post_ids))   # one pass: -1 new
        fresh = np.flatnonzero(nodes < 0)
        new_posts = [post_ids[i] for i in fresh.tolist()]
        new_seeds = [(s, v) for s, v in seeds.items() if "seed:" + s not in self.node_of]
        first = len(self.names)
        for p in new_posts:
            self._add_name(p)
        nodes[fresh] = np.arange(first, first + len(fresh))
        self._nodes_of = (post_ids, nodes)
        if not new_posts and not new_seeds:
            return 0
        for s, v in new_seeds:
            self._add_name("seed:" + s)
            self._seed_names.append("seed:" + s)
            self._seed_vecs.append(l2_normalise(np.asarray(v, np.float32)[None, :])[0])
        S = np.vstack(self._seed_vecs) if self._seed_vecs else np.zeros((0, index.dim), np.float32)
        if not new_posts:
            queries = np.zeros((0, index.dim), np.float32)
        elif vectors is not None:
            queries = np.asarray(vectors if len(fresh) == len(post_ids) else vectors[fresh], np.float32)
        else:
            queries = index.get_vectors(new_posts)
        seed_q = (l2_normalise(np.vstack([np.asarray(v, np.float32) for _, v in new_seeds])) if new_seeds
                  else np.zeros((0, index.dim), np.float32))
        n_posts = len(new_posts)
        names = list(new_posts) + ["seed:" + s for s, _ in new_seeds]
        k = self.k
        seed_nodes = np.asarray([self.node_of[s] for s in self._seed_names], np.int64)
        for start, stop, within in self._chunks(index, fresh, len(new_seeds), parts):
            # the chunk's query rows: posts then seeds (no stacked copy of all the posts' vectors)
            if stop <= n_posts:
                q = queries[start:stop]
            elif start >= n_posts:
                q = seed_q[start - n_posts:stop - n_posts]
            else:
                q = np.vstack([queries[start:], seed_q[:stop - n_posts]])
            me = np.asarray([self.node_of[n] for n in names[start:stop]], np.int64)
            if within is None:
                found = index.knn_parts(q, k + 1, self.ef) if len(index) else []
            else:
                found = [part.knn_labels(q, k + 1, self.ef) for part in within]
            seed_sims = q @ S.T if len(S) else np.zeros((len(q), 0), np.float32)
            rows, cols = self._rows_of_chunk(me, found, seed_sims, seed_nodes)
            if len(rows):     # as arrays per chunk: no list of n·k Python ints at 1 M posts
                self._rows.append(rows)
                self._cols.append(cols)
        self._W = None
        return len(names)

    def _chunks(self, index: ShardedIndex, fresh: np.ndarray, n_seeds: int, parts
                ) -> list[tuple[int, int, list | None]]:
        """The update's query chunks ``(start, stop, parts to search)`` over its new names (posts, then seeds): at most
        2048 rows each; with the ``"recent"`` scope a chunk of posts stays within one part and searches that part and
        the ``RECENT_PARTS`` newest of every shard (``None``: every part, as for the seeds)."""
        n_posts = len(fresh)
        if self.scope != "recent" or not parts or not n_posts:
            cuts = [(0, n_posts + n_seeds, None)]
        else:
            firsts = np.asarray([first for _, first, _ in parts], np.int64)
            where = np.searchsorted(firsts, fresh, side="right") - 1      # each new post's part (rows are in order)
            bounds = np.flatnonzero(np.diff(where)) + 1
            newest = index.newest_parts(RECENT_PARTS)
            cuts = []
            for lo, hi in zip(np.r_[0, bounds].tolist(), np.r_[bounds, n_posts].tolist()):
                own = parts[int(where[lo])][0]
                cuts.append((lo, hi, [own] + [p for p in newest if p is not own]))
            if n_seeds:
                cuts.append((n_posts, n_posts + n_seeds, None))
        return [(start, min(start + 2048, hi), within) for lo, hi, within in cuts for start in range(lo, hi, 2048)]

    def nodes_of(self, post_ids: Sequence[str]) -> np.ndarray:
        """The node of each post (all in the graph): kept from :meth:`update` when ``post_ids`` is the list
        it was given (a round's snapshot ids: no second O(n) pass), else looked up."""
        kept = self._nodes_of
        if kept is not None and kept[0] is post_ids and len(kept[1]) == len(post_ids):
            return kept[1]
        return np.fromiter((self.node_of[p] for p in post_ids), np.int64, len(post_ids))

    def _rows_of_chunk(self, me: np.ndarray, parts, seed_sims: np.ndarray, seed_nodes: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The edges (me[j] -> neighbour) of a chunk of new nodes, merged with numpy.

        ``parts``: every index part's top k + 1 (``ShardedIndex.knn_parts``). As a whole index would: the k + 1
        best posts of all parts (best first, ties by post id), less the node itself and posts not in the graph
        (inserted after the round's snapshot), then the k + 1 nearest seeds; of those the k best (ties by node
        number). A row where the (k + 1)-th and (k + 2)-th best posts tie is cut by post id (``_cut_by_id``), so
        the rows are exactly those of one search over one index, tie for tie."""
        k, nq = self.k, len(me)
        nodes, sims, where = [], [], []
        for ids, labels, s in parts:
            if labels.shape[1] == 0:
                continue
            uniq, inv = np.unique(labels, return_inverse=True)
            of = self.node_of
            un = np.asarray([of.get(ids[x], -1) for x in uniq.tolist()], np.int64)
            nodes.append(un[inv.reshape(labels.shape)])
            sims.append(s)
            where.append((ids, labels))
        N = np.hstack(nodes) if nodes else np.zeros((nq, 0), np.int64)
        V = np.hstack(sims) if sims else np.zeros((nq, 0), np.float32)
        kk = min(k + 1, N.shape[1])
        order = np.argsort(-V, axis=1, kind="stable")[:, :kk + 1]
        Vs = np.take_along_axis(V, order, 1)
        Ns = np.take_along_axis(N, order, 1)
        if N.shape[1] > kk:
            for j in np.flatnonzero(Vs[:, kk - 1] == Vs[:, kk]).tolist():
                Ns[j, :kk], Vs[j, :kk] = self._cut_by_id(j, where, nodes, sims, kk)
        Ns, Vs = Ns[:, :kk], Vs[:, :kk]
        ks = min(k + 1, seed_sims.shape[1])   # only the k + 1 nearest seeds can make a row's top k
        if ks:
            top = np.argpartition(-seed_sims, ks - 1, axis=1)[:, :ks]
            Ns = np.hstack([Ns, seed_nodes[top]])
            Vs = np.hstack([Vs, np.take_along_axis(seed_sims, top, 1).astype(np.float32)])
        ok = (Ns >= 0) & (Ns != me[:, None])
        Vs = np.where(ok, Vs, -np.inf).astype(np.float32)
        Ns = np.where(ok, Ns, np.iinfo(np.int64).max)
        best = np.lexsort((Ns, -Vs), axis=1)[:, :k]
        Nb = np.take_along_axis(Ns, best, 1)
        keep = np.take_along_axis(ok, best, 1)
        return np.broadcast_to(me[:, None], Nb.shape)[keep].astype(np.int64), Nb[keep].astype(np.int64)

    @staticmethod
    def _cut_by_id(j: int, where, nodes, sims, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``j``'s ``kk`` best posts over all parts, ties by post id (a tie at the cut: exact duplicates)."""
        cand = []
        for (ids, labels), n, s in zip(where, nodes, sims):
            cand += [(-float(v), ids[int(lab)], int(x)) for lab, x, v in zip(labels[j], n[j], s[j])]
        cand.sort(key=lambda t: (t[0], t[1]))
        return (np.asarray([c[2] for c in cand[:kk]], np.int64),
                np.asarray([-c[0] for c in cand[:kk]], np.float32))

    def drop(self, post_ids, to_seeds: dict[str, np.ndarray] | None = None) -> int:
        """Remove posts that left the window (and their edges); the others keep their numbering order.

        A remaining node whose list pointed at a dropped post keeps its other edges (it is not searched
        again: its nearest neighbours are the window's, less the departed). ``to_seeds``: departing posts that
        stay positives outside the window (confirmed posts: the seed registry keeps their vectors), by post id:
        each keeps its node and edges as the seed node ``"seed:" + id`` the next update would otherwise search
        anew in every part (:meth:`to_seed`). Cost O(n + edges). Returns how many nodes went."""
        for p, v in (to_seeds or {}).items():
            self.to_seed(p, v)
        gone = {self.node_of[p] for p in post_ids if p in self.node_of}
        if not gone:
            return 0
        keep = np.ones(len(self.names), bool)
        keep[list(gone)] = False
        new_of = np.cumsum(keep) - 1             # old node -> new node (where kept)
        rows, cols = [], []
        if self._rows:          # one filter over all edge chunks (a loaded share leaves one chunk per node)
            r, c = np.concatenate(self._rows), np.concatenate(self._cols)
            ok = keep[r] & keep[c]
            if ok.any():
                rows.append(new_of[r[ok]])
                cols.append(new_of[c[ok]])
        up_to_date = self._A is not None and self._A_chunks == len(self._rows) and self._A.shape[0] == len(keep)
        self._rows, self._cols = rows, cols
        if up_to_date:   # the kept nodes' rows and columns of the adjacency: O(nnz), no sort of every edge again
            left = np.flatnonzero(keep)
            A = self._A[left][:, left]
            A.sort_indices()
            self._A, self._A_chunks = A, len(rows)
        else:            # edges were added since it was built: the next adjacency is built whole
            self._A, self._A_chunks = None, 0
        self.names = [n for n, k in zip(self.names, keep.tolist()) if k]
        self.node_of = {n: i for i, n in enumerate(self.names)}
        self._nodes_of = None                      # renumbered: the kept rows->nodes map is stale
        if self._waiting:
            dropped = set(post_ids)
            self._waiting = {t: [w for w in ws if w not in dropped] for t, ws in self._waiting.items()
                             if t not in dropped}
        self._W = None
        return len(gone)

    def to_seed(self, post_id: str, vector: np.ndarray) -> bool:
        """Post ``post_id`` leaves the window but stays a positive (a confirmed post, now a seed of the registry with
        ``vector``): its node becomes the seed node ``"seed:" + post_id`` with the edges it has (a remaining node
        keeps its list less the departed, as in :meth:`drop`), instead of a new node searched in every part of the
        index and a node dropped. False (nothing changed) if it is not a post node or the seed is a node already."""
        i = self.node_of.get(post_id)
        name = "seed:" + post_id
        if i is None or name in self.node_of:
            return False
        del self.node_of[post_id]
        self.node_of[name] = i
        self.names[i] = name
        self._seed_names.append(name)
        self._seed_vecs.append(l2_normalise(np.asarray(vector, np.float32)[None, :])[0])
        self._nodes_of = None                      # a post of the last update's list is not a post node any more
        return True

    def _add_names(self, names: list[str]) -> None:
        """:meth:`_add_name` for many (a share's posts): the edges waiting for them in one chunk (the same
        adjacency; one small array pair per post cost about as much as the rest of loading a share)."""
        base = len(self.names)
        for off, name in enumerate(names):
            self.node_of[name] = base + off
        self.names.extend(names)
        src: list[int] = []
        dst: list[int] = []
        for off, name in enumerate(names):
            waiting = self._waiting.pop(name, None)
            if waiting:   # rows loaded from a share that point at this node: their edges exist now
                got = [self.node_of[w] for w in waiting if w in self.node_of]
                src += got
                dst += [base + off] * len(got)
        if src:
            self._rows.append(np.asarray(src, np.int64))
            self._cols.append(np.asarray(dst, np.int64))
            self._W = None

    def _add_name(self, name: str) -> None:
        self.node_of[name] = len(self.names)
        self.names.append(name)
        waiting = self._waiting.pop(name, None)
        if waiting:   # rows loaded from a share that point at this node: their edges exist now
            me = self.node_of[name]
            src = [self.node_of[w] for w in waiting if w in self.node_of]
            self._rows.append(np.asarray(src, np.int64))
            self._cols.append(np.full(len(src), me, np.int64))
            self._W = None

    # ------------------------------------------------------------------ shares of sealed segments
    def share(self, post_ids: Sequence[str]) -> tuple[list[str], np.ndarray, list[str], np.ndarray] | None:
        """The rows of these posts (a sealed segment's posts) as ``(own, src, names, dst)``: edge i goes from
        ``own[src[i]]`` to ``names[dst[i]]``; None while a post is not a node yet. Cost O(edges)."""
        if not post_ids or any(p not in self.node_of for p in post_ids):
            return None
        own = list(post_ids)
        mine = np.full(len(self.names), -1, np.int64)
        mine[[self.node_of[p] for p in own]] = np.arange(len(own))
        src, dst = [], []
        for r, c in zip(self._rows, self._cols):
            ok = mine[r] >= 0
            src.append(mine[r[ok]])
            dst.append(c[ok])
        src_a = np.concatenate(src) if src else np.zeros(0, np.int64)
        dst_a = np.concatenate(dst) if dst else np.zeros(0, np.int64)
        nodes, inverse = np.unique(dst_a, return_inverse=True)
        return own, src_a.astype(np.int32), [self.names[i] for i in nodes.tolist()], inverse.astype(np.int32)

    def add_share(self, own: Sequence[str], src: np.ndarray, names: Sequence[str], dst: np.ndarray) -> bool:
        """Add posts with the rows :meth:`share` gave (loaded after a restart: they are not searched again).
        An edge to a name that is not a node yet is kept until that node arrives (a newer post, a seed); posts
        already in the graph keep the rows they have. Returns False (nothing added) if every post is known."""
        new = [i for i, p in enumerate(own) if p not in self.node_of]
        if not new:
            return False
        fresh = np.zeros(len(own), bool)
        fresh[new] = True
        self._add_names([own[i] for i in new])
        keep = fresh[src]
        src_k, dst_k = np.asarray(src)[keep], np.asarray(dst)[keep]
        # node numbers by name once per share (O(posts + names) lookups, not one per edge: 7 s -> well under 1 s
        # for a 200 k window's shares), then the edges as arrays, in the file's order
        own_node = np.asarray([self.node_of[p] for p in own], np.int64)
        name_node = np.asarray([self.node_of.get(n, -1) for n in names], np.int64)
        rows, cols = own_node[src_k], name_node[dst_k]
        known = cols >= 0
        if not known.all():     # edges to a node that comes later, grouped by it (each group in the file's order)
            unk_s, unk_d = src_k[~known], dst_k[~known]
            order = np.argsort(unk_d, kind="stable")
            unk_s, unk_d = unk_s[order], unk_d[order]
            cuts = np.flatnonzero(np.diff(unk_d)) + 1
            for group_s, group_d in zip(np.split(unk_s, cuts), np.split(unk_d, cuts)):
                self._waiting.setdefault(names[int(group_d[0])], []).extend(own[i] for i in group_s.tolist())
        if known.any():
            self._rows.append(rows[known])
            self._cols.append(cols[known])
        self._W = None
        return True

    def neighbours(self, name: str) -> set[str]:
        i = self.node_of[name]
        A = self.adjacency()
        return {self.names[j] for j in A.indices[A.indptr[i]:A.indptr[i + 1]]}

    def adjacency(self) -> sparse.csr_matrix:
        """The symmetric binary adjacency (float32 CSR, canonical). Kept between calls: only the edges added since
        the last call are merged in (``A + E + Eᵀ``, O(nnz) in scipy's C loops, no sort of the old edges); built
        whole after a drop (the nodes are renumbered). Equal to :meth:`adjacency_full` entry for entry."""
        n = len(self.names)
        if self._A is None:
            self._A = self.adjacency_full()
        elif self._A_chunks < len(self._rows) or self._A.shape[0] != n:
            A = self._A
            A.resize((n, n))                      # new nodes: empty rows and columns at the end
            if self._A_chunks < len(self._rows):
                r = np.concatenate(self._rows[self._A_chunks:])
                c = np.concatenate(self._cols[self._A_chunks:])
                E = sparse.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n))
                A = A + E + E.T.tocsr()
                A.data[:] = 1.0
                A.sort_indices()
            self._A = A
        self._A_chunks = len(self._rows)
        return self._A

    def adjacency_full(self) -> sparse.csr_matrix:
        """The symmetric binary adjacency built from every edge (what :meth:`adjacency` keeps up to date)."""
        n = len(self.names)
        if not self._rows:
            return sparse.csr_matrix((n, n), dtype=np.float32)
        r, c = np.concatenate(self._rows), np.concatenate(self._cols)
        A = sparse.csr_matrix((np.ones(2 * len(r), np.float32), (np.concatenate([r, c]), np.concatenate([c, r]))),
                              shape=(n, n))       # duplicates summed (an edge both ways, a repeated edge) ...
        A.data[:] = 1.0                           # ... and made binary
        A.sort_indices()
        return A

    def transition(self) -> sparse.csr_matrix:
        """Row-normalised adjacency (GBLE's W), cached until the next update: ``row_normalise`` of
        :meth:`adjacency`, computed by scaling the entries of each row by 1 / its degree (the same float32 values
        as ``diag(1/deg) @ A``, without the product)."""
        if self._W is None:
            A = self.adjacency()
            deg = np.diff(A.indptr).astype(np.float64)
            deg[deg == 0] = 1.0
            W = sparse.csr_matrix((np.repeat((1.0 / deg).astype(np.float32), np.diff(A.indptr)), A.indices.copy(),
                                   A.indptr.copy()), shape=A.shape)
            W.has_sorted_indices = True
            self._W = W
        return self._W


class GraphShares:
    """Sealed segments' shares of a detector's kNN graph on disk, beside the segments' snapshots.

    One file per (shard, segment, detector): ``<root>/shard-<key>/segment-<segment>.graph-<detector>.k<k>.npz``
    with the :meth:`KNNGraph.share` arrays (names as fixed-width unicode: no pickle). A segment is sealed once and
    never changes, so its share is written once (atomically: a temporary file, then a rename); a restart or a
    rebalance loads it instead of searching the segment's posts again. Files of segments no longer held are
    removed (:meth:`prune`, and with the segment's own snapshot). A share built with another ``k`` is not used.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key, segment: str, detector: str, k: int, growing: bool = False) -> Path:
        tail = ".growing" if growing else ""
        return self.root / f"shard-{key}" / f"segment-{segment}.graph-{quote(detector, safe='')}.k{int(k)}{tail}.npz"

    def save(self, key, segment: str, detector: str, k: int, own, src, names, dst, growing: bool = False) -> Path:
        """Write a share. ``growing``: the first posts of a segment still being written (replaced at every
        checkpoint; removed when the segment's whole share is written)."""
        path = self.path(key, segment, detector, k, growing)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp.npz")
        np.savez(tmp, own=np.asarray(own, dtype=str), src=np.asarray(src, np.int32),
                 names=np.asarray(names, dtype=str), dst=np.asarray(dst, np.int32))
        os.replace(tmp, path)
        if not growing:
            self.path(key, segment, detector, k, True).unlink(missing_ok=True)
        return path

    def load(self, key, segment: str, detector: str, k: int, growing: bool = False):
        """The saved share, or None (none saved, another k, or an unreadable file: the posts are searched)."""
        path = self.path(key, segment, detector, k, growing)
        try:
            with np.load(path, allow_pickle=False) as z:
                own, src, names, dst = z["own"].tolist(), z["src"], z["names"].tolist(), z["dst"]
        except (OSError, ValueError, KeyError):
            return None
        if len(src) != len(dst) or (len(src) and (src.max() >= len(own) or dst.max() >= len(names))):
            return None
        return own, src, names, dst

    def prune(self, key, detector: str, keep: set[str]) -> int:
        """Remove this detector's shares of segments of shard ``key`` not in ``keep``; returns how many."""
        gone = 0
        folder = self.root / f"shard-{key}"
        tag = f".graph-{quote(detector, safe='')}.k"
        for f in folder.glob("segment-*.graph-*.npz") if folder.exists() else ():
            name = f.name
            if tag not in name:
                continue
            seg = name[len("segment-"):name.index(".graph-")]
            if seg not in keep:
                try:
                    f.unlink()
                    gone += 1
                except OSError:
                    pass
        return gone

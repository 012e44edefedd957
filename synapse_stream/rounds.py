"""Live candidate rounds: the candidate policy (IBG, GBLE, the classifier) over the posts a worker holds.

The batch methods (:mod:`synapse_stream.methods`) run on a fixed pool. In the live loop the pool
grows and verdicts arrive one by one, so the policy runs in *rounds*: :meth:`LiveRounds.plan`
builds a :class:`~synapse_stream.methods.base.LoopState` from the posts in this worker's shards
and the detector's books (:class:`~synapse_stream.online.OnlineIBG` keeps labels, queried posts and
positives) and asks the core :class:`~synapse_stream.methods.policy.Policy` for one batch. The
same ``Policy`` code chooses the batch in ``synapse-stream eval``, so a live round *is* a core
round on the same data. What differs:

* posts sent but not answered yet are ``pending``: never proposed again, not yet labelled;
* **IBG** is the core :class:`~synapse_stream.methods.ibg.IBG` source on the snapshot (positives:
  the seeds, every confirmed post of this worker's shards, and confirmed posts of other workers'
  shards, which arrive as broadcast seeds);
* **GBLE** propagates on a kNN graph kept *incrementally* (:class:`KNNGraph`): each round only the
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

Cost of a round (n local posts, m seeds, p positives, d dims, k graph degree): reading the vectors
O(n d) (one copy of the shards' data), IBG O(p n d), the graph update O(Δn (log n + m) d) for the
Δn new posts, propagation O(iterations · n k), scoring O(n d); memory O(n d) for the snapshot plus
O(n k) for the graph.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import sparse

from .embedders.base import l2_normalise
from .exceptions import ConfigError
from .index import ShardedIndex
from .methods.base import ActiveMethod, LoopState, top_rows
from .methods.gble import propagate, row_normalise
from .methods.ibg import IBG
from .methods.policy import Policy
from .online import Candidate, OnlineIBG

SOURCES = ("ibg", "gble", "model")


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

    def __init__(self, k: int = 10) -> None:
        if k < 1:
            raise ConfigError("the kNN graph needs k >= 1")
        self.k = int(k)
        self.node_of: dict[str, int] = {}
        self.names: list[str] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._seed_names: list[str] = []
        self._seed_vecs: list[np.ndarray] = []
        self._W: sparse.csr_matrix | None = None

    def __len__(self) -> int:
        return len(self.names)

    def reset(self) -> None:
        self.__init__(self.k)

    def update(self, index: ShardedIndex, post_ids: Sequence[str], seeds: dict[str, np.ndarray],
               vectors: np.ndarray | None = None) -> int:
        """Add the posts (already in ``index``) and seeds not yet in the graph; returns how many were new.

        ``vectors``: optionally the posts' unit vectors as ``index.vectors()`` returns them, row i for
        ``post_ids[i]`` (a round passes its snapshot): the new posts' query vectors are taken from it
        instead of read back from the index (``get_items`` costs 30-40 µs of CPU a post: at 1 M posts
        that was 30-40 s and a second copy of every vector in the first round). They are the same
        vectors, so the graph is the same (``tests/core/test_rounds.py``).
        """
        if vectors is not None:
            if len(vectors) != len(post_ids):
                raise ConfigError(f"{len(vectors)} vectors for {len(post_ids)} posts")
            fresh = [i for i, p in enumerate(post_ids) if p not in self.node_of]
            new_posts = [post_ids[i] for i in fresh]
        else:
            new_posts = [p for p in post_ids if p not in self.node_of]
        new_seeds = [(s, v) for s, v in seeds.items() if "seed:" + s not in self.node_of]
        if not new_posts and not new_seeds:
            return 0
        for p in new_posts:
            self._add_name(p)
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
        for start in range(0, len(names), 2048):
            rows, cols = [], []
            stop = min(start + 2048, len(names))
            # the chunk's query rows: posts then seeds (no stacked copy of all the posts' vectors)
            if stop <= n_posts:
                q = queries[start:stop]
            elif start >= n_posts:
                q = seed_q[start - n_posts:stop - n_posts]
            else:
                q = np.vstack([queries[start:], seed_q[:stop - n_posts]])
            found = index.knn(q, k + 1) if len(index) else [[] for _ in range(len(q))]
            seed_sims = q @ S.T if len(S) else np.zeros((len(q), 0), np.float32)
            ks = min(k + 1, seed_sims.shape[1])   # only the k + 1 nearest seeds can make a row's top k
            top_seeds = (np.argpartition(-seed_sims, ks - 1, axis=1)[:, :ks] if ks
                         else np.zeros((len(q), 0), np.int64))
            for j, name in enumerate(names[start:start + 2048]):
                cand = [(s, pid) for pid, s in found[j] if pid != name and pid in self.node_of]
                cand += [(float(seed_sims[j, c]), self._seed_names[c]) for c in top_seeds[j].tolist()
                         if self._seed_names[c] != name]
                cand.sort(key=lambda t: (-t[0], self.node_of[t[1]]))
                me = self.node_of[name]
                for _, other in cand[:k]:
                    rows.append(me)
                    cols.append(self.node_of[other])
            if rows:     # as arrays per chunk: no list of n·k Python ints at 1 M posts
                self._rows.append(np.asarray(rows, np.int64))
                self._cols.append(np.asarray(cols, np.int64))
        self._W = None
        return len(names)

    def _add_name(self, name: str) -> None:
        self.node_of[name] = len(self.names)
        self.names.append(name)

    def neighbours(self, name: str) -> set[str]:
        i = self.node_of[name]
        A = self.adjacency()
        return {self.names[j] for j in A.indices[A.indptr[i]:A.indptr[i + 1]]}

    def adjacency(self) -> sparse.csr_matrix:
        n = len(self.names)
        if not self._rows:
            return sparse.csr_matrix((n, n), dtype=np.float32)
        r, c = np.concatenate(self._rows), np.concatenate(self._cols)
        A = sparse.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n))
        return ((A + A.T) > 0).astype(np.float32).tocsr()

    def transition(self) -> sparse.csr_matrix:
        """Row-normalised adjacency (GBLE's W), cached until the next update."""
        if self._W is None:
            self._W = row_normalise(self.adjacency())
        return self._W


class LiveGBLE(ActiveMethod):
    """GBLE as a live candidate source: propagation on a :class:`KNNGraph` (positive and negative
    verdicts clamped, seeds clamped to 1, overturned seeds to 0), warm-started from the last round."""

    name = "gble"

    def __init__(self, graph: KNNGraph, iterations: int = 20) -> None:
        super().__init__()
        self.graph = graph
        self.iterations = int(iterations)
        self.seed_values: dict[str, float] = {}    # seed name in the graph -> clamp value
        self._y: np.ndarray | None = None

    def _select(self, state: LoopState):
        raise NotImplementedError("LiveGBLE only proposes (through LiveRounds)")

    def propose(self, state: LoopState, k: int):
        g = self.graph
        n_nodes = len(g)
        if n_nodes == 0 or state.n == 0:
            return []
        rows_nodes = np.fromiter((g.node_of[p] for p in state.ids), np.int64, state.n)
        known = np.flatnonzero(state.labels >= 0)
        seed_nodes = np.asarray([g.node_of[s] for s in self.seed_values], np.int64)
        clamp_rows = np.concatenate([rows_nodes[known], seed_nodes])
        clamp_vals = np.concatenate([state.labels[known].astype(np.float32),
                                     np.asarray(list(self.seed_values.values()), np.float32)])
        y_init = None
        if self._y is not None:
            y_init = np.zeros(n_nodes, np.float32)
            y_init[:min(len(self._y), n_nodes)] = self._y[:n_nodes]
        self._y = propagate(g.transition(), np.zeros(n_nodes, np.float32), clamp_rows, clamp_vals,
                            self.iterations, y_init)
        return top_rows(self._y[rows_nodes], np.flatnonzero(state.unlabelled_mask()), k)


class LiveModel(ActiveMethod):
    """The classifier as a live candidate source: the detector's current shared model version."""

    name = "model"

    def __init__(self) -> None:
        super().__init__()
        self.model = None   # a synapse_stream.classifier.ModelVersion (set by the streaming layer)
        self.last_scores: np.ndarray | None = None

    def _select(self, state: LoopState):
        raise NotImplementedError("LiveModel only proposes (through LiveRounds)")

    def propose(self, state: LoopState, k: int):
        self.last_scores = None
        if self.model is None:
            return []
        unl = np.flatnonzero(state.unlabelled_mask())
        scores = np.zeros(state.n, np.float32)
        if len(unl):
            scores[unl] = self.model.predict_proba(state.X[unl])
        self.last_scores = scores
        return top_rows(scores, unl, k)


@dataclass
class RoundRecord:
    number: int
    started: float
    sent: dict[str, str] = field(default_factory=dict)   # post id -> source
    answered: int = 0
    positives: int = 0
    seconds: float = 0.0
    alloc: dict[str, int] = field(default_factory=dict)

    @property
    def outstanding(self) -> int:
        return len(self.sent) - self.answered


class LiveRounds:
    """One detector's candidate rounds on one worker.

    ``sources``: any of ``"ibg"``, ``"gble"``, ``"model"`` (all three: the policy). The parameters
    are the core :class:`~synapse_stream.methods.policy.Policy`'s (``k0``; ``k_max``, by default
    ``2 · k0``; the bandit's ``floor``, ``discount``, ``prior_strength``, ``growth``).
    """

    def __init__(self, engine: OnlineIBG, index: ShardedIndex, *, sources: Sequence[str] = SOURCES,
                 k0: int = 100, k_max: int | None = None, gble_k: int = 10, gble_iterations: int = 20,
                 seed: int = 0, **policy_options) -> None:
        bad = set(sources) - set(SOURCES)
        if bad or not sources:
            raise ConfigError(f"unknown candidate sources {sorted(bad)}; choose from {SOURCES}")
        self.engine = engine
        self.index = index
        self.graph = KNNGraph(gble_k)
        built: dict[str, ActiveMethod] = {}
        for s in sources:
            if s == "ibg":
                built[s] = IBG(tau=engine.config.tau, d_max=engine.config.d_max)
            elif s == "gble":
                built[s] = LiveGBLE(self.graph, gble_iterations)
            else:
                built[s] = LiveModel()
        self.k0 = int(k0)
        self.k_max = int(k_max) if k_max else 2 * self.k0
        self.policy = Policy(built, k0=self.k0, k_max=self.k_max, seed=seed, **policy_options)
        self.policy.reset()
        self.rng = np.random.default_rng(seed)
        self.owner: dict[str, str] = {}          # post id -> source, for every post a round sent
        self.fresh: dict[str, list[float]] = {s: [0.0, 0.0] for s in built}   # verdicts since the last round
        # the last few rounds (the next round's p_prev and timing need only the last one; a verdict for
        # an older round's post still credits its source through ``owner``)
        self.rounds: deque[RoundRecord] = deque(maxlen=8)
        self.planned = 0                         # rounds planned so far
        self.changes = 0                         # posts, seeds or verdicts since the last round
        self.last_seed_at = float("-inf")        # when the last seed arrived (rounds wait for the seed set to settle)

    @property
    def sources(self) -> list[str]:
        return list(self.policy.sources)

    @property
    def model_source(self) -> LiveModel | None:
        return self.policy.sources.get("model")  # type: ignore[return-value]

    # ------------------------------------------------------------------ events
    def touch(self, n: int = 1) -> None:
        """Something changed (posts indexed, a seed, a verdict): a new round may find something new."""
        self.changes += n

    def seed_added(self, now: float) -> None:
        """A synthetic or manual seed arrived (a confirmed post is just a change: :meth:`touch`)."""
        self.changes += 1
        self.last_seed_at = now

    def observe(self, post_id: str, label: int, first: bool) -> str | None:
        """A verdict for ``post_id``; credits the source that proposed it (the first verdict only)."""
        self.changes += 1
        src = self.owner.get(post_id)
        if src is None or not first:
            return src
        self.fresh[src][0] += label
        self.fresh[src][1] += 1 - label
        for rec in reversed(self.rounds):
            if post_id in rec.sent:
                rec.answered += 1
                rec.positives += int(label)
                break
        return src

    def adopt(self, owners: dict[str, str]) -> None:
        """Sources of posts sent before a restart (from Redis), so their verdicts are still credited."""
        for pid, src in owners.items():
            if src in self.fresh:
                self.owner.setdefault(pid, src)

    def forget_graph(self) -> None:
        """Shards were dropped or replaced: rebuild the kNN graph next round."""
        self.graph.reset()
        gble = self.policy.sources.get("gble")
        if isinstance(gble, LiveGBLE):
            gble._y = None

    # ------------------------------------------------------------------ scheduling
    def due(self, now: float, *, min_interval: float, timeout: float, outstanding: float,
            settle: float = 0.0) -> bool:
        """Whether to plan a round now: something changed; no seed arrived in the last ``settle`` s (a
        batch of seeds being uploaded is used whole); and the previous round is answered (all but
        ``outstanding`` of it, a fraction) and at least ``min_interval`` s old, or ``timeout`` s passed."""
        if self.changes == 0 or not len(self.engine.seeds) or now - self.last_seed_at < settle:
            return False
        if not self.rounds:
            return True
        last = self.rounds[-1]
        age = now - last.started
        if age < min_interval:
            return False
        return last.outstanding <= math.floor(outstanding * len(last.sent)) or age >= timeout

    # ------------------------------------------------------------------ the round
    def snapshot(self) -> LoopState:
        """The loop state of this worker's posts now (vectors, labels, pending, seeds not held here)."""
        return self._snapshot()[0]

    def _snapshot(self) -> tuple[LoopState, dict[str, np.ndarray]]:
        """:meth:`snapshot` and the positives outside it (its ``S``, by seed id)."""
        eng = self.engine
        ids, X = self.index.vectors()
        row_of = {p: i for i, p in enumerate(ids)}
        labels = np.full(len(ids), -1, np.int8)
        for pid, y in eng.labels.items():
            r = row_of.get(pid)
            if r is not None:
                labels[r] = y
        pending = np.zeros(len(ids), bool)
        for pid in eng.queried:
            r = row_of.get(pid)
            if r is not None and labels[r] < 0:
                pending[r] = True
        S = self._external_positives(row_of)
        state = LoopState(X=X, S=np.vstack(list(S.values())) if S else np.zeros((0, self.index.dim), np.float32),
                          ids=ids, labels=labels, rng=self.rng, pending=pending)
        if self.rounds and self.rounds[-1].answered:
            last = self.rounds[-1]
            state.rounds = [{"round": last.number, "queried": last.answered, "positives": last.positives}]
        return state, S

    def _external_positives(self, row_of: dict[str, int]) -> dict[str, np.ndarray]:
        """Positives that are not rows of this worker's snapshot: synthetic and manual seeds, and
        confirmed posts held by other workers (overturned ones excluded)."""
        eng = self.engine
        retracted = eng.retracted
        out = {}
        for i, s in enumerate(eng.seeds.seeds):
            if s.id in row_of or s.id in retracted:
                continue
            out[s.id] = eng.seeds.matrix[i]
        return out

    def plan(self, share: float = 1.0, now: float | None = None, limit: int | None = None) -> list[Candidate]:
        """Choose one round's batch (the posts are marked queried in the engine); ``share``: this
        worker's fraction of all posts (scales K0); ``limit``: the oracle budget left (the batch is cut
        to it, best first, as the core loop cuts its last batch)."""
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        if limit is not None and limit <= 0:
            self.changes = 0     # nothing to do until the stream grows (new posts touch it again)
            return []
        state, ext = self._snapshot()
        self.changes = 0
        if state.n == 0:
            return []
        gble = self.policy.sources.get("gble")
        if isinstance(gble, LiveGBLE):
            self.graph.update(self.index, state.ids, ext, state.X)
            # every external positive is clamped to 1; a seed later overturned (retracted) to 0
            gble.seed_values = {"seed:" + s: 1.0 for s in ext}
            for s in self.engine.retracted:
                if "seed:" + s in self.graph.node_of:
                    gble.seed_values["seed:" + s] = 0.0
        # the bandit: discount once per round, then count the verdicts since the last one (the core's order)
        self.policy.decay()
        for s, (a, b) in self.fresh.items():
            self.policy.counts[s][0] += a
            self.policy.counts[s][1] += b
        self.fresh = {s: [0.0, 0.0] for s in self.fresh}
        k0 = max(1, round(self.k0 * min(1.0, max(share, 0.0))))
        self.policy.k0, self.policy.k_max = k0, max(k0, round(self.k_max * k0 / self.k0))
        batch = self.policy.plan(state)
        if limit is not None:
            batch = batch[:limit]
        rec = RoundRecord(self.planned + 1, now)
        out = []
        for r, score, src in batch:
            pid = state.ids[r]
            self.engine.queried.add(pid)
            self.owner[pid] = src
            rec.sent[pid] = src
            out.append(Candidate(self.engine.name, pid, float(score), (), src))
        rec.alloc = {s: sum(1 for v in rec.sent.values() if v == s) for s in self.policy.sources}
        rec.seconds = time.perf_counter() - t0
        if out:
            self.planned += 1
            self.rounds.append(rec)
        return out

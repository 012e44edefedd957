"""The candidate policy: several candidate sources, one oracle budget, split by observed precision.

Sources (each a :class:`~synapse_stream.sources.base.CandidateSource` used through ``propose(state, k)``,
so none runs its own loop; by default the registry's ``POLICY_DEFAULT``, :mod:`synapse_stream.sources`): IBG
(Algorithm 2's batch, strongest edge first), GBLE (label propagation on the kNN graph with positive and
negative verdicts clamped) and the model-guided classifier (:class:`~.model.ModelGuided`). All of them read the same shared state: a verdict obtained for one
source's proposal is a label for every source (a confirmed positive is a new IBG positive, a clamped
GBLE node and a model training example).

Each round:

1. ``K = K0 / p_prev`` (``p_prev``: precision of the previous round's whole batch; 1 at first;
   capped at ``k_max``, by default ``2 · K0``, not the ``10 · K0`` of the single methods: a bandit
   needs many decisions, and when every source's precision is low K0 / p_prev would make rounds of
   ``10 · K0`` posts, each a large bet on little evidence; on imbalanced SST-2 with 1 % positives that
   left 5 rounds in 12 % of the pool).
2. Every active source proposes its ``K`` best unlabelled posts. With a ``ranker`` (by default the
   model source, when there is one) the policy works as *candidate generation + ranking*: the
   ranker proposes first, then every other source's ``K`` candidates are re-ordered by the ranker's
   scores (its probability of being positive), so a source's slots go to the candidates of that
   source the ranker likes best. The bandit then measures each source's precision *as ranked*,
   and the sources still decide which posts are in play (IBG and GBLE can put in play posts the
   classifier would not rank in its own top K). The ranker must **earn** that role (``rerank="earned"``,
   the default; :meth:`Policy.ranker_earns`): it re-orders a source's proposals only while, under the
   bandit's Beta posteriors, it is not credibly less precise than that source (``P(θ_ranker ≥ θ_source)
   ≥ demote``, 0.1). A classifier at chance level (one that learnt "synthetic versus real" rather than
   the rare class, ``docs/tau.md``) then leaves a better source's own order alone.
3. The budget is split by **Thompson sampling**. Source ``s`` has discounted counts ``a_s``
   (positives) and ``b_s`` (negatives) of the posts it proposed and got queried, and a Beta
   posterior on its precision, ``Beta(s₀ μ + a_s, s₀ (1 − μ) + b_s)``. The prior is *pooled*
   (empirical Bayes): its mean ``μ`` is the precision of all sources together (same discounted
   counts; ½ before any verdict), its strength ``s₀`` = ``prior_strength``. A source with little
   evidence is thus assumed to be about as good as the others are now, not ½: when every source's
   precision is low (a rare class) a barely-tried source does not look better than a measured one.
   ``draws`` joint samples are taken and each source's share is the fraction of samples in which it
   had the highest precision (probability matching).
4. Each source that still has proposals keeps an exploration floor of ``max(1, ⌈floor · K⌉)``
   slots. The rest is shared in proportion to the Thompson shares, by water-filling under a soft
   *growth cap*: a source gets at most ``growth`` times the slots it filled last round (first round:
   K / number of sources), because its precision was measured on that many posts and a source's
   precision falls as it goes down its ranking. Slots a capped source cannot take are **held**
   (``overflow="hold"``, the default): the round is smaller and the budget stays for later rounds, in
   which the best source's cap has doubled; a source out of proposals passes its share on to the
   others. (``overflow="spread"``, the earlier rule, gave the capped slots to the uncapped sources and let
   the caps give way when all were capped: after an even first round, the second round of ``2 · K0``
   then went two thirds to the weaker sources, whatever their measured precision; on SST-2 at 1 %
   that left the policy at 0.61–0.87 of the classifier alone at 1 % of the posts queried,
   ``docs/tau.md`` "Held overflow".)
5. The batch is filled source by source (best posterior mean first), each in its own rank order,
   skipping posts already labelled or already taken this round: **no post is sent twice**. Slots
   lost to overlaps are filled by the best sources.
6. After the verdicts, each queried post's label counts for the source that proposed it
   (1 = positive). Before that, every count is multiplied by ``discount`` (γ), so the split follows
   each source's *recent* precision: a source's precision falls as it exhausts its best candidates.

The source of every queried post is recorded (``RunResult.sources``).

Complexity per round: the sum of the sources' proposal costs (IBG O(|V_P| · |V_U| · d), GBLE
O(iterations · N k), the model O(L · d · iterations + U · d)), plus O(draws · S) for the split,
O(S · K log K) for the ranking and O(S · K) for the merge, S the number of sources. Memory: the
sources' own (GBLE's graph O(N k)).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from ..exceptions import ConfigError
from ..sources.base import CandidateSource, SourceParams
from .base import ActiveMethod, LoopState, dynamic_k


#: how the ranker may re-order the other sources' proposals (:meth:`Policy.ranker_earns`)
RERANK = ("earned", "always", "never")
#: where the slots go that a source's growth cap keeps it from taking: to the other sources ("spread"), or
#: nowhere this round (``"hold"``: the round is smaller and the budget stays for later rounds)
OVERFLOW = ("spread", "hold")


class Policy(ActiveMethod):
    name = "policy"

    def __init__(self, sources: Mapping[str, CandidateSource] | None = None, *, k0: int = 100,
                 k_max: int | None = None, floor: float = 0.02, discount: float = 0.7,
                 prior_strength: float = 2.0, draws: int = 2000, growth: float | None = 2.0,
                 ranker: str | None = "model", rerank: str = "earned", demote: float = 0.1,
                 overflow: str = "hold", tau: float | str | None = 0.6,
                 d_max: int = 10, gble_k: int = 10, **kw) -> None:
        super().__init__(**kw)
        if k0 < 1:
            raise ConfigError("policy K0 must be >= 1")
        if not 0 <= floor < 1:
            raise ConfigError(f"exploration floor must be in [0, 1), got {floor}")
        if not 0 <= discount <= 1:
            raise ConfigError(f"discount must be in [0, 1], got {discount}")
        if prior_strength <= 0:
            raise ConfigError(f"prior strength must be > 0, got {prior_strength}")
        if rerank not in RERANK:
            raise ConfigError(f"rerank must be one of {', '.join(RERANK)}, got {rerank!r}")
        if overflow not in OVERFLOW:
            raise ConfigError(f"overflow must be one of {', '.join(OVERFLOW)}, got {overflow!r}")
        self.overflow = overflow
        if growth is not None and growth < 1:
            raise ConfigError(f"growth must be >= 1 (or None), got {growth}")
        if sources is None:
            from ..sources import registry

            sources = registry.build(registry.POLICY_DEFAULT,
                                     SourceParams(tau=tau, d_max=d_max, k0=k0, gble_k=gble_k, seed=self.seed))
        if not sources:
            raise ConfigError("the policy needs at least one candidate source")
        self.sources = dict(sources)
        self._given = list(self.sources)          # the order the caller gave (the label uses it)
        if ranker is not None and ranker in self.sources:
            if not getattr(self.sources[ranker], "ranks", False):
                raise ConfigError(f"the ranker {ranker!r} has no scores to rank by")
            # the ranker proposes first each round, so its scores are fresh when the others are re-ranked
            self.sources = {ranker: self.sources[ranker], **{k: v for k, v in self.sources.items() if k != ranker}}
        self.ranker = ranker if ranker in self.sources else None
        self.rerank = rerank
        if not 0 <= demote < 0.5:
            raise ConfigError(f"demote must be in [0, 0.5), got {demote}")
        self.demote = float(demote)
        self.k0 = int(k0)
        self.k_max = int(k_max) if k_max else 2 * self.k0
        self.floor = float(floor)
        self.discount = float(discount)
        self.prior_strength = float(prior_strength)
        self.draws = int(draws)
        self.growth = growth
        self.counts: dict[str, list[float]] = {}     # per source: discounted [positives, negatives]
        self._last_alloc: dict[str, int] = {}
        self._owner: dict[int, str] = {}
        self._active: dict[str, bool] = {}
        self.seconds: dict[str, float] = {}   # each source's propose (and re-rank) time in the last selection
        self.history: list[dict] = []     # per round: K, the split and the posterior means used

    def params(self) -> dict:
        p: dict = {"sources": "+".join(self._given)}
        ibg = self.sources.get("ibg")
        if ibg is not None and hasattr(ibg, "tau"):
            p.update(tau=ibg.params()["tau"] if hasattr(ibg, "params") else ibg.tau, dmax=ibg.d_max)
        p["K0"] = self.k0
        if self.rerank != "earned" and self.ranker:
            p["rerank"] = self.rerank
        if self.overflow != "hold":
            p["overflow"] = self.overflow
        return p

    def run_info(self) -> dict:
        info: dict = {}
        for src in self.sources.values():
            if hasattr(src, "run_info") and src is not self:
                info.update(src.run_info())
        if self.ranker:
            info["reranked_rounds"] = {s: sum(1 for h in self.history if s in h.get("reranked", ()))
                                       for s in self.sources if s != self.ranker}
        return info

    def ranker_earns(self, source: str) -> bool:
        """Whether the ranker may re-order ``source``'s proposals this round.

        ``rerank="always"``: yes; ``"never"``: no; ``"earned"`` (the default): unless the evidence says the
        ranker's own picks are *credibly less precise* than ``source``'s: under the two Beta posteriors
        (the bandit's discounted counts, normal approximation), ``P(θ_ranker ≥ θ_source) < demote``
        (0.1 by default). A ranker at chance level next to a better source (e.g. a classifier that learnt
        "synthetic versus real" instead of the rare class) then leaves that source's own order alone, and
        the source's precision is measured on its own ranking; as soon as the ranker is no longer clearly
        worse (its precision recovers, or the other source's falls), it ranks again.
        """
        if self.ranker is None or source == self.ranker or self.rerank == "never":
            return False
        if self.rerank == "always":
            return True
        return self.prob_better(self.ranker, source) >= self.demote

    def prob_better(self, a: str, b: str) -> float:
        """``P(θ_a ≥ θ_b)`` under the two Beta posteriors (normal approximation; ½ with no difference)."""
        post = self.posteriors()
        (a1, b1), (a2, b2) = post[a], post[b]
        m1, m2 = a1 / (a1 + b1), a2 / (a2 + b2)
        v1 = a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1))
        v2 = a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))
        sd = math.sqrt(v1 + v2)
        if sd <= 0:
            return 0.5 if m1 == m2 else float(m1 > m2)
        return 0.5 * (1.0 + math.erf((m1 - m2) / (sd * math.sqrt(2.0))))

    # -- the bandit -----------------------------------------------------------
    def posteriors(self) -> dict[str, tuple[float, float]]:
        """Beta parameters of each source's precision (pooled prior plus its discounted counts)."""
        pos = sum(c[0] for c in self.counts.values())
        tot = pos + sum(c[1] for c in self.counts.values())
        mu = (pos + 0.5) / (tot + 1.0)
        s0 = self.prior_strength
        return {s: (s0 * mu + a, s0 * (1 - mu) + b) for s, (a, b) in self.counts.items()}

    def posterior_means(self) -> dict[str, float]:
        return {s: a / (a + b) for s, (a, b) in self.posteriors().items()}

    def split(self, K: int, available: Mapping[str, int], rng: np.random.Generator,
              caps: Mapping[str, int] | None = None) -> dict[str, int]:
        """How many of ``K`` slots each source gets: floors, then Thompson shares water-filled under
        the soft ``caps``, then (only if every source is capped) beyond them; never more than a
        source's ``available`` proposals."""
        names = [s for s in self.sources if available.get(s, 0) > 0]
        if not names or K <= 0:
            return {}
        post = self.posteriors()
        means = self.posterior_means()
        theta = np.column_stack([rng.beta(*post[s], size=self.draws) for s in names])
        wins = np.bincount(theta.argmax(axis=1), minlength=len(names)) / self.draws
        # a share of 0 would never receive spill-over: keep a tiny weight, by posterior mean
        weight = {s: float(wins[i]) + 1e-6 * means[s] for i, s in enumerate(names)}
        floor = max(1, math.ceil(self.floor * K)) if len(names) > 1 else 0
        if floor * len(names) > K:   # K smaller than the floors: one slot each, best mean first
            alloc = {s: 0 for s in names}
            for s in sorted(names, key=lambda s: -means[s])[:K]:
                alloc[s] = 1
            return alloc
        alloc = {s: min(floor, available[s]) for s in names}
        soft = {s: max(alloc[s], min(available[s], caps[s] if caps and s in caps else available[s]))
                for s in names}
        if self.overflow == "hold":   # the shares' split, cut at the caps; what is cut waits for a later round
            fair = _water_fill(K, alloc, available, weight, means)
            return {s: min(fair[s], soft[s]) for s in names}
        for limit in (soft, available):
            alloc = _water_fill(K, alloc, limit, weight, means)
        return alloc

    # -- the loop hooks ---------------------------------------------------------
    def reset(self) -> None:
        """Forget every observation (the bandit starts again from its prior)."""
        self.counts = {s: [0.0, 0.0] for s in self.sources}
        self._owner = {}
        self._last_alloc = {}
        self._active = {s: True for s in self.sources}
        self.history = []

    def _prepare(self, state: LoopState) -> None:
        self.reset()
        for src in self.sources.values():
            src.prepare(state)

    def plan(self, state: LoopState) -> list[tuple[int, float, str]]:
        """One round's batch without querying it: ``(row, score, source)``, in sending order.

        This is what the live loop calls (``synapse_stream.rounds``); the verdicts come back later,
        one at a time, through :meth:`decay` and :meth:`credit`. A source that has nothing to
        propose is asked again next round (live, new posts may give it something).
        """
        self._active = {s: True for s in self.sources}
        batch = self._select(state)
        return [(r, sc, self._owner[r]) for r, sc in batch]

    def decay(self) -> None:
        """Multiply every count by ``discount`` (once per round, before the round's verdicts count)."""
        for c in self.counts.values():
            c[0] *= self.discount
            c[1] *= self.discount

    def credit(self, source: str, label: int) -> None:
        """A verdict for a post ``source`` proposed."""
        if source in self.counts:
            self.counts[source][0] += label
            self.counts[source][1] += 1 - label

    def _select(self, state: LoopState) -> Sequence[tuple[int, float]]:
        K = dynamic_k(self.k0, state.last_precision(), self.k_max)
        proposals: dict[str, list[tuple[int, float]]] = {}
        reranked: list[str] = []
        self.seconds = {}
        for name, src in self.sources.items():
            if not self._active[name]:
                continue
            t0 = time.perf_counter()
            props = [(r, s) for r, s in src.propose(state, K) if state.labels[r] < 0]
            self.seconds[name] = time.perf_counter() - t0
            scores = self.sources[self.ranker].last_scores if self.ranker else None
            if scores is not None and props and self.ranker_earns(name):
                props.sort(key=lambda rs: -float(scores[rs[0]]))     # stable: ties keep the source's order
                reranked.append(name)
            if not props:
                self._active[name] = False     # nothing left to propose (e.g. IBG has converged)
                continue
            proposals[name] = props
        if not proposals:
            return []
        caps = None
        if self.growth is not None:
            start = max(1, K // len(self.sources))
            caps = {s: max(1, math.ceil(self.growth * self._last_alloc.get(s, start))) for s in proposals}
        alloc = self.split(K, {s: len(p) for s, p in proposals.items()}, state.rng, caps)
        means = self.posterior_means()
        order = sorted(alloc, key=lambda s: -means[s])
        taken: set[int] = set()
        batch: list[tuple[int, float]] = []
        owner: dict[int, str] = {}
        cursor = {s: 0 for s in proposals}

        def take(s: str, n: int) -> int:
            got = 0
            props = proposals[s]
            while got < n and cursor[s] < len(props):
                r, sc = props[cursor[s]]
                cursor[s] += 1
                if r in taken:
                    continue
                taken.add(r)
                owner[r] = s
                batch.append((r, sc))
                got += 1
            return got

        short = 0
        for s in order:
            short += alloc[s] - take(s, alloc[s])
        for s in order:                       # slots lost to overlaps: the best sources fill them
            if short <= 0:
                break
            short -= take(s, short)
        self._owner = owner
        self._last_alloc = {s: sum(1 for o in owner.values() if o == s) for s in self.sources}
        self.history.append({"round": len(state.rounds) + 1, "K": K, "alloc": dict(alloc),
                             "means": {s: round(m, 4) for s, m in means.items()}, "reranked": reranked})
        return batch

    def _observe(self, state: LoopState, rows: list[int], labels: list[int]) -> None:
        self.decay()
        for r, y in zip(rows, labels):
            s = self._owner.get(r, "?")
            state.sources.append(s)
            self.credit(s, y)
        for src in self.sources.values():
            src.learn(state, rows, labels)


def _water_fill(K: int, alloc: dict[str, int], limit: Mapping[str, int], weight: Mapping[str, float],
                means: Mapping[str, float]) -> dict[str, int]:
    """Add slots until ``K`` are given or every source is at ``limit``: each pass shares what is left
    among the sources below their limit in proportion to ``weight`` (largest remainders, ties by
    ``means``)."""
    alloc = dict(alloc)
    while True:
        left = K - sum(alloc.values())
        open_ = [s for s in alloc if alloc[s] < limit[s]]
        if left <= 0 or not open_:
            return alloc
        total = sum(weight[s] for s in open_)
        raw = {s: left * weight[s] / total for s in open_}
        give = {s: min(int(math.floor(raw[s])), limit[s] - alloc[s]) for s in open_}
        rest = left - sum(give.values())
        for s in sorted(open_, key=lambda s: (-(raw[s] - math.floor(raw[s])), -means[s])):
            if rest <= 0:
                break
            if alloc[s] + give[s] < limit[s]:
                give[s] += 1
                rest -= 1
        if not any(give.values()):
            return alloc
        for s in open_:
            alloc[s] += give[s]

"""The candidate policy: several candidate sources, one oracle budget, split by observed precision.

Sources (each an :class:`~.base.ActiveMethod` used through ``propose(state, k)``, so none runs its
own loop): IBG (Algorithm 2's batch, strongest edge first), GBLE (label propagation on the kNN graph
with positive and negative verdicts clamped) and the model-guided classifier
(:class:`~.model.ModelGuided`). All of them read the same shared state: a verdict obtained for one
source's proposal is a label for every source (a confirmed positive is a new IBG positive, a clamped
GBLE node and a model training example).

Each round:

1. ``K = K0 / p_prev`` (``p_prev``: precision of the previous round's whole batch; 1 at first;
   capped at ``k_max``).
2. Every active source proposes its ``K`` best unlabelled posts.
3. The budget is split by **Thompson sampling**: each source ``s`` has a Beta(α_s, β_s) posterior
   on its precision; ``draws`` joint samples are taken and each source's share is the fraction of
   samples in which it had the highest precision (probability matching). Each source that still
   has proposals keeps an exploration floor of ``max(1, ⌈floor · K⌉)`` slots. A source gets at most
   ``growth`` times the slots it filled last round (first round: K / number of sources): its
   precision was measured on that many posts, and a source's precision falls as it goes down its
   ranking, so a good small sample is not trusted for a batch many times larger. Slots no source can
   take within these caps go to the best posterior mean first, as do slots a source cannot fill
   (it ran out of new posts).
4. The batch is filled source by source (best posterior mean first), each in its own rank order,
   skipping posts already labelled or already taken this round: **no post is sent twice**.
5. After the verdicts, each queried post's label updates the posterior of the source that
   proposed it (reward 1 = positive). Before the update the posteriors are discounted towards the
   prior, ``α ← α₀ + γ (α − α₀)`` (same for β), so the split follows each source's *recent*
   precision: a source's precision falls as it exhausts its best candidates.

The source of every queried post is recorded (``RunResult.sources``).

Complexity per round: the sum of the sources' proposal costs (IBG O(|V_P| · |V_U| · d), GBLE
O(iterations · N k), the model O(L · d · iterations + U · d)), plus O(draws · S) for the split and
O(S · K) for the merge, S the number of sources. Memory: the sources' own (GBLE's graph O(N k)).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..exceptions import ConfigError
from .base import ActiveMethod, LoopState, dynamic_k


class Policy(ActiveMethod):
    name = "policy"

    def __init__(self, sources: Mapping[str, ActiveMethod] | None = None, *, k0: int = 100,
                 k_max: int | None = None, floor: float = 0.02, discount: float = 0.7,
                 prior: tuple[float, float] = (1.0, 1.0), draws: int = 2000, growth: float | None = 2.0,
                 tau: float = 0.6, d_max: int = 10, gble_k: int = 10, **kw) -> None:
        super().__init__(**kw)
        if k0 < 1:
            raise ConfigError("policy K0 must be >= 1")
        if not 0 <= floor < 1:
            raise ConfigError(f"exploration floor must be in [0, 1), got {floor}")
        if not 0 <= discount <= 1:
            raise ConfigError(f"discount must be in [0, 1], got {discount}")
        if prior[0] <= 0 or prior[1] <= 0:
            raise ConfigError("Beta prior parameters must be > 0")
        if sources is None:
            from .gble import GBLE
            from .ibg import IBG
            from .model import ModelGuided

            sources = {"ibg": IBG(tau=tau, d_max=d_max), "gble": GBLE(k=gble_k, k0=k0),
                       "model": ModelGuided(k0=k0, seed=self.seed)}
        if not sources:
            raise ConfigError("the policy needs at least one candidate source")
        self.sources = dict(sources)
        self.k0 = int(k0)
        self.k_max = int(k_max) if k_max else 10 * self.k0
        self.floor = float(floor)
        self.discount = float(discount)
        self.prior = (float(prior[0]), float(prior[1]))
        self.draws = int(draws)
        if growth is not None and growth < 1:
            raise ConfigError(f"growth must be >= 1 (or None), got {growth}")
        self.growth = growth
        self._last_alloc: dict[str, int] = {}
        self._ab: dict[str, list[float]] = {}
        self._owner: dict[int, str] = {}
        self._active: dict[str, bool] = {}
        self.history: list[dict] = []     # per round: the split asked for and the posteriors used

    def params(self) -> dict:
        p: dict = {"sources": "+".join(self.sources)}
        ibg = self.sources.get("ibg")
        if ibg is not None and hasattr(ibg, "tau"):
            p.update(tau=ibg.tau, dmax=ibg.d_max)
        p["K0"] = self.k0
        return p

    # -- the bandit -----------------------------------------------------------
    def posterior_means(self) -> dict[str, float]:
        return {s: a / (a + b) for s, (a, b) in self._ab.items()}

    def split(self, K: int, available: Mapping[str, int], rng: np.random.Generator,
              caps: Mapping[str, int] | None = None) -> dict[str, int]:
        """How many of ``K`` slots each source gets (Thompson shares, exploration floor, capacity).

        ``caps`` (soft): the Thompson pass gives a source at most this many slots; only slots that no
        source can take within its cap spill over beyond it (best posterior mean first).
        """
        names = [s for s in self.sources if available.get(s, 0) > 0]
        if not names or K <= 0:
            return {}
        theta = np.column_stack([rng.beta(*self._ab[s], size=self.draws) for s in names])
        wins = np.bincount(theta.argmax(axis=1), minlength=len(names)) / self.draws
        floor = max(1, math.ceil(self.floor * K)) if len(names) > 1 else 0
        alloc = {s: 0 for s in names}
        # the floors first (never more than a source can fill, never more than K in all)
        for s in names:
            alloc[s] = min(floor, available[s])
        left = K - sum(alloc.values())
        if left < 0:  # K smaller than the floors: one slot each, best mean first
            means = self.posterior_means()
            alloc = {s: 0 for s in names}
            for s in sorted(names, key=lambda s: -means[s])[:K]:
                alloc[s] = 1
            return alloc
        # the rest by Thompson share (largest remainders), then spill-over by posterior mean
        cap = {s: max(alloc[s], min(available[s], caps[s] if caps and s in caps else available[s])) for s in names}
        raw = {s: wins[i] * left for i, s in enumerate(names)}
        extra = {s: min(int(math.floor(raw[s])), cap[s] - alloc[s]) for s in names}
        for s in names:
            alloc[s] += extra[s]
        left = K - sum(alloc.values())
        means = self.posterior_means()
        for s in sorted(names, key=lambda s: (-(raw[s] - math.floor(raw[s])), -means[s])):
            if left <= 0:
                break
            if alloc[s] < cap[s]:
                alloc[s] += 1
                left -= 1
        for limit in (cap, available):       # spill-over: within the caps first, then beyond them
            for s in sorted(names, key=lambda s: -means[s]):
                if left <= 0:
                    break
                take = min(left, limit[s] - alloc[s])
                alloc[s] += take
                left -= take
        return alloc

    # -- the loop hooks ---------------------------------------------------------
    def _prepare(self, state: LoopState) -> None:
        self._ab = {s: list(self.prior) for s in self.sources}
        self._owner = {}
        self._last_alloc = {}
        self._active = {s: True for s in self.sources}
        self.history = []
        for src in self.sources.values():
            src.prepare(state)

    def _select(self, state: LoopState) -> Sequence[tuple[int, float]]:
        K = dynamic_k(self.k0, state.last_precision(), self.k_max)
        proposals: dict[str, list[tuple[int, float]]] = {}
        for name, src in self.sources.items():
            if not self._active[name]:
                continue
            props = [(r, s) for r, s in src.propose(state, K) if state.labels[r] < 0]
            if not props:
                self._active[name] = False     # nothing left to propose (e.g. IBG has converged)
                continue
            proposals[name] = props
        if not proposals:
            return []
        # capacity = distinct posts a source can contribute (overlaps are resolved in the merge)
        caps = None
        if self.growth is not None:
            # a source's precision was measured on the batch it was given; do not trust it for a batch
            # more than `growth` times larger (its precision falls as it goes down its ranking)
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
                             "means": {s: round(m, 4) for s, m in means.items()}})
        return batch

    def _observe(self, state: LoopState, rows: list[int], labels: list[int]) -> None:
        a0, b0 = self.prior
        g = self.discount
        for s, ab in self._ab.items():
            ab[0] = a0 + g * (ab[0] - a0)
            ab[1] = b0 + g * (ab[1] - b0)
        for r, y in zip(rows, labels):
            s = self._owner.get(r, "?")
            state.sources.append(s)
            if s in self._ab:
                self._ab[s][0] += y
                self._ab[s][1] += 1 - y

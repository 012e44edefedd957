"""Recall without ground truth: audit sampling and a stratified recall estimator.

In production nobody knows how many positives the stream held, so the detector's recall cannot be
read off the ledger. An *audit* fixes that: a small fraction ``a`` of all posts (e.g. 0.5 %), chosen
uniformly at random and independently of the detector (:class:`AuditSampler`), is sent to the
oracle with reason ``audit``. From the audited verdicts :class:`RecallEstimator` estimates the
recall of the detector, with a confidence interval.

The estimator (stratified, "detector-queried" vs "not queried")
-----------------------------------------------------------------
At any moment the N posts seen so far split into two strata:

* **Q**, the posts the detector has queried *and* has a verdict for (``n_Q`` posts). Their labels
  are known exactly; ``F`` of them are positive: the detector's confirmed finds.
* **R**, every other post (``n_R = N − n_Q``; includes posts whose detector query is still pending).
  The number of positives in R, ``P_R``, is unknown.

True recall is ``F / (F + P_R)``. The audited posts that fall in R (``m_R`` of them, ``x_R``
positive) are a uniform random sample of R, so ``p_R = P_R / n_R`` is estimated by ``x_R / m_R`` and

    total positives  T̂ = F + n_R · x_R / m_R,        recall  r̂ = F / T̂.

The interval: a binomial confidence interval ``[p_lo, p_hi]`` for ``p_R`` at the stated level
(Wilson score by default; Jeffreys or Clopper–Pearson on request), mapped through the recall,
which decreases monotonically in ``p_R``:

    [ F / (F + n_R · p_hi),  F / (F + n_R · p_lo) ].

A monotone map carries the coverage of the proportion interval over unchanged: whenever
``p_R ∈ [p_lo, p_hi]``, the true recall lies in the recall interval.

Why stratify: the detector's own verdicts are exact, so only R needs estimating, and its
prevalence is lower than the stream's (the detector took many positives out of it), so the
interval is narrower than the naive ``F / (N · p̂)`` with ``p̂`` the audit's overall prevalence
(:func:`naive_recall_interval`, kept for comparison), which also can exceed 1.

Assumptions (the interval's coverage depends on them):

1. **The audit is independent of the detector**: whether a post is audited depends only on the
   post id and a secret salt (:class:`AuditSampler`), never on scores, candidates or verdicts.
   Then, given which posts the detector queried, the audited posts in R are a uniform sample of R.
2. **The detector does not use audit verdicts**: audit verdicts do not become seeds and do not
   exclude a post from the detector's candidates (otherwise audited positives would be steered
   out of, or into, Q and bias ``x_R / m_R``). An audited post the detector later queries moves
   from R to Q (:meth:`RecallEstimator.update_detector` with its ``post_id``, or
   :meth:`RecallEstimator.mark_queried`).
3. **Both oracles give the same answer**: audit and detector verdicts come from the same labelling
   standard. Label noise biases the recall, and no interval can show it.
4. **Sampling with replacement** is assumed by the binomial interval; the audit samples R without
   replacement (hypergeometric), which makes the interval slightly conservative; negligible for
   ``m_R ≪ n_R``.

Precision stays separate: the detector's precision is ``F / n_Q`` over detector queries only;
the audit's own positives give the stream prevalence, reported apart (``audit_prevalence``).

Edge cases: no audited post in R yet (and R not empty) → no estimate (``None``); R empty (the
detector labelled everything) → recall 1 exactly (``None`` if there is no positive at all); no positive in the audit sample → ``p_lo = 0``,
estimate 1 if F > 0 with a finite lower bound; F = 0 → recall 0 when the audit saw a positive in R,
undefined (``None``, interval [0, 1]) when no positive was seen anywhere.

Complexity: every update is O(1); memory O(audited posts) (one entry per audited post, so a
verdict can be replaced and a post moved between strata). ``get()`` is O(1) plus one quantile.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist

from .exceptions import ConfigError

INTERVALS = ("wilson", "jeffreys", "clopper-pearson")


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def proportion_interval(x: int, m: int, confidence: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Two-sided confidence interval for a binomial proportion ``x / m`` (``m > 0``).

    ``wilson``: the Wilson score interval; ``jeffreys``: equal-tailed Beta(x + ½, m − x + ½) posterior
    interval (with the usual 0 / 1 ends at x = 0 / x = m); ``clopper-pearson``: the exact interval
    (conservative: coverage ≥ the level).
    """
    if m <= 0:
        raise ValueError("m must be > 0")
    if not 0 <= x <= m:
        raise ValueError(f"need 0 <= x <= m, got x={x}, m={m}")
    alpha = 1 - confidence
    if method == "wilson":
        z = _z(confidence)
        p = x / m
        denom = 1 + z * z / m
        centre = (p + z * z / (2 * m)) / denom
        half = z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / denom
        lo = 0.0 if x == 0 else max(0.0, centre - half)       # exact ends (no rounding residue)
        hi = 1.0 if x == m else min(1.0, centre + half)
        return lo, hi
    from scipy.stats import beta

    if method == "jeffreys":
        lo = 0.0 if x == 0 else float(beta.ppf(alpha / 2, x + 0.5, m - x + 0.5))
        hi = 1.0 if x == m else float(beta.ppf(1 - alpha / 2, x + 0.5, m - x + 0.5))
        return lo, hi
    if method == "clopper-pearson":
        lo = 0.0 if x == 0 else float(beta.ppf(alpha / 2, x, m - x + 1))
        hi = 1.0 if x == m else float(beta.ppf(1 - alpha / 2, x + 1, m - x))
        return lo, hi
    raise ConfigError(f"unknown interval {method!r}; choose from {', '.join(INTERVALS)}")


def stratified_recall(found: int, rest: int, x_rest: int, m_rest: int, confidence: float = 0.95,
                      method: str = "wilson") -> tuple[float | None, float | None, float | None]:
    """``(estimate, lower, upper)`` of recall from F found, ``rest`` = n_R posts outside Q, and
    ``x_rest`` positives among ``m_rest`` audited posts in R (see the module docstring)."""
    if rest <= 0:   # the detector has a verdict for every post: recall is known (undefined with no positive)
        return (1.0, 1.0, 1.0) if found > 0 else (None, None, None)
    if m_rest <= 0:
        return None, None, None
    lo_p, hi_p = proportion_interval(x_rest, m_rest, confidence, method)
    p = x_rest / m_rest
    if found == 0:
        return (0.0, 0.0, 0.0) if x_rest > 0 else (None, 0.0, 1.0)
    return found / (found + rest * p), found / (found + rest * hi_p), found / (found + rest * lo_p)


def naive_recall_interval(found: int, posts: int, x: int, m: int, confidence: float = 0.95,
                          method: str = "wilson") -> tuple[float | None, float | None, float | None]:
    """The unstratified estimator, for comparison: recall = F / (N · p̂), p̂ the audit's prevalence.

    Ignores that Q's labels are known; valid under the same assumptions but wider, and the point
    estimate may exceed 1 (it is clipped to 1, as are the bounds)."""
    if m <= 0 or posts <= 0:
        return None, None, None
    lo_p, hi_p = proportion_interval(x, m, confidence, method)
    if found == 0:
        return (0.0, 0.0, 0.0) if x > 0 else (None, 0.0, 1.0)
    p = x / m

    def r(q):
        return 1.0 if q <= 0 else min(1.0, found / (posts * q))

    return r(p), r(hi_p), r(lo_p)


@dataclass
class _Audited:
    label: int
    queried: bool


class RecallEstimator:
    """Streaming recall estimate of one detector from audit verdicts (River-style: update, get).

    >>> est = RecallEstimator(confidence=0.95)
    >>> est.set_posts(1000); est.set_detector(queried=50, found=30)
    >>> for i in range(40):                      # 40 audited posts outside Q, 2 of them positive
    ...     est.update_audit(f"a{i}", int(i < 2))
    >>> r = est.get(); round(r["estimate"], 3), r["audit_size"]
    (0.387, 40)
    """

    def __init__(self, confidence: float = 0.95, method: str = "wilson") -> None:
        if not 0 < confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
        if method not in INTERVALS:
            raise ConfigError(f"unknown interval {method!r}; choose from {', '.join(INTERVALS)}")
        self.confidence = float(confidence)
        self.method = method
        self.posts = 0                 # N: posts seen
        self.queried = 0               # n_Q: detector queries with a verdict
        self.found = 0                 # F: of which positive
        self._audited: dict[str, _Audited] = {}
        self.m_rest = 0                # audited posts in R
        self.x_rest = 0                # of which positive
        self.audit_positives = 0       # positives among all audited posts

    # -- updates ------------------------------------------------------------
    def observe_posts(self, n: int = 1) -> None:
        self.posts += int(n)

    def set_posts(self, n: int) -> None:
        self.posts = int(n)

    def update_audit(self, post_id: str, label: int, queried_by_detector: bool = False) -> None:
        """An audit verdict (a later verdict for the same post replaces the earlier one)."""
        if label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {label!r}")
        old = self._audited.get(post_id)
        if old is not None:
            self._count(old, -1)
            queried_by_detector = queried_by_detector or old.queried
        entry = _Audited(int(label), bool(queried_by_detector))
        self._audited[post_id] = entry
        self._count(entry, +1)

    def update_detector(self, label: int, post_id: str | None = None) -> None:
        """One more detector verdict; with ``post_id``, an audited post moves from R to Q."""
        self.queried += 1
        self.found += int(label)
        if post_id is not None:
            self.mark_queried(post_id)

    def set_detector(self, queried: int, found: int) -> None:
        """Absolute detector counters (e.g. read from the ledger): verdicts and confirmed positives."""
        if not 0 <= found <= queried:
            raise ValueError(f"need 0 <= found <= queried, got {found}, {queried}")
        self.queried, self.found = int(queried), int(found)

    def mark_queried(self, post_id: str) -> None:
        """The detector has a verdict for ``post_id``: if it was audited, it now belongs to Q."""
        e = self._audited.get(post_id)
        if e is not None and not e.queried:
            self._count(e, -1)
            e.queried = True
            self._count(e, +1)

    def _count(self, e: _Audited, sign: int) -> None:
        self.audit_positives += sign * e.label
        if not e.queried:
            self.m_rest += sign
            self.x_rest += sign * e.label

    # -- reading ------------------------------------------------------------
    @property
    def audit_size(self) -> int:
        return len(self._audited)

    def get(self) -> dict:
        """The estimate and everything it rests on.

        ``estimate``, ``lower``, ``upper``: recall and its interval (``None`` when not estimable yet);
        ``audit_size``; ``audit_share`` = audits / (audits + detector verdicts), the audit's share of
        oracle work; ``prevalence`` (+ ``prevalence_lower``/``_upper``): the stream's, from the audit
        alone; ``positives_estimate``: T̂; ``detector_precision``: F / n_Q (audits excluded).
        """
        rest = max(0, self.posts - self.queried)
        est, lo, hi = stratified_recall(self.found, rest, self.x_rest, self.m_rest, self.confidence, self.method)
        m = self.audit_size
        prev = prev_lo = prev_hi = None
        if m:
            prev = self.audit_positives / m
            prev_lo, prev_hi = proportion_interval(self.audit_positives, m, self.confidence, self.method)
        total = None
        if rest == 0:
            total = float(self.found)
        elif self.m_rest:
            total = self.found + rest * self.x_rest / self.m_rest
        work = m + self.queried
        return {
            "estimate": est, "lower": lo, "upper": hi, "confidence": self.confidence, "method": self.method,
            "audit_size": m, "audit_positives": self.audit_positives,
            "audit_share": m / work if work else 0.0,
            "prevalence": prev, "prevalence_lower": prev_lo, "prevalence_upper": prev_hi,
            "positives_estimate": total, "posts": self.posts, "rest": rest,
            "rest_audit_size": self.m_rest, "rest_audit_positives": self.x_rest,
            "detector_queried": self.queried, "detector_found": self.found,
            "detector_precision": self.found / self.queried if self.queried else None,
        }


class AuditSampler:
    """Uniform, detector-independent audit selection: post ``i`` is audited iff
    ``H(salt, i) < rate`` with ``H`` a hash mapped to [0, 1).

    Deterministic per post id, so every worker (and a restarted one) makes the same choice without
    coordination, and the choice depends on nothing the detector sees. Keep the salt secret, so a
    poster cannot craft ids that dodge the audit.

    >>> s = AuditSampler(0.005, salt="x")
    >>> s.should_audit("p-1") == s.should_audit("p-1")
    True
    """

    def __init__(self, rate: float, salt: str = "") -> None:
        if not 0 <= rate <= 1:
            raise ConfigError(f"audit rate must be in [0, 1], got {rate}")
        self.rate = float(rate)
        self.salt = salt

    def draw(self, post_id: str) -> float:
        h = hashlib.blake2b(f"{self.salt}\0{post_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2.0 ** 64

    def should_audit(self, post_id: str) -> bool:
        return self.draw(post_id) < self.rate

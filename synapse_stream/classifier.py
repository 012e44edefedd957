"""A detector's classifier as a versioned, serialisable model: train, cross-validate, score, store.

:func:`train_model` fits a logistic regression on the embeddings (scikit-learn, ``C`` = 1 by default)
on three kinds of rows, in this order:

* the synthetic **seeds**, label 1, weight ``seed_weight``;
* the **labelled posts** of the ledger (every verdict so far), their own label, weight 1;
* **provisional negatives**: unlabelled posts drawn at random, label 0, weight 1 (the
  positive-unlabelled assumption: a random post of a rare class is a negative with probability
  1 − prevalence; see :class:`~synapse_stream.methods.model.ModelGuided`, which fits exactly this).

It also **cross-validates on the ledger**: a stratified k-fold split of the labelled posts only. Every
training fold keeps all the seeds and all the provisional negatives; a test fold holds labelled posts
only (a seed or a provisional label is never scored as if it were a verdict). The out-of-fold
probabilities of all folds are pooled and thresholded at ``cv_threshold`` into one precision and
one recall. ``folds`` is cut to the minority class count among the labelled posts; below 2 folds
(or with ``folds=0``) there is no cross-validation and ``cv_precision``/``cv_recall`` are None.

Read the CV figures for what they are: the ledger's posts were *chosen* by the detector (its best
candidates), so they are not a random sample of the stream; ``cv_precision`` is the precision among
posts like the ones the detector queries, not the precision on the whole stream.

Complexity: the fit is O(L · d · I) for L = seeds + labelled + provisional rows, d the embedding
dimension and I ≤ 500 L-BFGS iterations; cross-validation adds ``k`` such fits plus O(n_lab · d)
scoring, so O((k + 1) · L · d · I) in all; memory O(L · d) (one stacked copy of the training rows).
:meth:`ModelVersion.predict_proba` is O(n · d); the model itself is O(d).

Example (River style):

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = 8
>>> seeds = rng.normal(loc=1.0, size=(5, d))
>>> X_lab = np.vstack([rng.normal(loc=1.0, size=(12, d)), rng.normal(loc=-1.0, size=(12, d))])
>>> y_lab = np.array([1] * 12 + [0] * 12)
>>> X_prov = rng.normal(loc=-1.0, size=(5, d))
>>> mv = train_model("crypto-scam", 1, seeds, X_lab, y_lab, X_prov, folds=4, now=1763700000.0)
>>> mv.n_seeds, mv.n_positives, mv.n_negatives, mv.n_provisional, mv.cv_folds
(5, 12, 12, 5, 4)
>>> mv.cv_precision, mv.cv_recall
(1.0, 1.0)
>>> p = mv.predict_proba(np.array([[1.0] * d, [-1.0] * d]))
>>> p.dtype.name, bool(p[0] > 0.9), bool(p[1] < 0.1)
('float32', True, True)
>>> again = ModelVersion.from_dict(mv.to_dict())
>>> again.version, again.detector, bool(np.allclose(again.predict_proba(X_lab), mv.predict_proba(X_lab), atol=1e-6))
(1, 'crypto-scam', True)
>>> train_model("crypto-scam", 2, seeds, X_lab[:12], y_lab[:12], X_prov[:0]) is None   # positives only
True
"""
from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .exceptions import ConfigError, DataError

FORMAT = 1          # the ``"format"`` of :meth:`ModelVersion.to_dict`
_CHUNK = 4_096      # rows per step of ``predict_proba``: its float64 temporaries (12 MB at 384-d) stay in cache (a
#                     window of 200 k rows scored in 0.035 s instead of 0.05-0.10 s with 16,384-row steps, 1 BLAS thread)

_COUNTS = ("n_seeds", "n_positives", "n_negatives", "n_provisional")


@dataclass(eq=False)
class ModelVersion:
    """One trained version of a detector's classifier (a linear model on the embeddings).

    ``coef`` [d] float32 and ``intercept`` define ``P(positive | x) = 1 / (1 + exp(−(x · coef + intercept)))``.
    The counts say what it was trained on; ``cv_*`` how it did in cross-validation on the ledger
    (``cv_folds`` = 0: not enough labels, ``cv_precision``/``cv_recall`` None).

    In the process that trained it, :meth:`predict_proba` uses the solver's own float64
    coefficients, so it equals scikit-learn's ``predict_proba`` bit for bit; a model read back with
    :meth:`from_dict` uses the float32 ``coef`` (probabilities within ~1e-6 of the original).
    """

    detector: str
    version: int
    coef: np.ndarray
    intercept: float
    n_seeds: int
    n_positives: int
    n_negatives: int
    n_provisional: int
    cv_precision: float | None
    cv_recall: float | None
    cv_folds: int
    cv_threshold: float
    trained_at: float
    _exact: Any = field(default=None, repr=False, compare=False)   # the fitted sklearn estimator, in-process only

    def __eq__(self, other: object) -> bool:
        """Equal when every public field is (``coef`` element-wise); the in-process estimator is ignored."""
        if not isinstance(other, ModelVersion):
            return NotImplemented
        return np.array_equal(self.coef, other.coef) and all(
            getattr(self, k) == getattr(other, k) for k in
            ("detector", "version", "intercept", *_COUNTS, "cv_precision", "cv_recall", "cv_folds", "cv_threshold",
             "trained_at"))

    __hash__ = None     # mutable, like any dataclass with eq

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Positive-class probability of each row of ``X`` [n, d] (a single [d] vector is one row): float32 [n]."""
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise DataError(f"model {self.detector!r} v{self.version} expects vectors of dimension {self.dim}, "
                            f"got shape {X.shape}")
        if len(X) == 0:
            return np.zeros(0, dtype=np.float32)
        if len(X) > _CHUNK:       # row by row the same; no window-sized temporaries (a new version scores the window)
            return np.concatenate([self.predict_proba(X[lo:lo + _CHUNK]) for lo in range(0, len(X), _CHUNK)])
        if self._exact is not None:
            return self._exact.predict_proba(X)[:, 1].astype(np.float32)
        z = X.astype(np.float64, copy=False) @ self.coef.astype(np.float64) + self.intercept
        # a numerically stable logistic: exp of a non-positive number only
        ez = np.exp(-np.abs(z))
        p = np.where(z >= 0, 1.0 / (1.0 + ez), ez / (1.0 + ez))
        return p.astype(np.float32)

    def to_dict(self) -> dict:
        """A JSON-safe dict; ``coef`` is base64 of the float32 little-endian bytes."""
        return {
            "format": FORMAT,
            "detector": self.detector,
            "version": int(self.version),
            "dim": self.dim,
            "coef": base64.b64encode(np.ascontiguousarray(self.coef, dtype="<f4").tobytes()).decode("ascii"),
            "intercept": float(self.intercept),
            **{k: int(getattr(self, k)) for k in _COUNTS},
            "cv_precision": None if self.cv_precision is None else float(self.cv_precision),
            "cv_recall": None if self.cv_recall is None else float(self.cv_recall),
            "cv_folds": int(self.cv_folds),
            "cv_threshold": float(self.cv_threshold),
            "trained_at": float(self.trained_at),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelVersion":
        """The inverse of :meth:`to_dict`. Anything malformed raises :class:`~.exceptions.DataError`."""
        if not isinstance(d, dict):
            raise DataError(f"model: expected a dict, got {type(d).__name__}")
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT or isinstance(fmt, bool):
            raise DataError(f"model: unknown format {fmt!r} (this code reads format {FORMAT})")
        missing = [k for k in ("detector", "version", "coef", "intercept", *_COUNTS, "cv_precision", "cv_recall",
                               "cv_folds", "cv_threshold", "trained_at") if k not in d]
        if missing:
            raise DataError(f"model: missing field(s) {missing}")
        detector = d["detector"]
        if not isinstance(detector, str) or not detector:
            raise DataError("model: 'detector' must be a non-empty string")
        version = _int(d, "version")
        coef_b64 = d["coef"]
        if not isinstance(coef_b64, str):
            raise DataError("model: 'coef' must be a base64 string")
        try:
            raw = base64.b64decode(coef_b64.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise DataError("model: 'coef' is not valid base64") from None
        if not raw or len(raw) % 4:
            raise DataError(f"model: 'coef' decodes to {len(raw)} bytes, not a non-empty float32 vector")
        coef = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if "dim" in d and _int(d, "dim") != len(coef):
            raise DataError(f"model: 'dim' is {d['dim']} but 'coef' has {len(coef)} values")
        if not np.all(np.isfinite(coef)):
            raise DataError("model: 'coef' holds non-finite values")
        counts = {k: _int(d, k) for k in _COUNTS}
        cv_folds = _int(d, "cv_folds")
        cv = {k: _prob(d, k, optional=True) for k in ("cv_precision", "cv_recall")}
        if cv_folds == 1 or any((cv_folds == 0) != (v is None) for v in cv.values()):
            raise DataError("model: cv_folds must be 0 with no cross-validation figures, or >= 2 with both")
        return cls(detector=detector, version=version, coef=coef, intercept=_finite(d, "intercept"), **counts,
                   cv_precision=cv["cv_precision"], cv_recall=cv["cv_recall"], cv_folds=cv_folds,
                   cv_threshold=_prob(d, "cv_threshold"), trained_at=_finite(d, "trained_at"))


def _int(d: dict, key: str) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise DataError(f"model: {key!r} must be a non-negative integer, got {v!r}")
    return int(v)


def _finite(d: dict, key: str) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise DataError(f"model: {key!r} must be a finite number, got {v!r}")
    return float(v)


def _prob(d: dict, key: str, *, optional: bool = False) -> float | None:
    if optional and d[key] is None:
        return None
    v = _finite(d, key)
    if not 0.0 <= v <= 1.0:
        raise DataError(f"model: {key!r} must be in [0, 1], got {v!r}")
    return v


def _rows(a, d: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.size == 0 and not (a.ndim == 2 and a.shape[1] == d):
        return np.zeros((0, d), dtype=np.float32)
    if a.ndim != 2:
        raise DataError(f"{name}: expected a 2-d array [n, d], got shape {a.shape}")
    if a.shape[1] != d:
        raise DataError(f"{name}: dimension {a.shape[1]}, expected {d}")
    return a


def _fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=500).fit(X, y, sample_weight=w)


def training_rows(seeds: np.ndarray, X_lab: np.ndarray, y_lab: np.ndarray, X_prov: np.ndarray,
                  seed_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stacked training rows: seeds, labelled posts, provisional negatives (ModelGuided's order)."""
    X = np.vstack([seeds, X_lab, X_prov])
    y = np.concatenate([np.ones(len(seeds), np.int8), y_lab.astype(np.int8, copy=False),
                        np.zeros(len(X_prov), np.int8)])
    w = np.concatenate([np.full(len(seeds), seed_weight, np.float32), np.ones(len(X_lab) + len(X_prov), np.float32)])
    return X, y, w


def cross_validate(seeds: np.ndarray, X_labelled: np.ndarray, y_labelled: np.ndarray, X_provisional: np.ndarray,
                   *, C: float = 1.0, seed_weight: float = 1.0, folds: int = 5, threshold: float = 0.5,
                   random_state: int = 0) -> tuple[float | None, float | None, int, np.ndarray | None]:
    """``(precision, recall, folds used, out-of-fold probabilities)`` on the labelled posts.

    Stratified k-fold over the labelled posts only; the seeds and provisional negatives are in every
    training fold and in no test fold. ``folds`` is cut to the minority class count; below 2 nothing is
    fitted and ``(None, None, 0, None)`` is returned. Precision with no predicted positive is 0.
    """
    y_labelled = np.asarray(y_labelled).astype(np.int8)
    n_pos = int((y_labelled == 1).sum())
    k = min(int(folds), n_pos, len(y_labelled) - n_pos)
    if k < 2:
        return None, None, 0, None
    from sklearn.model_selection import StratifiedKFold

    oof = np.zeros(len(y_labelled), dtype=np.float64)
    split = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
    for tr, te in split.split(np.zeros(len(y_labelled)), y_labelled):
        X, y, w = training_rows(seeds, X_labelled[tr], y_labelled[tr], X_provisional, seed_weight)
        oof[te] = _fit(X, y, w, C).predict_proba(X_labelled[te])[:, 1]
    pred = oof >= threshold
    tp = int((pred & (y_labelled == 1)).sum())
    precision = tp / int(pred.sum()) if pred.any() else 0.0
    recall = tp / n_pos
    return precision, recall, k, oof


def train_model(detector: str, version: int, seeds: np.ndarray, X_labelled: np.ndarray, y_labelled: np.ndarray,
                X_provisional: np.ndarray, *, C: float = 1.0, seed_weight: float = 1.0, folds: int = 5,
                cv_threshold: float = 0.5, random_state: int = 0, now: float | None = None) -> ModelVersion | None:
    """Fit a detector's classifier on seeds + labelled posts + provisional negatives; None without both classes.

    ``folds=0`` skips cross-validation (the candidate loop does not pay for it every round).
    Complexity O((k + 1) · L · d · I), memory O(L · d): see the module docstring.
    """
    if C <= 0 or seed_weight <= 0:
        raise ConfigError("C and seed_weight must be > 0")
    if folds < 0:
        raise ConfigError(f"folds must be >= 0, got {folds}")
    if not 0.0 <= cv_threshold <= 1.0:
        raise ConfigError(f"cv_threshold must be in [0, 1], got {cv_threshold}")
    arrays = [np.asarray(a) for a in (seeds, X_labelled, X_provisional)]
    d = next((a.shape[1] for a in arrays if a.size and a.ndim == 2), None)
    if d is None:
        return None
    seeds = _rows(seeds, d, "seeds")
    X_labelled = _rows(X_labelled, d, "X_labelled")
    X_provisional = _rows(X_provisional, d, "X_provisional")
    y_labelled = np.asarray(y_labelled).reshape(-1)
    if len(y_labelled) != len(X_labelled):
        raise DataError(f"y_labelled has {len(y_labelled)} labels for {len(X_labelled)} rows")
    if len(y_labelled) and not np.isin(y_labelled, (0, 1)).all():
        raise DataError("y_labelled must hold only 0 and 1")
    y_labelled = y_labelled.astype(np.int8)
    X, y, w = training_rows(seeds, X_labelled, y_labelled, X_provisional, float(seed_weight))
    if len(np.unique(y)) < 2:
        return None
    est = _fit(X, y, w, float(C))
    precision, recall, k, _ = cross_validate(seeds, X_labelled, y_labelled, X_provisional, C=float(C),
                                             seed_weight=float(seed_weight), folds=folds, threshold=cv_threshold,
                                             random_state=random_state)
    n_pos = int((y_labelled == 1).sum())
    return ModelVersion(detector=detector, version=int(version), coef=est.coef_[0].astype(np.float32),
                        intercept=float(est.intercept_[0]), n_seeds=len(seeds), n_positives=n_pos,
                        n_negatives=len(y_labelled) - n_pos, n_provisional=len(X_provisional),
                        cv_precision=precision, cv_recall=recall, cv_folds=k, cv_threshold=float(cv_threshold),
                        trained_at=time.time() if now is None else float(now), _exact=est)

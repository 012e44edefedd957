"""Streaming detection metrics (River style: ``update`` / ``revert`` / ``get``).

All are *cumulative* over the posts queried so far, as in the paper (section 3):

* precision   = positives among queried posts
* recall      = positives found / all positives in the pool (only when the truth is known)
* query ratio = queried posts / all posts
* F1          = harmonic mean of the two

``revert`` undoes an ``update``: when a verdict is replaced (latest verdict wins), revert the old
label and update with the new one.

>>> m = DetectionMetrics(pool_size=100, total_positives=10)
>>> for y in [1, 1, 0, 1]:
...     _ = m.update(y)
>>> m.get()["precision"], m.get()["recall"], m.get()["query_ratio"]
(0.75, 0.3, 0.04)
>>> _ = m.revert(0).update(1)      # the 0 was overturned to a 1
>>> m.get()["precision"]
1.0
"""
from __future__ import annotations


def _label(y) -> int:
    if y not in (0, 1) or isinstance(y, float) and y not in (0.0, 1.0):
        raise ValueError(f"label must be 0 or 1, got {y!r}")
    return int(y)


class Precision:
    def __init__(self) -> None:
        self.queried = 0
        self.positives = 0

    def update(self, y) -> "Precision":
        self.queried += 1
        self.positives += _label(y)
        return self

    def revert(self, y) -> "Precision":
        self.queried -= 1
        self.positives -= _label(y)
        return self

    def get(self) -> float:
        return self.positives / self.queried if self.queried else 0.0


class Recall:
    def __init__(self, total_positives: int) -> None:
        if total_positives <= 0:
            raise ValueError("recall needs the number of positives in the pool (> 0)")
        self.total_positives = int(total_positives)
        self.found = 0

    def update(self, y) -> "Recall":
        self.found += _label(y)
        return self

    def revert(self, y) -> "Recall":
        self.found -= _label(y)
        return self

    def get(self) -> float:
        return self.found / self.total_positives


class QueryRatio:
    def __init__(self, pool_size: int) -> None:
        if pool_size <= 0:
            raise ValueError("query ratio needs the pool size (> 0)")
        self.pool_size = int(pool_size)
        self.queried = 0

    def update(self, y=None) -> "QueryRatio":
        self.queried += 1
        return self

    def revert(self, y=None) -> "QueryRatio":
        self.queried -= 1
        return self

    def get(self) -> float:
        return self.queried / self.pool_size


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


class DetectionMetrics:
    """Precision, recall, F1 and query ratio together. ``recall``/``f1`` are None without the truth."""

    def __init__(self, pool_size: int | None = None, total_positives: int | None = None) -> None:
        self.precision = Precision()
        self.recall = Recall(total_positives) if total_positives else None
        self.ratio = QueryRatio(pool_size) if pool_size else None

    def _each(self):
        return [m for m in (self.precision, self.recall, self.ratio) if m is not None]

    def update(self, y) -> "DetectionMetrics":
        _label(y)
        for m in self._each():
            m.update(y)
        return self

    def revert(self, y) -> "DetectionMetrics":
        _label(y)
        for m in self._each():
            m.revert(y)
        return self

    def get(self) -> dict:
        p = self.precision.get()
        r = self.recall.get() if self.recall else None
        return {
            "queried": self.precision.queried,
            "positives": self.precision.positives,
            "precision": p,
            "recall": r,
            "f1": f1(p, r) if r is not None else None,
            "query_ratio": self.ratio.get() if self.ratio else None,
        }

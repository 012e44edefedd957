"""Nearest neighbours of the seeds as a candidate source (batch runs only: its scores are fixed at ``prepare``)."""
from __future__ import annotations

from ..methods.baselines import KNNSearch
from .base import SourceParams
from .registry import SourceSpec, register


def _knn(p: SourceParams) -> KNNSearch:
    return KNNSearch(k0=p.k0)


register(SourceSpec("knn", batch=_knn, summary="the posts most similar to any seed"))

"""Candidate-selection methods. All share :class:`~.base.ActiveMethod`'s loop; they differ in ``_select``."""
from .base import ActiveMethod, LoopState, RunResult, dynamic_k
from .baselines import KNNSearch, LRBaseline, random_curve
from .gble import GBLE, knn_graph, propagate
from .ibg import IBG, bipartite_batch

__all__ = ["ActiveMethod", "LoopState", "RunResult", "dynamic_k", "IBG", "GBLE", "KNNSearch", "LRBaseline",
           "random_curve", "knn_graph", "propagate", "bipartite_batch"]

"""Candidate-selection methods. All share :class:`~.base.ActiveMethod`'s loop; they differ in ``_select``.

IBG, GBLE, kNN and the model-guided classifier are also *candidate sources* (:mod:`synapse_stream.sources`)
of the :class:`~.policy.Policy`, which splits the oracle budget among them by observed precision.
"""
from .base import ActiveMethod, LoopState, RunResult, dynamic_k, new_state
from .baselines import KNNSearch, LRBaseline, random_curve
from .gble import GBLE, knn_graph, propagate
from .ibg import IBG, bipartite_batch
from .model import ModelGuided
from .policy import Policy

__all__ = ["ActiveMethod", "LoopState", "RunResult", "dynamic_k", "new_state", "IBG", "GBLE", "KNNSearch",
           "LRBaseline", "ModelGuided", "Policy", "random_curve", "knn_graph", "propagate", "bipartite_batch"]

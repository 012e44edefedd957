"""Candidate sources: what proposes posts to the oracle (:class:`CandidateSource`) and their registry.

``base`` holds the interface, ``registry`` the names and factories, and one module per built-in source
(``ibg``, ``gble``, ``model``, ``knn``). The batch algorithms behind them (the paper's IBG and GBLE, the
classifier) live in :mod:`synapse_stream.methods`; the live forms that run in the worker's rounds live here.
"""
from .base import CandidateSource, LiveView, SourceParams
from .registry import POLICY_DEFAULT, SourceSpec, build, live_names, names, register

__all__ = [
           "POLICY_DEFAULT",
           "CandidateSource",
           "LiveView",
           "SourceParams",
           "SourceSpec",
           "build",
           "live_names",
           "names",
           "register",
]

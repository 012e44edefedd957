"""Faust agents: thin wiring from topics to :class:`stream_app.worker.service.DetectionService`.

Nothing is registered at import: :func:`register` adds every agent to a worker built by
``stream_app.worker.app.create_app`` (the LLM rater only when some detector uses it).
"""
from . import detectors, labels, llm_oracle, posts, seeds, timers, trends


def register(w) -> None:
    """Register the agents, timers and signal handlers on worker ``w`` (a ``stream_app.worker.app.Worker``)."""
    for module in (posts, seeds, labels, timers, detectors, trends):
        module.register(w)
    if w.settings.llm_rater or any(d.oracle_mode != "human" for d in w.settings.detectors):
        llm_oracle.register(w)

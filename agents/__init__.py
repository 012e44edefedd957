"""Faust agents: thin wiring from topics to :class:`stream_app.service.DetectionService`."""
from stream_app.faust_app import settings

from . import labels, posts, seeds, timers  # noqa: F401

if any(d.oracle_mode != "human" for d in settings.detectors):   # the LLM rater only when some detector uses it
    from . import llm_oracle  # noqa: F401

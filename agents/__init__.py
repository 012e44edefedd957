"""Faust agents: thin wiring from topics to :class:`stream_app.service.DetectionService`."""
from . import labels, posts, seeds, timers  # noqa: F401

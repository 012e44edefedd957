"""The worker's shared state, one store per concern: the interfaces (``base.py``: :class:`State` and its
stores), ``RedisState`` (``redis.py``, production) and ``MemoryState`` (``memory.py``, one process, tests)."""
from stream_app.worker.state.base import (
    Claims,
    HeldLabels,
    Models,
    PostsStore,
    RoundSources,
    SeedRegistry,
    State,
    Verdicts,
    Workers,
    is_llm,
    vec_from_b64,
    vec_to_b64,
    verdict_change,
)
from stream_app.worker.state.memory import MemoryState
from stream_app.worker.state.redis import RedisState

__all__ = ["State", "PostsStore", "HeldLabels", "Claims", "Workers", "Verdicts", "SeedRegistry", "RoundSources",
           "Models", "RedisState", "MemoryState", "is_llm", "vec_from_b64", "vec_to_b64", "verdict_change"]

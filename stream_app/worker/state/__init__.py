"""The worker's shared state: the :class:`State` interface (``base.py``), ``RedisState`` (``redis.py``,
production) and ``MemoryState`` (``memory.py``, one process, tests)."""
from stream_app.worker.state.base import (
    State,
    is_llm,
    vec_from_b64,
    vec_to_b64,
    verdict_change,
)
from stream_app.worker.state.memory import MemoryState
from stream_app.worker.state.redis import RedisState

__all__ = ["State", "RedisState", "MemoryState", "is_llm", "vec_from_b64", "vec_to_b64", "verdict_change"]

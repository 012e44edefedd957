"""candidates -> the LLM rater -> labels, for detectors whose oracle_mode is "llm" or "llm_then_human"
(``stream_app.worker.llm_rating``). Registered when some detector uses an LLM at start, or with
``SYNAPSE_LLM_RATER=true`` for detectors created later (``agents/__init__.py``)."""
from stream_app.worker.llm_rating import WorkerRater


def register(w) -> None:
    rating = WorkerRater(w)

    @w.app.agent(w.candidates, name="llm_rate")
    async def llm_rate(stream):
        async for value in stream:
            try:
                await rating.rate(value)
            except Exception as exc:  # noqa: BLE001 - the boundary: one candidate never stops the rater
                w.runtime.crashed("llm_rate", exc)

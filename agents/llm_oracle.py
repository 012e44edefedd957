"""candidates -> the LLM rater -> labels, for detectors whose oracle_mode is "llm" or "llm_then_human".

Registered only when some detector uses an LLM (see ``agents/__init__.py``). The rubric is built from
the detector's description and its synthetic/manual seeds (refreshed every minute from Redis).
Human verdicts still win over the LLM's (``stream_app.state.RedisState.record_verdict``).
"""
import logging
import time

from stream_app.faust_app import app, candidates_topic, labels_topic, runtime, settings
from stream_app.llm_oracle import LLMRater, build_rubric, route
from synapse_stream.llm import ChatClient
from synapse_stream.messages import dumps

log = logging.getLogger("synapse.llm_oracle")
_rubrics: dict[str, tuple[float, list]] = {}
_rater: LLMRater | None = None


def rater(svc) -> LLMRater:
    global _rater
    if _rater is None:
        client = ChatClient(settings.llm_base_url, settings.llm_model, settings.llm_api_key)
        _rater = LLMRater(client, settings.llm_model, calls_per_minute=settings.llm_calls_per_minute,
                          max_calls=settings.llm_max_calls, metrics=svc.metrics.llm)
    return _rater


async def rubric(svc, detector: str) -> list:
    cached = _rubrics.get(detector)
    if cached and time.monotonic() - cached[0] < 60:
        return cached[1]
    d = settings.detector(detector)
    seeds = [s["text"] for s in await svc.state.seeds(detector) if s["origin"] in ("synthetic", "manual")]
    msgs = build_rubric(d.description, seeds)
    _rubrics[detector] = (time.monotonic(), msgs)
    return msgs


async def rate_one(value: bytes) -> None:
    """One candidate to the LLM rater, if its detector routes it there; the verdict to the labels topic."""
    import json

    try:
        cand = json.loads(value)
    except ValueError:
        return
    d = settings.detector(cand.get("detector", "")) if isinstance(cand, dict) else None
    if d is None or d.oracle_mode == "human" or not route(d.oracle_mode, cand, d.llm_audit_rate)["llm"]:
        return
    svc = await runtime.get()
    verdict = await rater(svc).rate(cand, await runtime.retry(rubric, svc, d.name, what="build rubric"))
    if verdict is not None:
        await labels_topic.send(key=cand["post_id"].encode(), value=dumps(verdict))


@app.agent(candidates_topic)
async def llm_rate(stream):
    async for value in stream:
        try:
            await rate_one(value)
        except Exception as exc:  # noqa: BLE001 - the boundary: one candidate never stops the rater
            runtime.crashed("llm_rate", exc)

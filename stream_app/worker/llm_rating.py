"""The LLM rater inside a worker: candidates of detectors whose ``oracle_mode`` uses an LLM are rated and the
verdicts written to the labels topic (``agents/llm_oracle.py``). The rubric is built from the detector's
description and its synthetic/manual seeds (refreshed every minute from Redis). Human verdicts still win over
the LLM's (``RedisState.record_verdict``)."""
from __future__ import annotations

import json
import time

from synapse_stream.llm import ChatClient
from synapse_stream.llm_oracle import LLMRater, build_rubric, route
from synapse_stream.messages import dumps

RUBRIC_TTL = 60.0


class WorkerRater:
    """One per worker: the rate-limited rater (created with the service's metrics) and the rubric cache."""

    def __init__(self, w) -> None:
        self.w = w
        self._rater: LLMRater | None = None
        self._rubrics: dict[str, tuple[float, list]] = {}

    def rater(self, svc) -> LLMRater:
        if self._rater is None:
            s = self.w.settings
            self._rater = LLMRater(ChatClient(s.llm_base_url, s.llm_model, s.llm_api_key), s.llm_model,
                                   calls_per_minute=s.llm_calls_per_minute, max_calls=s.llm_max_calls,
                                   metrics=svc.metrics.llm)
        return self._rater

    async def rubric(self, svc, detector: str) -> list:
        cached = self._rubrics.get(detector)
        if cached and time.monotonic() - cached[0] < RUBRIC_TTL:
            return cached[1]
        d = svc.detectors[detector]
        seeds = [s["text"] for s in await svc.state.seeds.all(detector) if s["origin"] in ("synthetic", "manual")]
        msgs = build_rubric(d.description, seeds)
        self._rubrics[detector] = (time.monotonic(), msgs)
        return msgs

    async def rate(self, value: bytes) -> None:
        """One candidate to the LLM rater, if its detector routes it there; the verdict to the labels topic."""
        try:
            cand = json.loads(value)
        except ValueError:
            return
        svc = await self.w.runtime.get()
        d = svc.detectors.get(cand.get("detector", "")) if isinstance(cand, dict) else None   # the live settings
        if d is None or d.oracle_mode == "human" or not route(d.oracle_mode, cand, d.llm_audit_rate)["llm"]:
            return
        rubric = await self.w.runtime.retry(self.rubric, svc, d.name, what="build rubric")
        verdict = await self.rater(svc).rate(cand, rubric)
        if verdict is not None:
            await self.w.labels.send(key=cand["post_id"].encode(), value=dumps(verdict))

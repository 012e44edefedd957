"""Liveness: failures of agents and background tasks counted, and the health check (``/healthz``) that says
why a worker is unhealthy."""
from __future__ import annotations

import logging
import time
from collections import deque

from stream_app.worker.events import RuntimePart
from stream_app.worker.exceptions import describe, frames

log = logging.getLogger("synapse.runtime")


class Liveness(RuntimePart):
    """Counts failures and answers the health check."""

    def __init__(self, rt) -> None:
        super().__init__(rt)
        self.crashes: deque[tuple[float, str]] = deque(maxlen=1000)   # (monotonic time, agent) of each failure

    # ------------------------------------------------------------------ failures
    def crashed(self, agent: str, exc: BaseException) -> None:
        """Count a failure of an agent or a background task (it restarts or retries); the health check
        reads the recent ones. Logged with its type and frames, never its message."""
        self.crashes.append((time.monotonic(), agent))
        metrics = getattr(self.rt.service, "metrics", None)
        if metrics is not None:
            metrics.agent_crashes.labels(agent).inc()
        log.error("%s failed: %s\n%s", agent, describe(exc), frames(exc))

    # ------------------------------------------------------------------ liveness
    def health(self) -> tuple[bool, dict]:
        svc = self.rt.service
        if svc is None:
            return False, {"reason": "starting"}
        body = svc.health()
        lag = 0
        try:
            from faust.types import TP

            consumer = self.rt.app.consumer
            for p in self.rt.recovery.assigned:
                hw = consumer.highwater(TP(self.rt.posts_topic_name, p))
                if hw is not None:
                    lag += max(0, int(hw) - (svc.offsets.get(p, -1) + 1))
        except Exception:  # noqa: BLE001 - no consumer yet / not assigned: lag unknown
            lag = 0
        s, now = self.rt.settings, time.monotonic()
        body["lag"] = lag
        body["recovering"] = sorted(p for p, ev in self.rt.recovery.recovered.items() if not ev.is_set())
        body["replay_failed"] = {str(p): why for p, why in sorted(self.rt.recovery.replay_failed.items())}
        recent = [agent for t, agent in self.crashes if now - t <= s.health_crash_window]
        body["recent_crashes"] = len(recent)
        reasons = []
        slow = sorted(p for p, t0 in self.rt.recovery.recovering_since.items() if now - t0 > s.health_recovery_seconds)
        if slow:
            reasons.append(f"shards {slow} still recovering after {s.health_recovery_seconds:g}s")
        if self.rt.recovery.replay_failed:
            reasons.append(f"replay failed for shards {sorted(self.rt.recovery.replay_failed)}")
        if len(recent) > s.health_max_crashes:
            agents = sorted(set(recent))
            reasons.append(f"{len(recent)} agent crashes in {s.health_crash_window:g}s ({', '.join(agents)})")
        if lag > 0 and body["seconds_since_progress"] > s.health_stall_seconds and not body["recovering"]:
            reasons.append(f"consumption stalled: lag {lag} and no progress for {body['seconds_since_progress']}s")
        if reasons:
            body["reason"] = "; ".join(reasons)
        return not reasons, body

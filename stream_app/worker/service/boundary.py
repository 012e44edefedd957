"""The error boundary: every message is handled inside :meth:`ErrorBoundary.each`; what fails becomes a dead
letter (its validation reason, or ``internal_error``); only transient errors leave it."""
from __future__ import annotations

import logging

from stream_app.worker.exceptions import INTERNAL_ERROR, describe, frames, is_transient
from stream_app.worker.service.records import (
    Outputs,
    RawMsg,
    ServicePart,
    dead_letter_key,
)
from synapse_stream.exceptions import MessageError
from synapse_stream.messages import (
    dead_letter,
    dumps,
)

log = logging.getLogger("synapse.service")


class ErrorBoundary(ServicePart):
    """Dead letters for the messages that fail, and the per-message boundary."""

    def dead(self, msg: RawMsg, reason: str, detail: str = "") -> tuple[bytes | None, bytes]:
        self.svc.metrics.dead_letters.labels(msg.topic, reason.split(":")[0]).inc()
        return dead_letter_key(msg), dumps(dead_letter(msg.value, source_topic=msg.topic, partition=msg.partition,
                                                       offset=msg.offset, reason=reason, detail=detail, key=msg.key))

    def internal(self, msg: RawMsg, exc: BaseException, stage: str) -> tuple[bytes | None, bytes]:
        """The dead letter of a message whose handling raised ``exc`` (not a validation error). The log gets the
        exception's type and frames, never its message (it may quote the post's text)."""
        self.svc.metrics.internal_errors.labels(msg.topic, stage, type(exc).__name__).inc()
        log.error("internal error handling %s[%s]@%s (%s): %s\n%s", msg.topic, msg.partition, msg.offset, stage,
                  type(exc).__name__, frames(exc))
        return self.dead(msg, INTERNAL_ERROR, f"{stage}: {describe(exc)}")

    async def each(self, items, out: Outputs, stage: str, fn, msg_of=lambda item: item) -> None:
        """The error boundary: ``await fn(item)`` for each item, in order. A ``MessageError`` dead-letters the
        item's message with its reason, any other exception with ``internal_error``; transient errors (Redis,
        broker) propagate, for the runtime to retry the call."""
        for item in items:
            try:
                await fn(item)
            except MessageError as exc:
                out.dead_letters.append(self.dead(msg_of(item), exc.reason, exc.detail))
            except Exception as exc:  # noqa: BLE001 - the boundary: one message never stops the partition
                if is_transient(exc):
                    raise
                out.dead_letters.append(self.internal(msg_of(item), exc, stage))

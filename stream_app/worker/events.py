"""Faust events to the service's raw messages, and holding an event's acknowledgement (its offset commit)
until the work on it is finished."""
from __future__ import annotations

from stream_app.worker.service import RawMsg


def raw_from_event(event) -> RawMsg:
    m = event.message
    ts = getattr(m, "timestamp", None)
    return RawMsg(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                  timestamp=float(ts) if ts else None)


def hold_event(event) -> None:
    """Keep a consumed Faust event from being acknowledged (its offset committed) until :func:`release_event`.

    Faust acknowledges a message when its last reference is dropped; ``take_events`` drops its own as
    soon as the agent asks for the next batch, so a pipelined batch takes one more.
    """
    event.message.incref()


def release_event(app, event) -> None:
    """Drop :func:`hold_event`'s reference; the last one acknowledges the message (as ``Stream.ack`` does)."""
    if event.ack():
        m = event.message
        app.sensors.on_message_out(m.tp, m.offset, m)


class RuntimePart:
    """One responsibility of :class:`~stream_app.worker.runtime.Runtime`; its data is the runtime's (``self.rt``)."""

    def __init__(self, rt) -> None:
        self.rt = rt

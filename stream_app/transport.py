"""A Faust Kafka transport whose producer is idempotent, for real Kafka with at-least-once processing.

Faust turns on ``enable_idempotence`` only inside exactly-once transactions. Without it, a producer
that loses its connection after the broker appended a batch but before the acknowledgement retries
the batch and writes it twice: a moderator would see the same candidate twice. An idempotent producer
(Kafka ≥ 0.11; ``acks=all``) lets the broker drop such retries. The embedded Tansu broker cannot do it
(InitProducerId fails), so the embedded stack keeps Faust's plain producer (dev/test only).

Selected by the broker URL scheme ``synapse-kafka://`` (:func:`broker_url`).
"""
from __future__ import annotations

from faust.transport import drivers
from faust.transport.drivers import aiokafka as _aiokafka

SCHEME = "synapse-kafka"


class IdempotentProducer(_aiokafka.Producer):
    def _settings_extra(self):
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(_aiokafka.Transport):
    Producer = IdempotentProducer


drivers.TRANSPORTS[SCHEME] = "stream_app.transport:Transport"


def broker_url(url: str, idempotent: bool) -> str:
    """``kafka://h:p;kafka://h2:p`` with the idempotent scheme when asked."""
    if not idempotent:
        return url
    return ";".join(SCHEME + "://" + u.split("://", 1)[-1] for u in url.split(";"))

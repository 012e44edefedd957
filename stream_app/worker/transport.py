"""Faust Kafka transports of the worker, selected by the broker URL scheme (:func:`broker_url`).

``synapse-kafka://`` (real Kafka): the producer is idempotent, for at-least-once processing. Faust
turns on ``enable_idempotence`` only inside exactly-once transactions. Without it, a producer that
loses its connection after the broker appended a batch but before the acknowledgement retries the
batch and writes it twice: a moderator would see the same candidate twice. An idempotent producer
(Kafka ≥ 0.11; ``acks=all``) lets the broker drop such retries. The consumer keeps every Faust
default.

``synapse-tansu://`` (the embedded Tansu broker, dev/test only): Faust's plain producer (Tansu's
InitProducerId fails, so no idempotence) and a consumer with a short fetch wait. Faust hard-codes
``fetch_max_wait_ms=1500`` for its consumer; a real Kafka answers a fetch as soon as a byte is there
(``fetch_min_bytes=1``), but Tansu holds every fetch for the full wait, so each post would wait up to
1.5 s between the broker and the worker. The wait travels in the URL's query
(``synapse-tansu://host:port?fetch_max_wait_ms=20``) and is applied to the worker's consumer only.
"""
from __future__ import annotations

import ssl

import faust
from faust.transport import drivers
from faust.transport.drivers import aiokafka as _aiokafka

SCHEME = "synapse-kafka"
EMBEDDED_SCHEME = "synapse-tansu"
FETCH_WAIT_PARAM = "fetch_max_wait_ms"


class IdempotentProducer(_aiokafka.Producer):
    def _settings_extra(self):
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(_aiokafka.Transport):
    Producer = IdempotentProducer


def fetch_max_wait_ms(urls) -> int | None:
    """The fetch wait carried by the broker URL(s), if any (``?fetch_max_wait_ms=N``)."""
    for u in urls:
        v = getattr(u, "query", {}).get(FETCH_WAIT_PARAM)
        if v is not None:
            return int(v)
    return None


def set_fetch_max_wait(consumer, wait_ms: int) -> None:
    """Set an ``AIOKafkaConsumer``'s fetch wait after construction (it is read when the consumer starts)."""
    if not hasattr(consumer, "_fetch_max_wait_ms"):   # a future aiokafka: fail loudly, never silently ignore
        raise RuntimeError("this aiokafka version has no AIOKafkaConsumer._fetch_max_wait_ms; "
                           "stream_app/transport.py needs an update")
    if getattr(consumer, "_fetcher", None) is not None:
        raise RuntimeError("the consumer already started: its fetch wait can no longer change")
    consumer._fetch_max_wait_ms = int(wait_ms)


class ShortFetchConsumerThread(_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        wait = fetch_max_wait_ms(transport.url)
        if wait is not None:
            set_fetch_max_wait(consumer, wait)
        return consumer


class ShortFetchConsumer(_aiokafka.Consumer):
    def _new_consumer_thread(self):
        return ShortFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class EmbeddedTransport(_aiokafka.Transport):
    Consumer = ShortFetchConsumer


drivers.TRANSPORTS[SCHEME] = "stream_app.worker.transport:Transport"
drivers.TRANSPORTS[EMBEDDED_SCHEME] = "stream_app.worker.transport:EmbeddedTransport"


def broker_url(url: str, idempotent: bool, embedded_fetch_max_wait_ms: int | None = None) -> str:
    """``kafka://h:p;kafka://h2:p`` with the transport's scheme.

    ``embedded_fetch_max_wait_ms`` (the embedded broker only): the Tansu transport with that consumer
    fetch wait. ``idempotent`` (real Kafka): the idempotent producer. Neither: the URL as given.
    """
    if embedded_fetch_max_wait_ms is not None:
        if idempotent:
            raise ValueError("the embedded broker cannot run an idempotent producer")
        hosts = [u.split("://", 1)[-1].split("?", 1)[0].rstrip("/") for u in url.split(";")]
        q = f"?{FETCH_WAIT_PARAM}={int(embedded_fetch_max_wait_ms)}"
        return ";".join(f"{EMBEDDED_SCHEME}://{h}{q}" for h in hosts)
    if not idempotent:
        return url
    return ";".join(SCHEME + "://" + u.split("://", 1)[-1] for u in url.split(";"))


def broker_credentials(s):
    ctx = None
    if s.broker_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=s.broker_ca_file) if s.broker_ca_file else ssl.create_default_context()
    if s.broker_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=s.broker_username, password=s.broker_password.get_secret_value(),
                                     ssl_context=ctx, mechanism=s.broker_sasl_mechanism)
    return faust.SSLCredentials(ctx)


# plain aiokafka clients (no Faust): stream_app.worker.kafka_clients; re-exported for the worker's modules
from stream_app.worker.kafka_clients import aiokafka_producer_settings, aiokafka_security  # noqa: E402,F401

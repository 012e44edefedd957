"""The Faust app: ``faust -A stream_app worker`` (or ``synapse-stream worker``) runs it.

Settings come from :class:`~stream_app.settings.Settings` (env ``SYNAPSE_*`` and ``synapse.env``).
The agents live in the top-level ``agents`` package and are thin: they hand raw messages to
:class:`~stream_app.service.DetectionService` and publish what it returns.
"""
from __future__ import annotations

import os
import ssl

import faust

from .runtime import Runtime
from .settings import Settings
from .topics import TopicNames


def faust_config(s: Settings) -> dict:
    os.makedirs(os.path.join(s.data_dir, "faust"), exist_ok=True)
    from .transport import broker_url

    conf = dict(
        # an idempotent producer on real Kafka (a cut connection must not duplicate a candidate);
        # the embedded Tansu broker cannot do it, and gets a short consumer fetch wait instead (it
        # holds every fetch for the whole wait; real Kafka keeps Faust's consumer settings)
        broker=broker_url(s.broker_url, idempotent=s.producer_idempotence and not s.embedded_broker,
                          embedded_fetch_max_wait_ms=s.embedded_fetch_max_wait_ms if s.embedded_broker else None),
        store="memory://",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        web_host=s.web_host,
        web_bind=s.web_host,
        web_port=s.web_port,
        datadir=os.path.join(s.data_dir, "faust"),
        broker_commit_every=100,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4 * s.embed_batch_size, 256),
        producer_acks=-1,
    )
    if s.broker_security_protocol != "PLAINTEXT":
        conf["broker_credentials"] = broker_credentials(s)
    if s.embedded_broker:
        from .embedded import faust_broker_settings_for_tansu

        conf.update(faust_broker_settings_for_tansu())
    return conf


def broker_credentials(s: Settings):
    ctx = None
    if s.broker_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=s.broker_ca_file) if s.broker_ca_file else ssl.create_default_context()
    if s.broker_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=s.broker_username, password=s.broker_password.get_secret_value(),
                                     ssl_context=ctx, mechanism=s.broker_sasl_mechanism)
    return faust.SSLCredentials(ctx)


settings = Settings()
names = TopicNames.from_settings(settings)
app = faust.App(settings.app_id, **faust_config(settings))


def _raw_topic(name: str, partitions: int, internal: bool = False):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=partitions, internal=internal)


_parts = names.partitions(settings)
posts_topic = _raw_topic(names.posts, _parts[names.posts])
seeds_topic = _raw_topic(names.seeds, _parts[names.seeds])
labels_topic = _raw_topic(names.labels, _parts[names.labels])
verdicts_topic = _raw_topic(names.verdicts, _parts[names.verdicts])
candidates_topic = _raw_topic(names.candidates, _parts[names.candidates])
dead_letters_topic = _raw_topic(names.dead_letters, _parts[names.dead_letters])
detections_topic = _raw_topic(names.detections, _parts[names.detections])

runtime = Runtime(app, settings, candidates_topic=candidates_topic, dead_letters_topic=dead_letters_topic,
                  verdicts_topic=verdicts_topic, posts_topic_name=names.posts, detections_topic=detections_topic)

from . import web  # noqa: E402,F401  (pages: /metrics, /healthz)
import agents  # noqa: E402,F401  (registers the agents)

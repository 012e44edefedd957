"""The Faust app, built by :func:`create_app`: ``faust -A stream_app worker`` (or ``synapse-stream worker``)
runs ``create_app(Settings())`` (``stream_app.app``, built on first access).

Settings come from :class:`~stream_app.worker.settings.Settings` (env ``SYNAPSE_*`` and ``synapse.env``).
The agents live in the top-level ``agents`` package and are thin: they hand raw messages to
:class:`~stream_app.worker.service.DetectionService` and publish what it returns.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import faust

from stream_app.worker.runtime import Runtime
from stream_app.worker.settings import Settings
from stream_app.worker.topics import TopicNames


def faust_config(s: Settings) -> dict:
    os.makedirs(os.path.join(s.data_dir, "faust"), exist_ok=True)
    from stream_app.worker.transport import broker_url

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
        stream_buffer_maxsize=max(4 * s.posts_batch_size(), 256),
        producer_acks=-1,
    )
    if s.worker_instance_id:
        conf["consumer_group_instance_id"] = s.worker_instance_id
    if s.broker_security_protocol != "PLAINTEXT":
        from .transport import broker_credentials

        conf["broker_credentials"] = broker_credentials(s)
    if s.embedded_broker:
        from stream_app.worker.tansu import faust_broker_settings_for_tansu

        conf.update(faust_broker_settings_for_tansu())
    return conf


@dataclass
class Worker:
    """One worker's wiring, built by :func:`create_app`: what the agents (``agents/``) register against."""
    app: faust.App
    settings: Settings
    names: TopicNames
    runtime: Runtime
    posts: Any
    seeds: Any
    labels: Any
    verdicts: Any
    candidates: Any
    dead_letters: Any
    detections: Any
    trends: Any = None


def create_app(settings: Settings | None = None) -> faust.App:
    """Build a worker's Faust app from ``settings`` (default: ``Settings()``, from the environment): the
    app, its topics, the runtime, the agents (``agents.register``) and the web pages. Nothing is built at
    import time, so a process (a test) can build several apps with different settings; the worker's
    wiring is ``app.synapse`` (a :class:`Worker`)."""
    s = settings if settings is not None else Settings()
    names = TopicNames.from_settings(s)
    app = faust.App(s.app_id, **faust_config(s))
    parts = names.partitions(s)

    def topic(name: str):
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         partitions=parts[name])

    t = {n: topic(getattr(names, n)) for n in ("posts", "seeds", "labels", "verdicts", "candidates",
                                                 "dead_letters", "detections", "trends")}
    runtime = Runtime(app, s, candidates_topic=t["candidates"], dead_letters_topic=t["dead_letters"],
                      verdicts_topic=t["verdicts"], posts_topic_name=names.posts, detections_topic=t["detections"],
                      detectors_topic_name=names.detectors, trends_topic=t["trends"] if s.trends else None)
    w = Worker(app, s, names, runtime, **t)
    app.synapse = w

    import agents

    from .web import register_pages

    agents.register(w)
    register_pages(w)
    return app

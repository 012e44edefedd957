"""Options of plain aiokafka clients (producers, consumers, admin) for the configured broker: no Faust here, so the
CLI and the console (``stream_app/console``) can use them without loading Faust. The Faust app's own transports
are in ``stream_app/worker/transport.py``."""
from __future__ import annotations

import ssl


def aiokafka_producer_settings(s) -> dict:
    """An aiokafka producer for the configured broker: every replica's acknowledgement, TLS/SASL as
    :func:`aiokafka_security`, the Tansu quirks on the embedded broker only."""
    kw: dict = {"bootstrap_servers": s.bootstrap_servers(), "acks": "all", "request_timeout_ms": 30000,
                **aiokafka_security(s)}
    if s.embedded_broker:
        from stream_app.worker.tansu import aiokafka_producer_settings_for_tansu

        kw.update(aiokafka_producer_settings_for_tansu())
    return kw


def aiokafka_security(s) -> dict:
    """aiokafka client options (producer, consumer or admin) for the configured broker security: the same
    TLS context and SASL credentials as the Faust app's (:func:`broker_credentials`); {} for PLAINTEXT."""
    proto = s.broker_security_protocol
    if proto == "PLAINTEXT":
        return {}
    kw: dict = {"security_protocol": proto}
    if proto in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = (ssl.create_default_context(cafile=s.broker_ca_file) if s.broker_ca_file
                             else ssl.create_default_context())
    if proto.startswith("SASL"):
        kw.update(sasl_mechanism=s.broker_sasl_mechanism, sasl_plain_username=s.broker_username,
                  sasl_plain_password=s.broker_password.get_secret_value())
    return kw

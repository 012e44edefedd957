"""Checks before a worker starts consuming: credentials that cannot work stop the worker with one clear line.

A worker whose SASL password (or TLS trust) is wrong would otherwise retry its broker connection for ever and fill
its log with the client library's tracebacks. :func:`check_broker` opens one connection to each bootstrap server
with the worker's own security settings (:func:`~stream_app.worker.kafka_clients.aiokafka_security`) and raises
:class:`~stream_app.worker.exceptions.BrokerAuthError` when the broker rejects the SASL handshake or its
certificate does not verify. A broker that is merely unreachable is not an error here (the runtime retries).
The error names the broker, user and mechanism, never the password.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import sys

from stream_app.worker.exceptions import BrokerAuthError
from stream_app.worker.kafka_clients import aiokafka_security

log = logging.getLogger(__name__)


async def check_broker(settings, timeout: float = 15.0) -> bool:
    """Authenticate once against a bootstrap server with ``settings``; True if one accepted the credentials,
    False if none answered (unreachable: not a configuration error). PLAINTEXT: nothing to check (True).

    Raises BrokerAuthError if the broker refused the SASL credentials or its certificate did not verify."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        AuthenticationFailedError,
        KafkaConnectionError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    if settings.broker_security_protocol == "PLAINTEXT":
        return True
    sec = aiokafka_security(settings)
    who = (f"user {settings.broker_username!r} ({settings.broker_sasl_mechanism} over "
           f"{settings.broker_security_protocol})" if settings.broker_security_protocol.startswith("SASL")
           else f"TLS ({settings.broker_security_protocol})")
    for server in settings.bootstrap_servers().split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), request_timeout_ms=int(timeout * 1000),
                                                      **sec), timeout)
        except (SaslAuthenticationFailed, AuthenticationFailedError, UnsupportedSaslMechanismError) as exc:
            code = getattr(exc, "errno", "")
            raise BrokerAuthError(f"the broker {server} refused the credentials of {who}: "
                                  f"{type(exc).__name__} {code}; check SYNAPSE_BROKER_USERNAME, "
                                  f"SYNAPSE_BROKER_PASSWORD and SYNAPSE_BROKER_SASL_MECHANISM") from None
        except ssl.SSLCertVerificationError as exc:
            raise BrokerAuthError(f"the TLS certificate of the broker {server} did not verify "
                                  f"({exc.verify_message}); check SYNAPSE_BROKER_CA_FILE") from None
        except (KafkaConnectionError, OSError, asyncio.TimeoutError):
            continue   # this one is unreachable: try the next; none reachable is the runtime's to retry
        conn.close()
        return True
    return False


def check_device_or_exit(settings) -> None:
    """``SYNAPSE_DEVICE=cuda`` without a GPU for the embedder's backend: one line on stderr (``error: worker not
    started: ...``) and exit code 2, before the model loads. ``auto`` and ``cpu`` always pass."""
    from synapse_stream.embedders.device import DeviceUnavailable

    try:
        settings.resolved_device()
    except DeviceUnavailable as exc:
        print(f"error: worker not started: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def check_broker_or_exit(settings) -> None:
    """:func:`check_broker` for the worker's entry points: on BrokerAuthError one line on stderr (``error: worker
    not started: ...``) and exit code 2.
    Runs in a thread of its own (the caller may be about to start an event loop, or be inside one)."""
    import threading

    out: dict = {}

    def run() -> None:
        try:
            asyncio.run(check_broker(settings))
        except BrokerAuthError as exc:
            out["error"] = exc
        except Exception as exc:   # pragma: no cover - anything else is left to the runtime
            log.debug("broker preflight check skipped: %s", type(exc).__name__)

    t = threading.Thread(target=run, name="broker-preflight", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        print(f"error: worker not started: {out['error']}", file=sys.stderr, flush=True)
        raise SystemExit(2)

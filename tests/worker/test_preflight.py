"""The worker's broker preflight (stream_app/worker/preflight.py) without a broker: nothing to check on PLAINTEXT,
an unreachable broker is not a configuration error (the runtime retries). The refusals themselves are tested on a real SASL_SSL broker in tests/e2e/test_secure_kafka.py."""
from __future__ import annotations

import asyncio

from stream_app.devstack.embedded import free_port
from stream_app.worker.preflight import check_broker, check_broker_or_exit
from stream_app.worker.settings import Settings

PASSWORD = "pw-" + "9f3b" * 4


def sasl(port: int) -> Settings:
    return Settings(_env_file=None, broker_url=f"kafka://127.0.0.1:{port}", broker_security_protocol="SASL_SSL",
                    broker_sasl_mechanism="SCRAM-SHA-512", broker_username="worker", broker_password=PASSWORD)


def test_plaintext_has_nothing_to_check_and_an_unreachable_broker_is_left_to_the_runtime(capsys):
    assert asyncio.run(check_broker(Settings(_env_file=None, broker_url="kafka://127.0.0.1:1"))) is True
    s = sasl(free_port())   # nothing listens there
    assert asyncio.run(check_broker(s, timeout=3)) is False
    check_broker_or_exit(s)   # returns: no exit, no output
    assert capsys.readouterr().err == ""


"""Apache Kafka with SASL_SSL, SCRAM-SHA-512 and ACLs for the dev/test stack (:class:`SecureKafkaBroker`).

The broker is :class:`~stream_app.devstack.kafka.ApacheKafkaBroker` (KRaft, one combined node) with:

* one client listener ``SASL_SSL://host:port`` (TLS 1.2+ with a certificate for ``127.0.0.1``/``localhost``
  signed by a CA made at start with ``openssl`` in the broker's data folder: ``ca.pem`` is what clients trust);
* SCRAM-SHA-512 credentials for every user of ``users`` (``name -> password``), written into the metadata log
  at storage format time (``kafka-storage format --add-scram 'SCRAM-SHA-512=[name=...,password=...]'``);
* ``authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer``, no access without an ACL
  (``allow.everyone.if.no.acl.found=false``), ``super.users=User:<admin>`` (and ``User:ANONYMOUS``, the principal
  of the controller listener, which stays PLAINTEXT on loopback: the node registers with its own controller);
* inter-broker traffic on the SASL_SSL listener as the admin.

ACLs are created with the Kafka protocol's CreateAcls (:func:`create_acls`, aiokafka's protocol classes, as
the admin); :func:`worker_acls` is what a worker principal needs (its topics, its Faust app's internal topics
and its consumer group). Passwords are random per start unless given; they are passed to Kafka's tools on
their command line and in ``server.properties`` (dev/test only).

    with SecureKafkaBroker(users={"worker": "..."}) as broker:
        asyncio.run(create_acls(broker.bootstrap, broker.admin_client_options(), worker_acls("worker")))
        settings = Settings(broker_url=broker.url, broker_security_protocol="SASL_SSL",
                            broker_sasl_mechanism="SCRAM-SHA-512", broker_username="worker",
                            broker_password="...", broker_ca_file=str(broker.ca_file))
"""
from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from stream_app.devstack.embedded import EmbeddedStackError, serve_until_stopped
from stream_app.devstack.kafka import ApacheKafkaBroker

__all__ = ["SecureKafkaBroker", "Acl", "create_acls", "worker_acls", "make_tls_material", "MECHANISM"]

MECHANISM = "SCRAM-SHA-512"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

# Kafka's protocol codes (org.apache.kafka.common.resource / acl)
RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
PATTERN = {"literal": 3, "prefixed": 4}
OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7, "describe": 8,
             "cluster_action": 9, "describe_configs": 10, "alter_configs": 11, "idempotent_write": 12}
PERMISSION = {"deny": 2, "allow": 3}


def _run(cmd: Sequence[str], what: str) -> None:
    res = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise EmbeddedStackError(f"{what} failed ({res.returncode}): {res.stderr[-1500:]}")


def make_tls_material(folder: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"),
                      password: Optional[str] = None) -> tuple[Path, Path, str]:
    """A self-signed CA and a broker certificate for ``hosts`` signed by it, with ``openssl``; returns
    ``(ca.pem, broker.p12 keystore, keystore password)``."""
    folder.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_hex(16)
    ca_key, ca, key, csr, cert, p12 = (folder / n for n in ("ca.key", "ca.pem", "broker.key", "broker.csr",
                                                             "broker.pem", "broker.p12"))
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=synapse-dev-ca",
          "-keyout", str(ca_key), "-out", str(ca)], "openssl (CA)")
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hosts[0]}", "-keyout", str(key),
          "-out", str(csr)], "openssl (broker key)")
    ext = folder / "san.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n", encoding="utf-8")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
          "-days", "2", "-extfile", str(ext), "-out", str(cert)], "openssl (sign)")
    _run(["openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile", str(ca),
          "-name", "broker", "-out", str(p12), "-passout", f"pass:{password}"], "openssl (PKCS12)")
    return ca, p12, password


@dataclass(frozen=True)
class Acl:
    """One ALLOW (or DENY) rule: ``principal`` may ``operation`` on ``resource`` ``name`` (literal or prefixed)."""

    principal: str           # "User:worker"
    resource: str            # topic | group | cluster | transactional_id
    name: str                # the topic / group name or prefix; "kafka-cluster" for the cluster
    operation: str           # read | write | describe | create | all ...
    pattern: str = "literal"
    permission: str = "allow"
    host: str = "*"


def worker_acls(user: str, topic_prefix: str = "synapse.", app_id: str = "synapse-stream") -> list[Acl]:
    """What a worker needs: everything on its topics (``topic_prefix``) and on its Faust app's internal topics and
    consumer group (named after ``app_id``), and to describe the cluster."""
    p = f"User:{user}"
    return [Acl(p, "topic", topic_prefix, "all", "prefixed"), Acl(p, "topic", app_id, "all", "prefixed"),
            Acl(p, "group", app_id, "all", "prefixed"), Acl(p, "cluster", "kafka-cluster", "describe"),
            Acl(p, "cluster", "kafka-cluster", "idempotent_write")]


async def create_acls(bootstrap: str, client: Mapping, acls: Sequence[Acl], timeout: float = 15.0) -> None:
    """Create ``acls`` with CreateAcls, connected with ``client`` (aiokafka options of a principal allowed to
    alter the cluster: the admin). Raises EmbeddedStackError on any refusal."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **client)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        for a in acls:
            req = CreateAclsRequest(RESOURCE[a.resource], a.name, PATTERN[a.pattern], a.principal, a.host,
                                    OPERATION[a.operation], PERMISSION[a.permission])
            resp = await asyncio.wait_for(admin._send_request(req), timeout)
            for code, message in resp.creation_responses:
                if code != 0:
                    raise EmbeddedStackError(f"CreateAcls {a} refused: error {code} {message or ''}")
    finally:
        await admin.close()


class SecureKafkaBroker(ApacheKafkaBroker):
    """:class:`ApacheKafkaBroker` with a SASL_SSL (SCRAM-SHA-512) listener, TLS from a CA of its own and the
    standard authorizer. ``admin`` is the super user; ``users`` more SCRAM users (``name -> password``)."""

    name = "kafka-sasl"

    def __init__(self, *args, admin: str = "admin", admin_password: Optional[str] = None,
                 users: Optional[Mapping[str, str]] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.admin = admin
        self.admin_password = admin_password or secrets.token_hex(16)
        self.users = dict(users or {})
        self.ca_file: Optional[Path] = None
        self._keystore: Optional[tuple[Path, str]] = None

    @property
    def description(self) -> str:
        return f"Apache Kafka {self.version} (KRaft, 1 node, SASL_SSL {MECHANISM}, ACLs)"

    # -- configuration -------------------------------------------------------
    def server_properties(self) -> dict[str, object]:
        props = super().server_properties()
        assert self._keystore is not None and self.ca_file is not None
        keystore, ks_password = self._keystore
        advertised = self.advertised_port or self.port
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{self.admin}" '
                f'password="{self.admin_password}";')
        props.update({
            "listeners": f"SASL_SSL://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"SASL_SSL://{self.host}:{advertised}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(keystore),
            "ssl.keystore.password": ks_password,
            "ssl.key.password": ks_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.client.auth": "none",
            "authorizer.class.name": STANDARD_AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{self.admin};User:ANONYMOUS",
        })
        props.update(self.extra_config)
        return props

    def _prepare_files(self) -> None:
        assert self.data_dir is not None
        self.ca_file, keystore, pw = make_tls_material(self.data_dir / "tls", (self.host, "localhost"))
        self._keystore = (keystore, pw)

    def _format_extra(self) -> list[str]:
        out: list[str] = []
        for name, pw in {self.admin: self.admin_password, **self.users}.items():
            out += ["--add-scram", f"{MECHANISM}=[name={name},password={pw}]"]
        return out

    def _ready(self) -> bool:
        if self.log_path is None or not self.log_path.exists():
            return False
        if b"Kafka Server started" not in self.log_path.read_bytes():
            return False
        return tls_handshake_ok(self.host, self.port, self.ca_file)

    # -- clients -------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client_options(self, user: str, password: str) -> dict:
        """aiokafka options for ``user`` over SASL_SSL (producer, consumer or admin)."""
        return {"security_protocol": "SASL_SSL", "ssl_context": self.ssl_context(), "sasl_mechanism": MECHANISM,
                "sasl_plain_username": user, "sasl_plain_password": password}

    def admin_client_options(self) -> dict:
        return self.client_options(self.admin, self.admin_password)

    def settings_kwargs(self, user: str, password: str) -> dict[str, str]:
        """``Settings(**...)`` keywords of the broker and its security for ``user``."""
        return {"broker_url": self.url, "broker_security_protocol": "SASL_SSL", "broker_sasl_mechanism": MECHANISM,
                "broker_username": user, "broker_password": password, "broker_ca_file": str(self.ca_file)}

    def settings_env(self, user: str, password: str) -> dict[str, str]:
        """The worker's ``SYNAPSE_BROKER_*`` variables for ``user``."""
        return {f"SYNAPSE_{k.upper()}": v for k, v in self.settings_kwargs(user, password).items()}


def tls_handshake_ok(host: str, port: int, ca_file: Optional[Path], timeout: float = 1.0) -> bool:
    """True if a TLS handshake with ``host:port`` succeeds and its certificate is signed by ``ca_file``."""
    if ca_file is None:
        return False
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False



def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m stream_app.devstack.kafka_secure``: a secured broker with its topics and a worker user with the
    worker's ACLs; prints the worker's ``SYNAPSE_BROKER_*`` variables (dev only: the password is shown) and runs
    until Ctrl-C."""
    import argparse
    import time

    from stream_app.worker.settings import Settings
    from stream_app.worker.topics import ensure_topics

    p = argparse.ArgumentParser(prog="python -m stream_app.devstack.kafka_secure", description=main.__doc__)
    p.add_argument("--user", default="worker", help="the worker's principal (User:<name>)")
    p.add_argument("--port", type=int)
    p.add_argument("--log-dir")
    p.add_argument("--once", action="store_true", help="stop right after the set-up (a check)")
    args = p.parse_args(argv)
    password = secrets.token_hex(16)
    broker = SecureKafkaBroker(args.port, args.log_dir, users={args.user: password})
    t0 = time.monotonic()
    with broker:
        admin = Settings(_env_file=None, **broker.settings_kwargs(broker.admin, broker.admin_password))
        ensure_topics(admin)
        asyncio.run(create_acls(broker.bootstrap, broker.admin_client_options(),
                                worker_acls(args.user, admin.topic_prefix, admin.app_id)))
        print(f"{broker.description} on {broker.bootstrap}, topics and ACLs for User:{args.user} "
              f"in {time.monotonic() - t0:.1f}s; log {broker.log_path}", flush=True)
        for k, v in broker.settings_env(args.user, password).items():
            print(f"export {k}={v}")
        serve_until_stopped(lambda: broker.running, once=args.once)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Security on a broker that enforces it: Apache Kafka 4.4 with a SASL_SSL listener (SCRAM-SHA-512, TLS from a CA
made at start), the standard authorizer and ACLs (``stream_app.devstack.kafka_secure``).

* a worker with its own credentials and only its ACLs runs the posts -> candidates path end to end;
* a principal without WRITE on the labels topic cannot inject a verdict (TopicAuthorizationFailed), while one with
  it can (the worker applies that verdict: the check can fail);
* a worker with a wrong password stops at once with one clear line, exit code 2, and the password is nowhere in
  its output or the broker's log.

Real processes only: the broker JVM, redis-server and ``python -m faust -A stream_app worker`` subprocesses.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app.devstack.demo import LiveLoop
from stream_app.devstack.embedded import EmbeddedStackError, RedisServer, free_port
from stream_app.worker.settings import Settings
from stream_app.worker.topics import TopicNames, ensure_topics

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
DET = {"name": "scam", "tau": 0.9, "d_max": 20, "candidates": "ibg"}
SEED = "free crypto giveaway send one coin get two back"
USERS = ("worker", "reader", "moderator")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """The secured broker (admin + the USERS, random passwords), its topics and ACLs, and a Redis."""
    from stream_app.devstack.kafka import find_java, kafka_libs
    from stream_app.devstack.kafka_secure import Acl, SecureKafkaBroker, create_acls, worker_acls

    try:
        find_java()
    except EmbeddedStackError as exc:
        pytest.skip(str(exc))
    if kafka_libs() is None:
        pytest.skip("Apache Kafka's jars are not installed (make kafka)")
    d = tmp_path_factory.mktemp("secure")
    passwords = {u: secrets.token_hex(12) for u in USERS}
    broker = SecureKafkaBroker(users=passwords, log_dir=d / "logs", install=False)
    redis = RedisServer(data_dir=d / "redis")
    with broker, redis:
        # `synapse-stream topics create` as the admin, over SASL_SSL
        s = Settings(_env_file=None, partitions=2, **broker.settings_kwargs(broker.admin, broker.admin_password))
        names = TopicNames.from_settings(s)
        assert ensure_topics(s) == names.partitions(s)
        admin = broker.admin_client_options()
        reader = [Acl("User:reader", "topic", names.candidates, "read"),
                  Acl("User:reader", "topic", names.candidates, "describe"),
                  Acl("User:reader", "topic", names.labels, "describe")]     # may see it, not write it
        moderator = [Acl("User:moderator", "topic", names.candidates, "read"),
                     Acl("User:moderator", "topic", names.labels, "write"),
                     Acl("User:moderator", "topic", names.labels, "describe")]
        asyncio.run(create_acls(broker.bootstrap, admin, [*worker_acls("worker"), *reader, *moderator]))
        yield broker, redis, passwords, names, d


def _loop(secured, user: str, password: str, tmp_path) -> LiveLoop:
    broker, redis, _pw, _names, _d = secured
    loop = LiveLoop(tmp_path, detectors=[DET], embedder="hashing-64", partitions=2, external_broker=broker.url,
                    external_redis=redis.url, extra_env=broker.settings_env(user, password))
    loop.web_ports.append(free_port())
    return loop


async def _produce(broker, opts: dict, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", **opts)
    await p.start()
    try:
        for key, value in values:
            await p.send_and_wait(topic, value, key=key)
    finally:
        await p.stop()


async def _candidates(broker, opts: dict, topic: str, want: int, timeout: float = 120.0) -> list[dict]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest",
                         enable_auto_commit=False, **opts)
    await c.start()
    out: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=500)).values():
                out += [json.loads(m.value) for m in msgs]
    finally:
        await c.stop()
    return out


async def _ledger(redis_url: str) -> dict[str, int]:
    from stream_app.devstack.redis_cluster import connect
    from stream_app.worker.state import RedisState

    r = connect(redis_url)
    try:
        return await RedisState(r, "synapse:").verdicts.ledger(DET["name"])
    finally:
        await r.aclose()


def test_a_worker_with_its_own_credentials_works_and_a_reader_cannot_inject_verdicts(secured, tmp_path):
    from aiokafka.errors import TopicAuthorizationFailedError

    broker, redis, pw, names, _d = secured
    loop = _loop(secured, "worker", pw["worker"], tmp_path)
    admin = broker.admin_client_options()
    try:
        loop.start_worker(0, timeout=240)
        posts = [(f"p{i}".encode(), json.dumps({"id": f"p{i}", "text": SEED}).encode()) for i in range(6)]
        posts += [(b"q0", json.dumps({"id": "q0", "text": "the weather is mild today in the valley"}).encode())]

        async def flow():
            await _produce(broker, admin, names.seeds, [(b"s", json.dumps({"detector": "scam", "text": SEED}).encode())])
            await asyncio.sleep(3)   # the seed reaches every shard before the posts
            await _produce(broker, admin, names.posts, posts)
            cands = await _candidates(broker, broker.client_options("reader", pw["reader"]), names.candidates, 6)
            refused = None
            try:
                await _produce(broker, broker.client_options("reader", pw["reader"]), names.labels, [
                    (b"p0", json.dumps({"detector": "scam", "post_id": "p0", "label": 1, "labeler": "reader"}).encode())])
            except TopicAuthorizationFailedError as exc:
                refused = exc
            await _produce(broker, broker.client_options("moderator", pw["moderator"]), names.labels, [
                (b"p1", json.dumps({"detector": "scam", "post_id": "p1", "label": 1, "labeler": "moderator"}).encode())])
            ledger: dict = {}
            deadline = time.monotonic() + 60
            while "p1" not in ledger and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                ledger = await _ledger(redis.url)
            await asyncio.sleep(2)   # a label from the reader, had it got through, would be applied by now
            return cands, refused, await _ledger(redis.url)

        cands, refused, ledger = asyncio.run(flow())
        assert sorted(c["post_id"] for c in cands) == [f"p{i}" for i in range(6)]   # q0 is not like the seed
        assert all(c["detector"] == "scam" for c in cands)
        assert isinstance(refused, TopicAuthorizationFailedError)
        assert ledger == {"p1": 1}              # the moderator's verdict applied; the reader's never existed
        log = loop.workers[0].log_text()
        assert pw["worker"] not in log and "TopicAuthorizationFailed" not in log
    finally:
        loop.stop()


@pytest.mark.parametrize("entry", ["faust", "cli"])
def test_a_wrong_password_stops_the_worker_with_one_clear_line_and_no_secret(secured, tmp_path, entry):
    broker, redis, pw, _names, d = secured
    wrong = "Wrong-" + secrets.token_hex(10)
    loop = _loop(secured, "worker", wrong, tmp_path)
    env = {**os.environ, **loop.worker_env(0), "PYTHONPATH": str(REPO)}
    cmd = ([sys.executable, "-m", "faust", "-A", "stream_app", "worker", "-l", "info", "--without-web"]
           if entry == "faust" else [sys.executable, "-m", "stream_app.cli", "worker", "--without-web"])
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    out = res.stdout + res.stderr
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert res.returncode == 2, out[-3000:]
    assert lines == [ln for ln in lines if ln.startswith("error: worker not started:")] and len(lines) == 1, out
    assert "refused the credentials of user 'worker' (SCRAM-SHA-512 over SASL_SSL)" in lines[0]
    assert wrong not in out and pw["worker"] not in out
    assert wrong not in "".join(p.read_text(errors="replace") for p in (d / "logs").glob("*.log"))
    assert took < 60


def test_a_broker_certificate_the_worker_does_not_trust_stops_it_with_one_clear_line(secured, tmp_path):
    broker, _redis, pw, _names, _d = secured
    loop = _loop(secured, "worker", pw["worker"], tmp_path)
    env = {**os.environ, **loop.worker_env(0), "PYTHONPATH": str(REPO)}
    del env["SYNAPSE_BROKER_CA_FILE"]   # the system's CAs only: the dev CA is not among them
    res = subprocess.run([sys.executable, "-m", "stream_app.cli", "worker", "--without-web"], cwd=str(REPO), env=env,
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: worker not started: the TLS certificate of the broker")
    assert "SYNAPSE_BROKER_CA_FILE" in lines[0] and pw["worker"] not in lines[0]

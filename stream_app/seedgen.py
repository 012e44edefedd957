"""``synapse-stream seeds generate``: synthetic seeds from a one-line description of a trend.

An LLM (any OpenAI-compatible chat-completions endpoint) writes ``--n`` diverse examples
(:func:`synapse_stream.llm.generate_seeds`, which removes near copies), Adaptive Coverage Sampling
picks ``--acs K`` of them (all of them without ``--acs``), the picks are printed, numbered, and then
either written to ``--out FILE`` (one text per line; nothing is published) or published to the
``{prefix}seeds`` topic as ``{"detector", "text", "origin": "synthetic", "id": "gen-<sha1[:12]>"}``.

Publishing asks for confirmation on a terminal; without one (a pipe, CI) it needs ``--yes``.
The LLM endpoint, model and key come from ``SYNAPSE_LLM_BASE_URL`` / ``SYNAPSE_LLM_MODEL`` /
``SYNAPSE_LLM_API_KEY`` (or ``synapse.env``); the ``--llm-*`` flags override them.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
from pathlib import Path

from pydantic import SecretStr

from synapse_stream.exceptions import ConfigError, SynapseError

DETECTOR_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def seed_id(detector: str, text: str) -> str:
    """Stable id of a generated seed: ``gen-`` + the first 12 hex digits of sha1(detector + text)."""
    return "gen-" + hashlib.sha1((detector + text).encode("utf-8")).hexdigest()[:12]


def seed_message(detector: str, text: str) -> dict:
    return {"detector": detector, "text": text, "origin": "synthetic", "id": seed_id(detector, text)}


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _secret(text: str) -> SecretStr:
    return SecretStr(text)


def add_seeds_parser(sub) -> None:
    """Register ``seeds generate`` on an argparse subparsers object."""
    p = sub.add_parser("seeds", help="make synthetic seeds for a detector",
                       description="Synthetic positive seeds for a detector.")
    ssub = p.add_subparsers(dest="seeds_command", required=True, metavar="{generate}")
    g = ssub.add_parser(
        "generate", help="ask an LLM for examples of a described trend, pick seeds by ACS, publish them",
        description="Ask an OpenAI-compatible LLM for --n diverse examples of the trend described by --describe, "
                    "remove near copies, pick --acs K of them by Adaptive Coverage Sampling, print them, and "
                    "publish them to the seeds topic (or write them to --out FILE).")
    g.add_argument("--detector", required=True, help="detector the seeds belong to")
    g.add_argument("--describe", required=True, metavar="TEXT", help='one-line description of the trend, e.g. '
                   '"posts promising to double crypto sent to a wallet"')
    g.add_argument("--n", type=_positive_int, default=200, help="unique examples to ask the LLM for (default 200)")
    g.add_argument("--acs", type=_positive_int, metavar="K",
                   help="pick K seeds by Adaptive Coverage Sampling (default: use every unique example)")
    g.add_argument("--coverage", type=float, default=0.5, help="ACS coverage target c (default 0.5)")
    g.add_argument("--posts", metavar="FILE", help="a sample of the stream's posts (one per line, JSONL or TSV with "
                   "'text'): the diagnostics then say how many posts each seed connects at tau")
    g.add_argument("--tau", type=float, default=None, help="tau for the diagnostics (default: the automatic choice "
                   "from the seeds and --posts)")
    g.add_argument("--d-max", type=_positive_int, default=10, help="d_max for the automatic tau (default 10)")
    g.add_argument("--out", metavar="FILE", help="write the seeds to FILE, one per line, and publish nothing")
    g.add_argument("--yes", "-y", action="store_true", help="publish without asking (needed when stdin is not a terminal)")
    g.add_argument("--create", action="store_true",
                   help="create the detector (if it does not exist yet) with --describe as its description, then "
                        "publish its seeds; every worker starts it live")
    llm = g.add_argument_group("LLM (OpenAI-compatible chat completions: OpenAI, vLLM, Ollama...)")
    llm.add_argument("--llm-base-url", help="API root, e.g. https://api.openai.com/v1 or http://localhost:11434/v1 "
                     "(default: SYNAPSE_LLM_BASE_URL, else Ollama's)")
    llm.add_argument("--llm-model", help="model name (default: SYNAPSE_LLM_MODEL, else llama3.1)")
    llm.add_argument("--llm-api-key", type=_secret, metavar="KEY",
                     help="API key; discouraged (visible in the process list and shell history): "
                          "set SYNAPSE_LLM_API_KEY instead")
    llm.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per LLM call (default 120)")
    llm.add_argument("--llm-retries", type=int, default=4, help="retries after 429/5xx/network errors (default 4)")
    llm.add_argument("--llm-calls-per-minute", type=float, default=None, help="client-side rate limit (default none)")
    llm.add_argument("--batch", type=_positive_int, default=25, help="examples asked for per LLM call (default 25)")
    llm.add_argument("--temperature", type=float, default=0.9, help="sampling temperature (default 0.9)")
    llm.add_argument("--dedupe-threshold", type=float, default=0.92,
                     help="cosine at or above which two examples count as copies (default 0.92)")
    g.add_argument("--embedder", default="minilm-onnx",
                   help="for de-duplication and ACS: minilm (default), minilm-int8, a model path, or hashing (tests only)")
    kafka = g.add_argument_group("Kafka (default: SYNAPSE_* settings)")
    kafka.add_argument("--broker", metavar="URL", help="bootstrap, e.g. kafka://localhost:9092 (default: SYNAPSE_BROKER_URL)")
    kafka.add_argument("--topic-prefix", help="topic prefix (default: SYNAPSE_TOPIC_PREFIX, else 'synapse.')")
    g.set_defaults(func=cmd_seeds_generate)


def _settings(args):
    from pydantic import ValidationError

    from stream_app.worker.settings import Settings

    overrides = {}
    for flag, name in (("llm_base_url", "llm_base_url"), ("llm_model", "llm_model"), ("llm_api_key", "llm_api_key"),
                       ("broker", "broker_url"), ("topic_prefix", "topic_prefix")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[name] = value
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc.errors()[0].get('loc')} {exc.errors()[0].get('msg')}") from None


def _say(msg: str) -> None:
    print(f"[seeds] {msg}", file=sys.stderr, flush=True)


async def publish_seeds(settings, detector: str, texts: list[str], *, timeout: float = 60.0) -> int:
    """Send one seed message per text to ``{prefix}seeds``; returns how many were acknowledged."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from stream_app.worker.kafka_clients import aiokafka_producer_settings

    from synapse_stream.messages import dumps

    topic = settings.topic("seeds")
    where = settings.bootstrap_servers()
    producer = AIOKafkaProducer(**aiokafka_producer_settings(settings))
    try:
        await asyncio.wait_for(producer.start(), timeout)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        await producer.stop()
        raise SynapseError(f"cannot reach Kafka at {where}: {str(exc) or type(exc).__name__}") from None
    try:
        futures = [await producer.send(topic, dumps(seed_message(detector, t))) for t in texts]
        await asyncio.wait_for(producer.flush(), timeout)
        await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except (KafkaError, asyncio.TimeoutError) as exc:
        raise SynapseError(f"publishing seeds to {topic} at {where} failed: {str(exc) or type(exc).__name__}") from None
    finally:
        await producer.stop()
    return len(texts)


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_seeds_generate(args) -> int:
    from synapse_stream.embedders import make_embedder
    from synapse_stream.llm import ChatClient, generate_seeds
    from synapse_stream.seeds import acs_select

    detector = args.detector.strip()
    if not DETECTOR_NAME.match(detector):
        raise ConfigError(f"detector names use letters, digits, '_', '.' and '-' (at most 100), got {detector!r}")
    if not args.describe.strip():
        raise ConfigError("--describe is empty: give a one-line description of the trend")
    if args.acs is not None and args.acs > args.n:
        raise ConfigError(f"--acs {args.acs} cannot exceed --n {args.n}")
    if not 0 < args.coverage <= 1:
        raise ConfigError(f"--coverage must be in (0, 1], got {args.coverage}")
    publish = not args.out
    if publish and not args.yes and (sys.stdin is None or not sys.stdin.isatty()):
        raise ConfigError("refusing to publish seeds without confirmation: stdin is not a terminal; "
                          "pass --yes to publish, or --out FILE to write them to a file")
    if args.llm_api_key is not None:
        _say("warning: --llm-api-key is visible in the process list and shell history; "
             "prefer SYNAPSE_LLM_API_KEY")
    settings = _settings(args)
    if publish and args.create:
        from stream_app.detectors_cli import check_settings

        check_settings({"name": detector, "description": args.describe.strip()})   # fails before any LLM call

    embedder = make_embedder(args.embedder)
    client = ChatClient(settings.llm_base_url, settings.llm_model, settings.llm_api_key, timeout=args.llm_timeout,
                        max_retries=args.llm_retries, max_calls_per_minute=args.llm_calls_per_minute)
    _say(f"asking {client.model} at {client.display_url} for {args.n} examples of: {args.describe.strip()}")

    def progress(have: int, want: int, calls: int) -> None:
        _say(f"call {calls}: {have}/{want} unique examples")

    with client:
        texts = generate_seeds(client, args.describe, args.n, batch=args.batch, temperature=args.temperature,
                               dedupe_threshold=args.dedupe_threshold, embedder=embedder, progress=progress)
    tokens = client.usage.get("total_tokens")
    _say(f"{len(texts)} unique examples from {client.calls} LLM call(s)"
         + (f", {tokens} tokens" if tokens is not None else ""))
    if len(texts) < args.n:
        _say(f"warning: only {len(texts)} of the {args.n} requested examples were unique")

    if args.acs is not None and args.acs < len(texts):
        vecs = embedder.encode(texts)
        res = acs_select(vecs, args.acs, coverage=args.coverage)
        chosen = [texts[i] for i in res.indices]
        _say(f"ACS picked {len(chosen)} of {len(texts)} (threshold {res.threshold:.3f}, coverage {res.coverage:.2f})")
    else:
        if args.acs is not None:
            _say(f"--acs {args.acs} >= {len(texts)} unique examples: using all of them")
        chosen = list(texts)

    from synapse_stream.seed_report import diagnose

    posts = None
    if args.posts:
        from synapse_stream.data import load_seed_texts

        posts = embedder.encode(load_seed_texts(args.posts))
    for line in diagnose(embedder.encode(chosen), posts, tau=args.tau, d_max=args.d_max).lines():
        _say(line)

    width = len(str(len(chosen)))
    for i, t in enumerate(chosen, 1):
        print(f"{i:>{width}}. {t}")
    sys.stdout.flush()

    if not publish:
        out = Path(args.out)
        try:
            if out.parent and not out.parent.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(chosen) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
        _say(f"wrote {len(chosen)} seeds to {out} (nothing published)")
        return 0

    topic = settings.topic("seeds")
    if not args.yes and not _confirm(f"publish {len(chosen)} seeds for detector {detector!r} to {topic} "
                                     f"at {settings.bootstrap_servers()}? [y/N] "):
        _say("nothing published")
        return 1
    if args.create:
        from stream_app.detectors_cli import create_if_missing

        made = asyncio.run(create_if_missing(settings, {"name": detector, "description": args.describe.strip()}))
        _say(f"detector {detector!r} " + ("created" if made else "exists already: its seeds are added"))
    sent = asyncio.run(publish_seeds(settings, detector, chosen))
    _say(f"published {sent} seeds for detector {detector!r} to {topic}")
    return 0

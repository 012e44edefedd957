"""Synthetic seeds from a description: the LLM client, generate_seeds and ``seeds generate``.

Every test talks to a fake OpenAI-compatible endpoint started here (``http.server`` in a thread on a
free port); no test needs the internet.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import logging
import random
import sys
import time

import pytest
from fake_llm import FakeLLM

from stream_app.seedgen import add_seeds_parser, seed_id
from synapse_stream.embedders import HashingEmbedder
from synapse_stream.exceptions import LLMError, SynapseError
from synapse_stream.llm import (
    ChatClient,
    Deduplicator,
    build_messages,
    generate_seeds,
    parse_examples,
)

KEY = "sk-TEST-abcdef0123456789-DO-NOT-LEAK"


# ---------------------------------------------------------------------- texts
_SYL = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "pe", "shi", "zu", "dra", "fen", "gol", "hap", "jin", "qua"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 4)))


def unique_texts(count: int, start: int = 0) -> list[str]:
    """Distinct pseudo-posts: 7 random invented words each, so no two are near copies."""
    out = []
    for i in range(start, start + count):
        rng = random.Random(1000 + i)
        out.append(" ".join(_word(rng) for _ in range(7)).capitalize() + "!")
    return out


def near_copy(text: str) -> str:
    """Same words plus one more: a near copy by 3-gram Jaccard and by hashing cosine."""
    return text.rstrip("!") + " now!"


# ---------------------------------------------------------------------- fake endpoint
def chat_answer(content: str, usage: dict | None = None) -> dict:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    if usage is not False:
        body["usage"] = usage or {"prompt_tokens": 50, "completion_tokens": 100, "total_tokens": 150}
    return body


def examples_answer(texts: list[str]) -> dict:
    return chat_answer(json.dumps({"examples": texts}))


@pytest.fixture
def fake():
    f = FakeLLM()
    yield f
    f.stop()


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 0.0

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


_OPEN: list[ChatClient] = []


def track(client: ChatClient) -> ChatClient:
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _OPEN:
        _OPEN.pop().close()


def client_for(fake: FakeLLM, **kw) -> ChatClient:
    kw.setdefault("sleep", FakeSleep())
    kw.setdefault("timeout", 5)
    return track(ChatClient(fake.base_url, "fake-model", kw.pop("api_key", KEY), **kw))


# ---------------------------------------------------------------------- parsing and dedupe
def test_parse_examples_variants():
    assert parse_examples('```json\n{"examples": ["one post", "two post"]}\n```') == ["one post", "two post"]
    assert parse_examples('["bare list one", "bare list two"]') == ["bare list one", "bare list two"]
    assert parse_examples('Sure, here you go: {"examples": ["inside prose"]} Hope it helps!') == ["inside prose"]
    assert parse_examples('{"examples": ["complete one", "complete two", "cut off in the mi') == \
        ["complete one", "complete two"]
    assert parse_examples("1. first line\n2) second line\nnot numbered") == ["first line", "second line"]
    assert parse_examples('{"examples": [{"text": "object item"}, 7, "", "  ", "x" , "ok item"]}') == \
        ["object item", "ok item"]
    long = "y" * 1200
    assert parse_examples(json.dumps({"examples": [long, "short enough"]})) == ["short enough"]
    assert parse_examples('{"examples": ["multi\\nline   text"]}') == ["multi line text"]
    with pytest.raises(LLMError, match="could not be parsed"):
        parse_examples("I'm sorry, but I can't help with that request.")


def test_deduplicator_exact_and_near_with_and_without_embedder():
    base = unique_texts(5)
    batch = base + [base[0].upper(), "  " + base[1] + "  ", near_copy(base[2]), near_copy(base[3])]
    for embedder in (None, HashingEmbedder(dim=256)):
        d = Deduplicator(embedder, threshold=0.9)
        assert d.add_many(batch) == base
        assert d.dropped_exact == 2 and d.dropped_near == 2
        assert d.add_many([base[4], near_copy(base[4]), "Something entirely different here"]) == \
            ["Something entirely different here"]


def test_build_messages_prompt_design():
    msgs = build_messages("crypto doubling scams", 7, {"style": "S", "length": "L", "target": "T", "wording": "W"},
                          ["old example"])
    assert msgs[0]["role"] == "system" and '{"examples"' in msgs[0]["content"]
    user = msgs[1]["content"]
    for part in ("crypto doubling scams", "Write 7 different posts", "style: S", "length: L", "target / angle: T",
                 "wording: W", "- old example", "JSON only"):
        assert part in user


# ---------------------------------------------------------------------- generate_seeds
def test_generate_happy_path_dedupes_and_returns_n(fake):
    pool = iter(unique_texts(200))
    seen: list[str] = []

    def answer(body):
        fresh = [next(pool) for _ in range(6)]
        dups = [seen[0], seen[1].lower()] if len(seen) >= 2 else []
        nears = [near_copy(seen[-1]), near_copy(fresh[0])] if seen else [near_copy(fresh[0])]
        seen.extend(fresh)
        items = fresh + dups + nears
        if len(fake.requests) == 2:   # the second answer comes in a code fence
            return 200, chat_answer("```json\n" + json.dumps({"examples": items}) + "\n```"), {}
        return 200, examples_answer(items), {}

    fake.default = answer
    client = client_for(fake)
    out = generate_seeds(client, "posts that promise to double crypto", 20, batch=10)
    assert len(out) == 20
    assert set(out) <= set(seen)                       # only the fresh ones survive
    assert len({t.casefold() for t in out}) == 20
    assert not any(near_copy(a) == b for a in out for b in out)
    assert len(fake.requests) == 4                     # 6 new per call -> 4 calls for 20
    assert client.usage["total_tokens"] == 4 * 150
    # request shape, auth, prompt variety and the avoid-list
    first, second = fake.requests[0], fake.requests[1]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == f"Bearer {KEY}"
    assert first["body"]["model"] == "fake-model" and first["body"]["temperature"] == 0.9
    u1, u2 = first["body"]["messages"][1]["content"], second["body"]["messages"][1]["content"]
    assert "posts that promise to double crypto" in u1 and "Already written" not in u1
    assert "Already written" in u2 and seen[0][:40] in u2
    focus = lambda u: [line for line in u.splitlines() if line.startswith("- ") and ":" in line][:4]
    assert all(a != b for a, b in zip(focus(u1), focus(u2)))   # every axis changes between calls


def test_generate_with_embedder_removes_near_duplicates(fake):
    base = unique_texts(12, start=500)
    fake.default = (200, examples_answer(base + [near_copy(t) for t in base] + [t.upper() for t in base]), {})
    out = generate_seeds(client_for(fake), "anything", 12, batch=40, embedder=HashingEmbedder(dim=256),
                         dedupe_threshold=0.9)
    assert out == base


def test_generate_too_few_unique_raises(fake):
    fake.default = (200, examples_answer(unique_texts(3)), {})
    with pytest.raises(LLMError, match=r"only 3 unique examples of the 20 requested after \d+ calls"):
        generate_seeds(client_for(fake), "anything", 20, batch=10, max_calls=4)
    assert len(fake.requests) == 4


def test_unusable_answer_raises(fake):
    fake.default = (200, chat_answer("I'm sorry, but I can't help with that."), {})
    with pytest.raises(LLMError, match="could not be parsed") as info:
        generate_seeds(client_for(fake), "anything", 10, batch=10, max_calls=3)
    assert "3 calls" in str(info.value)
    # a body without choices, or not JSON at all
    fake.script = [(200, {"object": "error"}, {}), (200, "<html>proxy page</html>", {})]
    client = client_for(fake)
    for _ in range(2):
        with pytest.raises(LLMError, match="could not be parsed"):
            client.complete([{"role": "user", "content": "hi"}])


def test_one_bad_answer_among_good_ones_is_skipped(fake):
    good = unique_texts(10, start=900)
    fake.script = [(200, chat_answer("no json here at all"), {})]
    fake.default = (200, examples_answer(good), {})
    assert generate_seeds(client_for(fake), "anything", 10, batch=10) == good
    assert len(fake.requests) == 2


# ---------------------------------------------------------------------- client errors and retries
def test_401_is_clear_not_retried_and_hides_the_key(fake, caplog):
    fake.default = (401, {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}}, {})
    sleep = FakeSleep()
    client = client_for(fake, sleep=sleep)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(LLMError) as info:
            generate_seeds(client, "anything", 5)
    msg = str(info.value)
    assert "rejected the API key (HTTP 401)" in msg
    assert KEY not in msg and KEY not in repr(info.value) and KEY not in repr(client)
    assert KEY not in caplog.text
    assert "**********" in repr(client)
    assert len(fake.requests) == 1 and sleep.calls == []
    fake.default = (403, {"error": {"message": "forbidden"}}, {})
    with pytest.raises(LLMError, match=r"rejected the API key \(HTTP 403\)"):
        client.complete([{"role": "user", "content": "hi"}])


def test_401_without_key_says_a_key_is_needed(fake):
    fake.default = (401, {"error": {"message": "missing key"}}, {})
    client = track(ChatClient(fake.base_url, "m", None, sleep=FakeSleep()))
    with pytest.raises(LLMError, match="requires an API key"):
        client.complete([{"role": "user", "content": "hi"}])
    assert "Authorization" not in fake.requests[0]["headers"]


def test_404_and_400_are_not_retried(fake):
    fake.script = [(404, {"error": {"message": "model 'x' not found"}}, {}), (400, {"error": {"message": "bad temperature"}}, {})]
    client = client_for(fake)
    with pytest.raises(LLMError, match="HTTP 404.*--llm-base-url"):
        client.complete([{"role": "user", "content": "hi"}])
    with pytest.raises(LLMError, match=r"refused the request \(HTTP 400\): bad temperature"):
        client.complete([{"role": "user", "content": "hi"}])
    assert len(fake.requests) == 2


def test_429_with_retry_after_then_success(fake, caplog):
    fake.script = [(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"}),
                   (429, {"error": {"message": "slow down"}}, {"Retry-After": "2.5"})]
    fake.default = (200, chat_answer('{"examples": ["fine"]}'), {})
    sleep = FakeSleep()
    with caplog.at_level(logging.WARNING):
        res = client_for(fake, sleep=sleep).complete([{"role": "user", "content": "hi"}])
    assert res.content == '{"examples": ["fine"]}' and res.usage["total_tokens"] == 150
    assert len(fake.requests) == 3
    assert sleep.calls == [7.0, 2.5]                  # Retry-After honoured exactly
    assert "429" in caplog.text and KEY not in caplog.text


def test_429_too_long_or_no_quota_fails_at_once(fake):
    fake.script = [(429, {"error": {"message": "daily limit"}}, {"Retry-After": "3600"}),
                   (429, {"error": {"message": "quota", "code": "insufficient_quota"}}, {})]
    sleep = FakeSleep()
    client = client_for(fake, sleep=sleep)
    with pytest.raises(LLMError, match="asks to wait 3600 s"):
        client.complete([{"role": "user", "content": "hi"}])
    with pytest.raises(LLMError, match="no quota left"):
        client.complete([{"role": "user", "content": "hi"}])
    assert sleep.calls == [] and len(fake.requests) == 2


def test_500_then_success_uses_backoff_with_jitter(fake):
    fake.script = [(500, {"error": {"message": "boom"}}, {}), (503, "upstream down", {})]
    fake.default = (200, chat_answer("ok"), {})
    sleep = FakeSleep()
    res = client_for(fake, sleep=sleep, backoff=0.5).complete([{"role": "user", "content": "hi"}])
    assert res.content == "ok" and len(fake.requests) == 3
    assert len(sleep.calls) == 2
    assert 0.25 <= sleep.calls[0] <= 0.5 and 0.5 <= sleep.calls[1] <= 1.0   # 0.5·2^a, jitter in [0.5, 1]


def test_500_forever_gives_up_after_max_retries(fake):
    fake.default = (502, {"error": {"message": "bad gateway"}}, {})
    sleep = FakeSleep()
    with pytest.raises(LLMError, match=r"failed with HTTP 502: bad gateway \(gave up after 3 attempts\)"):
        client_for(fake, sleep=sleep, max_retries=2).complete([{"role": "user", "content": "hi"}])
    assert len(fake.requests) == 3 and len(sleep.calls) == 2


def test_hanging_endpoint_times_out(fake):
    fake.default = "hang"
    sleep = FakeSleep()
    t0 = time.monotonic()
    with pytest.raises(LLMError, match=r"did not answer within 0.3 s \(gave up after 2 attempts\)"):
        client_for(fake, sleep=sleep, timeout=0.3, max_retries=1).complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - t0 < 5
    assert len(sleep.calls) == 1


def test_unreachable_endpoint(fake):
    from stream_app.devstack.embedded import free_port

    port = free_port()
    sleep = FakeSleep()
    client = track(ChatClient(f"http://127.0.0.1:{port}/v1", "m", KEY, max_retries=2, sleep=sleep, timeout=2))
    with pytest.raises(LLMError, match=f"cannot reach the LLM endpoint at http://127.0.0.1:{port}/v1") as info:
        client.complete([{"role": "user", "content": "hi"}])
    assert KEY not in str(info.value)
    assert len(sleep.calls) == 2


def test_rate_limiter_spaces_calls(fake):
    fake.default = (200, chat_answer("ok"), {})
    sleep = FakeSleep()
    client = client_for(fake, sleep=sleep, clock=sleep.clock, max_calls_per_minute=30)
    for _ in range(3):
        client.complete([{"role": "user", "content": "hi"}])
    assert sleep.calls == [pytest.approx(2.0), pytest.approx(2.0)]


def test_base_url_forms_and_bad_config(fake):
    fake.default = (200, chat_answer("ok"), {})
    track(ChatClient(fake.base_url + "/chat/completions/", "m", sleep=FakeSleep())).complete([{"role": "user", "content": "x"}])
    assert fake.requests[-1]["path"] == "/v1/chat/completions"
    from synapse_stream.exceptions import ConfigError

    with pytest.raises(ConfigError):
        ChatClient("localhost:11434", "m")
    with pytest.raises(ConfigError):
        ChatClient(fake.base_url, "")
    c = track(ChatClient("https://user:pw@api.example.com/v1?token=abc", "m", "secret"))
    assert "pw" not in repr(c) and "abc" not in repr(c) and "secret" not in repr(c)


# ---------------------------------------------------------------------- the command
def run_cli(argv: list[str]) -> int:
    """What ``stream_app.cli.main`` does, with a parser holding only ``seeds``."""
    parser = argparse.ArgumentParser(prog="synapse-stream")
    sub = parser.add_subparsers(dest="command", required=True)
    add_seeds_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SynapseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("SYNAPSE_LLM_BASE_URL", "SYNAPSE_LLM_MODEL", "SYNAPSE_LLM_API_KEY", "SYNAPSE_BROKER_URL",
                "SYNAPSE_TOPIC_PREFIX", "SYNAPSE_EMBEDDED_BROKER", "SYNAPSE_DETECTORS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)       # no stray synapse.env
    return monkeypatch


def test_cli_out_writes_acs_selected_seeds(fake, clean_env, tmp_path, capsys):
    pool = unique_texts(40, start=2000)
    fake.script = [(200, examples_answer(pool[:20] + [near_copy(pool[0]), pool[1].upper()]), {}),
                   (200, examples_answer(pool[20:]), {})]
    clean_env.setenv("SYNAPSE_LLM_BASE_URL", fake.base_url)
    clean_env.setenv("SYNAPSE_LLM_API_KEY", KEY)
    out = tmp_path / "seeds" / "scam.txt"
    code = run_cli(["seeds", "generate", "--detector", "crypto-scam", "--describe", "crypto doubling scams",
                    "--n", "40", "--batch", "25", "--acs", "8", "--out", str(out), "--embedder", "hashing-256",
                    "--llm-model", "my-model", "--dedupe-threshold", "0.9"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and len(set(lines)) == 8 and set(lines) <= set(pool)
    numbered = [line for line in captured.out.splitlines() if line.strip()]
    assert numbered == [f"{i}. {t}" for i, t in enumerate(lines, 1)]
    assert "ACS picked 8 of 40" in captured.err and "nothing published" in captured.err
    assert fake.requests[0]["body"]["model"] == "my-model"
    assert fake.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in captured.out + captured.err


def test_cli_without_acs_uses_all_unique(fake, clean_env, tmp_path, capsys):
    pool = unique_texts(6, start=3000)
    fake.default = (200, examples_answer(pool + pool), {})
    out = tmp_path / "all.txt"
    code = run_cli(["seeds", "generate", "--detector", "d", "--describe", "x", "--n", "6", "--out", str(out),
                    "--embedder", "hashing", "--llm-base-url", fake.base_url])
    assert code == 0, capsys.readouterr().err
    assert out.read_text(encoding="utf-8").splitlines() == pool


def test_cli_refuses_to_publish_without_yes_on_non_tty(fake, clean_env, capsys):
    fake.default = (200, examples_answer(unique_texts(5)), {})
    clean_env.setattr(sys, "stdin", io.StringIO(""))
    code = run_cli(["seeds", "generate", "--detector", "d", "--describe", "x", "--n", "5", "--embedder", "hashing",
                    "--llm-base-url", fake.base_url])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: refusing to publish" in err and "--yes" in err
    assert fake.requests == []                  # refused before spending LLM calls


def test_cli_errors_exit_2_and_never_show_the_key(fake, clean_env, capsys):
    fake.default = (401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}, {})
    code = run_cli(["seeds", "generate", "--detector", "d", "--describe", "x", "--n", "5", "--embedder", "hashing",
                    "--out", "s.txt", "--llm-base-url", fake.base_url, "--llm-api-key", KEY])
    captured = capsys.readouterr()
    assert code == 2
    assert "error: the LLM endpoint rejected the API key (HTTP 401)" in captured.err
    assert "prefer SYNAPSE_LLM_API_KEY" in captured.err
    assert KEY not in captured.out + captured.err
    assert fake.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"   # flag reached the request
    # unreachable endpoint
    from stream_app.devstack.embedded import free_port

    code = run_cli(["seeds", "generate", "--detector", "d", "--describe", "x", "--n", "5", "--embedder", "hashing",
                    "--out", "s.txt", "--llm-base-url", f"http://127.0.0.1:{free_port()}/v1", "--llm-retries", "0"])
    captured = capsys.readouterr()
    assert code == 2 and "error: cannot reach the LLM endpoint" in captured.err
    # bad input
    for argv, needle in ((["--detector", "bad name!"], "detector names"), (["--acs", "9"], "cannot exceed")):
        base = ["seeds", "generate", "--detector", "d", "--describe", "x", "--n", "5", "--out", "s.txt",
                "--embedder", "hashing", "--llm-base-url", fake.base_url]
        i = base.index(argv[0]) if argv[0] in base else None
        if i is not None:
            base[i + 1] = argv[1]
        else:
            base += argv
        assert run_cli(base) == 2 and needle in capsys.readouterr().err


def test_settings_hold_llm_fields(clean_env):
    from stream_app.worker.settings import Settings

    clean_env.setenv("SYNAPSE_LLM_BASE_URL", "http://vllm:8000/v1")
    clean_env.setenv("SYNAPSE_LLM_MODEL", "qwen")
    clean_env.setenv("SYNAPSE_LLM_API_KEY", KEY)
    s = Settings()
    assert (s.llm_base_url, s.llm_model, s.llm_api_key.get_secret_value()) == ("http://vllm:8000/v1", "qwen", KEY)
    assert KEY not in repr(s) and KEY not in str(s)
    assert Settings(_env_file=None, llm_base_url="http://x/v1").llm_base_url == "http://x/v1"


def test_seed_id_is_stable():
    assert seed_id("scam", "hello") == "gen-" + hashlib.sha1(b"scamhello").hexdigest()[:12]


def test_cli_is_wired_into_synapse_stream():
    from stream_app import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "seeds" not in sub.choices:
        pytest.skip("stream_app.cli.build_parser() does not register `seeds` yet")
    assert "generate" in sub.choices["seeds"].format_help()


# ---------------------------------------------------------------------- through a broker
@pytest.mark.stack
def test_publish_to_embedded_broker(fake, clean_env, tmp_path, capsys):
    from aiokafka import AIOKafkaConsumer

    from stream_app.devstack.embedded import EmbeddedStack

    pool = unique_texts(10, start=4000)
    fake.default = (200, examples_answer(pool), {})
    prefix = "gen-test."
    with EmbeddedStack(tmp_path / "stack", topics={prefix + "seeds": 1}, with_redis=False) as stack:
        clean_env.setenv("SYNAPSE_EMBEDDED_BROKER", "true")
        code = run_cli(["seeds", "generate", "--detector", "crypto-scam", "--describe", "x", "--n", "10",
                        "--acs", "4", "--embedder", "hashing", "--llm-base-url", fake.base_url, "--yes",
                        "--broker", f"kafka://{stack.bootstrap}", "--topic-prefix", prefix])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "published 4 seeds" in captured.err

        async def read(n):
            c = AIOKafkaConsumer(prefix + "seeds", bootstrap_servers=stack.bootstrap, group_id=None,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
            await c.start()
            got = []
            try:
                while len(got) < n:
                    batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 20)
                    for records in batch.values():
                        got += [json.loads(r.value) for r in records]
            finally:
                await c.stop()
            return got

        msgs = asyncio.run(asyncio.wait_for(read(4), 30))
    printed = [line.split(". ", 1)[1] for line in captured.out.splitlines() if ". " in line]
    assert [m["text"] for m in msgs] == printed
    for m in msgs:
        assert m == {"detector": "crypto-scam", "text": m["text"], "origin": "synthetic",
                     "id": seed_id("crypto-scam", m["text"])}


@pytest.mark.stack
def test_generate_create_makes_the_detector_then_publishes_its_seeds(fake, clean_env, tmp_path, capsys):
    from stream_app.detectors_cli import current
    from stream_app.devstack.embedded import EmbeddedStack
    from stream_app.worker.kafka_admin import read_to_end
    from stream_app.worker.settings import Settings

    fake.default = (200, examples_answer(unique_texts(6, start=5000)), {})
    prefix = "gen-create."
    with EmbeddedStack(tmp_path / "stack", topics={prefix + "seeds": 1}, with_redis=False) as stack:
        clean_env.setenv("SYNAPSE_EMBEDDED_BROKER", "true")
        args = ["seeds", "generate", "--detector", "wallet-drainers", "--describe", "posts asking for a seed phrase",
                "--n", "6", "--embedder", "hashing", "--llm-base-url", fake.base_url, "--yes", "--create",
                "--broker", f"kafka://{stack.bootstrap}", "--topic-prefix", prefix]
        assert run_cli(args) == 0
        first = capsys.readouterr().err
        assert run_cli(args) == 0           # again: the detector exists, its seeds are added
        second = capsys.readouterr().err
        s = Settings(_env_file=None, broker_url=f"kafka://{stack.bootstrap}", topic_prefix=prefix,
                     embedded_broker=True)
        dets = asyncio.run(current(s))
        seeds = asyncio.run(read_to_end(stack.bootstrap, prefix + "seeds"))
    assert "detector 'wallet-drainers' created" in first and "exists already" in second
    assert list(dets) == ["wallet-drainers"] and dets["wallet-drainers"]["description"] == "posts asking for a seed phrase"
    assert len(seeds) == 12


def test_generate_create_refuses_a_bad_detector_name_before_asking_the_llm(fake, clean_env, capsys):
    code = run_cli(["seeds", "generate", "--detector", "", "--describe", "x", "--n", "3", "--embedder", "hashing",
                    "--llm-base-url", fake.base_url, "--yes", "--create", "--broker", "kafka://127.0.0.1:1"])
    assert code == 2 and "name" in capsys.readouterr().err
    assert fake.requests == []

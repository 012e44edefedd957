"""The new-detector page's LLM seeds (``SeedSuggester``): the configured endpoint (a fake OpenAI-compatible
one here) writes examples of the description, near copies go, ACS picks ``k`` of them."""
from __future__ import annotations

import json
import random

import pytest
from fake_llm import FakeLLM

from stream_app.console.seeding import SeedSuggester
from stream_app.worker.settings import Settings
from synapse_stream.exceptions import ConfigError, SynapseError


def _answer(texts):
    return {"id": "x", "object": "chat.completion", "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps({"examples": texts})},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}


@pytest.fixture
def fake():
    f = FakeLLM()
    yield f
    f.stop()


def _settings(fake: FakeLLM) -> Settings:
    return Settings(_env_file=None, embedder="hashing-128", llm_base_url=fake.base_url, llm_model="fake-model",
                    llm_api_key="sk-test")


def test_suggestions_come_from_the_endpoint_deduplicated_and_picked_by_acs(fake):
    rng = random.Random(1)
    words = [f"w{i}" for i in range(400)]
    pool = iter(" ".join(rng.sample(words, 8)) for _ in range(500))
    sent: list[str] = []

    def answer(body):
        fresh = [next(pool) for _ in range(10)]
        sent.extend(fresh)
        return 200, _answer(fresh + fresh[:2]), {}   # two repeats in every answer

    fake.default = answer
    got = SeedSuggester(_settings(fake), n=30, k=8, timeout=5).suggest("posts that promise to double crypto")
    assert len(got) == 8 and len(set(got)) == 8 and set(got) <= set(sent)
    first = fake.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["body"]["model"] == "fake-model"
    assert "posts that promise to double crypto" in first["body"]["messages"][1]["content"]
    assert first["headers"]["Authorization"] == "Bearer sk-test"


def test_an_empty_description_and_a_failing_endpoint_are_clear_errors(fake):
    s = SeedSuggester(_settings(fake), n=10, k=4, timeout=5)
    with pytest.raises(ConfigError, match="describe the detector"):
        s.suggest("   ")
    fake.default = (401, {"error": {"message": "bad key"}})
    with pytest.raises(SynapseError) as e:
        s.suggest("scam posts")
    assert "sk-test" not in str(e.value)


def test_suggester_diagnose_reports_near_duplicates(monkeypatch):
    """The new-detector flow's seed diagnostics: the real report on the suggester's embedder."""
    import numpy as np

    from stream_app.console.seeding import SeedSuggester

    class Emb:
        def encode(self, texts):
            base = np.ones((len(texts), 8), np.float32)
            base[:, 0] += np.arange(len(texts)) * 1e-3      # near copies of one text
            return base

    s = SeedSuggester(settings=None)
    s._embedder = Emb()
    lines = s.diagnose(["a", "b", "c", "d"])
    assert lines[0].startswith("4 seeds, 1 distinct (3 near-duplicates removed)")
    assert any(line.startswith("warning:") for line in lines)
    assert s.diagnose([]) == []

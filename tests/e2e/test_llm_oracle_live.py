"""The LLM oracle in the live loop, against a fake OpenAI-compatible endpoint started by the test:
the LLM answers candidates as labeler llm:<model>, and a later human verdict wins over it."""
from __future__ import annotations

import asyncio
import json

import pytest
from fake_llm import FakeLLM

from stream_app.devstack.demo import LiveLoop, gauge
from synapse_stream.messages import dumps

pytestmark = pytest.mark.stack


def answer(body: dict):
    """Label 1 when the post (after the prompt's <post_text> tag) mentions a giveaway."""
    post = body["messages"][-1]["content"]
    label = 1 if "giveaway" in post.split("<post_text>")[-1] else 0
    return (200, {"choices": [{"message": {"role": "assistant", "content": json.dumps(
        {"label": label, "confidence": 0.9, "reason": "keyword"})}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10}})


@pytest.fixture()
def fake_llm():
    f = FakeLLM(default=answer)
    yield f
    f.stop()


def test_llm_answers_and_a_human_verdict_wins(tmp_path, fake_llm):
    det = {"name": "scam", "tau": 0.3, "d_max": 5, "oracle_mode": "llm", "description": "crypto giveaway scams",
           "candidates": "ibg"}
    posts = [{"id": f"g{i}", "text": f"free crypto giveaway wallet number {i}"} for i in range(6)] + \
            [{"id": f"n{i}", "text": f"free crypto wallet tips number {i}"} for i in range(6)]
    loop = LiveLoop(tmp_path, detectors=[det], embedder="hashing-64", partitions=2,
                    extra_env={"SYNAPSE_LLM_BASE_URL": fake_llm.base_url, "SYNAPSE_LLM_MODEL": "fake-model"})
    with loop:
        async def go():
            await loop.send_seeds("scam", ["free crypto giveaway wallet"])
            await loop.send_posts(posts)
            m = await loop.wait_quiet("scam", len(posts), timeout=120)   # nobody but the LLM answers
            labels = [json.loads(x.value) for x in await loop.read_topic(loop.topics.labels)]
            llm_said = {x["post_id"]: x["label"] for x in labels}
            target = next(p for p, y in llm_said.items() if y == 1)
            # a moderator disagrees with the LLM on one post: the human verdict must win
            await loop.send_raw(loop.topics.labels, dumps({"detector": "scam", "post_id": target, "label": 0,
                                                           "labeler": "moderator:ana"}), target.encode())
            pos_before = gauge(m, "synapse_confirmed_positives", detector="scam")
            for _ in range(60):   # until the worker has applied the human verdict (or give up and fail below)
                m2 = await asyncio.to_thread(loop.scrape)
                if (gauge(m2, "synapse_llm_agreement", detector="scam") is not None
                        and gauge(m2, "synapse_confirmed_positives", detector="scam") != pos_before):
                    break
                await asyncio.sleep(0.5)
            return m, m2, labels, target
        m, m2, labels, target = asyncio.run(go())

    assert labels and all(x["labeler"] == "llm:fake-model" for x in labels)
    assert gauge(m, "synapse_answered", detector="scam") == gauge(m, "synapse_queried", detector="scam") == len(labels)
    assert gauge(m, "synapse_llm_calls_total", detector="scam") == len(labels)
    assert gauge(m, "synapse_llm_tokens_total", detector="scam", kind="prompt") == 50 * len(labels)
    pos_before = gauge(m, "synapse_confirmed_positives", detector="scam")
    assert gauge(m2, "synapse_confirmed_positives", detector="scam") == pos_before - 1   # the human's 0 won
    assert gauge(m2, "synapse_llm_agreement", detector="scam") == 0.0                    # 1 pair, disagreeing

"""A generative fuzzer for the wire format (Hypothesis): arbitrary JSON values, arbitrary Unicode
(lone surrogates, NUL, BOM, non-characters, zero-width), invalid UTF-8 bytes, deep nesting and extreme
numbers in every field of ``posts``, ``seeds`` and ``labels``.

The contract at this layer: a parser either returns a typed record whose every string can be encoded
as UTF-8 (and whose text shows something), or raises :class:`MessageError` with a stable reason. Any
other exception is a bug.
"""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import FIELDS, PLAUSIBLE, json_values, messages

from synapse_stream.exceptions import MessageError
from synapse_stream.messages import (
    LabelMsg,
    PostMsg,
    SeedMsg,
    dead_letter,
    dumps,
    parse_label,
    parse_post,
    parse_seed,
    visible,
)

REASON = re.compile(r"^[a-z0-9_]+(:[a-z_]+)?$")
PARSERS = {"posts": parse_post, "seeds": parse_seed, "labels": parse_label}


def strings_of(rec) -> list[str]:
    out = []
    stack = [vars(rec)]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict):
            stack += list(x.keys()) + list(x.values())
        elif isinstance(x, (list, tuple)):
            stack += list(x)
    return out


def check_contract(topic: str, raw: bytes):
    try:
        rec = PARSERS[topic](raw)
    except MessageError as exc:
        assert REASON.match(exc.reason), exc.reason
        # the dead letter of any rejected message can be built and serialised
        doc = json.loads(dumps(dead_letter(raw, source_topic=topic, partition=0, offset=1, reason=exc.reason,
                                           detail=exc.detail)))
        assert doc["raw_size"] == len(raw)
        return None
    assert isinstance(rec, (PostMsg, SeedMsg, LabelMsg))
    for s in strings_of(rec):
        s.encode("utf-8")   # never a lone surrogate past validation
    if hasattr(rec, "text"):
        assert visible(rec.text)
    dumps(vars(rec))   # every accepted record serialises
    return rec


@pytest.mark.parametrize("topic", sorted(FIELDS))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_is_either_accepted_clean_or_rejected_with_a_stable_reason(topic, data):
    check_contract(topic, data.draw(messages(topic)))


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_any_json_value_in_any_post_field(value):
    for f in FIELDS["posts"]:
        check_contract("posts", json.dumps({**PLAUSIBLE, f: value}).encode())


# ---------------------------------------------------------------------- the cases seen, kept as regressions
@pytest.mark.parametrize("topic, raw, reason", [
    ("posts", rb'{"id": "bad-\ud800", "text": "a post whose id holds a lone surrogate"}', "not_utf8:id"),
    ("labels", rb'{"detector": "scam", "post_id": "bad-\ud800", "label": 1, "labeler": "x"}', "not_utf8:post_id"),
    ("seeds", rb'{"detector": "scam", "text": "double your bitcoin", "id": "seed-\ud800"}', "not_utf8:id"),
    ("labels", rb'{"detector": "sc\udfffam", "post_id": "p", "label": 1, "labeler": "x"}', "not_utf8:detector"),
    ("labels", rb'{"detector": "scam", "post_id": "p", "label": 1, "labeler": "\ud800"}', "not_utf8:labeler"),
    ("posts", rb'{"id": "p", "text": "ok", "meta": {"k\ud800": 1}}', "not_utf8:meta"),
    ("posts", rb'{"id": "p", "text": "ok", "meta": {"k": ["\udc00"]}}', "not_utf8:meta"),
    ("seeds", rb'{"detector": "scam", "text": "x", "origin": "\ud800"}', "bad_origin"),
    ("posts", '{"id": "p", "text": "\u200b\u200d\ufeff\u2060"}'.encode(), "empty_text"),
    ("posts", rb'{"id": "p", "text": "\u0000\u0000"}', "empty_text"),
    ("posts", rb'{"id": "\u200b", "text": "fine"}', "empty_field:id"),
    ("posts", b'{"id": "p", "text": "fine", "ts": ' + b"9" * 400 + b"}", "wrong_type:ts"),
    ("posts", b'{"id": "p", "text": "fine", "ts": NaN}', "not_json"),
    ("posts", b'{"id": "p", "text": "fine", "meta": {"x": Infinity}}', "not_json"),
    ("labels", b'{"detector": "scam", "post_id": ' + b"9" * 300 + b', "label": 1, "labeler": "x"}', "too_long:post_id"),
])
def test_reported_cases_are_rejected_with_their_reason(topic, raw, reason):
    with pytest.raises(MessageError) as e:
        PARSERS[topic](raw)
    assert e.value.reason == reason


def test_a_byte_order_mark_is_ignored_as_rfc_8259_allows():
    assert parse_post(b'\xef\xbb\xbf{"id": "p1", "text": "hello"}').id == "p1"
    assert parse_label('\ufeff{"detector": "d", "post_id": "p", "label": 0, "labeler": "x"}').label == 0


def test_visible_text_with_invisible_characters_around_it_is_kept_as_is():
    t = "\u200bhello\x00"
    assert parse_post(json.dumps({"id": "p", "text": t}).encode()).text == t

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

from synapse_stream.exceptions import MessageError
from synapse_stream.messages import (
    MAX_DEPTH,
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
NASTY = ["\ud800", "\udfff", "\udbff\udc00", "\x00", "\ufeff", "\ufffe", "\uffff", "\u200b", "\u200d",
         "\u2028", "\U0010ffff", "\u0301", "\x7f", "\t", " ", "e\u0301", "\U0001f600", "\\", '"']
texts = st.lists(st.one_of(st.characters(codec=None, categories=None), st.sampled_from(NASTY)),
                 max_size=20).map("".join)
numbers = st.one_of(st.integers(), st.integers(min_value=-10 ** 400, max_value=10 ** 400),
                    st.floats(allow_nan=False, allow_infinity=False), st.just(10 ** 300), st.just(-0.0))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), numbers, texts),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(texts, inner, max_size=4)), max_leaves=12)
FIELDS = {"posts": ["id", "text", "ts", "meta"], "seeds": ["detector", "text", "origin", "id"],
          "labels": ["detector", "post_id", "label", "labeler", "ts"]}
PLAUSIBLE = {"id": "p1", "text": "double your bitcoin today", "ts": 1.7e9, "meta": {"lang": "en"},
             "detector": "scam", "origin": "synthetic", "post_id": "p1", "label": 1, "labeler": "ann"}
PARSERS = {"posts": parse_post, "seeds": parse_seed, "labels": parse_label}


def deep(n: int) -> str:
    return "[" * n + "]" * n


@st.composite
def messages(draw, topic: str):
    """A message for ``topic``: each field plausible, hostile, missing or of any JSON type; then encoded
    one of several ways (escaped JSON, raw UTF-8 with surrogates passed through, with a BOM, bytes cut or
    flipped, or arbitrary bytes)."""
    obj = {}
    for f in FIELDS[topic]:
        kind = draw(st.sampled_from(["plausible", "text", "json", "missing", "nasty"]))
        if kind == "plausible":
            obj[f] = PLAUSIBLE[f]
        elif kind == "text":
            obj[f] = draw(texts)
        elif kind == "json":
            obj[f] = draw(json_values)
        elif kind == "nasty":
            obj[f] = PLAUSIBLE[f] + draw(st.sampled_from(NASTY)) if isinstance(PLAUSIBLE[f], str) \
                else draw(st.sampled_from([10 ** 400, -1, 2, True, "1", [], {}, 1e308]))
    if draw(st.booleans()):
        obj.update(draw(st.dictionaries(texts, json_values, max_size=2)))
    enc = draw(st.sampled_from(["ascii", "raw", "bom", "cut", "flip", "bytes", "deep", "constant"]))
    body = json.dumps(obj, ensure_ascii=(enc != "raw"))
    if enc == "raw":
        return body.encode("utf-8", "surrogatepass")
    if enc == "bom":
        return b"\xef\xbb\xbf" + body.encode("utf-8")
    if enc == "cut":
        return body.encode()[:draw(st.integers(0, len(body)))]
    if enc == "flip":
        b = bytearray(body.encode())
        b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0x80, 0xff))
        return bytes(b)
    if enc == "bytes":
        return draw(st.binary(max_size=60))
    if enc == "deep":
        return ('{"id": "p", "text": "t", "meta": {"x": ' + deep(draw(st.integers(1, 3 * MAX_DEPTH))) + "}}").encode()
    if enc == "constant":
        return body.replace(json.dumps(PLAUSIBLE["ts"]), draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))).encode()
    return body.encode("ascii")


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

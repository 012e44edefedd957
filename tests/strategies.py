"""Hypothesis strategies for hostile messages: arbitrary JSON values, arbitrary Unicode (lone surrogates, NUL,
BOM, non-characters, zero-width), invalid UTF-8, deep nesting and extreme numbers in every field of ``posts``,
``seeds`` and ``labels`` (used by tests/core/test_messages_fuzz.py and tests/worker/test_error_boundary.py)."""
from __future__ import annotations

import json

from hypothesis import strategies as st

from synapse_stream.messages import MAX_DEPTH

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

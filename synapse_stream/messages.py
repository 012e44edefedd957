"""The wire format: parse and validate messages from raw bytes, build outgoing ones.

Pure functions, no Kafka: the streaming layer hands raw bytes in and gets either a typed record or
a :class:`~synapse_stream.exceptions.MessageError` whose ``reason`` (a short stable code) goes to the
dead-letter topic with the raw bytes.

>>> parse_post(b'{"id": "p1", "text": "hello"}').id
'p1'
>>> try:
...     parse_label(b'{"detector": "scam", "post_id": "p1", "label": 2, "labeler": "ann"}')
... except MessageError as e:
...     print(e.reason)
bad_label
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .exceptions import MessageError

MAX_MESSAGE_BYTES = 1_000_000   # larger messages are rejected before parsing
MAX_TEXT_CHARS = 20_000         # posts and seeds longer than this go to the dead-letter topic
MAX_ID_CHARS = 256
_MAX_INT_ID = 10 ** MAX_ID_CHARS   # an integer id must have fewer digits
MAX_DEPTH = 32                  # JSON nesting deeper than this is rejected
DEAD_LETTER_RAW_BYTES = 64_000  # a dead letter keeps at most this much of the raw value (plus its size and sha256)
ORIGINS = ("synthetic", "manual")
BOM = "\ufeff"                  # RFC 8259 lets a parser ignore a leading byte-order mark; we do
# categories of characters that show nothing on their own: controls, format (zero-width, BOM), surrogates,
# private use, unassigned, separators (spaces), combining marks
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


@dataclass(frozen=True)
class PostMsg:
    id: str
    text: str
    ts: float | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SeedMsg:
    detector: str
    text: str
    origin: str
    id: str | None = None


@dataclass(frozen=True)
class LabelMsg:
    detector: str
    post_id: str
    label: int
    labeler: str
    ts: float | None = None


def _depth_ok(raw: str) -> bool:
    """Cheap structural check: bracket depth (outside strings) never exceeds MAX_DEPTH.

    The depth can never exceed the number of opening brackets, so a message with at most MAX_DEPTH of
    them (every ordinary post) is accepted by two C-level counts, without the per-character scan.

    >>> _depth_ok('{"a": [1, {"b": "[[[["}]}'), _depth_ok("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    (True, False)
    """
    if raw.count("[") + raw.count("{") <= MAX_DEPTH:
        return True
    depth = 0
    in_str = esc = False
    for ch in raw:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _not_json_constant(name: str):
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _object(raw: bytes | str, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    if raw is None:
        raise MessageError("empty", "no value")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > max_bytes:
            raise MessageError("too_large", f"{len(raw)} bytes > {max_bytes}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError("not_utf8", f"invalid byte at {exc.start}") from None
    elif isinstance(raw, str):
        text = raw
        if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise MessageError("too_large", f"> {max_bytes} bytes")
    else:
        raise MessageError("wrong_type", f"value is {type(raw).__name__}")
    if text.startswith(BOM):
        text = text[1:]
    if not text.strip():
        raise MessageError("empty", "blank value")
    if not _depth_ok(text):
        raise MessageError("too_deep", f"JSON nested deeper than {MAX_DEPTH}")
    try:
        obj = json.loads(text, parse_constant=_not_json_constant)
    except (ValueError, RecursionError) as exc:
        raise MessageError("not_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise MessageError("not_object", f"JSON {type(obj).__name__}, expected an object")
    return obj


def visible(text: str) -> bool:
    r"""True if ``text`` holds at least one character that shows something (not only spaces, controls,
    zero-width or format characters, combining marks).

    >>> visible("hi"), visible(" \u200b\u200d\x00\ufeff"), visible("\u0301")
    (True, False, False)
    """
    return any(unicodedata.category(ch) not in _INVISIBLE for ch in text)


def _encodable(v: str, name: str) -> None:
    """A string that cannot be encoded as UTF-8 (a lone surrogate, from a ``\\ud800`` escape in valid JSON)
    would fail later, in Redis or on a topic: reject it here."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MessageError(f"not_utf8:{name}", f"lone surrogate at character {exc.start}") from None


def _check_strings(v: Any, name: str) -> None:
    """Every string (keys and values) inside a JSON value is encodable as UTF-8."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            _encodable(x, name)
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, float) and not math.isfinite(x):
            raise MessageError(f"wrong_type:{name}", "numbers must be finite")


def _str(obj: dict, name: str, *, required: bool = True, max_chars: int = MAX_ID_CHARS, allow_int: bool = False):
    if name not in obj or obj[name] is None:
        if required:
            raise MessageError(f"missing_field:{name}")
        return None
    v = obj[name]
    if allow_int and isinstance(v, int) and not isinstance(v, bool):
        if abs(v) >= _MAX_INT_ID:
            raise MessageError(f"too_long:{name}", f"integer with more than {MAX_ID_CHARS} digits")
        v = str(v)
    if not isinstance(v, str):
        raise MessageError(f"wrong_type:{name}", f"expected a string, got {type(v).__name__}")
    if len(v) > max_chars:
        raise MessageError(f"too_long:{name}", f"{len(v)} chars > {max_chars}")
    _encodable(v, name)
    if not visible(v):
        raise MessageError(f"empty_field:{name}")
    return v


def _text(obj: dict, max_chars: int) -> str:
    if "text" not in obj or obj["text"] is None:
        raise MessageError("missing_field:text")
    t = obj["text"]
    if not isinstance(t, str):
        raise MessageError("wrong_type:text", f"expected a string, got {type(t).__name__}")
    if len(t) > max_chars:
        raise MessageError("text_too_long", f"{len(t)} chars > {max_chars}")
    try:
        t.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError("not_utf8", "text holds lone surrogates") from None
    if not visible(t):
        raise MessageError("empty_text", "no visible character")
    return t


def _ts(obj: dict) -> float | None:
    v = obj.get("ts")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MessageError("wrong_type:ts", "expected epoch seconds (a finite number)")
    try:
        f = float(v)
    except OverflowError:   # an integer too large for a float
        f = math.inf
    if not math.isfinite(f):
        raise MessageError("wrong_type:ts", "expected epoch seconds (a finite number)")
    return f


def parse_post(raw, *, max_text_chars: int = MAX_TEXT_CHARS, max_bytes: int = MAX_MESSAGE_BYTES) -> PostMsg:
    obj = _object(raw, max_bytes)
    pid = _str(obj, "id", allow_int=True)
    text = _text(obj, max_text_chars)
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise MessageError("wrong_type:meta", "expected an object")
    _check_strings(meta, "meta")
    return PostMsg(pid, text, _ts(obj), meta)


def parse_seed(raw, *, max_text_chars: int = MAX_TEXT_CHARS, max_bytes: int = MAX_MESSAGE_BYTES) -> SeedMsg:
    obj = _object(raw, max_bytes)
    det = _str(obj, "detector")
    text = _text(obj, max_text_chars)
    origin = obj.get("origin", "synthetic")
    if not isinstance(origin, str) or origin not in ORIGINS:
        raise MessageError("bad_origin", f"origin must be one of {ORIGINS}, got a {type(origin).__name__}")
    return SeedMsg(det, text, origin, _str(obj, "id", required=False, allow_int=True))


def parse_label(raw, *, max_bytes: int = MAX_MESSAGE_BYTES) -> LabelMsg:
    obj = _object(raw, max_bytes)
    det = _str(obj, "detector")
    pid = _str(obj, "post_id", allow_int=True)
    if "label" not in obj:
        raise MessageError("missing_field:label")
    y = obj["label"]
    if isinstance(y, bool) or not isinstance(y, int) or y not in (0, 1):
        raise MessageError("bad_label", f"label must be the integer 0 or 1, got {json.dumps(y)[:50]}")
    labeler = _str(obj, "labeler")
    return LabelMsg(det, pid, int(y), labeler, _ts(obj))


def dumps(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def candidate_message(detector: str, post_id: str, text: str, score: float, matched_seeds, reason: str,
                      emitted_at: float | None = None) -> dict:
    return {"detector": detector, "post_id": post_id, "text": text, "score": round(float(score), 6),
            "matched_seeds": list(matched_seeds), "reason": reason,
            "emitted_at": emitted_at if emitted_at is not None else time.time()}


def parse_candidate(raw, *, max_text_chars: int = MAX_TEXT_CHARS, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """A ``candidates`` message (what :func:`candidate_message` builds), checked, as a dict: ``detector`` and
    ``post_id`` strings, ``text`` a string (possibly empty: a worker that lost the text sends ``""``), ``score`` a
    finite number, ``matched_seeds`` a list of strings, ``reason`` a string; other fields (``why``,
    ``human_audit``, ...) are kept as they are. Raises :class:`MessageError` like the other parsers.

    >>> parse_candidate(b'{"detector": "d", "post_id": 7, "text": "hi", "reason": "ibg"}')["post_id"]
    '7'
    """
    obj = _object(raw, max_bytes)
    out = dict(obj)
    out["detector"] = _str(obj, "detector")
    out["post_id"] = _str(obj, "post_id", allow_int=True)
    t = obj.get("text", "")
    if not isinstance(t, str):
        raise MessageError("wrong_type:text", f"expected a string, got {type(t).__name__}")
    if len(t) > max_text_chars:
        raise MessageError("text_too_long", f"{len(t)} chars > {max_text_chars}")
    _encodable(t, "text")
    out["text"] = t
    s = obj.get("score", 0.0)
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(float(s)):
        raise MessageError("wrong_type:score", "expected a finite number")
    out["score"] = float(s)
    seeds = obj.get("matched_seeds") or []
    if not isinstance(seeds, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in seeds):
        raise MessageError("wrong_type:matched_seeds", "expected a list of seed ids")
    out["matched_seeds"] = [str(x) for x in seeds]
    out["reason"] = _str(obj, "reason", required=False) or ""
    _check_strings(obj, "candidate")
    return out


def detection_message(detector: str, post_id: str, probability: float, threshold: float, model_version: int,
                      detected_at: float | None = None) -> dict:
    """A post the detector's classifier scored at or above its threshold (the ``detections`` topic).

    >>> detection_message("scam", "p1", 0.93251, 0.9, 4, detected_at=0.0)
    {'detector': 'scam', 'post_id': 'p1', 'probability': 0.93251, 'threshold': 0.9, 'model_version': 4, 'detected_at': 0.0}
    """
    return {"detector": detector, "post_id": post_id, "probability": round(float(probability), 6),
            "threshold": float(threshold), "model_version": int(model_version),
            "detected_at": detected_at if detected_at is not None else time.time()}


def dead_letter(raw, *, source_topic: str, partition: int | None, offset: int | None, reason: str,
                detail: str = "", key=None) -> dict:
    """The dead-letter record. The raw value is kept whole up to ``DEAD_LETTER_RAW_BYTES``; beyond that its
    head is kept with ``raw_truncated: true``, and ``raw_size``/``raw_sha256`` always identify the original,
    which stays on the source topic at ``partition``/``offset``."""
    def as_bytes(v):
        if v is None:
            return None
        if isinstance(v, str):
            v = v.encode("utf-8", "surrogatepass")
        return bytes(v)

    raw_b, key_b = as_bytes(raw), as_bytes(key)
    b64 = lambda v: None if v is None else base64.b64encode(v).decode("ascii")  # noqa: E731
    return {"source_topic": source_topic, "partition": partition, "offset": offset, "reason": reason,
            "detail": detail[:500], "raw_b64": b64(raw_b[:DEAD_LETTER_RAW_BYTES] if raw_b is not None else None),
            "raw_truncated": raw_b is not None and len(raw_b) > DEAD_LETTER_RAW_BYTES,
            "raw_size": len(raw_b) if raw_b is not None else 0,
            "raw_sha256": hashlib.sha256(raw_b).hexdigest() if raw_b is not None else None,
            "key_b64": b64(key_b[:1024] if key_b is not None else None), "failed_at": time.time()}


def as_jsonable(x: Any) -> Any:
    """numpy scalars and tuples to plain JSON types."""
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (list, tuple)):
        return [as_jsonable(v) for v in x]
    return x

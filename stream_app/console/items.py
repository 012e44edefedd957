"""What the console moves around: a candidate waiting for review (:class:`ReviewItem`), a moderator's lease on
it (:class:`Lease`) and a decision held for its undo grace period (:class:`Decision`). Plain data, no I/O.

A candidate is identified by ``(detector, post_id)``: the same post can be a candidate of two detectors and
is then reviewed once for each. The key joins both with a newline (detector names never hold one).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from synapse_stream.exceptions import MessageError
from synapse_stream.messages import MAX_TEXT_CHARS, parse_candidate

SEP = "\n"


def item_key(detector: str, post_id: str) -> str:
    """``"<detector>\\n<post id>"``: one review per detector and post."""
    return f"{detector}{SEP}{post_id}"


def split_key(key: str) -> tuple[str, str]:
    det, _, pid = key.partition(SEP)
    return det, pid


@dataclass(frozen=True)
class ReviewItem:
    """A candidate as it came from the ``candidates`` topic (``doc``: the whole message, extra fields kept)."""

    detector: str
    post_id: str
    doc: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return item_key(self.detector, self.post_id)

    @property
    def text(self) -> str:
        return str(self.doc.get("text") or "")

    @property
    def reason(self) -> str:
        return str(self.doc.get("reason") or "")

    def to_json(self) -> str:
        return json.dumps({"detector": self.detector, "post_id": self.post_id, "doc": self.doc}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> "ReviewItem":
        d = json.loads(raw)
        return cls(d["detector"], d["post_id"], d.get("doc") or {})

    @classmethod
    def from_message(cls, raw: bytes | str, *, max_text_chars: int = MAX_TEXT_CHARS) -> "ReviewItem":
        """A ``candidates`` message as an item, or :class:`MessageError` (``reason`` as for dead letters)."""
        msg = parse_candidate(raw, max_text_chars=max_text_chars)
        return cls(msg["detector"], msg["post_id"], msg)

    def for_humans(self) -> bool:
        """False for candidates the LLM rater answers alone (``"human_audit": false``, oracle mode ``llm`` or the
        unsampled part of ``llm_then_human``): they are not queued for moderators."""
        return self.doc.get("human_audit", True) is not False


@dataclass(frozen=True)
class Lease:
    """``item`` is leased to ``moderator`` until ``expires`` (wall clock); then it is free for anyone again."""

    item: ReviewItem
    moderator: str
    expires: float


@dataclass(frozen=True)
class Decision:
    """A moderator's verdict, published to ``labels`` once ``due`` passes (undoable until then)."""

    item: ReviewItem
    moderator: str
    label: int
    decided_at: float
    due: float

    @property
    def key(self) -> str:
        return self.item.key

    def label_message(self) -> dict[str, Any]:
        """The ``labels`` message (``parse_label``'s format): ``labeler = "moderator:<id>"``."""
        return {"detector": self.item.detector, "post_id": self.item.post_id, "label": int(self.label),
                "labeler": f"moderator:{self.moderator}", "ts": self.decided_at}

    def to_json(self) -> str:
        return json.dumps({"item": json.loads(self.item.to_json()), "moderator": self.moderator, "label": self.label,
                           "decided_at": self.decided_at, "due": self.due}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> "Decision":
        d = json.loads(raw)
        it = d["item"]
        return cls(ReviewItem(it["detector"], it["post_id"], it.get("doc") or {}), d["moderator"], int(d["label"]),
                   float(d["decided_at"]), float(d["due"]))


def now() -> float:
    return time.time()


__all__ = ["ReviewItem", "Lease", "Decision", "item_key", "split_key", "MessageError"]

"""Which source sent each post of a detector's rounds, and what its verdicts credit (:class:`SourceCredit`): the
bandit's counts since the last round (``fresh``), the verdicts the sources learn from, and the last few rounds'
records (the next round's ``p_prev`` and the scheduler's wait for answers).

>>> c = SourceCredit(["ibg", "gble"])
>>> c.adopt({"p1": "ibg", "p2": "other"})     # sent before a restart (an unknown source is not credited)
>>> c.observe("p1", 1, first=True), c.observe("p2", 0, first=True)
('ibg', None)
>>> verdicts, fresh = c.take()
>>> verdicts, fresh["ibg"], c.take()[1]["ibg"]
({'p1': 1, 'p2': 0}, [1.0, 0.0], [0.0, 0.0])
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class RoundRecord:
    number: int
    started: float
    sent: dict[str, str] = field(default_factory=dict)   # post id -> source
    answered: int = 0
    positives: int = 0
    seconds: float = 0.0
    alloc: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)   # seconds per step of the compute (RoundOutput.phases)

    @property
    def outstanding(self) -> int:
        return len(self.sent) - self.answered


class SourceCredit:
    """The credit of one detector's sources (``sources``: their names). Memory: O(posts ever sent) for ``owner``
    (the README's state table), O(verdicts since the last round) and 8 round records."""

    def __init__(self, sources: Iterable[str]) -> None:
        self.owner: dict[str, str] = {}          # post id -> source, for every post a round sent
        self.fresh: dict[str, list[float]] = {s: [0.0, 0.0] for s in sources}   # verdicts since the last round
        self.verdicts: dict[str, int] = {}       # post id -> label, since the last round (the sources' learn)
        # the last few rounds (the next round's p_prev and timing need only the last one; a verdict for
        # an older round's post still credits its source through ``owner``)
        self.rounds: deque[RoundRecord] = deque(maxlen=8)

    def observe(self, post_id: str, label: int, first: bool) -> str | None:
        """A verdict for ``post_id``; credits the source that proposed it (the first verdict only)."""
        self.verdicts[post_id] = int(label)
        src = self.owner.get(post_id)
        if src is None or not first:
            return src
        self.fresh[src][0] += label
        self.fresh[src][1] += 1 - label
        for rec in reversed(list(self.rounds)):   # a copy: a commit may append in another thread
            if post_id in rec.sent:
                rec.answered += 1
                rec.positives += int(label)
                break
        return src

    def unsent(self, post_ids: Sequence[str]) -> None:
        """Posts a round chose that did not go to the oracle after all (claimed before elsewhere, or gone with the
        window while they waited in the outbox): their round does not wait for their verdicts (it would wait for
        ``round_timeout``); a verdict that comes anyway still credits the source through ``owner``."""
        for pid in post_ids:
            for rec in reversed(list(self.rounds)):   # a copy: a commit may append in another thread
                if rec.sent.pop(pid, None) is not None:
                    break

    def adopt(self, owners: dict[str, str]) -> None:
        """Sources of posts sent before a restart (from Redis), so their verdicts are still credited."""
        for pid, src in owners.items():
            if src in self.fresh:
                self.owner.setdefault(pid, src)

    def take(self) -> tuple[dict[str, int], dict[str, list[float]]]:
        """The verdicts and the per-source counts since the last call (a round's input)."""
        verdicts, self.verdicts = self.verdicts, {}
        fresh, self.fresh = self.fresh, {s: [0.0, 0.0] for s in self.fresh}
        return verdicts, fresh

    def record(self, rec: RoundRecord) -> None:
        """A round sent its batch (``rec.sent``: post -> source)."""
        self.owner.update(rec.sent)
        self.rounds.append(rec)

    def last_answers(self) -> dict | None:
        """The previous round's answers so far (``p_prev``), None before any was answered."""
        if not self.rounds or not self.rounds[-1].answered:
            return None
        rec = self.rounds[-1]
        return {"round": rec.number, "queried": rec.answered, "positives": rec.positives}

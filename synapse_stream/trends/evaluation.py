"""The trends replay: planted events in a background of real posts, the stage and a baseline, measured.

**Schedule** (:func:`make_schedule`). A labelled pool is split into the *held-back* class (``event_label``,
e.g. the offensive tweets) and the *background* (every other post). The held-back posts are clustered
(k-means on their vectors, ``3 x events`` clusters) and the ``events`` largest clusters become the events:
each one is absent at first, starts at a known moment and grows (its posts arrive over ``event_seconds`` with
a linearly rising rate: the share of its posts seen by ``tau`` after the start is ``(tau / event_seconds)^2``).
Events start at evenly spaced moments after a quiet warm-up (the first ``warmup`` share of the replay), with
quiet stretches between them. The background arrives over the whole replay with a rate that rises linearly
from 1x to ``rise``x. Optional near-duplicate floods (``dup_events``) copy one held-back post with small edits
(words dropped, mentions and links changed) in the same growing way. With a second pool (``event_pool``) the
events come from its held-back class and the background is the whole first pool. Nothing in the schedule is written here
except those edits: every text is a real post of the pool.

**Real timestamps.** A pool with a ``ts`` column (ISO 8601 or epoch seconds; :func:`parse_ts`) gives its posts
their own event time, instead of the generated schedule: the background arrives when it was posted (the replay
lasts from its first to its last post; ``duration`` and ``rise`` are not used), and an event taken from a pool
with timestamps is the cluster's posts at their own times (it starts at its first post). Times are relative to
the earliest post of the pools that have them (both pools on one clock when both do; events of a timed
``event_pool`` over a generated background start after the warm-up). Whatever has no timestamps (a pool
without the column, the near-duplicate floods) falls back to the generated schedule, in the gaps left.

**Runs.** Posts are replayed in event-time order in batches; each batch goes into a window index
(:class:`~synapse_stream.segments.SegmentedIndex`, retention ``window``; expired segments dropped) and then
into the :class:`~synapse_stream.trends.stage.TrendStage` (the eval has no detector, so every post is
unclaimed) and, in the same run, into the baseline :class:`NgramBursts` (bursts of frequent word n-grams, the
same burst test and warm-up).

**Metrics** (:func:`score`). A proposal is scored as first raised (what the analyst first sees): it *hits*
event e when at least half its medoids are posts of e, else it is *false*. An event is *found* when some
proposal hits it; its delay is counted in posts (the event's posts that had arrived when the proposal was
raised) and in event time. ``false_per_100k`` = false proposals per 100 000 background posts; ``purity`` = the
mean share of a hitting proposal's medoids that belong to its event.
"""
from __future__ import annotations

import csv
import json
import math
import re
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from synapse_stream.exceptions import DataError

from .bursts import RateHistory, burst_test
from .stage import TrendParams, TrendStage


# ---------------------------------------------------------------------- data
@dataclass
class LabelledPool:
    texts: list[str]
    labels: list[str]
    ts: list[float] | None = None        # event time of each post (epoch seconds), when the file has a ts column


def parse_ts(value) -> float:
    """Epoch seconds from an epoch number (seconds) or an ISO 8601 date-time (a naive one is UTC).

    >>> parse_ts("1700000000"), parse_ts(1700000000.5), parse_ts("2023-11-14T22:13:20Z")
    (1700000000.0, 1700000000.5, 1700000000.0)
    >>> parse_ts("2023-11-14 23:13:20+01:00")
    1700000000.0
    """
    import datetime as dt

    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        t = float(value)
    else:
        text = str(value).strip()
        try:
            t = float(text)
        except ValueError:
            try:
                d = dt.datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"not an ISO 8601 date-time or epoch seconds: {text[:40]!r}") from None
            if d.tzinfo is None:
                d = d.replace(tzinfo=dt.timezone.utc)
            t = d.timestamp()
    if not math.isfinite(t):
        raise ValueError(f"not a timestamp: {value!r}")
    return t


def read_pool(path: str | Path, *, text_col: str | None = None, label_col: str = "label",
              ts_col: str = "ts") -> LabelledPool:
    """A TSV with a header (``text_col``: default ``text`` or ``sentence``) or JSONL with ``text``/``label``;
    with a ``ts_col`` column (TSV) or key (JSONL, on the first record), every post's time (:func:`parse_ts`).

    Labels are kept as strings (any class can be held back)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    lines = raw.splitlines()
    texts, labels = [], []
    times: list[float] | None = None

    def stamp(v, where: str) -> None:
        try:
            times.append(parse_ts(v))
        except ValueError as exc:
            raise DataError(f"{where}: bad {ts_col!r}: {exc}") from None

    if path.suffix.lower() in (".jsonl", ".ndjson") or (lines and lines[0].lstrip().startswith("{")):
        for n, ln in enumerate(lines, 1):
            if not ln.strip():
                continue
            try:
                obj = json.loads(ln)
            except ValueError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n}: not a JSON object")
            t, y = obj.get(text_col or "text"), obj.get(label_col)
            if not isinstance(t, str) or y is None:
                raise DataError(f"{path}:{n}: needs a string {text_col or 'text'!r} and a {label_col!r}")
            if not texts and ts_col in obj:
                times = []
            if times is not None:
                if obj.get(ts_col) is None:
                    raise DataError(f"{path}:{n}: no {ts_col!r} (the first record has one)")
                stamp(obj[ts_col], f"{path}:{n}")
            texts.append(t)
            labels.append(str(y))
    else:
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file") from None
        low = [h.lower() for h in header]
        want = [text_col.lower()] if text_col else ["text", "sentence"]
        tcol = next((low.index(c) for c in want if c in low), None)
        if tcol is None or label_col.lower() not in low:
            raise DataError(f"{path}: needs columns {want[0]!r} and {label_col!r}; found {header}")
        lcol = low.index(label_col.lower())
        scol = low.index(ts_col.lower()) if ts_col.lower() in low else None
        times = None if scol is None else []
        for n, r in enumerate(reader, 2):
            if not r or not any(c.strip() for c in r):
                continue
            if len(r) <= max(tcol, lcol, -1 if scol is None else scol):
                raise DataError(f"{path}:{n}: missing columns")
            if scol is not None:
                stamp(r[scol], f"{path}:{n}")
            texts.append(r[tcol].strip())
            labels.append(r[lcol].strip())
    if not texts:
        raise DataError(f"{path}: no posts")
    return LabelledPool(texts, labels, times)


# ---------------------------------------------------------------------- schedule
@dataclass
class Event:
    id: int
    kind: str           # "class" (a cluster of the held-back class) or "dupes" (a near-duplicate flood)
    start: float
    end: float
    posts: int


@dataclass
class Schedule:
    texts: list[str]
    vecs: np.ndarray
    ts: np.ndarray           # event time of each post, sorted
    source: np.ndarray       # -1 background, else the event id
    events: list[Event]
    duration: float
    timestamps: str = "generated"   # "generated", "pool" (the background's own), "events" (only the events')

    @property
    def background(self) -> int:
        return int((self.source < 0).sum())


def _edit(text: str, rng: np.random.Generator) -> str:
    """A near-copy of ``text``: a word or two dropped, mentions and links changed (campaign-style edits)."""
    words = text.split()
    if len(words) > 6:
        for _ in range(int(rng.integers(0, 3))):
            words.pop(int(rng.integers(len(words))))
    tail = rng.choice(["", f" @user{int(rng.integers(1000))}", f" http://t.co/{int(rng.integers(10**6)):x}", " !!"])
    return " ".join(words) + str(tail)


def make_schedule(pool: LabelledPool, embed: Callable[[list[str]], np.ndarray], *, event_label: str = "1",
                  event_pool: LabelledPool | None = None,
                  events: int = 4, event_posts: int = 40, dup_events: int = 0, dup_posts: int = 30,
                  background: int | None = None, duration: float = 14 * 86400.0,
                  event_seconds: float = 86400.0, warmup: float = 0.2, rise: float = 3.0,
                  seed: int = 0) -> Schedule:
    """The replay of the module docstring. ``embed`` maps texts to unit vectors (cached by the caller).

    With ``event_pool``, the events come from its ``event_label`` posts and the background is all of ``pool``
    (a new kind of post arriving in a stream of another source)."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    labels = np.asarray(pool.labels)
    src = pool if event_pool is None else event_pool          # the pool the events come from
    if event_pool is None:
        held_texts = pool.texts
        held = np.flatnonzero(labels == str(event_label))
        back = np.flatnonzero(labels != str(event_label))
    else:
        held_texts = event_pool.texts
        held = np.flatnonzero(np.asarray(event_pool.labels) == str(event_label))
        back = np.arange(len(pool.texts))
    if len(held) == 0:
        raise DataError(f"no post has label {event_label!r} (labels: {sorted(set(pool.labels))[:10]})")
    if len(back) == 0:
        raise DataError("every post has the held-back label: there is no background")
    if background is not None and background < len(back):
        back = np.sort(rng.choice(back, background, replace=False))
    # real event time where a pool has it (relative to the earliest of the timed pools), else generated
    timed = [q for q in ((pool, back), (src, held)) if q[0].ts is not None]
    origin = min((min(q.ts[i] for i in rows) for q, rows in timed), default=0.0)
    real_back = pool.ts is not None
    real_events = src.ts is not None
    if real_back:
        duration = max(1.0, max(pool.ts[i] for i in back) - origin + 1.0)
    held_at = None
    if real_events:                                         # a timed event pool over a generated background:
        shift = 0.0 if real_back else warmup * duration - origin   # its clock starts after the warm-up
        held_at = {int(i): src.ts[int(i)] + (-origin if real_back else shift) for i in held}
    held_vecs = embed([held_texts[i] for i in held])
    n_events = int(events)
    chosen: list[np.ndarray] = []
    if n_events > 0:
        k = min(len(held), 3 * n_events)
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(held_vecs)
        sizes = np.bincount(km.labels_, minlength=k)
        for c in np.argsort(-sizes, kind="stable")[:n_events]:
            rows = np.flatnonzero(km.labels_ == c)
            rng.shuffle(rows)
            chosen.append(held[rows[:event_posts]])
    # the events that need a generated start: the floods, and the class events when their pool has no times
    generated = (0 if real_events else len(chosen)) + int(dup_events)
    span = (1.0 - warmup) * duration
    starts = [warmup * duration + span * e / max(1, generated) for e in range(generated)]
    if generated and event_seconds > span / generated:
        raise DataError(f"{generated} events of {event_seconds:g} s do not fit in {span:g} s after the warm-up")
    texts: list[str] = [pool.texts[i] for i in back]
    if real_back:
        ts = [pool.ts[i] - origin for i in back]
    else:   # background: rate rising linearly from 1 to `rise` -> inverse CDF of a linear density on [0, 1]
        u = rng.random(len(back))
        a = float(rise) - 1.0
        frac = u if a == 0 else (np.sqrt(1.0 + a * (2.0 + a) * u) - 1.0) / a
        ts = list(frac * duration)
    source = [-1] * len(back)
    ev_list: list[Event] = []
    vec_parts = [embed(texts)] if texts else []
    total_events = len(chosen) + int(dup_events)
    order = list(range(total_events))
    rng.shuffle(order)                       # dup floods and class events interleave
    slot = 0
    for e in order:
        if e < len(chosen):
            etexts = [held_texts[i] for i in chosen[e]]
            kind = "class"
        else:
            used = set(np.concatenate(chosen).tolist()) if chosen else set()
            free = [i for i in held.tolist() if i not in used] or held.tolist()
            origin_text = held_texts[int(rng.choice(free))]   # not a post of a class event
            etexts = [_edit(origin_text, rng) for _ in range(dup_posts)]
            kind = "dupes"
        if kind == "class" and held_at is not None:
            et = np.asarray([held_at[int(i)] for i in chosen[e]], np.float64)
            ev_list.append(Event(e, kind, float(et.min()), float(et.max()), len(etexts)))
        else:
            s0 = starts[slot]
            slot += 1
            et = s0 + event_seconds * np.sqrt(rng.random(len(etexts)))
            ev_list.append(Event(e, kind, s0, s0 + event_seconds, len(etexts)))
        texts += etexts
        ts += list(et)
        source += [e] * len(etexts)
        vec_parts.append(embed(etexts))
    vecs = np.vstack(vec_parts).astype(np.float32)
    order_t = np.argsort(np.asarray(ts), kind="stable")
    ev_list.sort(key=lambda ev: ev.id)
    duration = max(duration, float(max(ts)) + 1.0)
    how = "pool" if real_back else ("events" if real_events and chosen else "generated")
    return Schedule([texts[i] for i in order_t], vecs[order_t], np.asarray(ts, np.float64)[order_t],
                    np.asarray(source)[order_t], ev_list, duration, how)


# ---------------------------------------------------------------------- baseline
_WORD = re.compile(r"[a-z][a-z']{2,}")
_STOP = None


def _stop_words() -> frozenset[str]:
    global _STOP
    if _STOP is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        _STOP = frozenset(ENGLISH_STOP_WORDS) | {"user", "url", "http", "https", "amp", "rt"}
    return _STOP


def ngrams(text: str) -> set[str]:
    """Word unigrams and bigrams (lower case, stop words, mentions and links left out).

    >>> sorted(ngrams("Free Bitcoin giveaway @user http://x.y"))
    ['bitcoin', 'bitcoin giveaway', 'free', 'free bitcoin', 'giveaway']
    """
    t = re.sub(r"https?://\S+|@\w+", " ", text.lower())
    words = [w for w in _WORD.findall(t) if w not in _stop_words()]
    return set(words) | {a + " " + b for a, b in zip(words, words[1:])}


@dataclass
class BaselineProposal:
    id: str
    raised_at: float
    medoids: list[dict]
    terms: list[str]
    size: int
    growth: float


class NgramBursts:
    """The baseline: a word n-gram whose share of the recent posts bursts (the stage's binomial test, the same
    ``min_size``, ``min_recent``, ``alpha``) is a proposal; its medoids are its ``medoids`` latest posts. An
    n-gram whose latest posts are mostly those of an existing proposal updates it instead. Bounds: at most
    ``max_ngrams`` n-grams tracked (least recently seen dropped), each with ``medoids`` posts and its rate bins."""

    def __init__(self, params: TrendParams, *, max_ngrams: int = 50_000) -> None:
        self.p = params
        self.max_ngrams = max_ngrams
        self.total = RateHistory(params.bin_seconds, params.history_bins)
        self._grams: OrderedDict[str, list] = OrderedDict()      # gram -> [RateHistory, size, deque of (id, text)]
        self.proposals: dict[str, BaselineProposal] = {}
        self._post_owner: dict[str, str] = {}                    # medoid post id -> proposal id (bounded below)
        self.now = -math.inf
        self.start = math.inf

    def observe(self, ids: Sequence[str], texts: Sequence[str], ts: Sequence[float]) -> list[BaselineProposal]:
        p = self.p
        self.now = max(self.now, max(ts))
        self.start = min(self.start, min(ts))
        self.total.advance(self.now)
        touched = set()
        for pid, text, t in zip(ids, texts, ts):
            self.total.add(t)
            for g in ngrams(text):
                st = self._grams.get(g)
                if st is None:
                    st = self._grams[g] = [RateHistory(p.bin_seconds, p.history_bins), 0, deque(maxlen=p.medoids)]
                    if len(self._grams) > self.max_ngrams:
                        self._grams.popitem(last=False)
                else:
                    self._grams.move_to_end(g)
                st[0].add(t)
                st[1] += 1
                st[2].append((pid, text))
                touched.add(g)
        out = []
        if self.now - self.start < p.warmup:                 # the stage's warm-up, for a fair comparison
            touched = set()
        for g in touched:
            st = self._grams.get(g)
            if st is None or st[1] < p.min_size or g in self.proposals:
                continue
            test = burst_test(st[0], self.total, now=self.now, recent_bins=p.recent_bins, p_floor=p.p_floor)
            if test.k < p.min_recent or test.p_value > p.alpha:
                continue
            owners = [self._post_owner.get(pid) for pid, _ in st[2]]
            owners = [o for o in owners if o]
            if owners and len(owners) * 2 >= len(st[2]):
                continue                                 # mostly the posts of a proposal already raised
            prop = BaselineProposal(g, self.now, [{"id": pid, "text": t} for pid, t in st[2]], [g], st[1], test.lift)
            self.proposals[g] = prop
            for pid, _ in st[2]:
                self._post_owner[pid] = g
            out.append(prop)
        while len(self._post_owner) > 100_000:
            self._post_owner.pop(next(iter(self._post_owner)))
        return out


# ---------------------------------------------------------------------- the run
@dataclass
class Raised:
    """A proposal as first raised."""

    id: str
    at: float                 # event time
    after_posts: int          # posts replayed when raised
    medoids: list[str]
    terms: list[str]
    size: int
    growth: float
    name: str = ""


@dataclass
class RunLog:
    stage: list[Raised] = field(default_factory=list)
    baseline: list[Raised] = field(default_factory=list)
    seconds_stage: float = 0.0
    seconds_baseline: float = 0.0
    seconds_index: float = 0.0
    max_held_posts: int = 0
    max_groups: int = 0
    max_clusters: int = 0


def replay(sched: Schedule, params: TrendParams, *, window: float = 2 * 86400.0, batch: int = 32,
           log: Callable[[str], None] = lambda m: None) -> tuple[RunLog, TrendStage]:
    """Replay the schedule through the stage and the baseline (see the module docstring)."""
    from synapse_stream.segments import Retention, SegmentedIndex

    index = SegmentedIndex(sched.vecs.shape[1], Retention(seconds=window))
    stage = TrendStage(index, sched.vecs.shape[1], params)
    base = NgramBursts(params)
    out = RunLog()
    ids = [f"p{i}" for i in range(len(sched.texts))]
    n = len(ids)
    step = max(1, n // 10)
    for s in range(0, n, batch):
        e = min(n, s + batch)
        bid, btx, bv, bt = ids[s:e], sched.texts[s:e], sched.vecs[s:e], sched.ts[s:e].tolist()
        t0 = time.perf_counter()
        index.add(bid, bv, None, ts=bt)
        due = index.expirable()
        if due:
            index.drop(due.segments)
        t1 = time.perf_counter()
        for prop, new in stage.observe(bid, btx, bv, bt):
            if new:
                out.stage.append(Raised(prop.id, stage.now, e, [m["id"] for m in prop.medoids], list(prop.terms),
                                        prop.size, prop.growth))
        t2 = time.perf_counter()
        for bp in base.observe(bid, btx, bt):
            out.baseline.append(Raised(bp.id, base.now, e, [m["id"] for m in bp.medoids], bp.terms, bp.size, bp.growth))
        t3 = time.perf_counter()
        out.seconds_index += t1 - t0
        out.seconds_stage += t2 - t1
        out.seconds_baseline += t3 - t2
        if (s // batch) % 20 == 0:                   # bookkeeping of the eval, not of the stage: sampled
            out.max_held_posts = max(out.max_held_posts, stage.held_posts())
        out.max_groups = max(out.max_groups, stage.group_count())
        out.max_clusters = max(out.max_clusters, len(stage.clusters))
        if (e // step) != (s // step):
            log(f"replayed {e}/{n} posts; stage proposals {len(out.stage)}, baseline {len(out.baseline)}")
    return out, stage


# ---------------------------------------------------------------------- metrics
@dataclass
class Score:
    events: int
    found: int
    delay_posts: list[int]
    delay_seconds: list[float]
    false: int
    false_per_100k: float
    purity: float
    proposals: int
    per_event: list[dict]
    per_proposal: list[dict]

    @property
    def delay_posts_p50(self) -> float | None:
        return float(np.median(self.delay_posts)) if self.delay_posts else None

    @property
    def delay_seconds_p50(self) -> float | None:
        return float(np.median(self.delay_seconds)) if self.delay_seconds else None

    def line(self, name: str = "trends") -> str:
        d = self.delay_posts_p50
        return (f"{name}: events={self.events} found={self.found} "
                f"delay_posts_p50={'na' if d is None else int(round(d))} "
                f"false_per_100k={self.false_per_100k:.1f} purity={self.purity:.2f}")

    def as_json(self) -> dict:
        doc = asdict(self)
        doc["delay_posts_p50"], doc["delay_seconds_p50"] = self.delay_posts_p50, self.delay_seconds_p50
        return doc


def score(sched: Schedule, raised: list[Raised]) -> Score:
    src = {f"p{i}": int(s) for i, s in enumerate(sched.source)}
    first: dict[int, Raised] = {}
    shares: list[float] = []
    false = 0
    per_prop = []
    for r in raised:
        labs = [src.get(m, -1) for m in r.medoids]
        ev = [x for x in labs if x >= 0]
        hit, share = -1, 0.0
        if ev:
            best = max(set(ev), key=lambda x: (ev.count(x), -x))
            share = ev.count(best) / len(labs)
            if share >= 0.5:
                hit = best
        if hit < 0:
            false += 1
        else:
            shares.append(share)
            if hit not in first:
                first[hit] = r
        per_prop.append({"id": r.id, "at": r.at, "event": hit, "purity": share, "terms": r.terms[:6], "size": r.size})
    per_event, dp, ds = [], [], []
    for e in sched.events:
        r = first.get(e.id)
        doc = {"id": e.id, "kind": e.kind, "start": e.start, "posts": e.posts, "found": r is not None}
        if r is not None:
            seen = int(((sched.source == e.id) & (sched.ts <= r.at)).sum())
            doc.update(delay_posts=seen, delay_seconds=r.at - e.start, proposal=r.id)
            dp.append(seen)
            ds.append(r.at - e.start)
        per_event.append(doc)
    bg = max(1, sched.background)
    return Score(len(sched.events), len(first), dp, ds, false, false * 1e5 / bg,
                 float(np.mean(shares)) if shares else 0.0, len(raised), per_event, per_prop)


# ---------------------------------------------------------------------- plot
def plot_timeline(path: str | Path, sched: Schedule, scores: dict[str, Score], logs: dict[str, list[Raised]],
                  *, bin_seconds: float = 3600.0, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = sched.ts / 3600.0
    edges = np.arange(0, sched.duration / 3600.0 + 1, bin_seconds / 3600.0)
    fig, axes = plt.subplots(len(scores), 1, figsize=(12, 2.8 * len(scores)), sharex=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, sc) in zip(axes[:, 0], scores.items()):
        bg, _ = np.histogram(hours[sched.source < 0], edges)
        ax.plot(edges[:-1], bg, color="0.6", lw=0.8, label="background posts / h")
        for e in sched.events:
            c, _ = np.histogram(hours[sched.source == e.id], edges)
            ax.fill_between(edges[:-1], 0, c, color=colours(e.id % 10), alpha=0.6, step="post",
                            label=f"event {e.id} ({e.kind}) posts / h")
            ax.axvline(e.start / 3600.0, color=colours(e.id % 10), ls=":", lw=1)
        top = max(1, bg.max())
        for p in sc.per_proposal:
            if p["event"] >= 0:
                ax.plot(p["at"] / 3600.0, top * 1.05, marker="v", color=colours(p["event"] % 10), ms=9)
            else:
                ax.plot(p["at"] / 3600.0, top * 1.12, marker="x", color="red", ms=6)
        ax.set_ylim(0, top * 1.2)
        ax.set_ylabel("posts / h")
        ax.set_title(f"{name}: {sc.line(name).split(': ', 1)[1]}   (▼ proposal hitting an event, × false proposal)",
                     fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=4, frameon=False)
    axes[-1, 0].set_xlabel("event time (hours)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07 + 0.02 * math.ceil((len(sched.events) + 1) / 4), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``trends eval`` on a tiny pool with a ``ts`` column: the posts are replayed at their own times (the event
starts at its first post, its delay is event time since then), ISO and epoch both read, a bad ts is an error."""
from __future__ import annotations

import datetime as dt
import json
import random
import re

import numpy as np

from stream_app.cli import main
from synapse_stream.trends.evaluation import make_schedule, read_pool

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp()
EVENT_AT = 2.5 * 86400          # the scam wave's first post, 2.5 days in, over 12 h
LINE = re.compile(r"^trends: events=1 found=(\d) delay_posts_p50=(\d+|na) false_per_100k=\d+\.\d purity=\d\.\d\d$")


def timed_pool(path, *, iso=True, seed=0):
    """3000 posts over 4 days (a post every ~115 s) and a wave of 60 scam posts that grows over 12 h."""
    rnd = random.Random(seed)
    topics = [[f"t{k}w{j}" for j in range(12)] for k in range(25)]
    common = [f"c{j}" for j in range(200)]
    scam = "claim your free wallet airdrop token bonus now limited".split()
    rows = []
    for i in range(3000):
        words = rnd.sample(topics[rnd.randrange(len(topics))], 4) + rnd.sample(common, 4)
        rnd.shuffle(words)
        rows.append((T0 + i * 115.2, " ".join(words), "0"))
    for _ in range(60):
        words = rnd.sample(scam, 6) + rnd.sample(common, 2)
        rnd.shuffle(words)
        rows.append((T0 + EVENT_AT + 43200 * rnd.random() ** 0.5, " ".join(words), "1"))
    rows.append((T0 + EVENT_AT, "claim your free wallet airdrop token bonus now c1 c2", "1"))  # its first post
    rnd.shuffle(rows)                                      # a file need not be in time order

    def when(t):
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z") if iso else f"{t:.3f}"
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": x, "label": y, "ts": when(t) if iso else t}) + "\n"
                                for t, x, y in rows), encoding="utf-8")
    else:
        path.write_text("ts\ttext\tlabel\n" + "".join(f"{when(t)}\t{x}\t{y}\n" for t, x, y in rows), encoding="utf-8")
    return path, rows


def test_the_schedule_keeps_the_pools_own_times(tmp_path):
    path, rows = timed_pool(tmp_path / "pool.tsv")
    pool = read_pool(path)
    assert pool.ts is not None and len(pool.ts) == len(rows)
    assert np.allclose(sorted(pool.ts), sorted(t for t, _, _ in rows), atol=1e-3)
    sched = make_schedule(pool, lambda texts: np.eye(len(texts), 8, dtype=np.float32) + 1e-3,
                          events=1, event_posts=100, seed=0)
    assert sched.timestamps == "pool"
    when = {x: t - T0 for t, x, _ in rows}
    assert np.allclose(sched.ts, [when[x] for x in sched.texts], atol=1e-3)     # every post at its own time
    assert np.allclose(sched.ts[sched.source < 0], np.sort([t - T0 for t, _, y in rows if y == "0"]), atol=1e-3)
    (ev,) = sched.events
    mine = sched.ts[sched.source == ev.id]
    assert len(mine) == ev.posts > 10 and abs(ev.start - mine.min()) < 1e-9 and abs(ev.end - mine.max()) < 1e-9
    assert EVENT_AT - 1e-3 <= ev.start and ev.end <= EVENT_AT + 43200           # the wave's own 12 h
    assert abs(sched.duration - (max(t for t, _, _ in rows) - T0 + 1)) < 1e-3


def test_eval_in_event_time_from_a_ts_column(tmp_path, capsys):
    path, _ = timed_pool(tmp_path / "pool.jsonl", iso=False)          # epoch seconds, JSONL
    out = tmp_path / "out"
    rc = main(["trends", "eval", "--pool", str(path), "--embedder", "hashing-384", "--cache-dir", "", "--events", "1",
               "--event-posts", "100", "--radius", "0.3", "--novelty-sim", "0.3", "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    m = LINE.match(captured.out.strip().splitlines()[-1])
    assert m and m.group(1) == "1", captured.out
    assert "event time pool (the ts column)" in captured.err
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["timestamps"] == "pool" and abs(doc["days"] - 4.0) < 0.1
    (ev,) = doc["stage"]["per_event"]
    assert EVENT_AT - 1e-3 <= ev["start"] < EVENT_AT + 43200  # starts at its first post, in the file's time
    assert 0 < ev["delay_seconds"] <= 43200                  # found within its 12 h, measured in event time
    raised = [json.loads(x) for x in (out / "proposals.jsonl").read_text().splitlines()]
    hit = next(r for r in raised if r["who"] == "trends" and r["id"] == ev["proposal"])
    assert abs(hit["at"] - ev["start"] - ev["delay_seconds"]) < 1e-6


def test_iso_and_epoch_read_alike_and_a_bad_ts_is_one_error_line(tmp_path, capsys):
    a, _ = timed_pool(tmp_path / "a.tsv", iso=True)
    b, _ = timed_pool(tmp_path / "b.tsv", iso=False)
    assert np.allclose(read_pool(a).ts, read_pool(b).ts, atol=1e-3)
    bad = tmp_path / "bad.tsv"
    bad.write_text("ts\ttext\tlabel\n2024-03-01T00:00:00Z\thello there\t0\nyesterday\tclaim now\t1\n", encoding="utf-8")
    rc = main(["trends", "eval", "--pool", str(bad), "--embedder", "hashing-384", "--cache-dir", "", "--events", "1",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "bad.tsv:3: bad 'ts'" in err[-1] and "yesterday" in err[-1]

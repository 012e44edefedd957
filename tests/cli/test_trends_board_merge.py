"""One wave spread over two workers' partitions: each worker's stage proposes it under its own id, and the board
(what the console and the CLI read) shows one proposal under the older id, sizes summed, medoids from both; the
same on a compacted topic and in any record order; a decision reaches both workers' proposals."""
from __future__ import annotations

import argparse
import asyncio
import json
import random

import numpy as np

from stream_app.cli import build_parser
from stream_app.console.catalog import MemoryCatalog
from stream_app.trend_board import DECISION_SUFFIX, MemoryTrendBoard, find, merge
from stream_app.trends_live_cli import run
from synapse_stream.segments import Retention, SegmentedIndex
from synapse_stream.trends import TrendParams, TrendStage

DIM = 64


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def two_workers(seed=0, quiet=400, event_batches=300, batch=20):
    """Two stages, each on its own window index, fed the posts of its own partitions (post number mod 2): 60
    steady topics, then a wave of a new kind rising to 30 % of the posts, split evenly between the two."""
    rng = np.random.default_rng(seed)
    topics = unit(rng.normal(size=(60, DIM)))
    q, _ = np.linalg.qr(topics.T)
    v = rng.normal(size=DIM)
    event = unit(v - q @ (q.T @ v))
    workers = [(SegmentedIndex(DIM, Retention(seconds=86400.0)),) for _ in range(2)]
    workers = [(ix, TrendStage(ix, DIM, TrendParams(dupes=False)), []) for (ix,) in workers]
    posts_of = [set(), set()]
    n = 0
    for b in range(quiet + event_batches):
        share = 0.0 if b < quiet else min(0.3, (b - quiet) / 400)
        parts = [([], [], []), ([], [], [])]
        for _ in range(batch):
            n += 1
            if rng.random() < share:
                pid, vec = f"E{n}", unit(event + 0.12 * rng.normal(size=DIM))
            else:
                pid, vec = f"b{n}", unit(topics[rng.integers(60)] + 0.12 * rng.normal(size=DIM))
            ids, vecs, ts = parts[n % 2]
            ids.append(pid)
            vecs.append(vec)
            ts.append(18.0 * n)
        for w, (ids, vecs, ts) in enumerate(parts):
            index, stage, published = workers[w]
            posts_of[w].update(ids)
            vecs = np.stack(vecs)
            index.add(ids, vecs, None, ts=ts)
            index.drop(index.expirable().segments)
            for prop, _new in stage.observe(ids, ids, vecs, ts):
                published.append((prop.id.encode(), json.dumps(prop.record()).encode()))
    return workers, posts_of


def args(*argv) -> argparse.Namespace:
    return build_parser().parse_args(["trends", *argv])


def test_one_wave_over_two_workers_is_one_proposal_on_the_board():
    workers, posts_of = two_workers()
    latest = [{json.loads(v)["id"]: json.loads(v) for _, v in w[2]} for w in workers]
    wave = [{k for k, d in x.items() if all(m["id"].startswith("E") for m in d["medoids"])} for x in latest]
    assert all(len(x) == 1 for x in wave), wave             # each worker proposed the wave once, ...
    (a,), (b,) = wave
    assert a != b                                           # ... under its own id
    pa, pb = latest[0][a], latest[1][b]
    older = min((pa, pb), key=lambda p: (p["raised_at"], p["id"]))

    rnd, queues, records = random.Random(0), [list(workers[0][2]), list(workers[1][2])], []
    while any(queues):                                      # two producers interleave (each in its own order)
        records.append(rnd.choice([q for q in queues if q]).pop(0))
    others = (set(latest[0]) | set(latest[1])) - {a, b}      # a background group or two, far from the wave
    assert merge(records, merge_sim=None).keys() == {a, b} | others   # not folded: two proposals for one wave
    board = merge(records)
    assert set(board) == {older["id"]} | others            # folded: one, under the older id
    p = board[older["id"]]
    assert p["merged_ids"] == [older["id"], b if older["id"] == a else a]
    assert p["size"] == pa["size"] + pb["size"] and p["recent"] == pa["recent"] + pb["recent"]
    medoids = {m["id"] for m in p["medoids"]}
    assert all(m.startswith("E") for m in medoids)          # the wave's posts, ...
    assert medoids & posts_of[0] and medoids & posts_of[1]  # ... from both workers
    assert sum(c for _, c in p["timeline"]) == sum(c for _, c in pa["timeline"]) + sum(c for _, c in pb["timeline"])
    assert find(board, a) is p and find(board, b) is p      # either id finds it

    # a compacted topic (the last record of each key) and another record order: the same view
    compacted = list({k: (k, v) for k, v in records}.values())
    assert merge(compacted) == board
    assert merge(list(reversed(compacted))) == board

    # accepting the younger id accepts the wave: one detector, a decision for each worker's proposal
    topic = MemoryTrendBoard()
    topic.records = list(compacted)
    cat = MemoryCatalog()
    young = p["merged_ids"][1]
    assert asyncio.run(run(args("accept", young, "--detector", "wave"), topic, cat)) == 0
    assert list(cat.detectors) == ["wave"]
    decided = {k.decode().removesuffix(DECISION_SUFFIX) for k, _ in topic.records if k.decode().endswith(DECISION_SUFFIX)}
    assert decided == {a, b}
    after = asyncio.run(topic.all())
    assert set(after) == {older["id"]} | others and after[older["id"]]["status"] == "accepted"
    assert after[older["id"]]["detector"] == "wave"


def test_proposals_of_different_waves_stay_apart():
    base = {"kind": "cluster", "size": 8, "recent": 5, "growth": 3.0, "p_value": 1e-7, "status": "open",
            "medoids": [], "terms": [], "timeline": []}
    recs = [dict(base, id="trend-a", raised_at=1.0, centre=[1.0, 0.0, 0.0]),
            dict(base, id="trend-b", raised_at=2.0, centre=[0.0, 1.0, 0.0]),
            dict(base, id="trend-c", raised_at=3.0, centre=[0.7, 0.7, 0.0]),     # cosine 0.71 to both: apart
            dict(base, id="trend-d", raised_at=4.0),                              # no centre: never folded
            dict(base, id="trend-e", raised_at=5.0, centre=[0.99, 0.1, 0.0])]    # 0.995 to trend-a: folded
    board = merge([(r["id"].encode(), json.dumps(r).encode()) for r in recs])
    assert sorted(board) == ["trend-a", "trend-b", "trend-c", "trend-d"]
    assert board["trend-a"]["merged_ids"] == ["trend-a", "trend-e"] and board["trend-a"]["size"] == 16
    assert board["trend-b"]["merged_ids"] == ["trend-b"] and board["trend-b"]["size"] == 8

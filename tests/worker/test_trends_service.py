"""The trends stage inside the worker's service, in memory: posts no detector claims become a proposal on the
trends outputs (keyed by its id), posts a detector claims never do, a decision mutes it, the counters count."""
from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time

from service_helpers import seeded_service

from stream_app.worker.service import Outputs, RawMsg
from stream_app.worker.service.trends import decision_doc, decision_key
from stream_app.worker.settings import Settings
from synapse_stream.trends import TrendParams, TrendStage

SEED = "urgent wallet recovery scam alert send your seed phrase"


def settings(**kw) -> Settings:
    det = {"name": "scam", "tau": 0.5, "d_max": 50, "candidates": "ibg"}
    return Settings(_env_file=None, embedder="hashing-384", detectors=[det], data_dir=tempfile.mkdtemp(), **kw)


def stream(seed=0):
    """(text, kind) for 40 h of background (100 posts an hour), then 30 h where a new kind grows, and posts the
    detector claims (near its seed) flood in at the same time."""
    rnd = random.Random(seed)
    topics = [[f"t{k}w{j}" for j in range(12)] for k in range(25)]
    common = [f"c{j}" for j in range(200)]
    event = "claim your free airdrop token bonus now limited offer".split()
    out = []
    for i in range(7000):
        hour = i / 100
        r = rnd.random()
        if hour > 40 and r < min(0.25, (hour - 40) / 60):
            words = rnd.sample(event, 6) + rnd.sample(common, 2)
            kind = "E"
        elif hour > 40 and r > 1 - min(0.25, (hour - 40) / 60):
            words = SEED.split() + rnd.sample(common, 1)      # the detector's own trend: claimed, never proposed
            kind = "S"
        else:
            words = rnd.sample(topics[rnd.randrange(len(topics))], 4) + rnd.sample(common, 4)
            kind = "b"
        rnd.shuffle(words)
        out.append((" ".join(words), kind))
    return out


def test_unclaimed_posts_become_one_proposal_and_a_decision_mutes_it():
    async def go():
        svc = await seeded_service(settings(), seed=SEED)
        try:
            # hashing vectors: texts sharing half their words have a cosine of about 0.4 (MiniLM's defaults are
            # for MiniLM); the wiring is what is tested here
            svc.trends.stage = TrendStage(svc.index, svc.embedder.dim, TrendParams(radius=0.3, novelty_sim=0.3))
            t0 = time.time() - 4 * 86400
            records, kinds = [], {}
            posts = stream()
            for start in range(0, len(posts), 50):
                msgs = []
                for i in range(start, min(len(posts), start + 50)):
                    text, kind = posts[i]
                    pid = f"{kind}{i}"
                    kinds[pid] = kind
                    msgs.append(RawMsg("synapse.posts", 0, i, pid.encode(), json.dumps(
                        {"id": pid, "text": text, "ts": t0 + 36.0 * i}).encode()))
                out = await svc.handle_posts(msgs)
                await svc.trends.flush()     # the stage runs in its own thread: its records come with a later drain
                records += out.trends + svc.outbox.drain(Outputs()).trends
            raised = svc.metrics.trend_proposals_raised._value.get()
            docs = [json.loads(v) for _, v in records]
            pid = docs[0]["id"] if docs else None
            await svc.trends.apply_decisions([(decision_key(pid).decode().encode(), json.dumps(
                decision_doc(pid, "rejected", by="ann")).encode())] if pid else [])
            rejected = svc.metrics.trend_proposals_rejected._value.get()
            # the same decision read again (the topic is read whole each time) is not counted twice
            await svc.trends.apply_decisions([(decision_key(pid), json.dumps(decision_doc(pid, "rejected")).encode())])
            # the muted wave goes on: nothing more is published for it
            more = []
            for start in range(7000, 8000, 50):
                msgs = [RawMsg("synapse.posts", 0, i, f"E{i}".encode(), json.dumps(
                    {"id": f"E{i}", "text": "claim your free airdrop token bonus now " + f"c{i % 200}",
                     "ts": t0 + 36.0 * i}).encode()) for i in range(start, start + 50)]
                more += (await svc.handle_posts(msgs)).trends
                await svc.trends.flush()
                more += svc.outbox.drain(Outputs()).trends
            return records, docs, kinds, raised, rejected, more, svc.trends.stage.book
        finally:
            await svc.stop()

    records, docs, kinds, raised, rejected, more, book = asyncio.run(go())
    assert docs, "no proposal was published"
    ids = {d["id"] for d in docs}
    assert len(ids) == 1 and raised == 1                     # one proposal, updated rather than raised again
    assert all(k == d["id"].encode() for (k, _), d in zip(records, docs))
    last = docs[-1]
    assert all(kinds[m["id"]] == "E" for m in last["medoids"]), last["medoids"]
    assert not any(kinds[m["id"]] == "S" for d in docs for m in d["medoids"])   # the detector's posts: claimed
    assert {"airdrop", "token"} & set(" ".join(last["terms"]).split())
    assert last["status"] == "open" and last["size"] >= TrendParams().min_size and len(last["centre"]) == 384
    assert rejected == 1
    assert not [r for r in more if json.loads(r[1])["id"] in ids]
    assert book.get(next(iter(ids))).status == "rejected"


def test_new_proposals_are_named_by_the_llm_with_their_posts_as_data():
    from fake_llm import FakeLLM

    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(
        {"name": "Airdrop token bonus", "description": "Posts urging people to claim a free token airdrop."})}}]}
    fake = FakeLLM(default=(200, answer))

    async def go():
        svc = await seeded_service(settings(trends_llm_naming=True, llm_base_url=fake.base_url, llm_model="m"),
                                   seed=SEED)
        try:
            svc.trends.stage = TrendStage(svc.index, svc.embedder.dim, TrendParams(radius=0.3, novelty_sim=0.3))
            t0 = time.time() - 4 * 86400
            posts = stream()
            for start in range(0, len(posts), 50):
                await svc.handle_posts([RawMsg("synapse.posts", 0, i, f"{posts[i][1]}{i}".encode(), json.dumps(
                    {"id": f"{posts[i][1]}{i}", "text": posts[i][0], "ts": t0 + 36.0 * i}).encode())
                    for i in range(start, min(len(posts), start + 50))])
                await svc.trends.flush()     # each batch through the stage (none skipped)
            return await svc.trends.name_pending()
        finally:
            await svc.stop()

    try:
        out = asyncio.run(go())
    finally:
        fake.stop()
    docs = [json.loads(v) for _, v in out.trends]
    assert len(docs) == 1 and docs[0]["name"] == "Airdrop token bonus"
    assert docs[0]["description"].startswith("Posts urging")
    (body,) = fake.bodies
    system, user = body["messages"]
    assert "airdrop" not in system["content"]                     # the posts are only in the user message ...
    data = json.loads(user["content"].split("\n")[1])            # ... as JSON data
    assert any("airdrop" in p for p in data["posts"])


def test_trends_off_publishes_nothing():
    async def go():
        svc = await seeded_service(settings(trends=False), seed=SEED)
        try:
            out = await svc.handle_posts([RawMsg("synapse.posts", 0, 0, b"a", json.dumps(
                {"id": "a", "text": "hello there"}).encode())])
            return svc.trends.enabled, out.trends
        finally:
            await svc.stop()

    assert asyncio.run(go()) == (False, [])


def test_the_stage_never_holds_up_the_posts_and_skips_what_it_cannot_take():
    """The stage in its own thread: a slow stage does not slow the posts down; beyond its backlog a batch is
    skipped and counted; inline (trends_thread=false) the same posts wait for it."""
    async def go(threaded):
        svc = await seeded_service(settings(trends_thread=threaded, trends_backlog=1), seed=SEED)
        try:
            gate = __import__("threading").Event()
            seen = []

            def slow(ids, texts, vecs, ts):
                gate.wait(5.0)
                seen.extend(ids)
                return []
            svc.trends.stage.observe = slow
            if not threaded:
                gate.set()
            t = time.perf_counter()
            for b in range(4):
                await svc.handle_posts([RawMsg("synapse.posts", 0, 10 * b + i, f"x{b}-{i}".encode(), json.dumps(
                    {"id": f"x{b}-{i}", "text": f"weather report number {b} {i}"}).encode()) for i in range(10)])
            took = time.perf_counter() - t
            gate.set()
            await svc.trends.flush()
            return took, len(seen), svc.metrics.trend_batches_skipped._value.get(), len(svc.index)
        finally:
            await svc.stop()

    took, seen, skipped, indexed = asyncio.run(go(True))
    assert indexed == 40 and took < 4.0            # the posts went on while the stage was stuck
    assert seen == 10 and skipped == 3             # one batch waited (the backlog), three were skipped, counted
    took, seen, skipped, indexed = asyncio.run(go(False))
    assert indexed == 40 and seen == 40 and skipped == 0


def test_a_restarted_worker_keeps_its_proposal_and_raises_no_duplicate(monkeypatch):
    """The stage's snapshot is saved with the shards' (svc.snapshot) and loaded by the next worker on the same
    data dir: the wave under way goes on under the same id, updated, not raised again."""
    import stream_app.worker.service.trends as trends_mod

    monkeypatch.setattr(trends_mod, "TrendParams", lambda: TrendParams(radius=0.3, novelty_sim=0.3))
    s = settings()
    posts = stream()
    t0 = time.time() - 4 * 86400

    async def feed(svc, lo, hi, stop_when_raised=False):
        docs = []
        for start in range(lo, hi, 50):
            msgs = [RawMsg("synapse.posts", 0, i, f"{posts[i][1]}{i}".encode(), json.dumps(
                {"id": f"{posts[i][1]}{i}", "text": posts[i][0], "ts": t0 + 36.0 * i}).encode())
                for i in range(start, min(hi, start + 50))]
            out = await svc.handle_posts(msgs)
            await svc.trends.flush()
            docs += [json.loads(v) for _, v in out.trends + svc.outbox.drain(Outputs()).trends]
            if stop_when_raised and docs:
                return docs, start + 50
        return docs, hi

    async def go():
        svc = await seeded_service(s, seed=SEED)
        try:
            first, upto = await feed(svc, 0, len(posts), stop_when_raised=True)
            upto += 200                                   # a little more of the wave, then a snapshot and a stop
            more, _ = await feed(svc, upto - 200, upto)
            await svc.snapshot()
            seen = svc.trends.stage.seen
        finally:
            await svc.stop()
        assert s.data_dir and (svc.trends.snapshot_path.exists())
        svc2 = await seeded_service(s, seed=SEED)         # the same data dir: shards and stage restored
        try:
            restored = (svc2.trends.stage.seen, list(svc2.trends.stage.book.proposals))
            after, _ = await feed(svc2, upto, len(posts))
            raised2 = svc2.metrics.trend_proposals_raised._value.get()
            updates2 = svc2.metrics.trend_updates._value.get()
        finally:
            await svc2.stop()
        return first + more, seen, restored, after, raised2, updates2

    before, seen, restored, after, raised2, updates2 = asyncio.run(go())
    pid = before[0]["id"]
    assert {d["id"] for d in before} == {pid}
    assert restored == (seen, [pid])
    assert after and {d["id"] for d in after} == {pid}      # the same proposal, updated ...
    assert raised2 == 0 and updates2 == len(after)          # ... never raised again
    assert after[-1]["version"] > before[-1]["version"]


def test_a_waves_decision_reaches_every_members_proposal_and_counts_once():
    """The board writes one decision per worker's proposal of a wave (``of``: the kept id): a worker applies
    each to its book and counts the wave once."""
    from stream_app.trend_board import MemoryTrendBoard, reject
    from synapse_stream.trends.proposals import Proposal

    async def go():
        svc = await seeded_service(settings(), seed=SEED)
        try:
            docs = [Proposal(f"trend-w{i}", "cluster", 1.0, 10.0 * i, 10.0 * i, 8, 5, 3.0, 1e-7,
                             medoids=[{"id": f"p{i}", "text": "x"}], centre=[1.0, 0.0]).record() for i in (1, 2)]
            board = MemoryTrendBoard(docs)
            await svc.trends.apply_decisions(board.records)        # the worker restores both from the topic
            await reject(board, "trend-w2", by="ann")
            applied = await svc.trends.apply_decisions(board.records)
            again = await svc.trends.apply_decisions(board.records)
            book = svc.trends.stage.book
            return (applied, again, svc.metrics.trend_proposals_rejected._value.get(),
                    [book.get(f"trend-w{i}").status for i in (1, 2)])
        finally:
            await svc.stop()

    assert asyncio.run(go()) == (2, 0, 1, ["rejected", "rejected"])


def test_the_stage_horizon_follows_a_shorter_retention_window():
    from stream_app.worker.service.trends import trend_params

    default = TrendParams().horizon
    assert trend_params(settings(retention="12h")).horizon == 12 * 3600.0
    assert trend_params(settings(retention="7d")).horizon == default          # longer than the stage's own
    assert trend_params(settings(retention="off")).horizon == default

    async def go():
        svc = await seeded_service(settings(retention="6h"), seed=SEED)
        try:
            stage = svc.trends.stage
            return stage.p.horizon, stage.dupes.horizon, stage.clusters.horizon
        finally:
            await svc.stop()

    assert asyncio.run(go()) == (6 * 3600.0,) * 3                              # the worker's stage has it

"""Replay the eval's imbalanced SST-2 set-up through the live loop (issue #6, the live half).

Builds exactly the pool and the seeds of ``synapse-stream eval`` (docs/candidate-policy.md, "Exact
command"): ``load_pool`` + ``make_imbalanced`` (share 0.1, seed 0: 33,088 posts, 3,308 positive) and
the 100 ACS seeds that ``--seed-pool ... --acs 100`` picks (same functions, same cached MiniLM
vectors, same coverage target). Then, through :class:`stream_app.devstack.demo.LiveLoop` (embedded Tansu broker,
Redis, Faust worker subprocesses):

1. send every post and wait until all are indexed (``synapse_posts_indexed``);
2. send the seeds; a simulated moderator answers every candidate from the truth at once;
3. wait until the rounds' budget (``max_query_ratio`` of the posts) is queried and answered and nothing
   moved for ``--settle`` seconds (rounds are a few seconds apart: the classifier is retrained first);
4. read the query order from the candidates topic (one ``emitted_at`` per round; within a round the
   batch is split over the partitions, see ``sending_order``) and, as a cross-check, the verdicts'
   arrival order from the Redis stream ``synapse:<detector>:verdicts``;
5. write ``metrics.json`` (recall at 1 / 2.4 / 5 / 10 %, precision at 5 %, rounds, per-source queries
   and precision, the classifier's versions, wall times) and ``curves.png`` (the live curve over the
   eval's curves from ``docs/sst2/policy/metrics.json``).

Usage::

    nice -n 5 .venv/bin/python scripts/live_replay.py --out docs/sst2/live-replay

Progress goes to stderr every few seconds; the run directory (worker logs in ``<run-dir>/logs``) is
kept and printed.

Issue #16's replay (``--dataset NAME``, a dataset of ``scripts/tau_datasets.py``): the pool and the seeds of
``docs/tau/<NAME>`` (its ``seeds.txt``), the detector with the live defaults (``--tau auto``, ``d_max`` 5, ``k0``
100, no audit) up to 15 %, compared with that eval's every source alone and its old and new default policies;
output in ``docs/tau/live/<NAME>``. ``--tau-table`` writes ``docs/tau/live/table.md`` from those runs::

    for d in offensive-real-seeds sst2-1pct-fusegen-gpt35; do .venv/bin/python scripts/live_replay.py --dataset $d; done
    .venv/bin/python scripts/live_replay.py --tau-table
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import tau_datasets as td   # the datasets of issue #16's replay (--dataset)

from stream_app.devstack.demo import LiveLoop, gauge
from synapse_stream.data import load_pool, load_seed_texts, make_imbalanced
from synapse_stream.embedders import CachedEmbedder, make_embedder
from synapse_stream.evaluation import (
    choose_seeds,
    embed_with_progress,
    load_reports,
    plot_reports,
    report_from_run,
)
from synapse_stream.methods.base import RunResult

EVAL_FAMILIES = ("ibg", "gble", "lr", "model", "policy")
SINGLE = ("ibg", "gble", "lr", "model")   # #6: "the best single method's (IBG, GBLE, LR baseline)"; #16 adds the model
T0 = time.monotonic()
TAU_DIR = REPO / "docs" / "tau"


def say(msg: str) -> None:
    print(f"[live-replay {time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- inputs (the eval's, exactly)
def build_inputs(args):
    """The pool and seed texts ``synapse-stream eval --imbalance ... --seed-pool ... --acs K`` uses (with
    ``--dataset``: the pool of ``scripts/tau_datasets.py`` and the seeds its run wrote to ``seeds.txt``)."""
    if args.dataset:
        return dataset_inputs(args.dataset)
    pool = load_pool(args.pool)
    if args.imbalance:
        pool = make_imbalanced(pool, args.imbalance, seed=args.seed)
    if args.sample and args.sample < len(pool):   # quick runs only (as the eval's --sample)
        import numpy as np

        rows = np.sort(np.random.default_rng(args.seed).choice(len(pool), args.sample, replace=False))
        pool = pool.subset(rows.tolist())
    seed_texts = load_seed_texts(args.seed_pool)
    # the eval embeds the seed pool with its embedder (minilm, cached) and runs ACS on those vectors;
    # the seeds are chosen with that embedder whatever the live worker uses, so they are the eval's
    emb = make_embedder(args.seed_embedder)
    if args.cache_dir:
        emb = CachedEmbedder(emb, args.cache_dir)
    vecs = embed_with_progress(emb, seed_texts, label="seeds", progress=False)
    picks, selection = choose_seeds(seed_texts, vecs, args.acs, "acs", coverage=args.coverage, seed=args.seed)
    seeds = [seed_texts[i] for i in picks]
    return pool, seeds, selection


def dataset_inputs(name: str):
    seeds = load_seed_texts(TAU_DIR / name / "seeds.txt")
    return td.pool_of(name), seeds, {"dataset": name, "seeds": f"docs/tau/{name}/seeds.txt", "k": len(seeds)}


def dataset_eval_curves(path: Path) -> dict:
    """The eval's curves worth drawing beside a live run of ``--dataset``: every source alone (IBG at the
    automatic τ and at its best fixed τ at 5 %), the old and the new default policies."""
    _, reports = load_reports(path)
    keep = {k for k in reports if k.startswith(("gble", "model", "ibg[tau=auto"))}
    keep |= {td.old_name(), td.new_name(), td.best_fixed_ibg(reports)}
    return {k: v for k, v in reports.items() if k in keep}


def tau_table(live_dir: Path) -> str:
    """docs/tau/live/table.md: each live run's recall against its eval (new default, best single, 0.9 rule)."""
    rows = [("| dataset | ratio | **live loop** | eval new default | eval old default | best single (eval) | "
            "live − eval new | live / best single |"), "|---|---|---|---|---|---|---|---|"]
    runs = ["", ("| dataset | posts | positives | rounds | queried | wall (s): index / rounds | queried per source "
            "(precision) | worst live / best single, 1–15 % (at) | problems |"), "|---|---|---|---|---|---|---|---|---|"]
    for name in td.DATASETS:
        path = live_dir / name / "metrics.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        _, ev = load_reports(TAU_DIR / name / "metrics.json")
        method = next(iter(doc["methods"].values()))
        live = method["recall_at"]
        singles = [k for k in ev if k.split("[", 1)[0] in SINGLE]
        for r in ("0.024", "0.05", "0.1"):
            best = max(singles, key=lambda k: ev[k].recall_at[r])
            new, old = ev[td.new_name()].recall_at[r], ev[td.old_name()].recall_at[r]
            rows.append(f"| {name} | {float(r):.1%} | **{live[r]:.3f}** | {new:.3f} | {old:.3f} | "
                        f"{ev[best].recall_at[r]:.3f} ({best.split('[', 1)[0]}) | {live[r] - new:+.3f} | "
                        f"{live[r] / ev[best].recall_at[r]:.2f} |")
        lv, d = doc["live"], doc["dataset"]
        src = ", ".join(f"{s} {v['queried']} ({v['precision']:.2f})"
                        for s, v in sorted(method.get("sources", {}).items()) if v["precision"] is not None)
        cums = json.loads((TAU_DIR / name / "cumulative.json").read_text(encoding="utf-8"))
        curve = method["curve"]
        ratios = []
        for q in td.CHECK:   # the live recall at q: its curve's last point at or below q
            got = max((r for x, r, _ in curve if x <= q + 1e-9), default=0.0)
            best = max(td.recall_at(cums[k], d["posts"], d["positives"], q) for k in singles)
            ratios.append((got / best if best else 1.0, q))
        worst, at = min(ratios)
        runs.append(f"| {name} | {d['posts']} | {d['positives']} | {lv['rounds']} | {lv['queried']} | "
                    f"{lv.get('index_s', 0):.0f} / {lv.get('rounds_s', 0):.0f} | {src} | {worst:.2f} ({at:.1%}) | "
                    f"{'; '.join(lv['problems']) or 'none'} |")
    return "\n".join(rows + runs) + "\n"


def check_seeds(seeds: list[str], eval_dir: Path) -> bool | None:
    f = eval_dir / "seeds.txt"
    if not f.exists():
        return None
    return f.read_text(encoding="utf-8").splitlines() == seeds


# ---------------------------------------------------------------------- the run
async def poll(loop: LiveLoop):
    while True:
        try:
            return await asyncio.to_thread(loop.scrape)
        except OSError:
            await asyncio.sleep(1.0)


async def drive(loop: LiveLoop, pool, seeds: list[str], det: dict, args) -> dict:
    name = det["name"]
    n = len(pool)
    truth = pool.truth()
    times: dict[str, float] = {}
    await loop.set_truth(name, pool.positives)
    stop = asyncio.Event()
    moderator = asyncio.create_task(loop.moderate(truth, stop))

    # 1. every post, then wait until all are indexed
    t = time.monotonic()
    last = [0.0]

    def sent(i):
        if time.monotonic() - last[0] >= args.every:
            last[0] = time.monotonic()
            say(f"sent {i}/{n} posts")

    await loop.send_posts([{"id": pid, "text": txt} for pid, txt in zip(pool.ids, pool.texts)], progress=sent)
    times["send_posts_s"] = time.monotonic() - t
    say(f"all {n} posts sent in {times['send_posts_s']:.0f}s; waiting until they are indexed")
    prev, prev_t = 0, time.monotonic()
    while True:
        m = await poll(loop)
        indexed = int(gauge(m, "synapse_posts_indexed") or 0)
        if indexed >= n:
            break
        if time.monotonic() - last[0] >= args.every:
            rate = (indexed - prev) / max(1e-9, time.monotonic() - prev_t)
            prev, prev_t = indexed, time.monotonic()
            last[0] = time.monotonic()
            eta = (n - indexed) / rate if rate > 0 else float("nan")
            say(f"indexed {indexed}/{n} ({rate:.0f} posts/s, about {eta:.0f}s left)")
        if time.monotonic() - t > args.index_timeout:
            raise TimeoutError(f"only {indexed}/{n} posts indexed after {args.index_timeout:.0f}s")
        await asyncio.sleep(1.0)
    times["index_s"] = time.monotonic() - t
    say(f"all {n} posts indexed after {times['index_s']:.0f}s")

    # 2. the seeds; the moderator is already answering
    t = time.monotonic()
    await loop.send_seeds(name, seeds)
    say(f"sent {len(seeds)} seeds; rounds run until {det['max_query_ratio']:.0%} of the posts are queried")

    # 3. quiet: budget queried and answered, nothing moving for --settle s (or --stall s below the budget)
    budget = math.floor(det["max_query_ratio"] * n) if det.get("max_query_ratio") else None
    key, since = None, time.monotonic()
    while True:
        m = await poll(loop)
        queried = int(gauge(m, "synapse_queried", detector=name) or 0)
        answered = int(gauge(m, "synapse_answered", detector=name) or 0)
        pos = int(gauge(m, "synapse_confirmed_positives", detector=name) or 0)
        rounds = int(gauge(m, "synapse_rounds_total", detector=name) or 0)
        version = int(gauge(m, "synapse_model_version", detector=name) or 0)
        k = (queried, answered, rounds)
        if k != key:
            key, since = k, time.monotonic()
        still = time.monotonic() - since
        if time.monotonic() - last[0] >= args.every:
            last[0] = time.monotonic()
            say(f"round {rounds}: queried {queried}/{budget} answered {answered} positives {pos} "
                f"(recall {pos / pool.positives:.3f}, precision {pos / max(1, answered):.3f}) classifier v{version}")
        if queried and queried == answered:
            if (budget is None or queried >= budget) and still >= args.settle:
                break
            if still >= args.stall:
                say(f"no new round for {still:.0f}s below the budget ({queried}/{budget}): stopping")
                break
        if time.monotonic() - t > args.timeout:
            raise TimeoutError(f"not quiet after {args.timeout:.0f}s: queried {queried}, answered {answered}")
        await asyncio.sleep(1.0)
    times["rounds_s"] = time.monotonic() - t - still    # up to the last change, without the settle
    stop.set()
    mod = await moderator
    say(f"quiet: {queried} queried, {pos} positives, {rounds} rounds; rounds phase {times['rounds_s']:.0f}s")

    # 4. what happened: candidates topic, Redis books, final metrics
    cands = [(x.partition, x.offset, json.loads(x.value)) for x in await loop.read_topic(loop.topics.candidates)]
    import redis.asyncio as aioredis

    r = aioredis.from_url(loop.redis_url, decode_responses=True)
    try:
        stream = await r.xrange(f"synapse:{name}:verdicts")
        src_counters = await r.hgetall(f"synapse:{name}:source-counters")
        models = [json.loads(h) for h in await r.lrange(f"synapse:{name}:models", 0, -1)]
        counters = await r.hgetall(f"synapse:{name}:counters")
    finally:
        await r.aclose()
    m = await poll(loop)
    return {"metrics": m, "candidates": cands, "verdicts": [f["post_id"] for _, f in stream],
            "verdict_labels": [json.loads(f["label"]) for _, f in stream], "source_counters": src_counters,
            "models": models, "counters": {k: int(v) for k, v in counters.items()}, "times": times,
            "labels_sent": mod.labels_sent}


# ---------------------------------------------------------------------- the query order
def sending_order(cands: list[tuple[int, int, dict]]) -> tuple[list[dict], list[list[dict]]]:
    """The order the rounds sent their candidates, as well as it can be read back.

    One round = one ``emitted_at`` (``run_rounds`` emits a round's batch in one call). Inside a round
    the batch, in the policy's order, is split over the candidates topic's partitions by post key, and
    each partition keeps its share in order; the interleaving across partitions is not recorded, so
    the shares are merged by relative position (the i-th of m posts of a partition at (i + ½) / m).
    """
    by_round: dict[float, dict[int, list[tuple[int, dict]]]] = defaultdict(lambda: defaultdict(list))
    for part, off, c in cands:
        by_round[c["emitted_at"]][part].append((off, c))
    order, rounds = [], []
    for ts in sorted(by_round):
        keyed = []
        for part, items in by_round[ts].items():
            items.sort(key=lambda t: t[0])
            keyed += [((i + 0.5) / len(items), part, c) for i, (_, c) in enumerate(items)]
        keyed.sort(key=lambda t: (t[0], t[1]))
        rnd = [c for _, _, c in keyed]
        rounds.append(rnd)
        order += rnd
    return order, rounds


def plot(out: Path, eval_reports: dict, name: str, live, n: int, positives: int, title: str,
         max_ratio: float = 0.12) -> None:
    plot_reports(out, {**eval_reports, name: live}, n, positives, max_query_ratio=max_ratio, title=title)


def eval_curves(path: Path) -> dict:
    _, reports = load_reports(path)
    return {k: v for k, v in reports.items() if k.split("[", 1)[0] in EVAL_FAMILIES}


def replot(args) -> int:
    out = Path(args.out)
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    _, reports = load_reports(out / "metrics.json")
    (name, live), = reports.items()
    fam = doc["live"]["detector"]["candidates"]
    if not name.startswith(fam + "["):   # older runs: give it its family's style
        name = f"{fam}[live loop,{name.split('[', 1)[1]}"
    d = doc["dataset"]
    plot(out, eval_curves(Path(args.eval_metrics)), name, live, d["posts"], d["positives"], doc["live"].get("title", ""))
    print(f"wrote {out / 'curves.png'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", default=str(REPO.parent / "shared/data/sst2/train.tsv"))
    ap.add_argument("--seed-pool", default=str(REPO.parent / "shared/data/sst2/synthetic_fusegen_gpt35instruct_moviereview.tsv"))
    ap.add_argument("--imbalance", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0, help="random seed of make_imbalanced / choose_seeds (eval's --seed)")
    ap.add_argument("--sample", type=int, default=None, help="a random sample of N posts (smoke tests only)")
    ap.add_argument("--acs", type=int, default=100)
    ap.add_argument("--coverage", type=float, default=0.5, help="ACS coverage target (eval's --coverage)")
    ap.add_argument("--seed-embedder", default="minilm-onnx", help="embedder ACS picks seeds with (the eval's default)")
    ap.add_argument("--cache-dir", default=str(REPO / ".cache/embeddings"))
    ap.add_argument("--embedder", default="minilm-onnx", help="the live worker's embedder: minilm-onnx (default) or minilm-onnx-int8")
    ap.add_argument("--detector", default="sst2")
    ap.add_argument("--tau", default="0.55", help="a number, or auto (the worker chooses it: the live default)")
    ap.add_argument("--dmax", type=int, default=5)
    ap.add_argument("--k0", type=int, default=100)
    ap.add_argument("--candidates", default="policy", choices=["policy", "ibg", "gble", "model"])
    ap.add_argument("--max-query-ratio", type=float, default=0.10)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--settle", type=float, default=15.0, help="seconds with nothing moving after the budget is answered")
    ap.add_argument("--stall", type=float, default=300.0, help="give up waiting for rounds below the budget after this")
    ap.add_argument("--index-timeout", type=float, default=3600.0)
    ap.add_argument("--timeout", type=float, default=5400.0, help="limit of the rounds phase, seconds")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between progress lines")
    ap.add_argument("--run-dir", help="LiveLoop run directory (default: a new /tmp/live-replay-*; kept)")
    ap.add_argument("--eval-metrics", default=str(REPO / "docs/sst2/policy/metrics.json"))
    ap.add_argument("--out", default=str(REPO / "docs/sst2/live-replay"))
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra worker environment")
    ap.add_argument("--replot", action="store_true", help="only redraw curves.png from --out's metrics.json")
    ap.add_argument("--dataset", help="a dataset of scripts/tau_datasets.py (issue #16's replay; sets --tau auto, "
                    "--max-query-ratio 0.15, --eval-metrics and --out to docs/tau)")
    ap.add_argument("--audit-rate", type=float, default=0.0, help="the detector's audit rate (the eval has none)")
    ap.add_argument("--tau-table", action="store_true", help="only write docs/tau/live/table.md from the runs there")
    args = ap.parse_args(argv)
    if args.tau_table:
        (TAU_DIR / "live" / "table.md").write_text(tau_table(TAU_DIR / "live"), encoding="utf-8")
        print((TAU_DIR / "live" / "table.md").read_text(encoding="utf-8"))
        return 0
    if args.dataset:
        args.tau, args.max_query_ratio, args.detector = "auto", 0.15, "replay"
        args.eval_metrics = str(TAU_DIR / args.dataset / "metrics.json")
        args.out = str(TAU_DIR / "live" / args.dataset)
    args.tau = None if str(args.tau) == "auto" else float(args.tau)
    if args.replot:
        return replot(args)

    pool, seeds, selection = build_inputs(args)
    eval_path = Path(args.eval_metrics)
    same_seeds = check_seeds(seeds, eval_path.parent)
    say(f"pool: {pool.describe()}; seeds: {selection}; identical to {eval_path.parent / 'seeds.txt'}: {same_seeds}")
    if same_seeds is False:
        say("WARNING: the seeds differ from the eval's seeds.txt")

    det = {"name": args.detector, "tau": args.tau, "d_max": args.dmax, "candidates": args.candidates,
           "k0": args.k0, "max_query_ratio": args.max_query_ratio, "detect_threshold": None,
           "audit_rate": args.audit_rate}
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="live-replay-"))
    extra = dict(kv.split("=", 1) for kv in args.env)
    loop = LiveLoop(run_dir, detectors=[det], embedder=args.embedder, partitions=args.partitions,
                    workers=args.workers, extra_env=extra)
    say(f"run directory {run_dir} (worker logs in {run_dir / 'logs'}); starting broker, Redis, "
        f"{args.workers} worker(s) with {args.embedder}")
    t_start = time.monotonic()

    async def go():
        try:
            return await drive(loop, pool, seeds, det, args)
        finally:
            await loop.close()

    try:
        loop.start()
        t_started = time.monotonic() - t_start
        say(f"started in {t_started:.0f}s; worker metrics at {loop.metrics_url(0)}")
        res = asyncio.run(go())
    finally:
        codes = loop.stop()
        say(f"workers stopped, exit codes {codes}")
    wall = time.monotonic() - t_start

    # ------------------------------------------------------------------ metrics
    n, positives = len(pool), pool.positives
    truth = pool.truth()
    row_of = {pid: i for i, pid in enumerate(pool.ids)}
    order, rounds = sending_order(res["candidates"])
    ids = [c["post_id"] for c in order]
    problems = []
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} posts were sent to the oracle more than once")
    unknown = [p for p in ids if p not in truth]
    if unknown:
        problems.append(f"{len(unknown)} candidates are not posts of the pool")
    ids = [p for p in dict.fromkeys(ids) if p in truth]
    # named "<family>[live ...]" so plot_reports draws it in its family's colour, dashed (the eval's is solid)
    name = f"{args.candidates}[live loop,tau={'auto' if args.tau is None else args.tau},dmax={args.dmax},K0={args.k0},{args.embedder}]"
    run = RunResult(name, {"tau": args.tau, "dmax": args.dmax, "k0": args.k0, "embedder": args.embedder,
                           "max_query_ratio": args.max_query_ratio, "live": True},
                    [row_of[p] for p in ids], [truth[p] for p in ids],
                    [{"round": i + 1, "queried": len(r)} for i, r in enumerate(rounds)],
                    res["times"]["rounds_s"], [c["reason"] for c in order if c["post_id"] in truth])
    live = report_from_run(run, n, positives)
    # cross-check: the verdicts in their arrival order (the moderator's reading order)
    v_ids = [p for p in dict.fromkeys(res["verdicts"]) if p in truth]
    v_run = RunResult(name + "/verdict-order", {}, [row_of[p] for p in v_ids], [truth[p] for p in v_ids], [], 0.0)
    v_rep = report_from_run(v_run, n, positives)
    if set(v_ids) != set(ids):
        problems.append(f"verdicts ({len(v_ids)}) and candidates ({len(ids)}) differ")
    wrong = sum(1 for p, y in zip(res["verdicts"], res["verdict_labels"]) if truth.get(p) != y)
    if wrong:
        problems.append(f"{wrong} verdicts in the ledger stream differ from the truth")

    per_round = []
    for i, rnd in enumerate(rounds):
        alloc = Counter(c["reason"] for c in rnd)
        per_round.append({"round": i + 1, "size": len(rnd), "positives": sum(truth.get(c["post_id"], 0) for c in rnd),
                          "alloc": dict(sorted(alloc.items())),
                          "t": round(rnd[0]["emitted_at"] - rounds[0][0]["emitted_at"], 2)})
    sc = res["source_counters"]
    sources = {}
    for s in sorted({k.split(":", 1)[0] for k in sc}):
        q, a, p = (int(sc.get(f"{s}:{x}", 0)) for x in ("queried", "answered", "positives"))
        sources[s] = {"queried": q, "answered": a, "positives": p, "precision": p / a if a else None}
    live.sources = sources
    live.rounds = len(rounds)
    m = res["metrics"]

    ev = dataset_eval_curves(eval_path) if args.dataset else eval_curves(eval_path)
    comparison = {}
    for r in ("0.024", "0.05", "0.1"):
        best_name = max((k for k in ev if k.split("[", 1)[0] in SINGLE), key=lambda k: ev[k].recall_at[r])
        comparison[r] = {"live": live.recall_at[r], "live_verdict_order": v_rep.recall_at[r],
                         **{k.split("[", 1)[0]: ev[k].recall_at[r] for k in ev},
                         "best_single": best_name, "best_single_recall": ev[best_name].recall_at[r],
                         "margin": live.recall_at[r] - ev[best_name].recall_at[r],
                         "met": live.recall_at[r] >= ev[best_name].recall_at[r]}

    models = res["models"]
    title = (f"Live loop ({args.candidates}, {args.embedder}, {len(rounds)} rounds) vs synapse-stream eval: "
             + (f"{args.dataset}, {n} posts, {positives} positives, {len(seeds)} seeds" if args.dataset else
                f"imbalanced SST-2, {n} posts, {positives} positives, {len(seeds)} ACS seeds"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "dataset": {**({"name": args.dataset} if args.dataset else {"pool": args.pool, "imbalance": args.imbalance,
                    "random_seed": args.seed, "seed_file": args.seed_pool}), **pool.describe(), "seeds": selection, "seeds_identical_to_eval": same_seeds,
                    "embedder": args.embedder, "max_query_ratio": args.max_query_ratio},
        "live": {
            "detector": det, "partitions": args.partitions, "workers": args.workers, "worker_env": extra,
            "wall_seconds": round(wall, 1), "startup_seconds": round(t_started, 1),
            **{k: round(v, 1) for k, v in res["times"].items()},
            "rounds": len(rounds), "rounds_metric": gauge(m, "synapse_rounds_total", detector=args.detector),
            "queried": len(ids), "positives_found": live.positives_found,
            "counters": res["counters"], "labels_sent": res["labels_sent"],
            "recall_at_verdict_order": v_rep.recall_at,
            "classifier_versions": len(models),
            "classifier_first": {k: v for k, v in (models[0] if models else {}).items() if k != "coef"},
            "classifier_last": {k: v for k, v in (models[-1] if models else {}).items() if k != "coef"},
            "per_round": per_round, "problems": problems, "run_dir": str(run_dir), "title": title,
        },
        "comparison": comparison,
        "methods": {name: live.as_json()},
    }
    (out / "metrics.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    plot(out, ev, name, live, n, positives, title, max(0.12, args.max_query_ratio))

    print(f"{'method':52s} {'r@1%':>6s} {'r@2.4%':>6s} {'r@5%':>6s} {'r@10%':>6s} {'p@5%':>6s}")
    for k, rep in [(name, live), (name + " (verdict order)", v_rep)] + [(f"eval {k}", v) for k, v in ev.items()]:
        ra = rep.recall_at
        print(f"{k:52s} {ra['0.01']:6.3f} {ra['0.024']:6.3f} {ra['0.05']:6.3f} {ra['0.1']:6.3f} "
              f"{rep.precision_at['0.05']:6.3f}")
    for r, c in comparison.items():
        print(f"at {float(r):.1%}: live {c['live']:.3f} vs best single {c['best_single']} {c['best_single_recall']:.3f}"
              f" -> {'met' if c['met'] else 'NOT met'} ({c['margin']:+.3f})")
    print(f"rounds {len(rounds)}, sources {sources}, wall {wall:.0f}s")
    for p in problems:
        print(f"PROBLEM: {p}")
    print(f"wrote {out / 'metrics.json'} and {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

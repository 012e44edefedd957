"""``synapse-stream trends eval|list|accept|reject``: emerging-trend proposals, measured and acted on.

``eval`` replays a labelled pool with planted events (``synapse_stream/trends/evaluation.py``) through the
trends stage and the n-gram-burst baseline, writes ``metrics.json``, ``proposals.jsonl`` and ``timeline.png``
under ``--out``, prints the baseline's line and ends with one line::

    trends: events=N found=N delay_posts_p50=N false_per_100k=X purity=X

(``delay_posts_p50=na`` when no event was found). A pool with a ``ts`` column (ISO 8601 or epoch seconds) is
replayed in its own event time (delays in ``metrics.json`` are then in real seconds since an event's first post);
without one the schedule is generated. Method and measured numbers: docs/trends.md.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def add_trends_parser(sub) -> None:
    p = sub.add_parser("trends", help="proposals for new detectors found in the stream: eval, list, accept, reject",
                       description=__doc__.splitlines()[0])
    acts = p.add_subparsers(dest="action", required=True)
    e = acts.add_parser("eval", help="replay a labelled pool with planted events; ends with one 'trends:' line")
    e.add_argument("--pool", required=True, help="TSV with a header (text/sentence + label [+ ts]) or JSONL "
                   "{text, label[, ts]}; a ts column (ISO 8601 or epoch seconds) gives the posts their own event time")
    e.add_argument("--text-col", default=None, help="text column (default: text or sentence)")
    e.add_argument("--label-col", default="label", help="label column (default label)")
    e.add_argument("--ts-col", default="ts", help="timestamp column, if the pool has one (default ts)")
    e.add_argument("--event-pool", default=None,
                   help="take the events from this pool's --event-label posts; the background is then all of --pool")
    e.add_argument("--event-label", default="1", help="the held-back class whose clusters become events (default 1)")
    e.add_argument("--events", type=int, default=4, help="events from the held-back class (default 4)")
    e.add_argument("--event-posts", type=int, default=40, help="posts per event, at most (default 40)")
    e.add_argument("--dup-events", type=int, default=0, help="near-duplicate floods of one held-back post (default 0)")
    e.add_argument("--dup-posts", type=int, default=30, help="posts per near-duplicate flood (default 30)")
    e.add_argument("--background", type=int, default=None, help="sample this many background posts (default all)")
    e.add_argument("--days", type=float, default=14.0, help="replay length in event-time days (default 14)")
    e.add_argument("--event-hours", type=float, default=24.0, help="how long each event grows (default 24)")
    e.add_argument("--rise", type=float, default=3.0, help="background rate at the end / at the start (default 3)")
    e.add_argument("--window", type=float, default=48.0, help="the index window in hours (default 48)")
    e.add_argument("--batch", type=int, default=32, help="posts per replayed batch (default 32)")
    e.add_argument("--radius", type=float, default=None, help="micro-cluster cosine radius (default: TrendParams)")
    e.add_argument("--novelty-sim", type=float, default=None, help="novelty threshold (default: TrendParams)")
    e.add_argument("--alpha", type=float, default=None, help="burst test level (default: TrendParams)")
    e.add_argument("--min-size", type=int, default=None, help="least posts of a proposal (default: TrendParams)")
    e.add_argument("--recent-bins", type=int, default=None, help="hours the burst test calls recent (default: TrendParams)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--embedder", default="minilm-onnx", help="embedder spec (default minilm-onnx; hashing-384 in tests)")
    e.add_argument("--cache-dir", default=".cache/embeddings", help="embedding cache ('' for none)")
    e.add_argument("--out", default="trends-out", help="output directory (default trends-out)")
    e.add_argument("--title", default="", help="plot title")
    e.set_defaults(func=cmd_eval)
    try:
        from .trends_live_cli import add_live_actions
    except ImportError:   # pragma: no cover - the live actions ship with the worker
        return
    add_live_actions(acts)


def _params(args):
    from synapse_stream.trends import TrendParams

    over = {k: v for k, v in (("radius", args.radius), ("novelty_sim", args.novelty_sim), ("alpha", args.alpha),
                               ("min_size", args.min_size), ("recent_bins", args.recent_bins)) if v is not None}
    return TrendParams(**over)


def cmd_eval(args) -> int:
    from threadpoolctl import threadpool_limits

    from synapse_stream.embedders import CachedEmbedder, make_embedder
    from synapse_stream.exceptions import ConfigError
    from synapse_stream.trends.evaluation import make_schedule, plot_timeline, read_pool, replay, score

    def log(msg: str) -> None:
        print(f"[trends eval] {msg}", file=sys.stderr, flush=True)

    if args.events < 0 or args.dup_events < 0 or args.events + args.dup_events == 0:
        raise ConfigError("plant at least one event (--events N and/or --dup-events N)")
    if args.batch < 1:
        raise ConfigError("--batch must be >= 1")
    params = _params(args)
    pool = read_pool(args.pool, text_col=args.text_col, label_col=args.label_col, ts_col=args.ts_col)
    event_pool = (read_pool(args.event_pool, text_col=None, label_col=args.label_col, ts_col=args.ts_col)
                  if args.event_pool else None)
    embedder = make_embedder(args.embedder)
    if args.cache_dir:
        embedder = CachedEmbedder(embedder, args.cache_dir)
    limiter = threadpool_limits(1)          # one BLAS thread, as in the worker's model thread
    t0 = time.perf_counter()
    sched = make_schedule(pool, lambda texts: embedder.encode(texts), event_label=args.event_label,
                          event_pool=event_pool,
                          events=args.events, event_posts=args.event_posts, dup_events=args.dup_events,
                          dup_posts=args.dup_posts, background=args.background, duration=args.days * 86400.0,
                          event_seconds=args.event_hours * 3600.0, rise=args.rise, seed=args.seed)
    log(f"schedule: {len(sched.texts)} posts ({sched.background} background), {len(sched.events)} events over "
        f"{sched.duration / 86400:.1f} days, event time {sched.timestamps}"
        f"{' (the ts column)' if sched.timestamps != 'generated' else ''}; "
        f"embedded with {embedder.name} in {time.perf_counter() - t0:.1f}s")
    run, stage = replay(sched, params, window=args.window * 3600.0, batch=args.batch, log=log)
    limiter.restore_original_limits()
    sc, sb = score(sched, run.stage), score(sched, run.baseline)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(sched.texts)
    doc = {"pool": str(args.pool), "event_pool": args.event_pool, "event_label": args.event_label, "embedder": embedder.name, "seed": args.seed, "posts": n,
           "timestamps": sched.timestamps, "days": sched.duration / 86400.0,
           "background": sched.background, "events": [e.__dict__ for e in sched.events],
           "params": params.__dict__, "window_hours": args.window, "batch": args.batch,
           "stage": sc.as_json(), "baseline": sb.as_json(),
           "cost": {"stage_ms_per_post": 1e3 * run.seconds_stage / n, "baseline_ms_per_post": 1e3 * run.seconds_baseline / n,
                    "index_ms_per_post": 1e3 * run.seconds_index / n, "max_held_posts": run.max_held_posts,
                    "max_groups": run.max_groups, "max_clusters": run.max_clusters}}
    (out / "metrics.json").write_text(json.dumps(doc, indent=2, default=float), encoding="utf-8")
    with open(out / "proposals.jsonl", "w", encoding="utf-8") as fh:
        for r in run.stage:
            fh.write(json.dumps({"who": "trends", **r.__dict__}) + "\n")
        for r in run.baseline:
            fh.write(json.dumps({"who": "baseline", **r.__dict__}) + "\n")
    plot_timeline(out / "timeline.png", sched, {"trends": sc, "baseline (n-gram bursts)": sb},
                  {"trends": run.stage, "baseline": run.baseline}, bin_seconds=params.bin_seconds,
                  title=args.title or f"{Path(args.pool).name}, {embedder.name}, seed {args.seed}")
    for name, s in (("trends", sc), ("baseline", sb)):
        for e in s.per_event:
            log(f"{name}: event {e['id']} ({e['kind']}, {e['posts']} posts): "
                + (f"found after {e['delay_posts']} posts, {e['delay_seconds'] / 3600:.1f} h" if e["found"] else "missed"))
    log(f"cost: stage {doc['cost']['stage_ms_per_post']:.3f} ms/post, baseline {doc['cost']['baseline_ms_per_post']:.3f} "
        f"ms/post, index {doc['cost']['index_ms_per_post']:.3f} ms/post; at most {run.max_groups} groups holding "
        f"{run.max_held_posts} posts; wrote {out}/metrics.json, proposals.jsonl, timeline.png")
    print(sb.line("baseline"))
    print(sc.line("trends"))
    return 0

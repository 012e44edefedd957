"""Issue #16: the automatic τ and the earned ranker against every source alone, the old default and the best fixed τ.

For each dataset (SST-2 at 1 % positives with 100 ACS seeds from an LLM set; the offensive-tweet pool with its
60 real seeds, and with the same seeds restyled as an LLM would write them, a proxy for cross-source seeds),
on the cached MiniLM (ONNX, fp32) embeddings, runs with the replay oracle up to 15 % of the pool:

* every source alone: IBG at each τ of ``--taus`` and at ``tau=auto`` (d_max 5), GBLE, the model source;
* the **old default** policy: τ = 0.6, the classifier re-ranks every other source (``rerank=always``);
* the **new default** policy: ``tau=auto``, ``rerank=earned``;
* the new policy at each fixed τ of ``--policy-taus`` (the best fixed τ in hindsight);

writes ``<out>/<dataset>/metrics.json`` and ``curves.png`` (``synapse_stream.evaluation``'s formats) and a
Markdown table ``<out>/table.md``. Datasets whose ``metrics.json`` exists are skipped (``--force``).

    python scripts/tau_datasets.py --out docs/tau            # about 25 minutes on the shared 2-core machine
    python scripts/tau_datasets.py --table-only --out docs/tau
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synapse_stream.data import load_pool, load_seed_texts, make_imbalanced  # noqa: E402
from synapse_stream.embedders import CachedEmbedder, make_embedder  # noqa: E402
from synapse_stream.embedders.base import l2_normalise  # noqa: E402
from synapse_stream.evaluation import choose_seeds, plot_reports, random_report, report_from_run, write_metrics  # noqa: E402
from synapse_stream.methods import GBLE, IBG, ModelGuided, Policy  # noqa: E402
from synapse_stream.oracles import ReplayOracle  # noqa: E402
from synapse_stream.sources import SourceParams, registry  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
SST = DATA / "sst2"
OFF = DATA / "offensive"
DATASETS = {
    "sst2-1pct-fusegen-gpt35": ("sst2", "synthetic_fusegen_gpt35instruct_moviereview.tsv"),
    "sst2-1pct-fewgen-ctrl": ("sst2", "synthetic_fewgen_ctrl_sst2_seed13.tsv"),
    "sst2-1pct-supergen-ctrl": ("sst2", "synthetic_supergen_ctrl_sst2.tsv"),
    "sst2-1pct-fusegen-llama2": ("sst2", "synthetic_fusegen_llama2chat7b_moviereview.tsv"),
    "offensive-real-seeds": ("offensive", "real"),
    "offensive-restyled-seeds": ("offensive", "restyled"),
}
POINTS = ("0.024", "0.05", "0.1")
CHECK = [round(x, 3) for x in np.arange(0.01, 0.1501, 0.005)]


def log(msg: str) -> None:
    print(f"[tau_datasets {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def restyle(text: str) -> str:
    """The real seed as an LLM would write it: no @user, URL or # markup, sentence case, a final stop.

    Applied to the 60 real offensive seeds, it makes them separable from the pool's posts (a classifier tells
    them from real positives with AUC 0.94, against 0.51 for the real seeds): a proxy for LLM-written seeds."""
    t = re.sub(r"@user\s*", "", text)
    t = re.sub(r"https?://\S+|\bURL\b", "", t)
    t = re.sub(r"#(\w+)", r"\1", t)
    t = re.sub(r"\s+", " ", t).strip()
    if not t:
        return t
    t = t[0].upper() + t[1:]
    return t if t[-1] in ".!?" else t + "."


def _sample(pool, n: int | None, seed: int):
    if not n or n >= len(pool):
        return pool
    return pool.subset(np.sort(np.random.default_rng(seed).choice(len(pool), n, replace=False)).tolist())


def pool_of(name: str, seed: int = 0):
    """The dataset's pool: SST-2 train at 1 % positives (``make_imbalanced``, ``seed``), or the offensive pool."""
    if DATASETS[name][0] == "sst2":
        return make_imbalanced(load_pool(SST / "train.tsv"), 0.01, seed=seed)
    return load_pool(OFF / "pool.tsv")


def load(name: str, embedder, seed: int = 0, *, sample: int | None = None, seed_limit: int | None = None):
    """Pool, vectors, seed vectors, seeds, selection. ``sample``: a random subset of the SST-2 pool (rows drawn as
    ``synapse-stream eval --sample N --seed 0`` draws them); ``seed_limit``: the first N texts of an SST-2 seed pool
    only (both for a slow embedder)."""
    kind, what = DATASETS[name]
    pool = _sample(pool_of(name, seed), sample, seed)
    if kind == "sst2":
        texts = load_seed_texts(SST / what)
        if seed_limit:
            texts = texts[:seed_limit]
        vecs = embedder.encode(texts)
        picks, sel = choose_seeds(texts, vecs, 100, "acs")
        seeds, S = [texts[i] for i in picks], vecs[picks]
    else:
        seeds = load_seed_texts(OFF / "seeds_real_val.txt")
        if what == "restyled":
            seeds = [t for t in map(restyle, seeds) if t]
        S = embedder.encode(seeds)
        sel = {"selection": "all", "k": len(seeds), "seeds": what}
    X = embedder.encode(pool.texts)
    return pool, l2_normalise(X), l2_normalise(S), seeds, sel


def methods(args) -> list:
    kw = {"max_query_ratio": args.max_query_ratio, "seed": 0}
    out: list = [IBG(tau="auto", d_max=args.dmax, **kw)]
    out += [IBG(tau=t, d_max=args.dmax, **kw) for t in args.taus]
    out += [GBLE(k=10, k0=100, **kw), ModelGuided(k0=100, **kw)]

    def policy(tau, rerank, overflow="hold"):
        src = registry.build(registry.POLICY_DEFAULT, SourceParams(tau=tau, d_max=args.dmax, k0=100, gble_k=10))
        return Policy(src, k0=100, rerank=rerank, overflow=overflow, **kw)

    out.append(policy(0.6, "always", "spread"))    # the old default
    out.append(policy("auto", "earned", "spread"))  # the default before the held overflow
    out.append(policy("auto", "earned"))           # the new default
    out += [policy(t, "earned") for t in args.policy_taus]
    return out


def run_dataset(name: str, args, embedder) -> None:
    out = args.out / name
    if (out / "metrics.json").exists() and not args.force:
        log(f"{name}: exists, skipped")
        return
    pool, X, S, seeds, sel = load(name, embedder, sample=args.sample, seed_limit=args.seed_limit)
    n, pos = len(pool), pool.positives
    log(f"{name}: {n} posts, {pos} positives, {len(S)} seeds")
    reports = {"random": random_report(n, pos, args.max_query_ratio)}
    truth = pool.truth()
    cums = {}
    for m in methods(args):
        t0 = time.perf_counter()
        run = m.run(X, S, pool.ids, ReplayOracle(truth))
        rep = report_from_run(run, n, pos)
        reports[rep.name] = rep
        cums[rep.name] = run.cumulative_positives().tolist()
        log(f"  {rep.name}: r@2.4/5/10 {rep.recall_at['0.024']:.3f} {rep.recall_at['0.05']:.3f} "
            f"{rep.recall_at['0.1']:.3f} {time.perf_counter() - t0:.1f}s {rep.params.get('auto_tau', '')}")
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out / "metrics.json", {"name": name, **pool.describe(), "seeds": sel, "embedder": embedder.name,
                                         "max_query_ratio": args.max_query_ratio, "sample": args.sample,
                                         "seed_limit": args.seed_limit}, reports)
    (out / "cumulative.json").write_text(json.dumps(cums), encoding="utf-8")
    (out / "seeds.txt").write_text("\n".join(seeds) + "\n", encoding="utf-8")
    shown = {k: v for k, v in reports.items()
             if k == "random" or k.startswith(("gble", "model", "ibg[tau=auto")) or k in (old_name(), new_name())
             or k == best_fixed_ibg(reports)}
    plot_reports(out, shown, n, pos, title=f"{name}: {n} posts, {pos} positives", max_query_ratio=args.max_query_ratio)


def old_name() -> str:
    return "policy[sources=ibg+gble+model,tau=0.6,dmax=5,K0=100,rerank=always,overflow=spread]"


def new_name() -> str:
    return "policy[sources=ibg+gble+model,tau=auto,dmax=5,K0=100]"


def best_fixed_ibg(reports) -> str | None:
    ibgs = [k for k in reports if k.startswith("ibg[") and "auto" not in k]
    return max(ibgs, key=lambda k: reports[k].recall_at["0.05"]) if ibgs else None


def recall_at(cum: list[int], n: int, pos: int, q: float) -> float:
    m = min(int(np.floor(q * n + 1e-9)), len(cum))
    return cum[m - 1] / pos if m else 0.0


def table(args) -> str:
    rows = ["| dataset | ratio | IBG auto τ | best fixed-τ IBG | GBLE | model | old default | **new default** | "
            "best fixed-τ policy | new − best single | new − best fixed-τ policy |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    mins = ["", "| dataset | auto τ start → end (moves) | worst new / best single, 1–15 % (at) | worst old / best single |",
            "|---|---|---|---|"]
    for name in DATASETS:
        path = args.out / name / "metrics.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        cums = json.loads((args.out / name / "cumulative.json").read_text(encoding="utf-8"))
        n, pos = doc["dataset"]["posts"], doc["dataset"]["positives"]
        R = {k: v["recall_at"] for k, v in doc["methods"].items()}
        singles = [k for k in R if k.startswith(("ibg", "gble", "model"))]
        fixed_ibg = [k for k in R if k.startswith("ibg[") and "auto" not in k]
        fixed_pol = [k for k in R if k.startswith("policy[") and "auto" not in k and "always" not in k]
        auto_ibg = next(k for k in R if k.startswith("ibg[tau=auto"))
        for p in POINTS:
            bi = max(fixed_ibg, key=lambda k: R[k][p])
            bs = max(singles, key=lambda k: R[k][p])
            bp = max(fixed_pol, key=lambda k: R[k][p])
            new = R[new_name()][p]
            rows.append(f"| {name} | {float(p):.1%} | {R[auto_ibg][p]:.3f} | {R[bi][p]:.3f} ({tau_of(bi)}) | "
                        f"{R[next(k for k in R if k.startswith('gble'))][p]:.3f} | "
                        f"{R[next(k for k in R if k.startswith('model'))][p]:.3f} | {R[old_name()][p]:.3f} | "
                        f"**{new:.3f}** | {R[bp][p]:.3f} ({tau_of(bp)}) | {new - R[bs][p]:+.3f} | {new - R[bp][p]:+.3f} |")

        def worst(name_):
            ratios = []
            for q in CHECK:
                best = max(recall_at(cums[k], n, pos, q) for k in singles)
                ratios.append((recall_at(cums[name_], n, pos, q) / best if best else 1.0, q))
            return min(ratios)

        at = doc["methods"][new_name()]["params"].get("auto_tau", {})
        w_new, w_old = worst(new_name()), worst(old_name())
        mins.append(f"| {name} | {at.get('start')} → {at.get('tau')} ({at.get('moves')}) | "
                    f"{w_new[0]:.2f} ({w_new[1]:.1%}) | {w_old[0]:.2f} ({w_old[1]:.1%}) |")
    return "\n".join(rows + mins) + "\n"


def tau_of(name: str) -> str:
    m = re.search(r"tau=([^,\]]+)", name)
    return f"τ {m.group(1)}" if m else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "tau")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--taus", type=lambda s: [float(x) for x in s.split(",")], default=[0.45, 0.5, 0.55, 0.6, 0.65, 0.7])
    ap.add_argument("--policy-taus", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.55, 0.6, 0.65])
    ap.add_argument("--dmax", type=int, default=5)
    ap.add_argument("--max-query-ratio", type=float, default=0.15)
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--embedder", default="minilm-onnx", help="embedder spec (default minilm-onnx; docs/tau.md "
                    "'A stronger encoder' uses mpnet)")
    ap.add_argument("--sample", type=int, default=None, help="a random sample of N posts of each pool (as eval --sample N --seed 0)")
    ap.add_argument("--seed-limit", type=int, default=None, help="SST-2 only: the first N texts of the seed pool")
    args = ap.parse_args()
    if not args.table_only:
        embedder = CachedEmbedder(make_embedder(args.embedder), args.cache_dir)
        for name in args.datasets.split(","):
            run_dataset(name, args, embedder)
    text = table(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

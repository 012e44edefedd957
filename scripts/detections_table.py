"""What the loop buys: classifiers trained on the labels the candidate policy obtained, scored on SST-2 dev.

Set-up (the paper's, as ``docs/candidate-policy.md``): pool = GLUE SST-2 train with all negatives and
positives subsampled to 10 % (``make_imbalanced(..., 0.1, seed=0)``: 33,088 posts, 3,308 positives),
100 ACS seeds from FuseGen's GPT-3.5 movie reviews, MiniLM embeddings from ``.cache/embeddings``.

Per random seed ``s``:

1. run the candidate policy (``Policy(tau=0.55, d_max=5)``, K0 = 100, replay oracle on the pool's
   labels) until 10 % of the pool is queried;
2. at query ratios 2 %, 5 % and 10 % take the labels obtained so far (a prefix of the query order)
   and fit :func:`synapse_stream.classifier.train_model` on seeds + those labelled posts + 100
   provisional negatives (the first 100 still-unlabelled posts of a random permutation fixed by
   ``s``), with 5-fold cross-validation on the ledger; also a *seeds only* model (no labels);
3. the same budgets spent on **uniformly random** queries instead of the loop (same seeds and
   provisional negatives), and one reference model trained on *all* pool labels (no seeds);
4. score every model on SST-2 dev as is (872 posts, 51 % positive) and on an *imbalanced dev*
   (all 428 dev negatives + positives subsampled to a 10 % share, i.e. 47 of 444, ``--dev-draws``
   random subsamples averaged) at threshold 0.5: precision, recall, F1, ROC AUC, average precision.

Prints Markdown tables (mean ± sd over the seeds) and writes ``<out>/results.json`` and
``<out>/pr-dev.png`` (precision-recall curves of seed 0's models on both dev sets).

    nice -n 10 .venv/bin/python scripts/detections_table.py --seeds 0,1,2,3,4     # ~1.5 min per seed on 2 cores
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synapse_stream.classifier import ModelVersion, train_model  # noqa: E402
from synapse_stream.data import Pool, load_pool, load_seed_texts, make_imbalanced  # noqa: E402
from synapse_stream.embedders.base import l2_normalise  # noqa: E402
from synapse_stream.methods import Policy  # noqa: E402
from synapse_stream.oracles import ReplayOracle  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "sst2"
RATIOS = (0.02, 0.05, 0.10)
METRICS = ("precision", "recall", "f1", "roc_auc", "ap")


def log(msg: str) -> None:
    print(f"[detections] {msg}", file=sys.stderr, flush=True)


def load(cache_dir: Path, imbalance: float):
    from synapse_stream.embedders import CachedEmbedder, make_embedder
    from synapse_stream.evaluation import choose_seeds

    pool = make_imbalanced(load_pool(SHARED / "train.tsv"), imbalance, seed=0)
    dev = load_pool(SHARED / "dev.tsv")
    seed_texts = load_seed_texts(SHARED / "synthetic_fusegen_gpt35instruct_moviereview.tsv")
    emb = CachedEmbedder(make_embedder("minilm-onnx"), cache_dir)
    sv = emb.encode(seed_texts)
    picks, selection = choose_seeds(seed_texts, sv, 100, "acs")
    X = l2_normalise(emb.encode(pool.texts))
    D = l2_normalise(emb.encode(dev.texts))
    return pool, X, l2_normalise(sv[picks]), dev, D, {"seeds": selection, "embedder": emb.name}


def score(mv: ModelVersion, X: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    p = mv.predict_proba(X)
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    prec = tp / int(pred.sum()) if pred.any() else 0.0
    rec = tp / int((y == 1).sum())
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "roc_auc": float(roc_auc_score(y, p)),
            "ap": float(average_precision_score(y, p)), "predicted_positive": int(pred.sum())}


def evaluate_model(mv: ModelVersion, dev: Pool, D: np.ndarray, dev_draws: list[np.ndarray]) -> dict:
    bal = score(mv, D, dev.labels)
    imb = [score(mv, D[rows], dev.labels[rows]) for rows in dev_draws]
    return {"dev": bal, "dev_imbalanced": {k: float(np.mean([m[k] for m in imb])) for k in imb[0]},
            "cv_precision": mv.cv_precision, "cv_recall": mv.cv_recall, "cv_folds": mv.cv_folds,
            "n_positives": mv.n_positives, "n_negatives": mv.n_negatives, "n_provisional": mv.n_provisional,
            "n_seeds": mv.n_seeds}


def provisional(n: int, labelled: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The first ``k`` posts of a random permutation that are not labelled."""
    perm = rng.permutation(n)
    return perm[~np.isin(perm, labelled)][:k]


def run_seed(s: int, pool: Pool, X: np.ndarray, S: np.ndarray, dev: Pool, D: np.ndarray,
             dev_draws: list[np.ndarray], folds: int) -> tuple[dict, dict]:
    n = len(pool)
    t0 = time.perf_counter()
    run = Policy(tau=0.55, d_max=5, k0=100, max_query_ratio=max(RATIOS), seed=s).run(
        X, S, pool.ids, ReplayOracle(pool.truth()))
    order = np.asarray(run.order)
    log(f"seed {s}: policy queried {len(order)} ({len(order) / n:.1%}), {sum(run.labels)} positives, "
        f"{time.perf_counter() - t0:.0f}s")
    out, models = {}, {}
    prov_rng_seed = 1000 + s

    def fit(name: str, rows: np.ndarray, version: int, with_seeds: bool = True, n_prov: int | None = None):
        prov = provisional(n, rows, len(S) if n_prov is None else n_prov, np.random.default_rng(prov_rng_seed))
        mv = train_model("sst2-positive", version, S if with_seeds else S[:0], X[rows], pool.labels[rows],
                         X[prov], folds=folds, random_state=s)
        models[name] = mv
        out[name] = evaluate_model(mv, dev, D, dev_draws)
        found = int(pool.labels[rows].sum())
        out[name]["pool"] = {"queried": int(len(rows)), "positives_found": found,
                             "query_precision": found / len(rows) if len(rows) else None,
                             "recall": found / pool.positives}

    fit("seeds only", np.zeros(0, np.int64), 0)
    rng = np.random.default_rng(2000 + s)
    for v, q in enumerate(RATIOS, 1):
        m = int(math.floor(q * n + 1e-9))
        fit(f"loop {q:.0%}", order[:m], v)
    for q in RATIOS:
        m = int(math.floor(q * n + 1e-9))
        fit(f"random {q:.0%}", np.sort(rng.choice(n, m, replace=False)), 0)
    log(f"seed {s}: models done, {time.perf_counter() - t0:.0f}s")
    return out, models


def fmt(vals: list[float | None], digits: int = 3) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


def tables(per_seed: list[dict], reference: dict) -> str:
    names = list(per_seed[0])
    lines = ["### SST-2 dev as is (872 posts, 444 positive = 51 %), threshold 0.5", "",
             "| model | labels (pos / neg) | precision | recall | F1 | ROC AUC | AP | ledger CV precision | ledger CV recall |",
             "|---|---|---|---|---|---|---|---|---|"]

    def row(name: str, docs: list[dict], split: str) -> list[str]:
        return [fmt([d[split][k] for d in docs]) for k in METRICS]

    for name in names:
        docs = [r[name] for r in per_seed]
        lab = f"{np.mean([d['n_positives'] for d in docs]):.0f} / {np.mean([d['n_negatives'] for d in docs]):.0f}"
        lines.append(f"| {name} | {lab} | " + " | ".join(row(name, docs, "dev")) + " | "
                     + fmt([d["cv_precision"] for d in docs]) + " | " + fmt([d["cv_recall"] for d in docs]) + " |")
    lab = f"{reference['n_positives']} / {reference['n_negatives']}"
    lines.append(f"| *all pool labels (reference, no seeds)* | {lab} | " + " | ".join(row("", [reference], "dev"))
                 + " | " + fmt([reference["cv_precision"]]) + " | " + fmt([reference["cv_recall"]]) + " |")
    lines += ["", "### Imbalanced dev (428 negatives + 47 positives = 10 %, averaged over the subsamples), threshold 0.5",
              "", "| model | precision | recall | F1 | ROC AUC | AP | predicted positive (of 475) |", "|---|---|---|---|---|---|---|"]
    for name in names:
        docs = [r[name] for r in per_seed]
        lines.append(f"| {name} | " + " | ".join(row(name, docs, "dev_imbalanced")) + " | "
                     + fmt([d["dev_imbalanced"]["predicted_positive"] for d in docs], 1) + " |")
    lines.append("| *all pool labels (reference)* | " + " | ".join(row("", [reference], "dev_imbalanced")) + " | "
                 + fmt([reference["dev_imbalanced"]["predicted_positive"]], 1) + " |")
    lines += ["", "### What the queries found in the pool (33,088 posts, 3,308 positives)", "",
              "| labels from | queried | positives found | precision of the queries | pool recall |", "|---|---|---|---|---|"]
    for name in names:
        docs = [r[name]["pool"] for r in per_seed]
        if not docs[0]["queried"]:
            continue
        lines.append(f"| {name} | {docs[0]['queried']} | " + fmt([d["positives_found"] for d in docs], 0) + " | "
                     + fmt([d["query_precision"] for d in docs]) + " | " + fmt([d["recall"] for d in docs]) + " |")
    return "\n".join(lines)


def plot(path: Path, models: dict[str, ModelVersion], reference: ModelVersion, dev: Pool, D: np.ndarray,
         imb_rows: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    show = [("seeds only", "tab:grey", "-"), ("loop 2%", "tab:orange", "-"), ("loop 5%", "tab:green", "-"),
            ("loop 10%", "tab:purple", "-"), ("random 10%", "tab:blue", "--")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    for ax, (title, rows) in zip(axes, [("SST-2 dev as is (51 % positive)", np.arange(len(dev))),
                                        ("imbalanced dev (10 % positive, one subsample)", imb_rows)]):
        y = dev.labels[rows]
        for name, color, ls in show + [("all pool labels", "black", ":")]:
            mv = reference if name == "all pool labels" else models[name]
            p = mv.predict_proba(D[rows])
            pr, rc, _ = precision_recall_curve(y, p)
            ax.plot(rc, pr, color=color, ls=ls, lw=2 if name.startswith("loop") else 1.4, label=name)
            pred = p >= 0.5
            tp = int((pred & (y == 1)).sum())
            ax.plot([tp / (y == 1).sum()], [tp / max(1, pred.sum())], "o", color=color, ms=6)
        ax.axhline(y.mean(), color="grey", lw=0.8, ls=":")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Classifiers from the loop's labels (seed 0); dots: threshold 0.5; dotted line: prevalence")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2", help="random seeds of the policy runs, comma-separated (default 0,1,2)")
    p.add_argument("--dev-draws", type=int, default=20, help="imbalanced dev subsamples averaged (default 20)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds on the ledger (default 5)")
    p.add_argument("--imbalance", type=float, default=0.1, help="positive share of the pool (default 0.1)")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--out", default=str(ROOT / "docs" / "detections"))
    args = p.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    t0 = time.perf_counter()
    pool, X, S, dev, D, meta = load(Path(args.cache_dir), args.imbalance)
    log(f"pool {pool.describe()}, dev {dev.describe()}, {len(S)} seeds, loaded in {time.perf_counter() - t0:.0f}s")
    dev_draws = [np.flatnonzero(np.isin(dev.ids, make_imbalanced(dev, 0.1, seed=j).ids)) for j in range(args.dev_draws)]
    per_seed, first_models = [], None
    for s in seeds:
        res, models = run_seed(s, pool, X, S, dev, D, dev_draws, args.folds)
        per_seed.append(res)
        first_models = first_models or models
    ref_mv = train_model("sst2-positive", 0, S[:0], X, pool.labels, X[:0], folds=args.folds, random_state=0)
    reference = evaluate_model(ref_mv, dev, D, dev_draws)
    md = tables(per_seed, reference)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"setup": {"pool": pool.describe(), "dev": dev.describe(), "imbalance": args.imbalance,
                     "dev_imbalanced": {"positive_share": 0.1, "draws": args.dev_draws,
                                        "posts": int(len(dev_draws[0]))},
                     "policy": {"tau": 0.55, "d_max": 5, "K0": 100, "max_query_ratio": max(RATIOS)},
                     "seeds": seeds, "folds": args.folds, "threshold": 0.5, **meta},
           "runs": {str(s): r for s, r in zip(seeds, per_seed)}, "reference_all_pool_labels": reference}
    (out / "results.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    plot(out / "pr-dev.png", first_models, ref_mv, dev, D, dev_draws[0])
    log(f"wrote {out / 'results.json'} and {out / 'pr-dev.png'} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

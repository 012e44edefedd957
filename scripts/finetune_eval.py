"""Issue #16 part 4: does fine-tuning MiniLM on the ledger (SetFit-style) beat logistic regression on frozen MiniLM?

For each dataset and seed:

1. **Test split** (fixed per dataset, drawn first, never trained on): up to ``--test-pos`` positives and
   ``--test-neg`` negatives at random from the pool. Each test post weighs (posts of its class left in the pool) /
   (test posts of its class) in every metric: precision and PR-AUC are those at the pool's prevalence, not the
   test's.
2. **Ledger** (what a live detector has after some rounds): the first ``--ledger`` posts the default candidate
   ``Policy`` (IBG τ auto + GBLE + the classifier, replay oracle, method seed = the run's seed) queries on the
   rest of the pool, on frozen MiniLM vectors, with their true labels (a moderator's verdicts).
3. **(a) frozen**: :func:`synapse_stream.classifier.train_model` — the live classifier's own fit — on the seeds,
   the ledger and as many provisional negatives as seeds (random unlabelled posts, as ``service/trainer.py`` does),
   all as frozen MiniLM vectors; scored on the test split.
4. **(b) fine-tuned**: MiniLM (torch, sentence-transformers) trained on SetFit contrastive pairs from the ledger
   (for each labelled post and each of ``--iterations`` rounds, one same-label partner → target 1 and one
   other-label partner → target 0; ``losses.CosineSimilarityLoss``, AdamW lr 2e-5, batch 16, one epoch);
   then the seeds, ledger, provisional negatives and test posts are re-embedded with it and the same
   ``train_model`` is fitted and scored.

Reported per run: precision and recall at the classifier's threshold 0.5 (the detections topic's default
``detect_threshold``), PR-AUC (average precision), the fine-tuning's wall and CPU seconds, and the re-embedding's.

    nice -n 10 python scripts/finetune_eval.py --seeds 0,1,2 --out docs/finetune   # writes results-<dataset>-n<ledger>-s<seed>.json
    python scripts/finetune_eval.py --table-only --out docs/finetune                 # table.md + finetune.png
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from synapse_stream.classifier import train_model  # noqa: E402
from synapse_stream.embedders.base import l2_normalise  # noqa: E402

DATASETS = ("sst2-1pct-fusegen-gpt35", "offensive-real-seeds")


def log(msg: str) -> None:
    print(f"[finetune_eval {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def split_test(y: np.ndarray, n_pos: int, n_neg: int, seed: int = 12345) -> np.ndarray:
    """Rows of a fixed test split: ``n_pos`` positives and ``n_neg`` negatives at random (fewer if the pool has fewer)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    return np.sort(np.concatenate([rng.choice(pos, min(n_pos, len(pos)), replace=False),
                                   rng.choice(neg, min(n_neg, len(neg)), replace=False)]))


def ledger_rows(X: np.ndarray, S: np.ndarray, ids: list[str], truth: dict, rows: np.ndarray, n: int,
                seed: int) -> np.ndarray:
    """The first ``n`` pool rows (indices into ``rows``' pool) the default policy queries on the sub-pool ``rows``."""
    from synapse_stream.methods import Policy
    from synapse_stream.oracles import ReplayOracle
    from synapse_stream.sources import SourceParams, registry

    src = registry.build(registry.POLICY_DEFAULT, SourceParams(tau="auto", d_max=5, k0=100, gble_k=10, seed=seed))
    policy = Policy(src, k0=100, seed=seed, max_query_ratio=min(1.0, (n + 400) / len(rows)))
    run = policy.run(X[rows], S, [ids[i] for i in rows], ReplayOracle(truth))
    if len(run.order) < n:
        raise RuntimeError(f"the policy queried only {len(run.order)} posts, fewer than the ledger's {n}")
    return rows[np.asarray(run.order[:n])]


def setfit_pairs(texts: list[str], y: np.ndarray, iterations: int, seed: int) -> list[tuple[str, str, float]]:
    """SetFit's pair generation: per labelled text and iteration, a same-label pair (1.0) and an other-label pair (0.0)."""
    rnd = random.Random(seed)
    by = {c: [i for i in range(len(y)) if y[i] == c] for c in (0, 1)}
    out = []
    for _ in range(iterations):
        for i, c in enumerate(y):
            same = [j for j in by[int(c)] if j != i] or by[int(c)]
            out.append((texts[i], texts[rnd.choice(same)], 1.0))
            out.append((texts[i], texts[rnd.choice(by[1 - int(c)])], 0.0))
    rnd.shuffle(out)
    return out


def finetune(texts: list[str], y: np.ndarray, *, iterations: int, seed: int, batch: int = 16, lr: float = 2e-5,
             max_seq_length: int = 64):
    """MiniLM fine-tuned on SetFit pairs with sentence-transformers' CosineSimilarityLoss (one epoch, CPU)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    from synapse_stream.embedders.sentence import DEFAULT_MODEL, resolve_model_path

    torch.manual_seed(seed)
    model = SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu")
    model.max_seq_length = max_seq_length
    loss_fn = losses.CosineSimilarityLoss(model)
    pairs = setfit_pairs(texts, y, iterations, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = (len(pairs) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) *
                                              max(0.0, (steps - s) / steps))
    model.train()
    for k in range(steps):
        chunk = pairs[k * batch:(k + 1) * batch]
        feats = [model.preprocess([a for a, _, _ in chunk]), model.preprocess([b for _, b, _ in chunk])]
        labels = torch.tensor([t for _, _, t in chunk], dtype=torch.float32)
        loss = loss_fn(feats, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if k % 50 == 0:
            log(f"    step {k}/{steps} loss {loss.item():.4f}")
    model.eval()
    return model, len(pairs), steps


def metrics(p: np.ndarray, y: np.ndarray, w: np.ndarray, threshold: float = 0.5) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    hit = p >= threshold
    tp = float(w[hit & (y == 1)].sum())
    fp = float(w[hit & (y == 0)].sum())
    pos = float(w[y == 1].sum())
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / pos if pos else 0.0,
            "pr_auc": float(average_precision_score(y, p, sample_weight=w)),
            "roc_auc": float(roc_auc_score(y, p)), "flagged": int(hit.sum())}


def run_dataset(name: str, args, embedder) -> list[dict]:
    from tau_datasets import load

    pool, X, S, seeds, _ = load(name, embedder)
    y = np.array([int(lbl) for lbl in pool.labels], dtype=np.int8)
    truth = pool.truth()
    test = split_test(y, args.test_pos, args.test_neg)
    rest = np.setdiff1d(np.arange(len(pool)), test)
    n_neg_rest = int((y[rest] == 0).sum())
    # each test post stands for the posts of its class left in the pool, so the test has the pool's prevalence.
    # (The runs in docs/finetune/ before this fix weighed positives 1: a lower prevalence, see docs/finetune.md.)
    n_pos_rest = int((y[rest] == 1).sum())
    w = np.where(y[test] == 1, n_pos_rest / max(1, int(y[test].sum())), n_neg_rest / max(1, int((y[test] == 0).sum())))
    log(f"{name}: {len(pool)} posts ({pool.positives} positive); test {len(test)} ({int(y[test].sum())} positive, "
        f"each negative weighs {w.max():.1f}); {len(seeds)} seeds")
    out = []
    for seed in args.seeds:
        t = time.perf_counter()
        led = ledger_rows(X, S, pool.ids, truth, rest, args.ledger, seed)
        rng = np.random.default_rng(seed)
        unl = np.setdiff1d(rest, led)
        prov = rng.choice(unl, min(len(S), len(unl)), replace=False)
        y_led = y[led]
        log(f"  seed {seed}: ledger {len(led)} ({int(y_led.sum())} positive) by the policy in "
            f"{time.perf_counter() - t:.0f}s")
        row = {"dataset": name, "seed": seed, "ledger": len(led), "ledger_positives": int(y_led.sum()),
               "seeds": len(S), "provisional": len(prov), "test": len(test), "test_positives": int(y[test].sum()),
               "test_prevalence_weighted": float(w[y[test] == 1].sum() / w.sum())}
        mv = train_model(name, 1, S, X[led], y_led, X[prov], folds=0)
        row["frozen"] = metrics(mv.predict_proba(X[test]), y[test], w)
        texts = [pool.texts[i] for i in led]
        c0, t0 = time.process_time(), time.perf_counter()
        model, n_pairs, steps = finetune(texts, y_led, iterations=args.iterations, seed=seed)
        row["finetune"] = {"pairs": n_pairs, "steps": steps, "wall_s": time.perf_counter() - t0,
                           "cpu_s": time.process_time() - c0, "iterations": args.iterations}
        c0, t0 = time.process_time(), time.perf_counter()

        def enc(tx: list[str]) -> np.ndarray:
            return l2_normalise(model.encode(tx, batch_size=64, convert_to_numpy=True, normalize_embeddings=True))

        S2 = enc(seeds)
        L2 = enc(texts)
        P2 = enc([pool.texts[i] for i in prov])
        T2 = enc([pool.texts[i] for i in test])
        row["reembed"] = {"texts": len(seeds) + len(texts) + len(prov) + len(test),
                          "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        mv2 = train_model(name, 1, S2, L2, y_led, P2, folds=0)
        row["tuned"] = metrics(mv2.predict_proba(T2), y[test], w)
        log(f"  seed {seed}: frozen P {row['frozen']['precision']:.3f} R {row['frozen']['recall']:.3f} "
            f"AP {row['frozen']['pr_auc']:.3f} AUC {row['frozen']['roc_auc']:.3f} | tuned P {row['tuned']['precision']:.3f} R {row['tuned']['recall']:.3f} "
            f"AP {row['tuned']['pr_auc']:.3f} AUC {row['tuned']['roc_auc']:.3f} | fine-tune {row['finetune']['wall_s']:.0f}s wall "
            f"{row['finetune']['cpu_s']:.0f}s CPU, re-embed {row['reembed']['wall_s']:.0f}s")
        out.append(row)
        yield_row(args, row)
    return out


def yield_row(args, row: dict) -> None:
    """Append one finished run to results.json at once (a stopped session keeps what finished)."""
    path = args.out / f"results-{row['dataset']}-n{row['ledger']}-s{row['seed']}.json"
    doc = json.loads(path.read_text()) if path.exists() else {"runs": []}
    doc["runs"] = [r for r in doc["runs"] if (r["dataset"], r["seed"], r["ledger"]) !=
                   (row["dataset"], row["seed"], row["ledger"])] + [row]
    doc["uptime"] = doc.get("uptime", []) + [os.getloadavg()]
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def table(args) -> str:
    # one file per run (parallel processes never write the same file); an older per-dataset file may hold the same
    # run: the per-run file, written last, wins
    by_key = {}
    for f in sorted(args.out.glob("results-*.json"), key=lambda f: (re.search(r"-n\d+-s\d+\.json$", f.name) is not None, f.name)):
        for r in json.loads(f.read_text())["runs"]:
            by_key[(r["dataset"], r["ledger"], r["seed"])] = r
    runs = list(by_key.values())
    lines = ["| dataset | ledger (+) | seed | frozen P | frozen R | frozen PR-AUC | tuned P | tuned R | tuned PR-AUC | "
             "fine-tune wall / CPU s | re-embed s (texts) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["dataset"], r["ledger"], r["seed"])):
        f, t = r["frozen"], r["tuned"]
        lines.append(f"| {r['dataset']} | {r['ledger']} ({r['ledger_positives']}) | {r['seed']} | {f['precision']:.3f} | "
                     f"{f['recall']:.3f} | {f['pr_auc']:.3f} | {t['precision']:.3f} | {t['recall']:.3f} | "
                     f"{t['pr_auc']:.3f} | {r['finetune']['wall_s']:.0f} / {r['finetune']['cpu_s']:.0f} | "
                     f"{r['reembed']['wall_s']:.0f} ({r['reembed']['texts']}) |")
    lines += ["", "| dataset | ledger | runs | metric | frozen mean ± sd | tuned mean ± sd | tuned − frozen (mean, min..max over seeds) |",
              "|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["ledger"]), []).append(r)
    for (ds, n), rs in sorted(groups.items()):
        for m in ("precision", "recall", "pr_auc", "roc_auc"):
            a = np.array([r["frozen"][m] for r in rs])
            b = np.array([r["tuned"][m] for r in rs])
            d = b - a
            lines.append(f"| {ds} | {n} | {len(rs)} | {m} | {a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0:.3f} | "
                         f"{b.mean():.3f} ± {b.std(ddof=1) if len(b) > 1 else 0:.3f} | {d.mean():+.3f} "
                         f"({d.min():+.3f}..{d.max():+.3f}) |")
    plot(args, groups)
    return "\n".join(lines) + "\n"


def plot(args, groups: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    for ax, ((ds, n), rs) in zip(axes[0], sorted(groups.items())):
        for m, x in (("precision", 0), ("recall", 1), ("pr_auc", 2)):
            a = [r["frozen"][m] for r in rs]
            b = [r["tuned"][m] for r in rs]
            ax.scatter([x - 0.12] * len(a), a, color="tab:blue", label="frozen MiniLM + LR" if x == 0 else None)
            ax.scatter([x + 0.12] * len(b), b, color="tab:orange", label="fine-tuned (SetFit) + LR" if x == 0 else None)
            for u, v in zip(a, b):
                ax.plot([x - 0.12, x + 0.12], [u, v], color="grey", lw=0.6)
        ax.set_xticks([0, 1, 2], ["precision@0.5", "recall@0.5", "PR-AUC"])
        ax.set_ylim(0, 1)
        ax.set_title(f"{ds}\nledger {n}, {len(rs)} seeds", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out / "finetune.png", dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "finetune")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    ap.add_argument("--ledger", type=int, default=300, help="labelled posts the detector has (default 300)")
    ap.add_argument("--iterations", type=int, default=5, help="SetFit pair iterations per labelled post (default 5)")
    ap.add_argument("--test-pos", type=int, default=100)
    ap.add_argument("--test-neg", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        import torch

        from synapse_stream.embedders import CachedEmbedder, make_embedder

        torch.set_num_threads(args.threads)
        embedder = CachedEmbedder(make_embedder("minilm-onnx"), args.cache_dir)
        for name in args.datasets.split(","):
            run_dataset(name, args, embedder)
    text = table(args)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The synthetic-versus-real gap, measured directly (issue #16, part 0).

For each dataset of ``scripts/tau_datasets.py`` (cached MiniLM ONNX vectors): how well a logistic regression
separates the seeds from real positives (class held fixed: only the seeds' origin differs), from real negatives,
and real positives from real negatives (5-fold ROC AUC, 100 or 200 of each drawn with seed 0); then the same after
projecting out the "synthetic direction" (mean of the seeds minus the mean of the real positives, the best case:
it uses the labels), and the precision of the posts by their best cosine to a seed.

    python scripts/synthetic_gap.py             # about 1 minute
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import tau_datasets as td  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402

from synapse_stream.embedders import CachedEmbedder, make_embedder  # noqa: E402


def auc(A, B) -> float:
    Z = np.vstack([A, B])
    t = np.r_[np.ones(len(A)), np.zeros(len(B))]
    return float(cross_val_score(LogisticRegression(C=1, max_iter=500, class_weight="balanced"), Z, t, cv=5,
                                 scoring="roc_auc").mean())


def main() -> int:
    emb = CachedEmbedder(make_embedder("minilm-onnx"), ROOT / ".cache" / "embeddings")
    print("| dataset | seeds vs real positives | seeds vs real negatives | real pos vs neg | "
          "seeds vs real pos, direction removed | real pos vs neg, direction removed |")
    print("|---|---|---|---|---|---|")
    for name in sys.argv[1:] or td.DATASETS:
        pool, X, S, _, _ = td.load(name, emb)
        y = np.asarray(pool.labels)
        rng = np.random.default_rng(0)
        m = min(len(S), 200)
        P, N = X[y == 1], X[y == 0]
        pi, ni = rng.choice(len(P), min(len(P), m), replace=False), rng.choice(len(N), m, replace=False)
        row = [auc(S, P[pi]), auc(S, N[ni]), auc(P[pi], N[ni])]
        d = S.mean(0) - P.mean(0)
        d /= np.linalg.norm(d)

        def proj(Z):
            Z = Z - np.outer(Z @ d, d)
            return Z / np.linalg.norm(Z, axis=1, keepdims=True)

        Sp, Pp, Np = proj(S), proj(P), proj(N)
        row += [auc(Sp, Pp[pi]), auc(Pp[pi], Np[ni])]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

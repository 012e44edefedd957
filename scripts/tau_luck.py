"""Luck check for scripts/tau_datasets.py: the new default policy and the policy at a fixed τ, re-run with other
method seeds (the model's provisional negatives and the bandit's Thompson draws change; the pool and seeds do not).

    python scripts/tau_luck.py sst2-1pct-fusegen-gpt35 --seeds 0,1,2 --tau 0.6
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import tau_datasets as td  # noqa: E402

from synapse_stream.embedders import CachedEmbedder, make_embedder  # noqa: E402
from synapse_stream.evaluation import report_from_run  # noqa: E402
from synapse_stream.methods import Policy  # noqa: E402
from synapse_stream.oracles import ReplayOracle  # noqa: E402
from synapse_stream.sources import SourceParams, registry  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tau", type=float, default=0.6)
    args = ap.parse_args()
    emb = CachedEmbedder(make_embedder("minilm-onnx"), ROOT / ".cache" / "embeddings")
    pool, X, S, _, _ = td.load(args.dataset, emb)
    print(f"| {args.dataset} | method seed | policy | r@2.4% | r@5% | r@10% |\n|---|---|---|---|---|---|")
    res = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for tau, rr in (("auto", "earned"), (args.tau, "earned"), (0.6, "always")):
            src = registry.build(registry.POLICY_DEFAULT, SourceParams(tau=tau, d_max=5, k0=100, gble_k=10, seed=seed))
            pol = Policy(src, k0=100, rerank=rr, max_query_ratio=0.15, seed=seed)
            rep = report_from_run(pol.run(X, S, pool.ids, ReplayOracle(pool.truth())), len(pool), pool.positives)
            r = [rep.recall_at[p] for p in ("0.024", "0.05", "0.1")]
            res.setdefault((tau, rr), []).append(r)
            print(f"| | {seed} | tau={tau}, rerank={rr} | " + " | ".join(f"{v:.3f}" for v in r) + " |", flush=True)
    for (tau, rr), rows in res.items():
        a = np.asarray(rows)
        print(f"| | mean ± sd | tau={tau}, rerank={rr} | " +
              " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(a.mean(0), a.std(0))) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

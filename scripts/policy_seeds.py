"""How much of the candidate policy's margin is luck?  The randomised methods over several seeds.

IBG and GBLE are deterministic; the LR baseline (random bootstrap), the model-guided source (random
provisional negatives) and the policy (Thompson sampling, and its model source) depend on ``--seed``.
Same set-up as ``docs/sst2/policy`` (imbalanced SST-2, MiniLM from the cache, 100 ACS FuseGen seeds,
up to 12 % of the pool). Prints a Markdown table: recall at 2.4 %, 5 %, 10 % per seed, and the
policy's margin over the best of IBG, GBLE and LR for the same seed.

    python scripts/policy_seeds.py --seeds 5                      # about 6 minutes on 2 cores
    python scripts/policy_seeds.py --seeds 5 --imbalance 0.01     # 1 % positives
    python scripts/policy_seeds.py --seeds 5 --imbalance 0.01 --kmax 200   # single methods with small rounds
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from audit_coverage import load  # noqa: E402  (same pool, seeds and cache)

from synapse_stream.evaluation import report_from_run  # noqa: E402
from synapse_stream.methods import GBLE, IBG, LRBaseline, ModelGuided, Policy  # noqa: E402
from synapse_stream.oracles import ReplayOracle  # noqa: E402

POINTS = ("0.024", "0.05", "0.1")
RATIO = 0.12


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--imbalance", type=float, default=0.1, help="share of positives kept (default 0.1)")
    p.add_argument("--kmax", type=int, default=None,
                   help="k_max of GBLE, LR and the model run alone (default theirs, 10 K0); the policy keeps its own")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    args = p.parse_args(argv)
    pool, X, S = load(Path(args.cache_dir), args.imbalance)
    n, positives = len(pool), pool.positives

    def recall(method):
        t0 = time.perf_counter()
        run = method.run(X, S, pool.ids, ReplayOracle(pool.truth()))
        rep = report_from_run(run, n, positives)
        print(f"{rep.name} seed={method.seed}: " + " ".join(f"{rep.recall_at[q]:.3f}" for q in POINTS)
              + f" ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
        return np.array([rep.recall_at[q] for q in POINTS])

    km = {"k_max": args.kmax} if args.kmax else {}
    fixed = {"ibg": recall(IBG(tau=0.55, d_max=5, max_query_ratio=RATIO)),
             "gble": recall(GBLE(max_query_ratio=RATIO, **km))}
    rows = {"lr": [], "model": [], "policy": []}
    for seed in range(args.seeds):
        kw = {"max_query_ratio": RATIO, "seed": seed}
        rows["lr"].append(recall(LRBaseline(**kw, **km)))
        rows["model"].append(recall(ModelGuided(**kw, **km)))
        rows["policy"].append(recall(Policy(tau=0.55, d_max=5, **kw)))
    lines = ["| method | seed | recall@2.4% | recall@5% | recall@10% |", "|---|---|---|---|---|"]
    for name, r in fixed.items():
        lines.append(f"| {name} | (deterministic) | " + " | ".join(f"{v:.3f}" for v in r) + " |")
    for name, rs in rows.items():
        for seed, r in enumerate(rs):
            lines.append(f"| {name} | {seed} | " + " | ".join(f"{v:.3f}" for v in r) + " |")
        a = np.array(rs)
        lines.append(f"| **{name}** | mean ± sd | " + " | ".join(f"**{m:.3f} ± {s:.3f}**" for m, s in
                                                             zip(a.mean(0), a.std(0, ddof=1) if len(a) > 1 else 0 * a[0]))
                     + " |")
    margin = np.array([pol - np.maximum.reduce([fixed["ibg"], fixed["gble"], lr])
                       for pol, lr in zip(rows["policy"], rows["lr"])])
    lines.append("| policy − best of (IBG, GBLE, LR), same seed | min over seeds | "
                 + " | ".join(f"{v:+.3f}" for v in margin.min(0)) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

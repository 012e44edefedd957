"""Policy variants over method seeds against the best single method, on the datasets of scripts/tau_datasets.py.

    python scripts/policy_seeds.py DATASETS VARIANTS [SEEDS] [hist]

``DATASETS``: a comma list of tau_datasets' names (their single methods' curves are read from
``docs/tau/<name>/cumulative.json``, written by tau_datasets.py); ``VARIANTS``: a comma list of ``base`` (the
default policy: τ auto, rerank earned) or ``name+option=value+...`` (``Policy`` keyword arguments, e.g.
``spread+overflow=spread``); ``SEEDS``: method seeds (default 0). One line per run: the worst ratio of the
policy's recall to the best single method's at any query ratio from 1 % to 15 % (step 0.5 %), recall at 2.4 %,
5 % and 10 %, and the ratio at 1 %, 1.5 % and 2 %; ``hist`` also prints the first rounds' splits.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
import tau_datasets as td  # noqa: E402

from synapse_stream.embedders import CachedEmbedder, make_embedder  # noqa: E402
from synapse_stream.methods import Policy  # noqa: E402
from synapse_stream.oracles import ReplayOracle  # noqa: E402
from synapse_stream.sources import SourceParams, registry  # noqa: E402

QS = np.arange(0.01, 0.1501, 0.005)


def make(variant: str, seed: int) -> Policy:
    opts: dict = {}
    for part in variant.split("+")[1:]:
        k, val = part.split("=")
        try:
            opts[k] = float(val) if "." in val else int(val)
        except ValueError:
            opts[k] = val
    src = registry.build(registry.POLICY_DEFAULT, SourceParams(tau="auto", d_max=5, k0=100, gble_k=10, seed=seed))
    return Policy(src, k0=100, rerank="earned", max_query_ratio=0.15, seed=seed, **opts)


def recall(cum, q: float, n: int, pos: int) -> float:
    c = np.asarray(cum)
    i = min(int(round(q * n)), len(c))
    return (c[i - 1] if i else 0) / pos


def main() -> int:
    names, variants = sys.argv[1].split(","), sys.argv[2].split(",")
    seeds = [int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "0").split(",")]
    hist = "hist" in sys.argv[4:]
    emb = CachedEmbedder(make_embedder("minilm-onnx"), str(ROOT / ".cache" / "embeddings"))
    for name in names:
        pool, X, S, _, _ = td.load(name, emb)
        n, pos = len(pool), pool.positives
        cums = json.loads((ROOT / "docs" / "tau" / name / "cumulative.json").read_text())
        singles = [c for k, c in cums.items() if not k.startswith("policy")]
        best = np.array([max(recall(c, q, n, pos) for c in singles) for q in QS])
        for v in variants:
            for sd in seeds:
                t0 = time.perf_counter()
                m = make(v, sd)
                c = m.run(X, S, pool.ids, ReplayOracle(pool.truth())).cumulative_positives()
                ratio = np.array([recall(c, q, n, pos) for q in QS]) / np.maximum(best, 1e-9)
                w = int(np.argmin(ratio))
                print(f"{name} {v} seed{sd}: worst {ratio[w]:.2f} at {QS[w] * 100:.1f}% | r@2.4 "
                      f"{recall(c, 0.024, n, pos):.3f} r@5 {recall(c, 0.05, n, pos):.3f} r@10 {recall(c, 0.1, n, pos):.3f}"
                      f" | ratio@1% {ratio[0]:.2f} @1.5% {ratio[1]:.2f} @2% {ratio[2]:.2f} "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)
                if hist and sd == seeds[0]:
                    for h in m.history[:4]:
                        print("   ", h, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

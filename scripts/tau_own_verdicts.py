"""Does the automatic τ's value matter inside the policy? The new default policy with IBG's τ booked from every
verdict (the shipped AutoTau) against IBG's own verdicts only, on the offensive pool, two method seeds.

    python scripts/tau_own_verdicts.py            # about 2 minutes
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import tau_datasets as td  # noqa: E402

from synapse_stream.embedders import CachedEmbedder, make_embedder  # noqa: E402
from synapse_stream.evaluation import report_from_run  # noqa: E402
from synapse_stream.methods import IBG, Policy  # noqa: E402
from synapse_stream.oracles import ReplayOracle  # noqa: E402
from synapse_stream.sources import SourceParams, registry  # noqa: E402


class OwnIBG(IBG):
    """IBG whose automatic τ books only the verdicts of its own proposals (``state.sources``, eval runs)."""

    def learn(self, state, rows, labels):
        own = state.sources[-len(rows):] if state.sources else []
        if len(own) == len(rows):
            keep = [i for i, s in enumerate(own) if s == "ibg"]
            rows, labels = [rows[i] for i in keep], [labels[i] for i in keep]
        if rows:
            super().learn(state, rows, labels)


def main() -> int:
    emb = CachedEmbedder(make_embedder("minilm-onnx"), ROOT / ".cache" / "embeddings")
    print("| dataset | method seed | τ booked from | r@2.4% | r@5% | r@10% | r@15% | final τ |\n|---|---|---|---|---|---|---|---|")
    for name in ("offensive-restyled-seeds", "offensive-real-seeds"):
        pool, X, S, _, _ = td.load(name, emb)
        for seed in (0, 1):
            for cls, what in ((IBG, "every verdict"), (OwnIBG, "IBG's own")):
                src = registry.build(["gble", "model"], SourceParams(d_max=5, k0=100, gble_k=10, seed=seed))
                pol = Policy({"ibg": cls(tau="auto", d_max=5), **src}, k0=100, max_query_ratio=0.15, seed=seed)
                rep = report_from_run(pol.run(X, S, pool.ids, ReplayOracle(pool.truth())), len(pool), pool.positives,
                                      ratios=(0.024, 0.05, 0.1, 0.15))
                r = rep.recall_at
                print(f"| {name} | {seed} | {what} | {r['0.024']:.3f} | {r['0.05']:.3f} | {r['0.1']:.3f} | "
                      f"{r['0.15']:.3f} | {rep.params['auto_tau']['tau']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

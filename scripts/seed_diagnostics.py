"""Seed diagnostics (synapse_stream.seed_report.diagnose) for the datasets of scripts/tau_datasets.py, d_max 5.

    python scripts/seed_diagnostics.py > docs/tau/seed-diagnostics.md
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import tau_datasets as td  # noqa: E402

from synapse_stream.embedders import CachedEmbedder, make_embedder  # noqa: E402
from synapse_stream.seed_report import diagnose  # noqa: E402


def main() -> int:
    emb = CachedEmbedder(make_embedder("minilm-onnx"), ROOT / ".cache" / "embeddings")
    for name in sys.argv[1:] or td.DATASETS:
        if name == "sst2-1pct-fusegen-llama2" and not (ROOT / "docs" / "tau" / name).exists():
            continue
        _, X, S, _, _ = td.load(name, emb)
        print(f"**{name}**\n\n```")
        print("\n".join(diagnose(S, X, d_max=5).lines()))
        print("```\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

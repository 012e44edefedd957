"""Print the markdown tables of docs/sst2.md from docs/sst2/*/metrics.json (so every figure is a measured one)."""
import json
import sys
from pathlib import Path

base = Path(__file__).resolve().parents[1] / "docs" / "sst2"
runs = sys.argv[1:] or ["iterative-acs", "iterative-random", "single-acs", "single-random", "iterative-acs-fewgen"]
for run in runs:
    doc = json.loads((base / run / "metrics.json").read_text())
    ds = doc["dataset"]
    print(f"\n**{run}** — seeds: {ds['seeds']['selection']} {ds['seeds']['k']} from `{Path(ds['seed_file']).name}`\n")
    print("| method | recall@1% | recall@2.4% | recall@5% | recall@10% | precision@5% | best F1 (at ratio) | queried (stop) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in doc["methods"].items():
        r, p = m["recall_at"], m["precision_at"]
        f1s = [(2 * rc * pr / (rc + pr) if rc + pr else 0.0, q) for q, rc, pr in m["curve"]]
        best, at = max(f1s) if f1s else (0.0, 0.0)
        print(f"| `{name}` | {r['0.01']:.3f} | {r['0.024']:.3f} | {r['0.05']:.3f} | {r['0.1']:.3f} | {p['0.05']:.3f} "
              f"| {best:.3f} ({at:.1%}) | {m['queried']} ({m['queried'] / ds['posts']:.1%}) |")

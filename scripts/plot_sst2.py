"""Re-draw docs/sst2/*/curves.png from their metrics.json and draw the ACS-vs-random comparison."""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from synapse_stream.evaluation import load_reports, plot_reports  # noqa: E402

base = ROOT / "docs" / "sst2"
titles = {"iterative-acs": "Imbalanced SST-2, 100 ACS seeds (GPT-3.5), iterative",
          "iterative-random": "Imbalanced SST-2, 100 random seeds (GPT-3.5), iterative",
          "single-acs": "Imbalanced SST-2, 100 ACS seeds, single shot",
          "single-random": "Imbalanced SST-2, 100 random seeds, single shot",
          "iterative-acs-fewgen": "Imbalanced SST-2, 100 ACS seeds (FewGen/CTRL), iterative"}
for run, title in titles.items():
    if (base / run / "metrics.json").exists():
        ds, reps = load_reports(base / run / "metrics.json")
        plot_reports(base / run, reps, ds["posts"], ds["positives"], title=title, max_query_ratio=ds["max_query_ratio"])

# ACS vs random seeds: precision against recall (the paper's Figure 2a) for IBG, single shot and iterative
fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
for ax, kind in zip(axes, ["single", "iterative"]):
    for sel, ls in (("acs", "-"), ("random", "--")):
        path = base / f"{kind}-{sel}" / "metrics.json"
        if not path.exists():
            continue
        _, reps = load_reports(path)
        for j, (name, r) in enumerate((n, r) for n, r in reps.items() if n.startswith("ibg[tau=0.55")):
            c = np.asarray(r.curve)
            if len(c):
                ax.plot(c[:, 1], c[:, 2], ls=ls, color=f"C{j}", label=f"{sel} {name}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"IBG, {kind}: ACS (solid) vs random (dashed) seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(base / "acs-vs-random.png", dpi=110)
print("plots written under", base)

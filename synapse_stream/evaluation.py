"""Evaluation: run methods on a labelled pool with a replay oracle; curves, metrics.json and plots.

The pool's labels are hidden from the methods; only the :class:`~synapse_stream.oracles.ReplayOracle`
reads them, one query at a time, so every method pays for what it learns.

Curves are exact per query: after the i-th query, ``query_ratio = i / N``,
``recall = positives found / positives in the pool``, ``precision = positives found / i``.
``recall_at[q]`` reads the curve at ``floor(q · N)`` queries; a method that stopped earlier (IBG
converges) keeps its final value.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .data import Pool
from .embedders import Embedder
from .methods import ActiveMethod, RunResult, random_curve
from .metrics import f1
from .oracles import ReplayOracle
from .seeds import acs_select, random_select

QUERY_RATIOS = (0.01, 0.024, 0.05, 0.1)


@dataclass
class MethodReport:
    name: str
    params: dict
    curve: list[list[float]]          # [query_ratio, recall, precision], downsampled
    recall_at: dict[str, float]
    precision_at: dict[str, float]
    f1_at: dict[str, float]
    queried: int
    positives_found: int
    rounds: int
    seconds: float
    sources: dict | None = None       # the policy only: per source, {"queried", "positives", "precision"}

    @classmethod
    def from_json(cls, name: str, doc: dict) -> "MethodReport":
        return cls(name, doc["params"], doc["curve"], doc["recall_at"], doc["precision_at"], doc["f1_at"],
                   doc.get("queried", 0), doc.get("positives_found", 0), doc.get("rounds", 0), doc.get("seconds", 0.0),
                   doc.get("sources"))

    def as_json(self) -> dict:
        return {"params": self.params, "recall_at": self.recall_at, "precision_at": self.precision_at,
                "f1_at": self.f1_at, "curve": self.curve, "queried": self.queried,
                "positives_found": self.positives_found, "rounds": self.rounds, "seconds": round(self.seconds, 3),
                **({"sources": self.sources} if self.sources is not None else {})}


def _downsample(points: list[list[float]], max_points: int = 400) -> list[list[float]]:
    if len(points) <= max_points:
        return points
    idx = np.unique(np.linspace(0, len(points) - 1, max_points).round().astype(int))
    return [points[i] for i in idx]


def report_from_run(run: RunResult, n: int, positives: int, ratios: Sequence[float] = QUERY_RATIOS) -> MethodReport:
    cum = run.cumulative_positives()
    q = len(cum)
    points = [[(i + 1) / n, int(cum[i]) / positives, int(cum[i]) / (i + 1)] for i in range(q)]
    rec, prec, f = {}, {}, {}
    for r in ratios:
        m = min(int(math.floor(r * n + 1e-9)), q)
        found = int(cum[m - 1]) if m else 0
        rec[str(r)] = found / positives
        prec[str(r)] = found / m if m else 0.0
        f[str(r)] = f1(prec[str(r)], rec[str(r)])
    return MethodReport(run.method, run.params, _downsample(points), rec, prec, f, q,
                        int(cum[-1]) if q else 0, len(run.rounds), run.seconds, source_breakdown(run))


def source_breakdown(run: RunResult) -> dict | None:
    """Per candidate source of a policy run: posts queried, positives among them, precision."""
    if not run.sources:
        return None
    out: dict[str, dict] = {}
    for s, y in zip(run.sources, run.labels):
        d = out.setdefault(s, {"queried": 0, "positives": 0})
        d["queried"] += 1
        d["positives"] += int(y)
    for d in out.values():
        d["precision"] = d["positives"] / d["queried"]
    return out


def random_report(n: int, positives: int, max_query_ratio: float, ratios=QUERY_RATIOS) -> MethodReport:
    prevalence = positives / n
    return MethodReport(
        "random", {"analytic": True}, random_curve(n, positives, max_query_ratio),
        {str(r): r for r in ratios}, {str(r): prevalence for r in ratios},
        {str(r): f1(prevalence, r) for r in ratios}, int(max_query_ratio * n), int(max_query_ratio * positives), 0, 0.0)


def choose_seeds(seed_texts: list[str], vectors: np.ndarray, k: int | None, how: str, *, coverage: float = 0.5,
                 seed: int = 0) -> tuple[list[int], dict]:
    """Pick ``k`` of the synthetic pool by ``acs`` or ``random``; all of them when ``k`` is None."""
    if k is None or k >= len(seed_texts):
        return list(range(len(seed_texts))), {"selection": "all", "k": len(seed_texts)}
    if how == "acs":
        res = acs_select(vectors, k, coverage=coverage)
        return res.indices, {"selection": "acs", "k": k, "coverage_target": coverage,
                             "coverage": res.coverage, "threshold": res.threshold}
    return random_select(len(seed_texts), k, seed=seed), {"selection": "random", "k": k, "seed": seed}


def evaluate(
    pool: Pool,
    seed_vectors: np.ndarray,
    pool_vectors: np.ndarray,
    methods: Sequence[ActiveMethod],
    *,
    include_random: bool = True,
    max_query_ratio: float = 0.15,
    log: Callable[[str], None] | None = None,
) -> dict[str, MethodReport]:
    n, positives = len(pool), pool.positives
    out: dict[str, MethodReport] = {}
    if include_random:
        out["random"] = random_report(n, positives, max_query_ratio)
    for m in methods:
        t0 = time.perf_counter()
        run = m.run(pool_vectors, seed_vectors, pool.ids, ReplayOracle(pool.truth()))
        rep = report_from_run(run, n, positives)
        out[rep.name] = rep
        if log:
            log(f"{rep.name}: queried {rep.queried} ({rep.queried / n:.1%}), found {rep.positives_found}/{positives}, "
                f"recall@5% {rep.recall_at['0.05']:.3f}, {time.perf_counter() - t0:.1f}s")
    return out


def write_metrics(path: Path, dataset: dict, reports: dict[str, MethodReport]) -> None:
    doc = {"dataset": dataset, "methods": {k: r.as_json() for k, r in reports.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def plot_reports(out_dir: Path, reports: dict[str, MethodReport], n: int, positives: int, *, title: str = "",
                 max_query_ratio: float = 0.15) -> list[Path]:
    """Recall, precision and F1 against query ratio, all methods on one figure, with random and ideal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = np.linspace(1 / n, max_query_ratio, 300)
    prev = positives / n
    ideal_r = np.minimum(1.0, qs * n / positives)
    ideal_p = np.minimum(1.0, positives / (qs * n))
    ideal = {"recall": ideal_r, "precision": ideal_p, "f1": 2 * ideal_r * ideal_p / (ideal_r + ideal_p)}
    rand = {"recall": qs, "precision": np.full_like(qs, prev), "f1": 2 * qs * prev / (qs + prev)}
    styles = _styles([n for n in reports if n != "random"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    for ax, (col, metric) in zip(axes, [(1, "recall"), (2, "precision"), (None, "f1")]):
        ax.plot(qs, ideal[metric], color="black", lw=1, ls=":", label="ideal")
        ax.plot(qs, rand[metric], color="grey", lw=1, ls="--", label="random (expected)")
        for name, rep in reports.items():
            if name == "random":
                continue
            c = np.asarray(rep.curve)
            if not len(c):
                continue
            y = c[:, col] if col else 2 * c[:, 1] * c[:, 2] / np.maximum(c[:, 1] + c[:, 2], 1e-12)
            ax.plot(c[:, 0], y, label=name, **styles[name])
        ax.set_xlabel("query ratio (queried / pool)")
        ax.set_ylabel(metric)
        ax.set_xlim(0, max_query_ratio)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title or f"{n} posts, {positives} positives ({prev:.1%})")
    fig.tight_layout()
    path = out_dir / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _styles(names: list[str]) -> dict[str, dict]:
    """One look per method family (IBG thin and coloured, GBLE/LR/kNN bold and distinct), so lines never share a style."""
    import matplotlib

    fixed = {"gble": ("black", "-", 2.4), "lr": ("tab:red", "-", 2.4), "knn": ("tab:brown", "-.", 2.0),
             "model": ("tab:purple", "-", 2.4), "policy": ("tab:green", "-", 3.0)}
    cmap = matplotlib.colormaps["tab20"]
    out, k, seen = {}, 0, {}
    for n in names:
        fam = n.split("[", 1)[0]
        if fam in fixed:
            color, ls, lw = fixed[fam]
            j = seen.get(fam, 0)
            seen[fam] = j + 1
            out[n] = {"color": color, "ls": [ls, "--", ":", "-."][j % 4], "lw": lw}
        else:
            out[n] = {"color": cmap(k % 20), "ls": "-", "lw": 1.2}
            k += 1
    return out


def load_reports(path: Path) -> tuple[dict, dict[str, MethodReport]]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return doc["dataset"], {k: MethodReport.from_json(k, v) for k, v in doc["methods"].items()}


def embed_with_progress(embedder: Embedder, texts: list[str], *, label: str, batch: int = 1024,
                        progress: bool = True) -> np.ndarray:
    """Embed in chunks with a progress bar (tqdm on stderr)."""
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(texts), desc=f"embedding {label}", unit="text", disable=not progress,
              mininterval=1.0) as bar:
        for start in range(0, len(texts), batch):
            chunk = texts[start:start + batch]
            out.append(embedder.encode(chunk))
            bar.update(len(chunk))
    return np.vstack(out) if out else np.zeros((0, embedder.dim), np.float32)

"""Embedders: speed on the same posts and micro-batch size, drift from MiniLM fp32, and detection quality
from ``synapse-stream eval`` on imbalanced SST-2 (IBG and kNN), so speed can be traded for quality knowingly.

Different embedders have different cosine scales, so one τ does not fit all: each embedder's τ is set so
that the same share of (seed, post) pairs lies above it as for MiniLM fp32 at τ = 0.55 ("equal edge
density"). The embeddings are cached in ``.cache/embeddings`` as ``synapse-stream eval`` does, so a second
run only re-times the models.
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, SST2, encode_microbatches, say

SPECS = ("minilm", "minilm-int8", "minilm-onnx", "minilm-onnx-int8", "wordllama", "model2vec-minilm", "mpnet")
STATIC = {"wordllama", "model2vec-minilm"}
REF, TAU_REF, D_MAX = "minilm", 0.55, 10
REF_NO_TORCH = "minilm-onnx"   # the reference when torch is absent: the same vectors (docs/benchmarks.md)
CACHE = REPO / ".cache" / "embeddings"


def prepare(spec: str) -> float:
    """One-time work (ONNX export and quantisation, model2vec distillation), timed apart from loading."""
    t = time.perf_counter()
    if spec.startswith("minilm-onnx"):
        from synapse_stream.embedders.onnx import ensure_onnx

        ensure_onnx(variant="int8" if spec.endswith("int8") else "fp32")
    elif spec == "model2vec-minilm":
        from synapse_stream.embedders.sentence import DEFAULT_MODEL, resolve_model_path
        from synapse_stream.embedders.static import (
            _base,
            default_static_cache,
            distill_model2vec,
        )

        folder = default_static_cache() / f"model2vec-{_base(Path(resolve_model_path(DEFAULT_MODEL)), DEFAULT_MODEL)}-256"
        if not (folder / "model.safetensors").exists():
            distill_model2vec(DEFAULT_MODEL, folder)
    return time.perf_counter() - t


def speed(texts: list[str], *, specs=SPECS, batch: int = 32, rounds: int = 3, transformer_posts: int = 320) -> dict:
    """Posts/s per embedder, rounds interleaved across embedders (so a burst of other load hits all alike)."""
    from synapse_stream.embedders import make_embedder
    from synapse_stream.exceptions import EmbedderError

    models, out = {}, {}
    for spec in specs:
        try:
            prep = prepare(spec)
            t = time.perf_counter()
            models[spec] = make_embedder(spec, batch_size=batch)
            load = time.perf_counter() - t
        except (EmbedderError, ImportError) as exc:
            out[spec] = {"error": str(exc)}
            say("embedders", f"{spec}: unavailable ({exc})")
            continue
        e = models[spec]
        out[spec] = {"name": e.name, "dim": e.dim, "prepare_s": prep, "load_s": load}
        say("embedders", f"{spec}: {e.name}, dim {e.dim}, one-time prepare {prep:.1f}s, load {load:.1f}s")
    vecs = {}
    sample = {s: texts if s in STATIC else texts[:transformer_posts] for s in models}
    for s, e in models.items():
        vecs[s] = encode_microbatches(e, sample[s], batch)  # warm-up, and the vectors for the drift check
        out[s]["rounds_posts_per_s"] = []
    for r in range(rounds):
        for s, e in models.items():
            t = time.perf_counter()
            encode_microbatches(e, sample[s], batch)
            out[s]["rounds_posts_per_s"].append(round(len(sample[s]) / (time.perf_counter() - t), 1))
        say("embedders", f"round {r + 1}/{rounds}: " + ", ".join(f"{s} {out[s]['rounds_posts_per_s'][-1]:.0f}/s"
                                                                for s in models))
    ref = vecs.get(REF)
    if ref is None and REF_NO_TORCH in vecs:   # no torch: the ONNX fp32 export (cosine 1.000000 to it, onnx_parity)
        ref = vecs[REF_NO_TORCH]
        say("embedders", f"{REF} unavailable (no torch): drift measured against {REF_NO_TORCH}")
    for s in models:
        out[s]["posts_timed"] = len(sample[s])
        out[s]["batch"] = batch
        out[s]["posts_per_s"] = max(out[s]["rounds_posts_per_s"])
        out[s]["posts_per_s_median"] = float(np.median(out[s]["rounds_posts_per_s"]))
        if ref is not None and vecs[s].shape[1] == ref.shape[1]:
            k = len(sample[s]) if s not in STATIC else len(ref)
            cos = (vecs[s][:k] * ref[:k]).sum(1)
            out[s]["cosine_to_fp32_mean"] = float(cos.mean())
            out[s]["cosine_to_fp32_min"] = float(cos.min())
    if REF in out and "posts_per_s" in out[REF]:
        for s in models:
            out[s]["speedup_vs_fp32"] = out[s]["posts_per_s"] / out[REF]["posts_per_s"]
    return out


# ---------------------------------------------------------------------- detection quality
def quality(*, specs=SPECS, sample: int | None = 10_000, seed_pool_limit: int | None = None, acs: int = 100) -> dict:
    """``synapse-stream eval`` per embedder on imbalanced SST-2 (10 % positives), IBG at equal edge density, kNN."""
    from stream_app.cli import main as cli
    from synapse_stream.data import load_pool, load_seed_texts, make_imbalanced
    from synapse_stream.embedders import CachedEmbedder, make_embedder
    from synapse_stream.exceptions import EmbedderError

    pool_file, seed_file = SST2 / "train.tsv", SST2 / "synthetic_fusegen_gpt35instruct_moviereview.tsv"
    if not pool_file.exists() or not seed_file.exists():
        return {"skipped": f"SST-2 not found at {SST2} (set SYNAPSE_SST2_DIR)"}
    pool = make_imbalanced(load_pool(pool_file), 0.1, seed=0)
    if sample and sample < len(pool):  # the same rows `synapse-stream eval --sample N --seed 0` takes
        rows = np.sort(np.random.default_rng(0).choice(len(pool), sample, replace=False))
        pool = pool.subset(rows.tolist())
    seeds = load_seed_texts(seed_file)
    tmpdir = Path(tempfile.mkdtemp(prefix="synapse-bench-eval-"))
    if seed_pool_limit and seed_pool_limit < len(seeds):
        seeds = seeds[:seed_pool_limit]
        seed_file = tmpdir / "seed-pool.txt"
        seed_file.write_text("\n".join(seeds) + "\n", encoding="utf-8")
    probe = np.random.default_rng(3).choice(len(seeds), min(500, len(seeds)), replace=False)
    out: dict = {"pool": {**pool.describe(), "sample": sample, "file": str(pool_file)},
                 "seed_pool": {"file": str(seed_file), "texts": len(seeds), "acs": acs},
                 "tau_rule": f"equal edge density: the share of (seed, post) pairs above τ equals MiniLM fp32's at τ={TAU_REF}",
                 "d_max": D_MAX, "by_embedder": {}}
    share = None
    for spec in [REF, REF_NO_TORCH] + [s for s in specs if s not in (REF, REF_NO_TORCH)]:
        try:
            emb = CachedEmbedder(make_embedder(spec), CACHE)
        except (EmbedderError, ImportError) as exc:
            out["by_embedder"][spec] = {"error": str(exc)}
            continue
        t = time.perf_counter()
        P = emb.encode(pool.texts)
        S = emb.encode([seeds[i] for i in probe])
        say("quality", f"{spec}: {len(pool)} posts + {len(probe)} seeds embedded (cache {CACHE}) in {time.perf_counter() - t:.0f}s")
        sims = (S @ P.T).ravel()
        if share is None:
            share = float(np.mean(sims > TAU_REF))
            tau = TAU_REF
        else:
            tau = float(np.quantile(sims, 1 - share))
        run = tmpdir / spec
        argv = ["eval", "--pool", str(pool_file), "--imbalance", "0.1", "--seed", "0", "--seed-pool", str(seed_file),
                "--acs", str(acs), "--method", "ibg,knn,random", "--tau", f"{tau:.4f}", "--dmax", str(D_MAX),
                "--max-query-ratio", "0.15", "--embedder", spec, "--cache-dir", str(CACHE), "--out", str(run),
                "--no-progress"]
        if sample:
            argv[argv.index("--seed"):argv.index("--seed")] = ["--sample", str(sample)]
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli(argv)
        if code != 0:
            out["by_embedder"][spec] = {"error": f"synapse-stream eval exited {code}"}
            continue
        m = json.loads((run / "metrics.json").read_text())
        row = {"tau": tau, "edge_share": float(np.mean(sims > tau)), "eval_s": time.perf_counter() - t,
               "command": "synapse-stream " + " ".join(argv)}
        for name, r in m["methods"].items():
            key = name.split("[")[0]
            row[key] = {"recall_at_5pct": r["recall_at"]["0.05"], "recall_at_10pct": r["recall_at"]["0.1"],
                        "precision_at_5pct": r["precision_at"]["0.05"]}
        out["by_embedder"][spec] = row
        say("quality", f"{spec}: τ={tau:.3f}  IBG recall@5% {row['ibg']['recall_at_5pct']:.3f} "
            f"@10% {row['ibg']['recall_at_10pct']:.3f}; kNN recall@5% {row['knn']['recall_at_5pct']:.3f}")
    ref = out["by_embedder"].get(REF, {})
    if "ibg" not in ref:
        ref = out["by_embedder"].get(REF_NO_TORCH, {})
    for spec, row in out["by_embedder"].items():
        if "ibg" in row and "ibg" in ref:
            for meth in ("ibg", "knn"):
                r0 = ref[meth]["recall_at_10pct"]
                row[meth]["recall_at_10pct_vs_fp32"] = row[meth]["recall_at_10pct"] / r0 if r0 else None
    return out

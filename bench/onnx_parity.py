"""ONNX without torch: parity and speed of the torch-free MiniLM export against sentence-transformers.

Exports all-MiniLM-L6-v2 with :mod:`synapse_stream.embedders.bert_onnx` into a fresh cache folder (timed,
file sizes printed), quantises it to int8, then embeds real posts (SST-2 train sentences plus offensive
tweets, sampled with a fixed seed) with

* ``minilm``            sentence-transformers on torch, fp32: the reference;
* ``minilm-onnx``       the torch-free ONNX export on ONNX Runtime, fp32;
* ``minilm-onnx-int8``  the same, dynamically quantised to int8 (per channel);

and prints, for each ONNX variant against the reference, the min / p01 / mean cosine and the largest
absolute difference of the unit vectors, per source and over all posts. A further group of long texts
(real SST-2 sentences joined until they pass 256 tokens) checks the truncation path. Then it times
each embedder on the same posts (``--speed-posts``, rounds interleaved, best round kept).

    python bench/onnx_parity.py                       # 8,000 SST-2 + 2,000 offensive, speed on 2,000
    python bench/onnx_parity.py --torch-export        # also the former torch.onnx export, for comparison

Post texts are never printed. Needs torch and sentence-transformers for the reference.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def find_data() -> Path:
    """``shared/data`` beside the repository (or beside a parent, for a git worktree); $SYNAPSE_DATA_DIR wins."""
    env = os.environ.get("SYNAPSE_DATA_DIR")
    if env:
        return Path(env)
    for parent in REPO.parents:
        if (parent / "shared" / "data" / "sst2").is_dir():
            return parent / "shared" / "data"
    raise SystemExit("cannot find shared/data (set SYNAPSE_DATA_DIR)")


def load_posts(data: Path, n_sst2: int, n_off: int, n_long: int, seed: int) -> dict[str, list[str]]:
    from synapse_stream.data import load_pool

    rng = random.Random(seed)
    sst2 = sorted(set(load_pool(data / "sst2" / "train.tsv").texts))
    off = sorted(set(load_pool(data / "offensive" / "pool.tsv").texts))
    groups = {"sst2": rng.sample(sst2, n_sst2), "offensive": rng.sample(off, n_off)}
    longs = []
    for _ in range(n_long):                       # about 700-1,500 word pieces: cut at 256 by every embedder
        longs.append(" ".join(rng.sample(sst2, rng.randint(40, 80))))
    if longs:
        groups["long"] = longs
    return groups


def encode(embedder, texts: list[str], label: str, chunk: int = 512) -> np.ndarray:
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(texts), desc=f"encoding {label}", unit="post", file=sys.stderr, leave=False) as bar:
        for start in range(0, len(texts), chunk):
            out.append(embedder.encode(texts[start:start + chunk]))
            bar.update(len(out[-1]))
    return np.vstack(out)


def compare(a: np.ndarray, ref: np.ndarray) -> dict:
    """Cosines in float64 (rows re-normalised there, so float32 rounding cannot push one past 1) and the
    largest absolute difference of one coordinate of the float32 unit vectors."""
    a64, r64 = a.astype(np.float64), ref.astype(np.float64)
    cos = (a64 * r64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(r64, axis=1))
    return {"n": len(cos), "cos_min": float(cos.min()), "cos_p01": float(np.percentile(cos, 1)),
            "cos_mean": float(cos.mean()), "max_abs_diff": float(np.abs(a - ref).max())}


def speed(models: dict, texts: list[str], rounds: int) -> dict:
    from tqdm.auto import tqdm

    for m in models.values():                     # warm-up: first-call allocations, thread pools
        m.encode(texts[:64])
    times: dict[str, list[float]] = {k: [] for k in models}
    with tqdm(total=rounds * len(models), desc="timing", unit="run", file=sys.stderr, leave=False) as bar:
        for _ in range(rounds):                   # interleaved: a burst of other load hits every model alike
            for name, m in models.items():
                t = time.perf_counter()
                m.encode(texts)
                times[name].append(time.perf_counter() - t)
                bar.update(1)
    return {k: {"posts_per_s": len(texts) / min(v), "seconds": [round(x, 2) for x in v]} for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sst2", type=int, default=8000, help="SST-2 train sentences (default 8000)")
    ap.add_argument("--offensive", type=int, default=2000, help="offensive tweets (default 2000)")
    ap.add_argument("--long", type=int, default=200, help="long texts past 256 tokens, a separate group (default 200)")
    ap.add_argument("--speed-posts", type=int, default=2000, help="posts timed per embedder (default 2000)")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds per embedder; the best is kept")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", help="ONNX cache folder (default: a fresh temp folder, so the export is timed)")
    ap.add_argument("--torch-export", action="store_true", help="also compare the former torch.onnx export")
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args(argv)

    from synapse_stream.embedders import make_embedder
    from synapse_stream.embedders.onnx import (
        OnnxEmbedder,
        ensure_onnx,
        export_fp32_torch,
    )

    tmp = tempfile.TemporaryDirectory(prefix="onnx-parity-")
    cache = Path(args.cache_dir) if args.cache_dir else Path(tmp.name)
    from importlib.metadata import version

    res: dict = {"args": vars(args), "export": {},
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                 "command": "python bench/onnx_parity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "versions": {m: version(m) for m in ("onnx", "onnxruntime", "torch", "sentence-transformers",
                                                      "tokenizers", "safetensors")}}
    t = time.perf_counter()
    fp32_path = ensure_onnx(variant="fp32", cache_dir=cache)
    res["export"]["fp32_s"] = time.perf_counter() - t
    t = time.perf_counter()
    int8_path = ensure_onnx(variant="int8", cache_dir=cache)
    res["export"]["int8_quantise_s"] = time.perf_counter() - t
    res["export"]["fp32_file"], res["export"]["fp32_bytes"] = fp32_path.name, fp32_path.stat().st_size
    res["export"]["int8_file"], res["export"]["int8_bytes"] = int8_path.name, int8_path.stat().st_size
    print(f"export (torch-free) fp32: {res['export']['fp32_s']:.1f} s, {fp32_path.stat().st_size / 1e6:.1f} MB "
          f"({fp32_path.name}); int8 quantisation: {res['export']['int8_quantise_s']:.1f} s, "
          f"{int8_path.stat().st_size / 1e6:.1f} MB", flush=True)

    opts = {"threads": args.threads, "batch_size": args.batch}
    models = {"minilm": make_embedder("minilm", **opts),
              "minilm-onnx": make_embedder("minilm-onnx", cache_dir=cache, **opts),
              "minilm-onnx-int8": make_embedder("minilm-onnx-int8", cache_dir=cache, **opts)}
    if args.torch_export:
        old = cache / "torch-export" / "model.fp32.onnx"
        old.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        from synapse_stream.embedders.sentence import DEFAULT_MODEL, resolve_model_path

        export_fp32_torch(Path(resolve_model_path(DEFAULT_MODEL)), old)
        res["export"]["torch_fp32_s"] = time.perf_counter() - t
        print(f"export (torch.onnx, former) fp32: {res['export']['torch_fp32_s']:.1f} s, "
              f"{old.stat().st_size / 1e6:.1f} MB", flush=True)
        emb = OnnxEmbedder(variant="fp32", cache_dir=cache, **opts)
        emb.path = old                           # same tokeniser and truncation, the torch.onnx graph
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.inter_op_num_threads, so.intra_op_num_threads = 1, args.threads
        emb._sess = ort.InferenceSession(str(old), so, providers=["CPUExecutionProvider"])
        models["minilm-onnx-torchexport"] = emb

    groups = load_posts(find_data(), args.sst2, args.offensive, args.long, args.seed)
    print("posts: " + ", ".join(f"{k} {len(v)}" for k, v in groups.items()), flush=True)
    vecs = {name: {g: encode(m, texts, f"{name}/{g}") for g, texts in groups.items()} for name, m in models.items()}

    res["parity"] = {}
    main_groups = [g for g in groups if g != "long"]
    for name in models:
        if name == "minilm":
            continue
        ref_all = np.vstack([vecs["minilm"][g] for g in main_groups])
        got_all = np.vstack([vecs[name][g] for g in main_groups])
        rows = {f"all ({len(ref_all)})": compare(got_all, ref_all)}
        rows.update({g: compare(vecs[name][g], vecs["minilm"][g]) for g in groups})
        res["parity"][name] = rows
    if args.torch_export:
        res["parity"]["minilm-onnx vs minilm-onnx-torchexport"] = {
            g: compare(vecs["minilm-onnx"][g], vecs["minilm-onnx-torchexport"][g]) for g in groups}

    print("\nparity with sentence-transformers fp32 on torch (unit vectors)")
    print(f"{'embedder':42s} {'posts':>14s} {'cos min':>11s} {'cos p01':>11s} {'cos mean':>11s} {'max |diff|':>11s}")
    for name, rows in res["parity"].items():
        for g, r in rows.items():
            print(f"{name:42s} {g:>14s} {r['cos_min']:11.8f} {r['cos_p01']:11.8f} {r['cos_mean']:11.8f} "
                  f"{r['max_abs_diff']:11.2e}")

    pool = [t for g in main_groups for t in groups[g]]
    speed_texts = random.Random(args.seed + 1).sample(pool, min(args.speed_posts, len(pool)))
    res["speed"] = speed(models, speed_texts, args.rounds)
    print(f"\nspeed on the same {len(speed_texts)} posts (threads {args.threads}, batch {args.batch}, "
          f"best of {args.rounds} rounds)")
    base = res["speed"]["minilm"]["posts_per_s"]
    for name, r in res["speed"].items():
        print(f"{name:42s} {r['posts_per_s']:8.0f} posts/s  {r['posts_per_s'] / base:4.2f}x torch  rounds {r['seconds']} s")
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average {res['loadavg_start']} -> {res['loadavg_end']} (2 shared cores)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Shared helpers of the benchmark suite: machine description, progress lines, timing, data."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SST2 = Path(os.environ.get("SYNAPSE_SST2_DIR", REPO.parent / "shared" / "data" / "sst2"))
T0 = time.monotonic()


def say(section: str, msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.0f}s] {section}: {msg}", flush=True)


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # noqa: BLE001 - not installed
        return None


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                fl = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in fl)
                break
    except OSError:
        pass
    try:
        import psutil

        ram = psutil.virtual_memory().total
    except Exception:  # noqa: BLE001
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "ram_gib": round(ram / 2**30, 1),
        "os": platform.platform(), "python": sys.version.split()[0],
        "torch": _version("torch"), "numpy": _version("numpy"), "hnswlib": _version("hnswlib"),
        "onnxruntime": _version("onnxruntime"), "sentence_transformers": _version("sentence-transformers"),
        "faust": _version("faust-streaming"), "wordllama": _version("wordllama"), "model2vec": _version("model2vec"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def load_demo_posts() -> list[dict]:
    with open(REPO / "stream_app" / "devstack" / "demo_data" / "posts.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_demo_seeds() -> list[str]:
    return [t for t in (REPO / "stream_app" / "devstack" / "demo_data" / "seeds.txt").read_text(encoding="utf-8").splitlines()
            if t.strip()]


def percentile(xs, q: float) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.percentile(xs, q)) if xs else None


def best_of(fn, rounds: int) -> tuple[float, list[float]]:
    """Seconds of the fastest of ``rounds`` calls (the least disturbed by other jobs) and all of them."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


def encode_microbatches(embedder, texts: list[str], batch: int) -> np.ndarray:
    """Embed as the worker does: one ``encode`` call per micro-batch of ``batch`` posts."""
    return np.concatenate([embedder.encode(texts[i:i + batch]) for i in range(0, len(texts), batch)])


def raw_throughput(embedder, texts: list[str], batch: int, rounds: int = 2) -> dict:
    """Posts/s of the embedder alone on ``texts`` in micro-batches of ``batch`` (best and all rounds)."""
    embedder.encode(texts[:batch])  # warm-up
    best, times = best_of(lambda: encode_microbatches(embedder, texts, batch), rounds)
    return {"posts": len(texts), "batch": batch, "posts_per_s": len(texts) / best,
            "rounds_posts_per_s": [round(len(texts) / t, 1) for t in times]}


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)

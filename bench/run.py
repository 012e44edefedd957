"""synapse-stream benchmark suite: ``make bench`` (full) or ``make bench QUICK=1`` (a few minutes).

Prints a table and writes ``bench/results.json``. The machine is shared and small (2 cores): every speed is
a ratio or a comparison taken within one run, not a constant of the code. Sections (``--skip`` any):

  embedders  speed of each embedder on the same posts and micro-batches, drift from MiniLM fp32
  quality    ``synapse-stream eval`` on imbalanced SST-2 per embedder (needs ../shared/data/sst2)
  hnsw       HNSW insert rate and recall per (M, ef_construction) on real MiniLM vectors
  seeds      comparing one post with 100 / 1 k / 10 k seeds: brute force vs an index
  shards     backfill time and resident bytes per post at 10 k / 100 k / 1 M posts (fresh subprocesses)
  broker     produce → consume latency of the embedded broker by consumer fetch wait
  gc         a full garbage collection with the model loaded, before and after gc.freeze (fresh process)
  stack      pipeline efficiency, latency and 1 vs 2 workers through the embedded broker
  threads    the shipped embedder's intra-op threads 1 .. cores on the worker's drain, with /healthz and
             /metrics response times under that full load and Redis commands per post; then
             ``efficiency_vs_best_embedder`` = the shipped settings' drain / ``best_embedder_raw_posts_per_s``
             (the fastest raw embedder of the embedders section with cosine >= 0.999 to MiniLM fp32, all cores)
  static     the pipeline's own per-post cost: a static embedder's drain on Tansu and Apache Kafka, the
             overhead per post and its breakdown (stage timers, CPU per thread), 1 vs 2 workers

``--merge`` re-runs only the chosen sections and updates their keys in an existing results file.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from . import embedders as emb  # noqa: E402
from . import micro  # noqa: E402
from .common import REPO, load_demo_posts, machine, say  # noqa: E402

SECTIONS = ("embedders", "quality", "hnsw", "seeds", "shards", "broker", "gc", "stack", "threads", "static")
TARGETS = {"pipeline_efficiency": 0.9, "latency_p99_ms": 250.0, "backfill_ms_1M": 50.0, "bytes_per_post": 2500.0}

SIZES = {
    "full": dict(speed_posts=320, speed_rounds=3, eval_sample=6000, seed_pool=2000, acs=100, hnsw_vectors=9000,
                 seed_counts=(100, 1000, 10_000), shards=(10_000, 100_000, 1_000_000), text_shard=100_000,
                 posts=2000, latency_posts=800, worker_posts=2000, static_posts=16000),
    "quick": dict(speed_posts=160, speed_rounds=2, eval_sample=2000, seed_pool=600, acs=50, hnsw_vectors=5000,
                  seed_counts=(100, 1000, 10_000), shards=(10_000, 100_000), text_shard=None, shard_efc=100,
                  posts=600, latency_posts=400, worker_posts=600, static_posts=4000),
    "toy": dict(speed_posts=32, speed_rounds=1, eval_sample=None, seed_pool=None, acs=10, hnsw_vectors=600,
                seed_counts=(10, 100), shards=(2000,), text_shard=None, posts=64, latency_posts=60, worker_posts=64,
                static_posts=1000),
}
EF_CONSTRUCTION_1M = 100  # a 1 M shard at the default 200 takes ~15 min on this machine; see docs/benchmarks.md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes")
    ap.add_argument("--toy", action="store_true", help="tiny sizes and the hashing embedder (smoke tests only)")
    ap.add_argument("--skip", default="", help=f"comma list of sections to skip: {', '.join(SECTIONS)}")
    ap.add_argument("--only", default="", help="comma list of sections to run (default: all)")
    ap.add_argument("--embedders", default=",".join(emb.SPECS), help="embedder specs to compare")
    ap.add_argument("--stack-embedder", default=_shipped_embedder(),
                    help="embedder of the workers in the stack runs (default: the worker's, SYNAPSE_EMBEDDER)")
    ap.add_argument("--batch", type=int, default=32, help="micro-batch size (SYNAPSE_EMBED_BATCH_SIZE)")
    ap.add_argument("--static-batch", type=int, default=None,
                    help="micro-batch size of the static drain (default: the worker's default for a static embedder)")
    ap.add_argument("--profile", action="store_true", help="py-spy the worker during the efficiency run")
    ap.add_argument("--out", default=str(REPO / "bench" / "results.json"))
    ap.add_argument("--merge", action="store_true", help="update only the sections run in the existing --out file")
    ap.add_argument("--shards", default="", help="comma list of shard sizes (overrides the mode's)")
    a = ap.parse_args(argv)
    mode = "toy" if a.toy else "quick" if a.quick else "full"
    z = dict(SIZES[mode])
    if a.shards:
        z["shards"], z["text_shard"] = tuple(int(x) for x in a.shards.split(",")), None
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    run = [s for s in SECTIONS if s not in skip and (not only or s in only)]
    specs = tuple(s.strip() for s in a.embedders.split(",") if s.strip())
    if a.toy and a.embedders == ",".join(emb.SPECS):
        specs = ("hashing-384",)

    t_start = time.time()
    res: dict = {"command": " ".join(shlex.quote(x) for x in [sys.executable.rsplit("/", 1)[-1], "bench/run.py"]
                                     + list(argv if argv is not None else sys.argv[1:])),
                 "mode": mode, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                 "note": "figures are ratios and comparisons taken within this one run on a shared 2-core machine; "
                         "absolute speeds move with other load (see machine.load_average_*)",
                 "targets": {}}
    say("bench", f"mode {mode}; sections {', '.join(run)}; machine {res['machine']['cpu']}, "
        f"{res['machine']['cores']} cores, {res['machine']['ram_gib']} GiB; load {res['machine']['load_average_at_start']}")
    demo = [p["text"] for p in load_demo_posts()]
    tmp = Path(tempfile.mkdtemp(prefix="synapse-bench-"))

    # ------------------------------------------------------------------ embedders
    res["embedders"] = {"skipped": "not run"}
    if "embedders" in run:
        say("embedders", f"{', '.join(specs)} on {z['speed_posts']} posts (static: {len(demo)}) in micro-batches of {a.batch}")
        res["embedders"] = emb.speed(demo, specs=specs, batch=a.batch, rounds=z["speed_rounds"],
                                     transformer_posts=z["speed_posts"])
    res["embedder_quality"] = {"skipped": "not run"}
    if "quality" in run and not a.toy:
        say("quality", f"synapse-stream eval on SST-2 (sample {z['eval_sample'] or 'all'}) per embedder")
        res["embedder_quality"] = q = emb.quality(specs=specs, sample=z["eval_sample"], seed_pool_limit=z["seed_pool"],
                                                  acs=z["acs"])
        for spec, row in q.get("by_embedder", {}).items():
            if isinstance(res["embedders"].get(spec), dict) and "ibg" in row:
                res["embedders"][spec]["quality"] = {k: row[k] for k in ("tau", "ibg", "knn")}

    # ------------------------------------------------------------------ real vectors, and their statistics
    real = None
    if {"hnsw", "seeds", "shards"} & set(run):
        real = _real_vectors(demo, z, a.toy)
        stats = micro.fit_stats(real, tmp / "stats.npz")
        say("vectors", f"{len(real)} real vectors ({'hashing, toy' if a.toy else 'MiniLM fp32'}); synthetic vectors "
            "follow their mean and covariance")

    res["hnsw_tuning"] = {"skipped": "not run"}
    if "hnsw" in run:
        grid = ((16, 200), (16, 100), (16, 64), (16, 40), (8, 64), (32, 100)) if mode == "full" else \
            ((16, 200), (16, 100), (16, 64), (16, 40))
        res["hnsw_tuning"] = micro.hnsw_tuning(real[: z["hnsw_vectors"]], grid=grid)

    res["seed_compare_us"] = {"skipped": "not run"}
    if "seeds" in run:
        res["seed_compare_us"] = micro.seed_compare(z["seed_counts"], batch=a.batch, real_stats=stats,
                                                    rounds=3 if a.toy else 5)

    res["backfill_ms"] = res["bytes_per_post"] = {"skipped": "not run"}
    if "shards" in run:
        shards = {}
        for n in z["shards"]:
            efc = EF_CONSTRUCTION_1M if n >= 1_000_000 else z.get("shard_efc", 200)
            say("shards", f"{n:,} posts in a fresh process (M=16, ef_construction={efc})...")
            shards[str(n)] = micro.shard(n, stats=stats, ef_construction=efc, queries=10 if a.toy else 50)
            r = shards[str(n)]
            say("shards", f"{n:,}: {r['bytes_per_post']:.0f} B/post, backfill p50 {r['backfill_ms_p50']:.2f} ms "
                f"p99 {r['backfill_ms_p99']:.2f} ms, recall vs exact {r['backfill_recall_vs_exact']:.3f}, "
                f"insert {r['insert_per_s']:.0f}/s")
        if z["text_shard"]:
            n = z["text_shard"]
            say("shards", f"{n:,} posts with 120-character texts kept beside them (as the worker does)...")
            shards[f"{n}+text"] = micro.shard(n, stats=stats, text_chars=120, ef_construction=EF_CONSTRUCTION_1M)
        res["shards"] = shards
        res["backfill_ms"], res["bytes_per_post"] = _shard_views(shards)

    # ------------------------------------------------------------------ the live loop
    res["broker_fetch"] = {"skipped": "not run"}
    if "broker" in run:
        from .stack import broker_fetch_latency

        res["broker_fetch"] = broker_fetch_latency()
    res["gc_pause"] = {"skipped": "not run"}
    if "gc" in run:
        spec = "hashing-384" if mode == "toy" else a.stack_embedder
        res["gc_pause"] = g = _gc_pause(spec)
        say("gc", f"full collection with {spec} loaded: {g['full_collection_ms']:.0f} ms "
                  f"({g['tracked_objects']:,} objects), after gc.freeze: {g['after_freeze_ms']:.2f} ms")
    for key in ("pipeline_efficiency", "latency", "workers"):
        res[key] = {"skipped": "not run"}
    res["latency_p50_ms"] = res["latency_p99_ms"] = None
    if "stack" in run:
        _stack(res, a, z, mode, tmp)
    res["threads"] = {"skipped": "not run"}
    if "threads" in run:
        res["threads"] = _threads(a, z, mode)
    res["static_drain"] = {"skipped": "not run"}
    res["static_posts_per_s"] = res["overhead_us_per_post"] = None
    if "static" in run:
        from . import static

        prof = (tmp / "static-profile") if a.profile else None
        res["static_drain"] = sd = static.section(
            posts=z["static_posts"], worker_posts=z["static_posts"], batch=a.static_batch,
            embedder="hashing-384" if mode == "toy" else None, profile_dir=prof,
            configs={} if mode == "toy" else static.QUICK_CONFIGS if mode == "quick" else static.CONFIGS)
        res["static_posts_per_s"], res["overhead_us_per_post"] = sd["static_posts_per_s"], sd["overhead_us_per_post"]

    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["duration_s"] = round(time.time() - t_start, 1)
    out = Path(a.out)
    if a.merge and out.exists():
        old = json.loads(out.read_text(encoding="utf-8"))
        keys = {"embedders": ["embedders"], "quality": ["embedder_quality"], "hnsw": ["hnsw_tuning"],
                "seeds": ["seed_compare_us"], "shards": ["shards", "backfill_ms", "bytes_per_post"],
                "broker": ["broker_fetch"], "gc": ["gc_pause"], "stack": ["pipeline_efficiency", "latency", "latency_p50_ms",
                                                      "latency_p99_ms", "workers"], "threads": ["threads"],
                "static": ["static_drain", "static_posts_per_s", "overhead_us_per_post"]}
        for sec in run:
            if sec == "shards" and isinstance(old.get("shards"), dict) and "shards" in res:
                old["shards"].update(res["shards"])   # shard sizes merge one by one
                res["backfill_ms"], res["bytes_per_post"] = _shard_views(old["shards"])
                keys[sec] = ["backfill_ms", "bytes_per_post"]
            for k in keys[sec]:
                if k in res:
                    old[k] = res[k]
        old.setdefault("merged", []).append({"command": res["command"], "sections": run, "started_at": res["started_at"],
                                             "load_average": [res["machine"]["load_average_at_start"],
                                                              res["machine"]["load_average_at_end"]]})
        res = old
    res.update(efficiency_vs_best(res))
    res["targets"] = targets(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    print(table(res), flush=True)
    say("bench", f"wrote {out} in {time.time() - t_start:.0f}s")
    return 0


def _shipped_embedder() -> str:
    from stream_app.worker.settings import Settings

    return Settings.model_fields["embedder"].default


def _shard_views(shards: dict) -> tuple[dict, dict]:
    backfill = {k: {"p50": v["backfill_ms_p50"], "p99": v["backfill_ms_p99"], "max": v["backfill_ms_max"],
                    "recall_vs_exact": v["backfill_recall_vs_exact"], "ef_search": v["ef_search"]}
                for k, v in sorted(shards.items(), key=lambda kv: int(kv[0].split("+")[0])) if "+" not in k}
    return backfill, {k: v["bytes_per_post"] for k, v in shards.items()}


def _real_vectors(demo, z, toy) -> np.ndarray:
    from synapse_stream.embedders import CachedEmbedder, make_embedder

    if toy:
        return make_embedder("hashing-384").encode(demo[:1000])
    from synapse_stream.exceptions import EmbedderError

    try:
        e = CachedEmbedder(make_embedder("minilm"), emb.CACHE)
    except EmbedderError:   # no torch: the ONNX fp32 export gives the same vectors
        say("vectors", "torch absent: real vectors from minilm-onnx (the same vectors)")
        e = CachedEmbedder(make_embedder("minilm-onnx"), emb.CACHE)
    vecs = [e.encode(demo)]
    have = len(vecs[0])
    if have < z["hnsw_vectors"] and z["eval_sample"]:  # the SST-2 rows the quality section embedded (cached)
        try:
            from synapse_stream.data import load_pool, make_imbalanced

            from .common import SST2

            pool = make_imbalanced(load_pool(SST2 / "train.tsv"), 0.1, seed=0)
            rows = np.sort(np.random.default_rng(0).choice(len(pool), min(len(pool), z["eval_sample"]), replace=False))
            vecs.append(e.encode([pool.texts[i] for i in rows[: z["hnsw_vectors"] - have]]))
        except Exception as exc:  # noqa: BLE001 - no SST-2: the demo posts alone
            say("vectors", f"SST-2 not used for the real vectors ({exc})")
    return np.concatenate(vecs)


# Sections 1 and 2: the shipped settings, then one change at a time (worker env on top of the defaults)
STACK_CONFIGS = {
    "default": {},
    "torch_all_cores": {"SYNAPSE_TORCH_THREADS": str(os.cpu_count() or 1)},   # the old default: one torch thread per core
    "no_pipeline": {"SYNAPSE_POSTS_PIPELINE_DEPTH": "1"},                     # batch n+1 waits for batch n's I/O
    "one_model_thread": {"SYNAPSE_EMBED_THREAD": "false"},                    # embedding and indexing in one thread
    "within_0.5s": {"SYNAPSE_EMBED_WITHIN": "0.5"},                          # the old default micro-batch wait
    "batch8": {"SYNAPSE_EMBED_BATCH_SIZE": "8"},
}
# latency only, at the default's rate: the consumer's fetch wait as Faust sets it (what the embedded broker did before)
LATENCY_ONLY = {"fetch_wait_1500ms": {"SYNAPSE_EMBEDDED_FETCH_MAX_WAIT_MS": "1500"},
                "default_again": {}}   # the shipped settings once more: how much the tail moves between two runs
# the torch thread count when something else needs a core: one process spinning on the CPU for the whole run
BUSY_CORE = {"default+busy_core": {}, "torch_all_cores+busy_core": STACK_CONFIGS["torch_all_cores"]}


def _stack(res, a, z, mode, tmp) -> None:
    from . import stack

    emb_spec = "hashing-384" if mode == "toy" else a.stack_embedder
    runs = {}
    rate = None   # every latency row at the same offered load: half the default configuration's drain rate
    for name, env in STACK_CONFIGS.items():
        batch = int(env.get("SYNAPSE_EMBED_BATCH_SIZE", a.batch))
        prof = (tmp / name) if a.profile and name in ("default", "no_pipeline") else None
        if prof:
            prof.mkdir(exist_ok=True)
        runs[name] = stack.run_single(embedder=emb_spec, posts=z["posts"], latency_posts=z["latency_posts"],
                                      batch=batch, timeout=900, extra_env=env, label=f"stack[{name}]",
                                      profile_dir=prof, latency_rate=rate)
        if rate is None:
            rate = runs[name]["latency"]["rate_posts_per_s"]
    for name, env in LATENCY_ONLY.items():
        runs[name] = stack.run_single(embedder=emb_spec, posts=0, latency_posts=z["latency_posts"], batch=a.batch,
                                      timeout=900, extra_env=env, latency_rate=rate, label=f"stack[{name}]")
    if mode != "toy":
        busy_rate = None   # half the busy default's own drain rate, for both rows
        for name, env in BUSY_CORE.items():
            runs[name] = stack.run_single(embedder=emb_spec, posts=z["posts"], latency_posts=z["latency_posts"],
                                          batch=a.batch, timeout=900, extra_env=env, latency_rate=busy_rate,
                                          label=f"stack[{name}]", busy_cores=1)
            busy_rate = busy_rate or runs[name]["latency"]["rate_posts_per_s"]
    # the pipeline with a fast (static) embedder: a batch then costs the model thread a few ms, about what its
    # round trips cost, so the overlap shows in throughput (drain only; skipped without the optional package)
    if mode != "toy" and _importable("wordllama"):
        for name, env in (("wordllama", {}), ("wordllama_no_pipeline", STACK_CONFIGS["no_pipeline"])):
            runs[name] = stack.run_single(embedder="wordllama", posts=3 * z["posts"], latency_posts=0, batch=a.batch,
                                          timeout=900, extra_env=env, label=f"stack[{name}]")
    eff = {k: {**r["efficiency"], "env": r["env"], "worker_start_s": r.get("worker_start_s"), "embedder": r["embedder"]}
           for k, r in runs.items() if "efficiency" in r}
    d = eff["default"]
    res["pipeline_efficiency"] = {
        "ratio": d["ratio"], "raw_posts_per_s": d["raw_posts_per_s"], "pipeline_posts_per_s": d["pipeline_posts_per_s"],
        "embedder": emb_spec, "batch": a.batch, "posts": d["posts"], "configs": eff,
        "worker_defaults": stack.worker_defaults(),
        "best_pipeline_vs_best_raw": max(e["pipeline_posts_per_s"] for e in eff.values() if e["embedder"] == emb_spec)
        / max(e["raw_posts_per_s"] for e in eff.values() if e["embedder"] == emb_spec),
    }
    res["latency"] = {k: {**r["latency"], "env": r["env"]} for k, r in runs.items() if "latency" in r}
    res["latency_p50_ms"] = runs["default"]["latency"]["p50_ms"]
    res["latency_p99_ms"] = runs["default"]["latency"]["p99_ms"]
    workers = {}
    for n in (1, 2):
        workers[str(n)] = stack.run_workers(embedder=emb_spec, posts=z["worker_posts"], batch=a.batch, timeout=900,
                                            workers=n, env={})
    workers["speedup_2_vs_1"] = workers["2"]["posts_per_s"] / workers["1"]["posts_per_s"]
    res["workers"] = workers


# the raw embedders whose vectors are MiniLM fp32's (cosine 1.000000: docs/benchmarks.md "ONNX without torch"),
# timed with all cores between the shipped row's chunks: the denominator of efficiency_vs_best_embedder
EQUAL_QUALITY = ("minilm-onnx", "minilm")


def _threads(a, z, mode) -> dict:
    """The shipped embedder with 1 .. cores intra-op threads (``SYNAPSE_EMBED_THREADS``), everything else as
    shipped: drain (backlog efficiency), /healthz and /metrics under that load, latency at half the drain rate
    of the first row, Redis commands per post. ``shipped`` names the row ``embed_threads=auto`` picks here."""
    from stream_app.worker.settings import Settings, usable_cores

    from . import stack

    spec = "hashing-384" if mode == "toy" else a.stack_embedder
    cores = usable_cores()
    rows, rate = {}, None
    shipped = Settings(_env_file=None, embedder=spec).model_threads()
    for n in range(1, cores + 1):
        name = f"threads_{n}"
        best = EQUAL_QUALITY if n == shipped and mode != "toy" else ()
        r = stack.run_single(embedder=spec, posts=max(z["posts"], 400), latency_posts=z["latency_posts"], batch=a.batch,
                             timeout=900, extra_env={"SYNAPSE_EMBED_THREADS": str(n)}, label=f"threads[{n}]",
                             latency_rate=rate, http_probe=True, redis_ops=True, best_raw=best)
        rate = rate or r["latency"]["rate_posts_per_s"]
        e = r["efficiency"]
        rows[name] = {"threads": n, "pipeline_posts_per_s": e["pipeline_posts_per_s"],
                      "raw_posts_per_s_same_threads": e["raw_posts_per_s"], "ratio_same_threads": e["ratio"],
                      "embedder_busy_share": e["embedder_busy_share"],
                      "embedder_in_worker_posts_per_s": e["embedder_in_worker_posts_per_s"],
                      "embed_ms_per_batch": e["embed_ms_per_batch"], "io_ms_per_batch": e["io_ms_per_batch"],
                      "candidates_per_post": e["candidates_per_post"],
                      "candidate_message_bytes": e["candidate_message_bytes"],
                      "http_under_load": r.get("http_under_load"), "redis": r.get("redis"),
                      "latency": r.get("latency"), "worker_start_s": r.get("worker_start_s"), "env": r["env"],
                      "best_raw_posts_per_s_all_cores": e.get("best_raw_posts_per_s") or None}
    return {"embedder": spec, "cores": cores, "batch": a.batch, "rows": rows, "shipped": f"threads_{shipped}",
            "rule": "embed_threads=auto: stream_app.worker.settings.auto_threads(cores)"}


def efficiency_vs_best(res) -> dict:
    """``best_embedder_raw_posts_per_s``: the fastest raw embedder whose vectors are MiniLM fp32's (mean cosine
    >= 0.999 in the embedders section), timed with all cores: between the chunks of the threads section's
    shipped drain when that ran (the same machine state as the drain), else the embedders section's figure;
    ``efficiency_vs_best_embedder``: the shipped drain over that."""
    e = res.get("embedders", {})
    equal = {k: v["posts_per_s"] for k, v in e.items() if isinstance(v, dict) and "posts_per_s" in v
             and v.get("cosine_to_fp32_mean", 0) >= 0.999}
    if not equal:
        return {}
    best = max(equal, key=equal.get)
    out = {"best_embedder": best, "best_embedder_raw_posts_per_s": equal[best],
           "best_embedder_source": f"embedders.{best}.posts_per_s"}
    th = res.get("threads", {})
    row = th.get("rows", {}).get(th.get("shipped", ""))
    if not row:
        return out
    inrun = {k: x for k, x in (row.get("best_raw_posts_per_s_all_cores") or {}).items() if k in equal or k in EQUAL_QUALITY}
    if inrun:   # timed between the drain's chunks: the same machine state as the drain (preferred)
        best = max(inrun, key=inrun.get)
        out = {"best_embedder": best, "best_embedder_raw_posts_per_s": inrun[best],
               "best_embedder_source": f"threads.rows.{th['shipped']}.best_raw_posts_per_s_all_cores.{best} (all "
                                       "cores, timed between the shipped drain's chunks)",
               "best_embedder_raw_posts_per_s_embedders_section": equal}
    out["efficiency_vs_best_embedder"] = row["pipeline_posts_per_s"] / out["best_embedder_raw_posts_per_s"]
    out["efficiency_vs_best_embedder_drain"] = {"key": f"threads.rows.{th['shipped']}.pipeline_posts_per_s",
                                                "posts_per_s": row["pipeline_posts_per_s"]}
    return out


def _gc_pause(embedder: str) -> dict:
    """``python -m bench.gcpause`` in a fresh process: a full collection before and after gc.freeze."""
    import subprocess

    with tempfile.NamedTemporaryFile("r", suffix=".json") as fh:
        subprocess.run([sys.executable, "-m", "bench.gcpause", "--embedder", embedder, "--out", fh.name], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(Path(fh.name).read_text())


def _importable(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def targets(res) -> dict:
    out = {}
    eff = res.get("pipeline_efficiency", {})
    if "ratio" in eff:
        out["pipeline_efficiency"] = {"target": ">= 0.9", "value": eff["ratio"], "met": eff["ratio"] >= 0.9}
    if res.get("latency_p99_ms") is not None:
        out["latency_p99_ms"] = {"target": "<= 250", "value": res["latency_p99_ms"], "met": res["latency_p99_ms"] <= 250}
    bf = res.get("backfill_ms", {})
    if "1000000" in bf:
        out["backfill_ms_1M_p99"] = {"target": "<= 50", "value": bf["1000000"]["p99"], "met": bf["1000000"]["p99"] <= 50}
    elif bf and "skipped" not in bf:
        big = max(bf, key=int)
        out[f"backfill_ms_{big}_p99"] = {"target": "<= 50 (at 1 M; largest size run here)", "value": bf[big]["p99"],
                                         "met": bf[big]["p99"] <= 50}
    if res.get("efficiency_vs_best_embedder") is not None:
        v = res["efficiency_vs_best_embedder"]
        # above 1 the drain would beat the embedder it contains: the CPU shares moved (a loaded machine), not a result
        out["efficiency_vs_best_embedder"] = {"target": ">= 0.9", "value": v, "met": (v >= 0.9) if v <= 1.05 else None}
        if v > 1.05:
            out["efficiency_vs_best_embedder"]["note"] = "above 1: scheduler shares on a loaded machine; re-run quiet"
    th = res.get("threads", {})
    row = th.get("rows", {}).get(th.get("shipped", ""), {})
    for k in ("healthz", "metrics"):
        h = (row.get("http_under_load") or {}).get(k, {})
        if h.get("p99_ms") is not None:
            out[f"{k}_p99_ms_under_load"] = {"target": "<= 100", "value": h["p99_ms"], "met": h["p99_ms"] <= 100}
    if res.get("static_posts_per_s") is not None:
        out["static_posts_per_s"] = {"target": ">= 5000 (Apache Kafka)", "value": res["static_posts_per_s"],
                                     "met": res["static_posts_per_s"] >= 5000}
        out["overhead_us_per_post"] = {"target": "< 100", "value": res["overhead_us_per_post"],
                                       "met": res["overhead_us_per_post"] < 100}
    bpp = res.get("bytes_per_post", {})
    for k in ("100000", "1000000"):
        if k in bpp:
            out[f"bytes_per_post_{k}"] = {"target": "<= 2500", "value": bpp[k], "met": bpp[k] <= 2500}
    return out


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(type(x))


def _f(x, fmt="{:.0f}"):
    return "–" if x is None else fmt.format(x)


def table(res) -> str:
    rows = [("section", "measure", "value")]
    eff = res.get("pipeline_efficiency", {})
    if "ratio" in eff:
        rows += [("efficiency", f"raw embedder ({eff['embedder']}, batch {eff['batch']})", f"{eff['raw_posts_per_s']:.0f} posts/s"),
                 ("efficiency", "end to end through the broker", f"{eff['pipeline_posts_per_s']:.0f} posts/s"),
                 ("efficiency", "ratio (target >= 0.9)", f"{eff['ratio']:.2f}")]
    if res.get("best_embedder_raw_posts_per_s"):
        rows.append(("efficiency", f"best equal-quality raw embedder ({res['best_embedder']}, all cores)",
                     f"{res['best_embedder_raw_posts_per_s']:.0f} posts/s"))
    if res.get("efficiency_vs_best_embedder") is not None:
        rows.append(("efficiency", "shipped drain / best raw embedder (target >= 0.9)",
                     f"{res['efficiency_vs_best_embedder']:.2f}"))
    th = res.get("threads", {})
    for k, v in th.get("rows", {}).items():
        h = v.get("http_under_load") or {}
        mark = " (shipped)" if k == th.get("shipped") else ""
        rows.append(("threads", f"{k}{mark}: drain; /healthz, /metrics p99 under load (target <= 100 ms)",
                     f"{v['pipeline_posts_per_s']:.0f} posts/s; {_f(h.get('healthz', {}).get('p99_ms'))}, "
                     f"{_f(h.get('metrics', {}).get('p99_ms'))} ms"))
    lat = res.get("latency", {})
    for k, v in lat.items():
        if isinstance(v, dict) and "p99_ms" in v:
            rows.append(("latency", f"{k}: p50 / p99 at {v['rate_posts_per_s']:.0f} posts/s (target p99 <= 250)",
                         f"{_f(v['p50_ms'])} / {_f(v['p99_ms'])} ms"))
    for k, v in res.get("backfill_ms", {}).items():
        if isinstance(v, dict):
            rows.append(("backfill", f"{int(k):,} posts: p50 / p99 (target <= 50 at 1 M)",
                         f"{v['p50']:.2f} / {v['p99']:.2f} ms"))
    sc = res.get("seed_compare_us", {})
    for k, v in sc.items():
        if isinstance(v, dict) and "brute_us_per_post_batch" in v:
            rows.append(("seeds", f"{int(k):,} seeds: brute / hnsw per post (batch {v['batch']})",
                         f"{v['brute_us_per_post_batch']:.1f} / {v['hnsw_us_per_post_batch']:.1f} µs"))
    if "choice" in sc:
        rows.append(("seeds", "choice", sc["choice"]["step"]))
    for k, v in res.get("bytes_per_post", {}).items():
        if isinstance(v, (int, float)):
            rows.append(("memory", f"{k} posts (target <= 2500)", f"{v:.0f} B/post"))
    sd = res.get("static_drain", {})
    for b, r in (sd.get("brokers") or {}).items():
        rows.append(("static", f"{sd['embedder']} drain on {b} (raw {r['raw_posts_per_s']:.0f} posts/s)",
                     f"{r['posts_per_s']:.0f} posts/s, overhead {r['overhead_us_per_post']:.0f} µs/post"))
    for name, r in (sd.get("configs") or {}).items():
        rows.append(("static", f"{name} on {r['broker']}", f"{r['posts_per_s']:.0f} posts/s, overhead "
                     f"{r['overhead_us_per_post']:.0f} µs/post"))
    sw = sd.get("workers") or {}
    if "speedup_2_vs_1" in sw:
        rows.append(("static", "2 workers vs 1", f"{sw['2']['posts_per_s']:.0f} vs {sw['1']['posts_per_s']:.0f} posts/s "
                     f"({sw['speedup_2_vs_1']:.2f}x)"))
    w = res.get("workers", {})
    for k in ("1", "2"):
        if isinstance(w.get(k), dict) and "posts_per_s" in w[k]:
            extra = "" if "seed_reaches_every_shard" not in w[k] else f", seed reaches every shard: {w[k]['seed_reaches_every_shard']}"
            rows.append(("workers", f"{k} worker(s)", f"{w[k]['posts_per_s']:.0f} posts/s{extra}"))
    for spec, e in res.get("embedders", {}).items():
        if isinstance(e, dict) and "posts_per_s" in e:
            q = e.get("quality", {})
            qs = f", IBG recall@10% {q['ibg']['recall_at_10pct']:.3f}" if q else ""
            cs = f", cos {e['cosine_to_fp32_mean']:.3f}" if "cosine_to_fp32_mean" in e else ""
            rows.append(("embedders", spec, f"{e['posts_per_s']:.0f} posts/s{cs}{qs}"))
    ht = res.get("hnsw_tuning", {})
    if "recommended" in ht:
        rows.append(("hnsw", "recommended for static embedders",
                     f"M={ht['recommended']['m']}, ef_construction={ht['recommended']['ef_construction']}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}" for r in rows]
    lines.insert(1, "-" * (w0 + w1 + 20))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

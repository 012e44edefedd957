"""Capacity model: what a deployment needs at 1,000 / 10,000 / 100,000 posts/s with a 7-day window.

Every input is a figure measured on this machine and read from a file (``bench/results.json``: embedders,
threads, shards; ``bench/rounds.json``: the rounds' kNN graph; ``docs/soak/*.json``: a worker's resident memory),
or measured here by a micro-benchmark of its own (``--measure``: Redis commands per second of one Redis server
with ``redis-benchmark``; ``--check``: one and two workers draining the same backlog through the embedded
broker, with the CPU seconds of every process). The deployment choices (node size, utilisation, replication)
are parameters, printed with the table. Writes ``docs/capacity.md`` and ``bench/capacity.json``.

    python bench/capacity.py --measure --check     # the micro-benchmarks, the small-scale check, the table
    python bench/capacity.py                        # the table again from the stored figures

The model (per post, ``R`` posts/s, window ``W`` s, ``N = R * W`` posts held):

* CPU core-seconds per post = embed + index insert + rounds' kNN graph + the rest of the pipeline;
  cores = ``R * that / utilisation``; on a GPU the embed term moves to ``R / G`` GPUs.
* RAM: ``N * bytes_per_post`` (HNSW + text, measured at 1 M posts) split over the workers, plus each worker's
  base (model, runtime) and a round's working memory.
* Redis: ``R * commands_per_post`` commands/s; memory ``N * redis_bytes_per_post`` (the post → partition map).
* Kafka: ``R * (post bytes + candidates per post * candidate bytes)`` in; storage = that * (window + margin)
  * replication.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

from .common import REPO, machine, say  # noqa: E402

RATES = (1_000, 10_000, 100_000)
WINDOW_S = 7 * 86_400
PARAMS = {   # deployment choices, not measurements
    "node_cores": 16, "node_ram_gib": 64, "ram_usable_share": 0.8, "cpu_utilisation": 0.7,
    "kafka_replication": 3, "topic_margin_s": 86_400, "redis_node_ram_gib": 25, "redis_utilisation": 0.5,
    "partition_mb_per_s": 10.0,
}
OUT_JSON = REPO / "bench" / "capacity.json"
OUT_MD = REPO / "docs" / "capacity.md"


# ---------------------------------------------------------------------- inputs
def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def inputs(res: dict, rounds: dict, soak: dict, meas: dict) -> dict:
    """The per-post figures the model uses, each with where it comes from."""
    f: dict = {}

    def put(key, value, source):
        if value is not None:
            f[key] = {"value": float(value), "source": source}

    th = res.get("threads", {})
    rows = th.get("rows", {})
    one = rows.get("threads_1", {})
    ec = meas.get("embed_cpu", {})
    for spec, r in ec.items():
        if "cpu_s_per_post" in r:
            put(f"embed_cpu_s[{spec}]", r["cpu_s_per_post"], f"capacity.json embed_cpu.{spec}.cpu_s_per_post (one "
                "thread, batch 32, the process's CPU clock)")
    if "embed_cpu_s[minilm-onnx]" in f:
        f["embed_core_s"] = dict(f["embed_cpu_s[minilm-onnx]"])
    elif one.get("raw_posts_per_s_same_threads"):
        put("embed_core_s", 1 / one["raw_posts_per_s_same_threads"],
            "1 / results.json threads.rows.threads_1.raw_posts_per_s_same_threads (minilm-onnx, one thread)")
    sh = res.get("shards", {})
    ic = meas.get("insert_cpu", {})
    if ic.get("insert_cpu_s_per_post"):
        put("insert_core_s", ic["insert_cpu_s_per_post"], f"capacity.json insert_cpu.insert_cpu_s_per_post (hnswlib "
            f"M=16, ef_construction=200, {ic['posts']:,} posts, one thread, CPU clock)")
        put("search_core_s", ic["search_cpu_s_per_post"], "capacity.json insert_cpu.search_cpu_s_per_post (k=10, "
            "ef=64)")
    elif sh.get("100000", {}).get("insert_per_s"):
        put("insert_core_s", 1 / sh["100000"]["insert_per_s"],
            "1 / results.json shards.100000.insert_per_s (hnswlib M=16, ef_construction=200, one thread)")
    big = rounds.get("sizes", {}).get("1000000") or rounds.get("sizes", {}).get("100000")
    if big:
        n = big["posts"]
        put("graph_core_s", big["first_round"]["cpu"]["graph_update"] / n,
            f"rounds.json sizes.{n}.first_round.cpu.graph_update / {n:,} (each post's kNN search for GBLE's graph, "
            "done once per post)")
        put("round_peak_ram_mib_per_1m_posts", big["first_round"]["peak_rss_added_mib"] * 1e6 / n,
            f"rounds.json sizes.{n}.first_round.peak_rss_added_mib, scaled to 1 M posts")
    bpp = res.get("bytes_per_post", {})
    if bpp.get("1000000"):
        text_extra = (bpp.get("100000+text", 0) - bpp.get("100000", 0)) if "100000+text" in bpp else 0
        put("bytes_per_post", bpp["1000000"] + max(0, text_extra),
            "results.json bytes_per_post.1000000 + (100000+text - 100000): HNSW at 1 M posts plus a 120-char text")
    ship = rows.get(th.get("shipped", ""), {})
    rd = ship.get("redis") or {}
    if rd.get("post_message_bytes") is not None:
        put("post_bytes", rd["post_message_bytes"], "mean size of the demo posts' messages (id, text, ts) as sent")
    cr = meas.get("check", {}).get("1", {}).get("redis") or {}
    src = "capacity.json check.1.redis"
    if cr:
        put("redis_ops_per_post", cr["post_path_commands_per_post"], f"{src}.post_path_commands_per_post (INFO "
            "commandstats over one worker's drain, batch 32: the posts' Lua calls, claims, ...)")
        put("redis_usec_per_post", cr["post_path_usec_per_post"], f"{src}.post_path_usec_per_post (Redis's time "
            "inside those commands)")
        put("redis_bg_ops_per_worker_s", cr["background_commands_per_worker_s"], f"{src}.background_commands_per_"
            "worker_s (timers, seed log, heartbeats, gauges)")
        put("redis_bg_usec_per_worker_s", cr["background_usec_per_worker_s"], f"{src}.background_usec_per_worker_s")
        put("redis_bytes_per_post_drain", cr["used_memory_per_post"], f"{src}.used_memory_per_post (used_memory "
            "after − before the drain / posts: a cross-check, noisy at 1,200 posts)")
    elif rd.get("ops_per_post") is not None:
        put("redis_ops_per_post", rd["ops_per_post"],
            f"results.json threads.rows.{th.get('shipped')}.redis.ops_per_post (INFO commandstats over the drain, "
            f"batch {th.get('batch')})")
        put("redis_bytes_per_post", (rd["used_memory_after"] - rd["used_memory_before"]) / rd["posts"],
            f"results.json threads.rows.{th.get('shipped')}.redis used_memory after - before / posts drained")
    if ship.get("candidates_per_post") is not None:
        put("candidates_per_post", ship["candidates_per_post"],
            f"results.json threads.rows.{th.get('shipped')}.candidates_per_post (demo posts, the bench detector)")
        put("candidate_bytes", ship["candidate_message_bytes"],
            f"results.json threads.rows.{th.get('shipped')}.candidate_message_bytes")
    if ship.get("pipeline_posts_per_s"):
        put("worker_drain_posts_per_s_2cores", ship["pipeline_posts_per_s"],
            f"results.json threads.rows.{th.get('shipped')}.pipeline_posts_per_s (one worker, this 2-core machine)")
    rss = [s.get("summary", {}).get("rss_mb_end") for s in soak.values() if s.get("embedder", "").startswith("minilm")]
    if rss and rss[0]:
        put("worker_base_rss_mib", rss[0], "docs/soak/soak-minilm-quick.json summary.rss_mb_end (minilm-onnx, a "
                                           "3,000-post window: the model and runtime)")
    chk = meas.get("check", {})
    if chk.get("1", {}).get("cpu_s_per_post"):
        put("pipeline_core_s_measured", chk["1"]["cpu_s_per_post"]["children"],
            "capacity.json check.1.cpu_s_per_post.children (worker, broker and Redis CPU over a drain / posts)")
    if meas.get("redis_node", {}).get("eval_per_s"):
        put("redis_node_ops_per_s", meas["redis_node"]["eval_per_s"],
            "capacity.json redis_node.eval_per_s (redis-benchmark, a claim-like Lua script, pipelined 32, here)")
    if meas.get("redis_node", {}).get("post_partition_bytes_per_post"):
        put("redis_bytes_per_post", meas["redis_node"]["post_partition_bytes_per_post"],
            "capacity.json redis_node.post_partition_bytes_per_post (200,000 19-digit post ids in one HASH, "
            "used_memory after − before)")
    elif "redis_bytes_per_post_drain" in f:
        f["redis_bytes_per_post"] = dict(f["redis_bytes_per_post_drain"])
    if meas.get("redis_node", {}).get("overhead_factor"):
        put("redis_overhead_factor", meas["redis_node"]["overhead_factor"],
            "capacity.json redis_node: (1 s / eval_per_s) / eval_usec_per_call (the server's whole time per call "
            "over the time INFO commandstats counts)")
    return f


def v(f: dict, key: str, default=None):
    return f[key]["value"] if key in f else default


# ---------------------------------------------------------------------- the model
def per_post_core_s(f: dict) -> dict:
    """Core-seconds per post by part. ``other``: the measured whole (worker + broker + Redis over a drain) less
    the embedding and the insert it contains; rounds' graph work is not in a drain and comes on top."""
    embed, insert, graph = v(f, "embed_core_s"), v(f, "insert_core_s", 0.0), v(f, "graph_core_s", 0.0)
    whole = v(f, "pipeline_core_s_measured")
    other = max(0.0, whole - embed - insert) if whole is not None and embed is not None else None
    return {"embed": embed, "insert": insert, "graph": graph, "other": other}


def row(rate: float, f: dict, p: dict = PARAMS, gpu_posts_per_s: float | None = None) -> dict:
    c = per_post_core_s(f)
    n = rate * WINDOW_S
    non_embed = c["insert"] + c["graph"] + (c["other"] or 0.0)
    cores_cpu = rate * (c["embed"] + non_embed) / p["cpu_utilisation"]
    cores_gpu_hosts = rate * non_embed / p["cpu_utilisation"]
    b = v(f, "bytes_per_post")
    base = v(f, "worker_base_rss_mib", 600.0) * 2**20
    round_per_post = v(f, "round_peak_ram_mib_per_1m_posts", 0.0) * 2**20 / 1e6
    usable = p["node_ram_gib"] * 2**30 * p["ram_usable_share"] - base
    per_worker_posts = usable / (b + round_per_post)
    w_ram = math.ceil(n / per_worker_posts)
    w_cpu = math.ceil(cores_cpu / p["node_cores"])
    workers = max(w_ram, w_cpu)
    w_gpu_cpu = math.ceil(cores_gpu_hosts / p["node_cores"])
    kafka_in = rate * (v(f, "post_bytes") + v(f, "candidates_per_post") * v(f, "candidate_bytes"))
    partitions = max(workers, math.ceil(kafka_in / (p["partition_mb_per_s"] * 1e6)))
    redis_ops = rate * v(f, "redis_ops_per_post") + workers * v(f, "redis_bg_ops_per_worker_s", 0.0)
    redis_mem = n * v(f, "redis_bytes_per_post")
    # Redis CPU (one core per node): the time inside the commands, times the measured server overhead
    usec = v(f, "redis_usec_per_post")
    redis_cpu = None if usec is None else (rate * usec + workers * v(f, "redis_bg_usec_per_worker_s", 0.0)) \
        * v(f, "redis_overhead_factor", 1.0) / 1e6
    redis_nodes = max(math.ceil(redis_mem / (p["redis_node_ram_gib"] * 2**30)),
                      math.ceil(redis_cpu / p["redis_utilisation"]) if redis_cpu else 1)
    by_embedder = {}
    for k in f:
        if k.startswith("embed_cpu_s["):
            spec = k[len("embed_cpu_s["):-1]
            by_embedder[spec] = rate * (v(f, k) + non_embed) / p["cpu_utilisation"]
    out = {
        "cores_by_embedder": by_embedder,
        "posts_per_s": rate, "window_posts": n,
        "cpu": {"cores": cores_cpu, "workers": workers, "workers_for_ram": w_ram, "workers_for_cpu": w_cpu},
        "gpu": {"gpus": (rate / gpu_posts_per_s) if gpu_posts_per_s else None, "host_cores": cores_gpu_hosts,
                "workers": max(w_ram, w_gpu_cpu)},
        "ram_per_worker_gib": (base + (n / workers) * (b + round_per_post)) / 2**30,
        "window_posts_per_worker": n / workers, "partitions": partitions,
        "redis_ops_per_s": redis_ops, "redis_memory_gib": redis_mem / 2**30, "redis_nodes": redis_nodes,
        "redis_cpu_cores": redis_cpu,
        "kafka_in_mb_per_s": kafka_in / 1e6,
        "kafka_storage_tb": kafka_in * (WINDOW_S + p["topic_margin_s"]) * p["kafka_replication"] / 1e12,
    }
    return out


def predict_two_vs_one(f: dict, chk: dict, cores: int) -> dict:
    """Two workers against one, from the model's assumption that a post costs the same CPU however many workers
    share the work (``c``, CPU seconds per post of worker, broker and Redis, measured on one worker's drain):

    * on an idle machine: ``D2 = min(2 * D1, cores / c)``;
    * with the CPU the two-worker run actually got (``B2`` cores busy, other jobs holding the rest):
      ``D2 = B2 / c`` (what can be checked on a loaded machine).
    """
    d1 = chk["1"]["posts_per_s"]
    c = chk["1"]["cpu_s_per_post"]["children"]
    idle = min(2 * d1, cores / c)
    b2 = chk["2"]["cores_busy"]["children"] if "2" in chk else None
    given = b2 / c if b2 else None
    return {"d1_posts_per_s": d1, "cpu_s_per_post": c, "cores": cores, "predicted_d2": idle,
            "predicted_ratio": idle / d1, "cores_busy_one_worker": chk["1"]["cores_busy"]["children"],
            "cores_busy_two_workers": b2, "predicted_d2_given_cpu": given,
            "predicted_ratio_given_cpu": given / d1 if given else None,
            "cpu_s_per_post_two_workers": chk["2"]["cpu_s_per_post"]["children"] if "2" in chk else None}


# ---------------------------------------------------------------------- micro-benchmarks
CLAIM_LUA = ("if redis.call('sadd', KEYS[1], ARGV[1]) == 1 then redis.call('hset', KEYS[2], ARGV[1], ARGV[2]) "
             "return 1 end return 0")


def redis_node(n: int = 200_000) -> dict:
    """One Redis server's rate for a claim-like Lua script (SADD then HSET) and for HSET, pipelined 32 deep,
    with ``redis-benchmark`` (random keys over 1 M ids) against a fresh ``redis-server`` on a free port."""
    if not (shutil.which("redis-server") and shutil.which("redis-benchmark")):
        return {"skipped": "no redis-server / redis-benchmark"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="synapse-cap-redis-")
    srv = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", d],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        base = ["redis-benchmark", "-p", str(port), "-n", str(n), "-P", "32", "-r", "1000000", "-q", "--csv"]
        out = {}
        for name, cmd in (("eval_per_s", ["eval", CLAIM_LUA, "2", "q", "h", "__rand_int__", "v"]),
                          ("hset_per_s", ["hset", "pp", "__rand_int__", "1"])):
            txt = subprocess.run(base + cmd, capture_output=True, text=True, timeout=300).stdout
            rows = [r for r in csv.reader(txt.strip().splitlines()) if r and r[0] != "test"]
            out[name] = float(rows[-1][1])
        stats = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True,
                               timeout=30).stdout
        for ln in stats.splitlines():
            if ln.startswith("cmdstat_eval:"):
                fields = dict(kv.split("=") for kv in ln.split(":", 1)[1].split(","))
                out["eval_usec_per_call"] = float(fields["usec_per_call"])
        # the post → partition map as the worker keeps it: one HASH, field = post id (19-digit ids here), value
        # = the partition; bytes per entry from used_memory before and after 200,000 entries
        import redis as redis_py

        r = redis_py.Redis(port=port)
        m0 = int(r.info("memory")["used_memory"])
        entries = 200_000
        for i in range(0, entries, 5_000):
            r.hset("post-partition", mapping={f"{1_800_000_000_000_000_000 + j:019d}": j % 64
                                               for j in range(i, i + 5_000)})
        out["post_partition_bytes_per_post"] = (int(r.info("memory")["used_memory"]) - m0) / entries
        r.close()
        if out.get("eval_usec_per_call"):
            # the server's whole time per script (parse, network, the event loop) over the time inside it, as
            # INFO commandstats counts it: the factor from the worker's measured usec to Redis CPU
            out["overhead_factor"] = (1e6 / out["eval_per_s"]) / out["eval_usec_per_call"]
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
        return out
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(d, ignore_errors=True)


def embed_cpu(specs=("minilm-onnx", "minilm-onnx-int8", "minilm", "wordllama"), posts: int = 192) -> dict:
    """CPU seconds per post of each embedder with one intra-op thread in micro-batches of 32, from the process's
    CPU clock (``time.process_time``), so other jobs on the machine slow the wall clock but not this figure."""
    from synapse_stream.embedders import make_embedder

    from .common import encode_microbatches, load_demo_posts

    texts = [p["text"] for p in load_demo_posts()]
    out = {}
    for spec in specs:
        try:
            static = spec.startswith(("wordllama", "model2vec"))
            e = make_embedder(spec, batch_size=32, **({} if static else {"threads": 1}))
        except Exception as exc:  # noqa: BLE001 - torch or the static package absent: that row is skipped
            out[spec] = {"skipped": f"{type(exc).__name__}: {exc}"}
            continue
        sample = texts if static else texts[:posts]
        encode_microbatches(e, sample[:64], 32)
        c, w = time.process_time(), time.perf_counter()
        encode_microbatches(e, sample, 32)
        out[spec] = {"cpu_s_per_post": (time.process_time() - c) / len(sample),
                     "wall_s_per_post": (time.perf_counter() - w) / len(sample), "posts": len(sample)}
        say("capacity", f"embed {spec}: {out[spec]['cpu_s_per_post'] * 1e3:.3f} CPU-ms per post "
                        f"(wall {out[spec]['wall_s_per_post'] * 1e3:.3f} ms)")
    return out


def insert_cpu(n: int = 10_000, dim: int = 384) -> dict:
    """hnswlib insert and a k=10 search per post at the worker's M=16, ef_construction=200, ef=64, one thread,
    on unit vectors (random: slightly dearer than real ones), CPU clock."""
    import hnswlib
    import numpy as np

    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    idx = hnswlib.Index(space="ip", dim=dim)
    idx.init_index(max_elements=n, M=16, ef_construction=200)
    idx.set_num_threads(1)
    c = time.process_time()
    for i in range(0, n, 32):
        idx.add_items(x[i:i + 32], np.arange(i, min(n, i + 32)))
    ins = (time.process_time() - c) / n
    idx.set_ef(64)
    c = time.process_time()
    for i in range(0, 2000):
        idx.knn_query(x[i], k=10)
    search = (time.process_time() - c) / 2000
    say("capacity", f"hnswlib at {n:,} posts: insert {ins * 1e3:.3f}, k=10 search {search * 1e3:.3f} CPU-ms per post")
    return {"posts": n, "insert_cpu_s_per_post": ins, "search_cpu_s_per_post": search}


def check(posts: int, embedder: str) -> dict:
    """One and two workers draining the same backlog (bench/stack.py run_workers), CPU of every process."""
    from . import stack

    out = {"embedder": embedder, "posts": posts, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    for n in (1, 2):
        out[str(n)] = stack.run_workers(embedder=embedder, posts=posts, batch=32, timeout=900, workers=n, env={})
    out["measured_ratio"] = out["2"]["posts_per_s"] / out["1"]["posts_per_s"]
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


# ---------------------------------------------------------------------- report
def _n(x, fmt="{:,.0f}"):
    return "–" if x is None else fmt.format(x)


def render(f: dict, rows: list[dict], pred: dict | None, meas: dict, gpu: float | None) -> str:
    c = per_post_core_s(f)
    L = ["# Capacity model", "",
         "What a deployment needs at 1,000, 10,000 and 100,000 posts/s with the default 7-day window, from the "
         "per-post costs measured on this machine (a shared 2-core AMD EPYC; every input below names the file and "
         "key it comes from). Written by `python bench/capacity.py` (`--measure --check` re-runs its own "
         "micro-benchmarks and the small-scale check). Measured benchmarks: [benchmarks.md](benchmarks.md).", "",
         "## The table", "",
         f"Deployment choices (parameters, not measurements): {PARAMS['node_cores']} cores and "
         f"{PARAMS['node_ram_gib']} GiB per worker node, {PARAMS['ram_usable_share']:.0%} of it for the window, CPU "
         f"at {PARAMS['cpu_utilisation']:.0%}, Kafka replication {PARAMS['kafka_replication']}, posts kept "
         f"window + 1 day (`topic_retention_margin`), Redis nodes of {PARAMS['redis_node_ram_gib']} GiB at "
         f"{PARAMS['redis_utilisation']:.0%} of their measured command rate, {PARAMS['partition_mb_per_s']:.0f} MB/s "
         "per partition at most.", ""]
    hdr = ("| | " + " | ".join(f"{r['posts_per_s']:,} posts/s" for r in rows) + " |")
    L += [hdr, "|---|" + "---:|" * len(rows)]

    def line(label, fn):
        L.append(f"| {label} | " + " | ".join(fn(r) for r in rows) + " |")
    line("posts in the 7-day window", lambda r: f"{r['window_posts'] / 1e9:,.2f} bn")
    line("**CPU only**: cores (embedding included)", lambda r: _n(r["cpu"]["cores"]))
    for spec in ("minilm-onnx-int8", "minilm", "wordllama"):
        if all(spec in r["cores_by_embedder"] for r in rows):
            line(f"CPU only: cores with `{spec}` instead", lambda r, s=spec: _n(r["cores_by_embedder"][s]))
    line("CPU only: workers (RAM-bound / CPU-bound)",
         lambda r: f"**{r['cpu']['workers']:,}** ({r['cpu']['workers_for_ram']:,} / {r['cpu']['workers_for_cpu']:,})")
    line("**GPU**: GPUs for embedding", lambda r: _n(r["gpu"]["gpus"], "{:,.1f}") if gpu else "R / G (G not measured)")
    line("GPU: host cores (index, rounds, pipeline)", lambda r: _n(r["gpu"]["host_cores"]))
    line("GPU: workers (RAM-bound)", lambda r: f"{r['gpu']['workers']:,}")
    line("RAM per worker (CPU-only sizing)", lambda r: f"{r['ram_per_worker_gib']:,.1f} GiB")
    line("window posts per worker", lambda r: f"{r['window_posts_per_worker'] / 1e6:,.1f} M")
    line("partitions (posts topic)", lambda r: f"{r['partitions']:,}")
    line("Redis commands/s", lambda r: _n(r["redis_ops_per_s"]))
    line("Redis CPU (cores, one per node)", lambda r: _n(r["redis_cpu_cores"], "{:,.2f}"))
    line("Redis memory (post → partition map)", lambda r: f"{r['redis_memory_gib']:,.0f} GiB")
    line("Redis nodes (memory- or command-bound)", lambda r: f"{r['redis_nodes']:,}")
    line("Kafka in (posts + candidates)", lambda r: f"{r['kafka_in_mb_per_s']:,.2f} MB/s")
    line("Kafka storage (8 days × replication)", lambda r: f"{r['kafka_storage_tb']:,.2f} TB")
    L += ["", "## Formulas and inputs", "",
          f"`R` posts/s, `W` = 7 days = {WINDOW_S:,} s, `N = R × W` posts in the window.", "",
          "| term | formula | value | source |", "|---|---|---:|---|"]

    def inp(key, label, formula, unit="", scale=1.0, fmt="{:,.3f}"):
        if key in f:
            L.append(f"| {label} | {formula} | {fmt.format(f[key]['value'] * scale)}{unit} | {f[key]['source']} |")
    inp("embed_core_s", "**embed** (the shipped minilm-onnx fp32)", "core-s per post", " ms", 1e3)
    for spec in ("minilm-onnx", "minilm-onnx-int8", "minilm", "wordllama"):
        inp(f"embed_cpu_s[{spec}]", f"embed ({spec}, one thread)", "CPU-s per post", " ms", 1e3)
    inp("insert_core_s", "HNSW insert", "core-s per post", " ms", 1e3)
    inp("search_core_s", "HNSW k=10 search (not a term: the graph term holds it)", "core-s per post", " ms", 1e3)
    inp("graph_core_s", "rounds' kNN graph", "core-s per post", " ms", 1e3)
    inp("pipeline_core_s_measured", "one worker's drain, all processes", "CPU-s per post", " ms", 1e3)
    if c["other"] is not None:
        L.append(f"| rest of the pipeline | drain − embed − insert | {c['other'] * 1e3:,.3f} ms | derived |")
    inp("bytes_per_post", "RAM per post in the window", "bytes", " B", 1, "{:,.0f}")
    inp("round_peak_ram_mib_per_1m_posts", "a round's working memory", "MiB per 1 M posts", " MiB", 1, "{:,.0f}")
    inp("worker_base_rss_mib", "worker base RSS", "MiB", " MiB", 1, "{:,.0f}")
    inp("redis_ops_per_post", "Redis commands per post", "commands", "", 1, "{:,.3f}")
    inp("redis_usec_per_post", "Redis time per post", "µs inside commands", " µs", 1, "{:,.2f}")
    inp("redis_bg_ops_per_worker_s", "Redis background commands", "per worker-second", "", 1, "{:,.1f}")
    inp("redis_bg_usec_per_worker_s", "Redis background time", "µs per worker-second", " µs", 1, "{:,.0f}")
    inp("redis_overhead_factor", "Redis server overhead", "whole time / command time", "×", 1, "{:,.2f}")
    inp("redis_bytes_per_post", "Redis memory per post", "bytes", " B", 1, "{:,.0f}")
    inp("redis_bytes_per_post_drain", "Redis memory per post (drain)", "bytes", " B", 1, "{:,.0f}")
    inp("redis_node_ops_per_s", "one Redis node", "claim scripts/s", "", 1, "{:,.0f}")
    inp("post_bytes", "post message", "bytes", " B", 1, "{:,.0f}")
    inp("candidates_per_post", "candidates per post", "", "", 1, "{:,.3f}")
    inp("candidate_bytes", "candidate message", "bytes", " B", 1, "{:,.0f}")
    L += ["",
          "* cores (CPU only) = `R × (embed + insert + graph + rest) / utilisation`; GPU hosts: the same without "
          "`embed`; GPUs = `R / G` with `G` a GPU's posts/s for MiniLM at batch 256"
          + (f" (G = {gpu:,.0f}, given with `--gpu-posts-per-s`)" if gpu else
             " — **not measured: there is no GPU here**; run `bench/run.py --only embedders` with "
             "`SYNAPSE_DEVICE=cuda` on a GPU machine and pass `--gpu-posts-per-s`") + ".",
          "* workers = max(`N × (bytes_per_post + round memory per post)` / (node RAM × usable share − base RSS), "
          "cores / node cores); RAM per worker = base + its share of the window.",
          "* partitions = max(workers, Kafka in / per-partition MB/s): one shard per partition, so each worker holds "
          "at least one.",
          "* Redis commands/s = `R × commands per post + workers × background commands per worker-second`; CPU = "
          "`(R × µs per post + workers × background µs per worker-second) × server overhead`; memory = "
          "`N × bytes per post`; nodes = max(memory / node RAM, CPU / utilisation).",
          "* Kafka in = `R × (post bytes + candidates per post × candidate bytes)`; storage = Kafka in × (W + 1 day) "
          "× replication.", ""]
    L += ["## Check at small scale: two workers against one", ""]
    chk = meas.get("check")
    if pred and chk:
        c2 = pred["cpu_s_per_post_two_workers"]
        L += [f"`python bench/capacity.py --measure --check` ({chk['embedder']}, {chk['posts']:,} posts on a 2-partition "
              f"topic, load average {chk['load_average_at_start']} → {chk['load_average_at_end']} on "
              f"{pred['cores']} cores):", "",
              "| | one worker | two workers |", "|---|---:|---:|",
              f"| drain, posts/s | {pred['d1_posts_per_s']:,.1f} | {chk['2']['posts_per_s']:,.1f} |",
              f"| CPU per post, all processes (worker(s), broker, Redis) | {pred['cpu_s_per_post'] * 1e3:.2f} ms | "
              f"{c2 * 1e3:.2f} ms |",
              f"| cores busy (our processes) | {pred['cores_busy_one_worker']:.2f} | "
              f"{pred['cores_busy_two_workers']:.2f} |", "",
              f"* The model's assumption, a post costs the same CPU however many workers share the work: "
              f"{c2 * 1e3:.2f} ms with two workers against {pred['cpu_s_per_post'] * 1e3:.2f} ms with one "
              f"({(c2 / pred['cpu_s_per_post'] - 1) * 100:+.1f} %).",
              f"* Two-worker/one-worker ratio with the CPU the run got (`D2 = B2 / c`): predicted "
              f"**{pred['predicted_ratio_given_cpu']:.2f}**, measured **{chk['measured_ratio']:.2f}**.",
              f"* On an idle {pred['cores']}-core machine the model predicts `min(2 × D1, cores / c)` = "
              f"{pred['predicted_d2']:,.0f} posts/s, a ratio of {pred['predicted_ratio']:.2f}; that could not be "
              "checked here: other jobs held most of the cores"
              + (f" (our processes got {pred['cores_busy_one_worker']:.2f} and "
                 f"{pred['cores_busy_two_workers']:.2f} cores)." if pred['cores_busy_two_workers'] < 0.8 * pred['cores']
                 else "."), ""]
        wk = meas.get("previous_workers")
        if wk:
            L += [f"The `workers` section of results.json (torch MiniLM, an earlier and quieter run) measured "
                  f"{wk:.2f} for the same ratio.", ""]
    else:
        L += ["Not run yet: `python bench/capacity.py --check`.", ""]
    L += ["## Where the model is uncertain", "",
          "* **The window dominates, not the rate.** A 7-day window at 10,000 posts/s holds 6 bn posts: the "
          "workers are RAM-bound long before they are CPU-bound. A post held costs about 2.2 KB (HNSW graph, vector, "
          "text), but a round that builds GBLE's kNN graph over the window adds about 6.6 KB a post while it runs "
          "(rounds.json at 1 M posts), the largest RAM term; rounds over a sample of the window, a shorter window, "
          "`retention_posts`, or int8 / PCA-reduced vectors (none measured here) change the table more than any "
          "CPU figure. With a 1-day window the same rates need a seventh of the workers.",
          "* **Index costs measured up to 1 M posts per shard.** HNSW insert and search grow about as log N; a "
          "shard of tens of millions (the per-worker share here) is extrapolated, and the round's graph work per "
          "post (`graph`) was measured at 1 M posts. GBLE's propagation is linear in the window per round and is "
          "not in the per-post terms.",
          "* **CPU per post comes from a 2-core machine shared with other jobs** (load average 11-15 during these "
          "runs). The embed and insert terms are read from the CPU clock, so other jobs slow the wall clock but "
          "not the figure; shared caches still inflate it a little. Cores are assumed to add up linearly: a "
          "worker node of 16 cores running ONNX Runtime with 15 intra-op threads was not measured (only 1 and 2 "
          "threads, docs/benchmarks.md section 1b); several workers per node, each with a few threads, keep "
          "closer to the measured case.",
          "* **The rest of the pipeline** is measured with the embedded Tansu broker and Redis on the same cores "
          "as the worker; a real Kafka cluster moves the broker's CPU off the worker nodes (the model then "
          "over-counts worker cores).",
          "* **Redis commands per post** depend on the micro-batch size (the claims are one Lua call per batch) and "
          "on the candidate rate; the figure is at batch 32 with the demo detector. Verdicts, rounds and the "
          "console add commands per candidate, not per post, and are left out.",
          "* **Kafka bytes** use the demo posts (about 100-character texts); real posts may be several times "
          "longer. Record and batch overhead and compression are left out; the workers read the posts once, so "
          "the read rate is about the write rate (plus the console and any replay after a lost snapshot).",
          "* **GPU**: no GPU here; the GPU column needs `G`, a measured GPU rate.", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="re-run the Redis micro-benchmark")
    ap.add_argument("--check", action="store_true", help="re-run the two-worker check (minutes)")
    ap.add_argument("--check-posts", type=int, default=1200)
    ap.add_argument("--embedder", default="minilm-onnx")
    ap.add_argument("--gpu-posts-per-s", type=float, default=None, help="a GPU's measured MiniLM posts/s, if any")
    a = ap.parse_args(argv)
    res = _load(REPO / "bench" / "results.json")
    rounds = _load(REPO / "bench" / "rounds.json")
    soak = {p.name: _load(p) for p in sorted((REPO / "docs" / "soak").glob("*.json"))}
    meas = _load(OUT_JSON)
    meas["machine"] = machine()
    if a.measure or "redis_node" not in meas:
        say("capacity", "Redis: one server's command rate (redis-benchmark)")
        meas["redis_node"] = redis_node()
        say("capacity", f"Redis: {meas['redis_node']}")
    if a.measure or "embed_cpu" not in meas:
        meas["embed_cpu"] = embed_cpu()
        meas["insert_cpu"] = insert_cpu()
    if a.check:
        meas["check"] = check(a.check_posts, a.embedder)
    if isinstance(res.get("workers", {}).get("speedup_2_vs_1"), float):
        meas["previous_workers"] = res["workers"]["speedup_2_vs_1"]
    f = inputs(res, rounds, soak, meas)
    missing = [k for k in ("embed_core_s", "bytes_per_post", "redis_ops_per_post", "post_bytes") if k not in f]
    if missing:
        say("capacity", f"missing inputs {missing}: run bench/run.py --quick --only embedders,threads,shards --merge")
        return 1
    rows = [row(r, f, gpu_posts_per_s=a.gpu_posts_per_s) for r in RATES]
    pred = predict_two_vs_one(f, meas["check"], meas["machine"]["cores"]) if meas.get("check") else None
    meas.update({"inputs": f, "params": PARAMS, "rows": rows, "prediction": pred,
                 "command": "python bench/capacity.py " + " ".join(argv if argv is not None else sys.argv[1:])})
    OUT_JSON.write_text(json.dumps(meas, indent=2) + "\n", encoding="utf-8")
    OUT_MD.write_text(render(f, rows, pred, meas, a.gpu_posts_per_s), encoding="utf-8")
    say("capacity", f"wrote {OUT_MD} and {OUT_JSON}")
    for r in rows:
        say("capacity", f"{r['posts_per_s']:>7,} posts/s: {r['cpu']['workers']:,} workers, {r['cpu']['cores']:,.0f} "
            f"cores, {r['redis_memory_gib']:,.0f} GiB Redis, {r['kafka_in_mb_per_s']:.1f} MB/s Kafka")
    if pred:
        say("capacity", f"two vs one worker: predicted {pred['predicted_ratio_given_cpu']:.2f} with the CPU the run got "
            f"({pred['predicted_ratio']:.2f} on an idle machine), measured {meas['check']['measured_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

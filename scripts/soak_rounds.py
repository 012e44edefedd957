"""The figures docs/soak.md quotes beside a soak's summary line, from its JSON: rounds with a full window before and
after the kill (p50/p90/p99/max, the rounds' steps), the first rounds after the restart, memory at 2x the window and
at the end, the latency split.

    .venv/bin/python scripts/soak_rounds.py docs/soak/soak.json [more.json ...]
"""
from __future__ import annotations

import json
import sys

import numpy as np


def pct(xs, q):
    return round(float(np.percentile(xs, q)), 2) if len(xs) else None


def spread(xs) -> dict:
    return {"n": len(xs), "p50": pct(xs, 50), "p90": pct(xs, 90), "p99": pct(xs, 99),
            "max": round(max(xs), 2) if xs else None}


def report(path: str) -> dict:
    d = json.load(open(path))
    window, samples, rounds = d["window"], d["samples"], d["rounds"]
    killed = d.get("restart", {}).get("killed_at") or float("inf")
    full_at = next((s["t"] for s in samples if s["posts_sent"] >= window), float("inf"))
    before = [r for r in rounds if full_at <= r["end"] < killed]
    after = [r for r in rounds if r["end"] >= killed]
    steps: dict[str, list[float]] = {}
    for r in before:
        for k, v in r.get("phases", {}).items():
            steps.setdefault(k, []).append(v)
    mem = [s for s in samples if s["posts_sent"] >= 2 * window and s["t"] < killed]
    out = {
        "summary_line_fields": {k: d["summary"].get(k) for k in ("round_p99_s", "latency_p99_ms",
                                                                    "latency_p99_in_rounds_ms", "restart_s",
                                                                    "rss_growth_pct", "redis_growth_pct",
                                                                    "redis_growth_excl_answers_pct")},
        "full_window_rounds_before_kill": spread([r["seconds"] for r in before]),
        "steps_p50_before_kill": {k: pct(v, 50) for k, v in sorted(steps.items(), key=lambda t: -np.median(t[1]))},
        "first_round_after_restart_s": after[0]["seconds"] if after else None,
        "next_rounds_after_restart": [r["seconds"] for r in after[1:31]],
        "rounds_after_restart": spread([r["seconds"] for r in after[1:]]),
        "checkpoint_taken_back": d.get("checkpoint_taken_back", d["summary"].get("checkpoint_taken_back")),
    }
    if mem:
        out["memory_mb_at_2x_window_and_end"] = {k: [round(mem[0][k], 1), round(mem[-1][k], 1)]
                                                 for k in ("rss_mb", "redis_mb", "redis_other_mb") if k in mem[0]}
    return out


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p)
        print(json.dumps(report(p), indent=2))

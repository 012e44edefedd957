"""A line chart of shares (0 to 1) over time as plain SVG geometry for a template: no JavaScript, no inline style
(the page's CSP allows neither). :func:`share_chart` takes a detector's samples (``stats.Records``)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

SERIES = (("precision", "live precision", "c-precision"), ("recall", "recall estimate", "c-recall"),
          ("budget_used", "budget used", "c-budget"), ("cv_precision", "classifier CV precision", "c-cvp"),
          ("cv_recall", "classifier CV recall", "c-cvr"))


@dataclass(frozen=True)
class Line:
    label: str
    css: str
    points: str          # "x,y x,y ..." for <polyline points>
    last: float | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    pad: int
    lines: list[Line] = field(default_factory=list)
    band: str = ""       # the recall interval as a <polygon points>
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_labels: list[tuple[float, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(line.points for line in self.lines)


def share_chart(samples: list[dict], width: int = 720, height: int = 240, pad: int = 36) -> Chart:
    ts = [float(s["t"]) for s in samples if isinstance(s.get("t"), (int, float))]
    if not ts:
        return Chart(width, height, pad, [Line(lbl, css, "", None) for _, lbl, css in SERIES])
    t0, t1 = min(ts), max(ts)
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return round(pad + (t - t0) / span * (width - 2 * pad), 1)

    def y(v: float) -> float:
        return round(height - pad - max(0.0, min(1.0, v)) * (height - 2 * pad), 1)

    lines = []
    for key, label, css in SERIES:
        pts = [(s["t"], s[key]) for s in samples if isinstance(s.get(key), (int, float))]
        lines.append(Line(label, css, " ".join(f"{x(t)},{y(v)}" for t, v in pts), pts[-1][1] if pts else None))
    band_pts = [(s["t"], s["recall_lower"], s["recall_upper"]) for s in samples
                if isinstance(s.get("recall_lower"), (int, float)) and isinstance(s.get("recall_upper"), (int, float))]
    band = ""
    if band_pts:
        band = " ".join(f"{x(t)},{y(hi)}" for t, _, hi in band_pts) + " " + " ".join(
            f"{x(t)},{y(lo)}" for t, lo, _ in reversed(band_pts))
    fmt = "%H:%M" if span < 86_400 else "%d %b %H:%M"
    x_labels = [(x(t), time.strftime(fmt, time.localtime(t))) for t in (t0, t0 + span / 2, t1)]
    y_labels = [(y(v), f"{v:.0%}") for v in (0.0, 0.5, 1.0)]
    return Chart(width, height, pad, lines, band, x_labels, y_labels)

"""Trend proposals in the console (analysts): the open ones ranked by growth, one proposal's medoids, terms and
timeline, and the one step to a detector (accept: a detector seeded with the medoids, by the new-detector path;
reject: its group is muted on every worker). The proposals come from ``parts.trends``
(:class:`~stream_app.trend_board.TrendBoard`). Post texts are hostile: the templates autoescape them."""
from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from stream_app.console.web import action, page, parts, render
from stream_app.trend_board import accept, detector_name, find, ranked, reject
from synapse_stream.exceptions import SynapseError


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str


def timeline_bars(timeline, width: int = 720, height: int = 160, pad: int = 24) -> list[Bar]:
    """SVG bars (attributes only: the CSP allows no inline style) for ``[[bin start, posts], ...]``."""
    pts = [(float(t), float(c)) for t, c in (timeline or []) if isinstance(c, (int, float))]
    if not pts:
        return []
    top = max(c for _, c in pts) or 1.0
    w = (width - 2 * pad) / len(pts)
    return [Bar(round(pad + i * w, 1), round(height - pad - c / top * (height - 2 * pad), 1), round(max(1.0, w - 1), 1),
                round(c / top * (height - 2 * pad), 1), f"{int(c)} posts") for i, (_, c) in enumerate(pts)]


async def _all(request: Request) -> dict[str, dict]:
    board = parts(request).trends
    if board is None:
        raise SynapseError("the console has no trends topic configured")
    return await board.all()


@page("analyst")
async def list_page(request: Request, user) -> Response:
    try:
        props = await _all(request)
    except SynapseError as exc:
        return render(request, "error.html", status=503, message=str(exc))
    return render(request, "trends.html", open=ranked(props), decided=[p for p in ranked(props, None)
                                                                        if p.get("status") != "open"][:50],
                  message=request.query_params.get("msg", ""))


@page("analyst")
async def proposal_page(request: Request, user) -> Response:
    pid = request.path_params["pid"]
    try:
        p = find(await _all(request), pid)
    except SynapseError as exc:
        return render(request, "error.html", status=503, message=str(exc))
    if p is None:
        return render(request, "error.html", status=404, message=f"no proposal {pid!r}")
    return render(request, "trend.html", p=p, bars=timeline_bars(p.get("timeline")), suggested=detector_name(p))


@action("analyst")
async def accept_action(request: Request, user) -> Response:
    pid = request.path_params["pid"]
    form = await request.form()
    name = str(form.get("detector") or "").strip() or None
    try:
        d = await accept(parts(request).trends, parts(request).catalog, pid, detector=name, by=user.name)
    except SynapseError as exc:
        p = find(await _all(request), pid) or {"id": pid, "medoids": [], "terms": []}
        return render(request, "trend.html", status=400, p=p, bars=timeline_bars(p.get("timeline")),
                      suggested=name or detector_name(p), error=str(exc))
    return RedirectResponse(f"/detectors/{d['name']}?msg=started", status_code=303)


@action("analyst")
async def reject_action(request: Request, user) -> Response:
    pid = request.path_params["pid"]
    try:
        await reject(parts(request).trends, pid, by=user.name)
    except SynapseError as exc:
        return render(request, "error.html", status=400, message=str(exc))
    return RedirectResponse("/trends?msg=rejected", status_code=303)


routes = [Route("/trends", list_page, methods=["GET"]),
          Route("/trends/{pid}", proposal_page, methods=["GET"]),
          Route("/trends/{pid}/accept", accept_action, methods=["POST"]),
          Route("/trends/{pid}/reject", reject_action, methods=["POST"])]

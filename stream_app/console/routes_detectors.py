"""The analysts' pages: every detector with its state, one detector's numbers (live, refreshed by htmx) with a
chart over time and its latest detections, its settings (pause, resume, change), and the new-detector flow:
a description, seeds suggested by the LLM (ACS picks, each editable or removable) or typed and uploaded, start."""
from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from stream_app.console.catalog import EDITABLE, NewSeed, checked
from stream_app.console.chart import share_chart
from stream_app.console.seeding import check_seeds, parse_upload, typed
from stream_app.console.stats import report
from stream_app.console.web import action, page, parts, render
from synapse_stream.exceptions import SynapseError

CREATE_FIELDS = ("tau", "audit_rate", "candidates", "max_query_ratio")


async def _reports(request: Request) -> list:
    p = parts(request)
    dets = await p.catalog.all()
    stats = await p.queue.stats(time.time())
    conf = request.app.state.settings.audit_confidence
    return [await report(p.state, name, d, confidence=conf, waiting=stats.queued.get(name, 0))
            for name, d in sorted(dets.items())]


@page("analyst")
async def list_page(request: Request, user) -> Response:
    return render(request, "detectors.html", reports=await _reports(request))


@page("analyst")
async def list_live(request: Request, user) -> Response:
    return render(request, "_detector_rows.html", reports=await _reports(request))


async def _detector(request: Request, name: str):
    p = parts(request)
    d = (await p.catalog.all()).get(name)
    if d is None:
        return None
    stats = await p.queue.stats(time.time())
    return await report(p.state, name, d, confidence=request.app.state.settings.audit_confidence,
                        waiting=stats.queued.get(name, 0))


async def _live_context(request: Request, name: str) -> dict | None:
    r = await _detector(request, name)
    if r is None:
        return None
    p = parts(request)
    samples = await p.records.samples(name)
    # the chart ends with the numbers of this moment
    chart = share_chart(samples + [r.sample(time.time())])
    return {"r": r, "chart": chart, "detections": await p.records.detections(name, 20)}


@page("analyst")
async def detector_page(request: Request, user) -> Response:
    name = request.path_params["name"]
    ctx = await _live_context(request, name)
    if ctx is None:
        return render(request, "error.html", status=404, message=f"No detector {name!r}.")
    return render(request, "detector.html", editable=EDITABLE, message=request.query_params.get("msg", ""), **ctx)


@page("analyst")
async def detector_live(request: Request, user) -> Response:
    ctx = await _live_context(request, request.path_params["name"])
    if ctx is None:
        return Response(status_code=404)
    return render(request, "_detector_live.html", **ctx)


async def _change(request: Request, name: str, changes: dict, done: str) -> Response:
    try:
        await parts(request).catalog.update(name, changes)
    except SynapseError as exc:
        return render(request, "error.html", status=400, message=str(exc))
    return RedirectResponse(f"/detectors/{name}?msg={done}", status_code=303)


@action("analyst")
async def pause(request: Request, user) -> Response:
    return await _change(request, request.path_params["name"], {"paused": True}, "paused")


@action("analyst")
async def resume(request: Request, user) -> Response:
    return await _change(request, request.path_params["name"], {"paused": False}, "resumed")


def _settings_from(form, fields) -> dict:
    out = {}
    for f in fields:
        v = form.get(f)
        if v is None or (isinstance(v, str) and v.strip() == "" and f != "description"):
            continue
        v = str(v).strip()
        kind = EDITABLE[f]
        try:
            out[f] = kind(v) if kind is not str else v
        except ValueError:
            raise SynapseError(f"{f}: {v!r} is not a {kind.__name__}") from None
    return out


@action("analyst")
async def change_settings(request: Request, user) -> Response:
    try:
        changes = _settings_from(await request.form(), EDITABLE)
    except SynapseError as exc:
        return render(request, "error.html", status=400, message=str(exc))
    return await _change(request, request.path_params["name"], changes, "saved")


# ------------------------------------------------------------------ new detector
@page("analyst")
async def new_page(request: Request, user) -> Response:
    return render(request, "new_detector.html", llm=parts(request).suggester is not None, form={})


def _new_doc(form) -> dict:
    doc = {"name": str(form.get("name") or "").strip(), "description": str(form.get("description") or "").strip()}
    doc.update(_settings_from(form, CREATE_FIELDS))
    return doc


@action("analyst")
async def new_seeds(request: Request, user) -> Response:
    """Step 2: the seeds, suggested by the LLM when asked for, else an empty list to type into or upload."""
    p = parts(request)
    form = await request.form()
    llm = p.suggester is not None
    try:
        doc = _new_doc(form)
        checked(doc)
        if doc["name"] in await p.catalog.all():
            raise SynapseError(f"a detector named {doc['name']!r} exists already")
    except SynapseError as exc:
        return render(request, "new_detector.html", status=400, llm=llm, form=dict(form), error=str(exc))
    suggestions, note, diagnostics = [], "", []
    if llm and form.get("use_llm"):
        try:
            suggestions = await asyncio.to_thread(p.suggester.suggest, doc["description"])
            diagnostics = await asyncio.to_thread(p.suggester.diagnose, suggestions)
        except SynapseError as exc:
            note = f"The LLM gave no seeds ({exc}). Type or upload them instead."
    return render(request, "new_seeds.html", doc=doc, suggestions=suggestions, note=note, llm=llm,
                  diagnostics=diagnostics)


@action("analyst")
async def new_start(request: Request, user) -> Response:
    """Step 3: create the detector and publish its seeds (kept suggestions, edited ones, typed and uploaded)."""
    p = parts(request)
    form = await request.form()
    doc = _new_doc(form)
    kept = form.getlist("seed")
    originals = form.getlist("seed_llm")
    seeds: list[NewSeed] = []
    try:
        texts = []
        for i, t in enumerate(kept):
            if form.get(f"drop_{i}"):
                continue
            texts.append(str(t))
        texts += typed(str(form.get("more") or ""))
        upload = form.get("upload")
        if upload is not None and hasattr(upload, "read"):
            data = await upload.read()
            if data:
                texts += parse_upload(data, getattr(upload, "filename", "") or "")
        texts = check_seeds(texts)
        llm_texts = {str(o).strip() for o in originals}
        seeds = [NewSeed(t, "synthetic" if t in llm_texts else "manual") for t in texts]
        created = await p.catalog.create(doc)
    except SynapseError as exc:
        return render(request, "new_seeds.html", status=400, doc=doc, error=str(exc), llm=p.suggester is not None,
                      suggestions=[str(t) for t in kept])
    await p.catalog.add_seeds(created["name"], seeds)
    return RedirectResponse(f"/detectors/{created['name']}?msg=started", status_code=303)


routes = [Route("/detectors", list_page, methods=["GET"]),
          Route("/detectors/live", list_live, methods=["GET"]),
          Route("/detectors/new", new_page, methods=["GET"]),
          Route("/detectors/new", new_seeds, methods=["POST"]),
          Route("/detectors/new/start", new_start, methods=["POST"]),
          Route("/detectors/{name}", detector_page, methods=["GET"]),
          Route("/detectors/{name}/live", detector_live, methods=["GET"]),
          Route("/detectors/{name}/pause", pause, methods=["POST"]),
          Route("/detectors/{name}/resume", resume, methods=["POST"]),
          Route("/detectors/{name}/settings", change_settings, methods=["POST"])]

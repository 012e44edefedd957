"""The review page and its JSON API (the page's script, ``static/review.js``, calls it; every call carries the
CSRF header). The JSON of an item holds only what the page shows (never the candidate's ``reason``: audit
items are not marked, see ``why.py``)."""
from __future__ import annotations

import time
import unicodedata

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stream_app.console.items import ReviewItem
from stream_app.console.web import action, page, parts, render
from stream_app.console.why import explain

LONG_POST = 2_000
# direction controls (LRE RLE PDF LRO RLO, LRI RLI FSI PDI) and invisible format characters: flagged for the moderator
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_flags(text: str) -> list[str]:
    """What the moderator should know about a text that it may hide: direction controls, invisible characters,
    its length."""
    flags = []
    if any(ch in _BIDI for ch in text):
        flags.append("direction controls")
    elif any(unicodedata.category(ch) == "Cf" for ch in text):
        flags.append("invisible characters")
    if len(text) > LONG_POST:
        flags.append(f"{len(text):,} characters")
    return flags


class ItemViews:
    """Review items as the page's JSON, with the detector's description (the guidelines) and the seeds' texts
    (read from the shared state at most every ``ttl`` seconds per detector)."""

    def __init__(self, state, catalog, ttl: float = 10.0) -> None:
        self.state, self.catalog, self.ttl = state, catalog, ttl
        self._seeds: dict[str, tuple[float, dict[str, dict]]] = {}

    async def seeds(self, detector: str) -> dict[str, dict]:
        hit = self._seeds.get(detector)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            docs = await self.state.seeds.all(detector)
            hit = (time.monotonic(), {str(d.get("id")): {"text": d.get("text", ""), "origin": d.get("origin", "")}
                                      for d in docs})
            self._seeds[detector] = hit
        return hit[1]

    async def view(self, item: ReviewItem) -> dict:
        det = (await self.catalog.all()).get(item.detector) or {}
        why = explain(item, await self.seeds(item.detector), float(det.get("tau") if det.get("tau") is not None else 0.6))
        return {"key": item.key, "detector": item.detector, "text": item.text, "flags": text_flags(item.text),
                "guidelines": det.get("description") or "", "why": why.to_dict()}


def views(request: Request) -> ItemViews:
    return request.app.state.item_views


async def _body(request: Request) -> dict:
    try:
        doc = await request.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


@page("moderator")
async def review_page(request: Request, user) -> Response:
    dets = await parts(request).catalog.all()
    chosen = request.query_params.get("detector") or ""
    return render(request, "review.html", detectors=sorted(dets), chosen=chosen if chosen in dets else "",
                  undo_seconds=parts(request).queue.grace_seconds)


@action("moderator")
async def api_lease(request: Request, user) -> Response:
    body = await _body(request)
    p = parts(request)
    det = body.get("detector") or None
    dets = [det] if isinstance(det, str) else None
    now = time.time()
    leases = await p.queue.lease(user.name, request.app.state.settings.console_prefetch, now, detectors=dets)
    stats = await p.queue.stats(now)
    waiting = stats.queued.get(det, 0) - stats.leased.get(det, 0) if det else stats.total() - sum(stats.leased.values())
    return JSONResponse({"ok": True, "items": [await views(request).view(le.item) for le in leases],
                         "waiting": max(0, waiting), "lease_seconds": p.queue.lease_seconds})


@action("moderator")
async def api_decide(request: Request, user) -> Response:
    body = await _body(request)
    key, label = body.get("key"), body.get("label")
    if not isinstance(key, str) or label not in (0, 1) or isinstance(label, bool):
        return JSONResponse({"ok": False, "error": "a decision needs the item's key and a label 0 or 1"}, status_code=400)
    d = await parts(request).queue.decide(user.name, key, int(label), time.time())
    if d is None:
        return JSONResponse({"ok": False, "error": "not recorded: this item is no longer yours (your lease ran out "
                             "and it went to another moderator, or it was answered)"}, status_code=409)
    return JSONResponse({"ok": True, "undo_until": d.due})


@action("moderator")
async def api_skip(request: Request, user) -> Response:
    key = (await _body(request)).get("key")
    ok = isinstance(key, str) and await parts(request).queue.skip(user.name, key, time.time())
    return JSONResponse({"ok": bool(ok)})


@action("moderator")
async def api_undo(request: Request, user) -> Response:
    item = await parts(request).queue.undo(user.name, time.time())
    if item is None:
        return JSONResponse({"ok": False, "error": "nothing to undo: the last decision was already published"})
    return JSONResponse({"ok": True, "item": await views(request).view(item)})


routes = [Route("/review", review_page, methods=["GET"]),
          Route("/api/queue/lease", api_lease, methods=["POST"]),
          Route("/api/queue/decide", api_decide, methods=["POST"]),
          Route("/api/queue/skip", api_skip, methods=["POST"]),
          Route("/api/queue/undo", api_undo, methods=["POST"])]

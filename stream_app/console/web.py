"""What every page and action shares: the parts of the console (:class:`Parts`), templates, security headers,
and the guards (:func:`page` for reading, :func:`action` for changing: log-in, role, CSRF token, same origin)."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from stream_app.console.auth import User, UserStore, csrf_ok, csrf_token
from stream_app.console.catalog import DetectorCatalog
from stream_app.console.queue import ReviewQueue

HERE = Path(__file__).parent

# no inline script or style anywhere: htmx and the review page's script come from /static
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin",
                    "Permissions-Policy": "camera=(), microphone=(), geolocation=()"}


@dataclass
class Parts:
    """Everything the console's pages use; ``create_app`` takes them (memory ones in tests, Redis/Kafka ones in
    ``app.build_parts``)."""

    queue: ReviewQueue
    catalog: DetectorCatalog
    users: UserStore
    state: Any                      # stream_app.worker.state.State (read only here)
    records: Any                    # stream_app.console.stats.Records
    suggester: Any = None           # stream_app.console.seeding.SeedSuggester, or None: seeds typed or uploaded
    sessions: Any = None            # stream_app.console.sessions.SessionStore (None: in memory, made by create_app)
    trends: Any = None              # stream_app.trend_board.TrendBoard (the trends topic), or None: no trends pages
    services: list[Callable[[], Awaitable[None]]] = field(default_factory=list)   # run while the app runs
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, d=1: "–" if v is None else f"{100 * float(v):.{d}f} %"
    env.filters["num"] = lambda v, d=3: "–" if v is None else f"{float(v):.{d}f}"
    env.filters["when"] = lambda t: "–" if not t else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t)))
    return env


_UNSET = object()


async def current_user(request: Request) -> User | None:
    """The user of the request's session, or None: the cookie's session id must name a live session in the
    store (not logged out, revoked or expired), and its user must still be in the users file with the same
    role. Resolved once per request (``request.state.console_user``)."""
    cached = getattr(request.state, "console_user", _UNSET)
    if cached is not _UNSET:
        return cached
    user = await _session_user(request)
    request.state.console_user = user
    return user


async def _session_user(request: Request) -> User | None:
    sid = request.session.get("sid")
    if not isinstance(sid, str) or not sid:
        return None
    p: Parts = request.app.state.parts
    s = await p.sessions.get(sid, time.time())
    if s is None:                       # logged out, revoked or expired: the cookie is worth nothing now
        request.session.pop("sid", None)
        return None
    # the users file is the truth: a removed user or a changed role ends the session's rights at once
    known = p.users.get(s.user)
    if known is None or known.role != s.role or known.stamp != s.stamp:
        return None
    return known


def render(request: Request, template: str, status: int = 200, **ctx) -> HTMLResponse:
    env: Environment = request.app.state.templates
    html = env.get_template(template).render(request=request, user=getattr(request.state, "console_user", None),
                                         csrf=csrf_token(request.session), **ctx)
    return HTMLResponse(html, status_code=status)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _refuse(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"ok": False, "error": message}, status_code=status)
    if status == 401:
        return RedirectResponse("/login", status_code=303)
    return render(request, "error.html", status=status, message=message)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


Handler = Callable[..., Awaitable[Response]]


def page(role: str = "moderator") -> Callable[[Handler], Handler]:
    """A page (GET) for users of ``role`` (an analyst may see a moderator's pages)."""
    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def guarded(request: Request) -> Response:
            user = await current_user(request)
            if user is None:
                return _refuse(request, 401, "log in first")
            if not user.may(role):
                return _refuse(request, 403, f"this page is for {role}s")
            return await fn(request, user)
        guarded.guard = "page"  # type: ignore[attr-defined]
        return guarded
    return wrap


async def given_token(request: Request) -> str | None:
    tok = request.headers.get("x-csrf-token")
    if tok is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        tok = (await request.form()).get("csrf")
    return tok if isinstance(tok, str) else None


def action(role: str | None = "moderator") -> Callable[[Handler], Handler]:
    """A change (POST): the session's CSRF token and the same origin always; a logged-in user of ``role``
    unless ``role`` is None (the log-in form itself)."""
    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def guarded(request: Request) -> Response:
            if not _same_origin(request) or not csrf_ok(request.session, await given_token(request)):
                return _refuse(request, 403, "the form is out of date or came from another site: reload the page")
            if role is None:
                return await fn(request, None)
            user = await current_user(request)
            if user is None:
                return _refuse(request, 401, "log in first")
            if not user.may(role):
                return _refuse(request, 403, f"only {role}s may do this")
            return await fn(request, user)
        guarded.guard = "action"  # type: ignore[attr-defined]
        return guarded
    return wrap


def parts(request: Request) -> Parts:
    return request.app.state.parts

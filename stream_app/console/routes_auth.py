"""Log-in and log-out. A session starts fresh at log-in (a new server-side session, its id and a new CSRF token
in the cookie); log-out deletes it from the store (``everywhere``: every session of the user). A failed log-in
waits a little, more after repeated failures of the same name."""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from stream_app.console.auth import csrf_token
from stream_app.console.web import action, current_user, parts, render

_failures: dict[str, list[float]] = defaultdict(list)


def home_of(user) -> str:
    return "/detectors" if user.is_analyst else "/review"


async def login_page(request: Request) -> Response:
    user = await current_user(request)
    if user is not None:
        return RedirectResponse(home_of(user), status_code=303)
    return render(request, "login.html")


@action(role=None)
async def login(request: Request, _user) -> Response:
    form = await request.form()
    name, password = str(form.get("user") or "").strip(), str(form.get("password") or "")
    now = time.monotonic()
    if len(_failures) > 10_000:      # many names tried: forget them rather than grow
        _failures.clear()
    recent = [t for t in _failures.get(name, []) if now - t < 300]
    _failures[name] = recent
    user = await asyncio.to_thread(parts(request).users.authenticate, name, password)
    if user is None:
        recent.append(now)
        await asyncio.sleep(min(5.0, 0.25 * len(recent)))
        return render(request, "login.html", status=401, error="Wrong user name or password.", name=name)
    _failures.pop(name, None)
    sessions = parts(request).sessions
    old = request.session.get("sid")
    if isinstance(old, str) and old:
        await sessions.revoke(old)
    request.session.clear()
    request.session["sid"] = await sessions.create(user.name, user.role, time.time(), user.stamp)
    csrf_token(request.session)
    return RedirectResponse(home_of(user), status_code=303)


@action()
async def logout(request: Request, user) -> Response:
    p = parts(request)
    await p.queue.release(user.name, time.time())
    form = await request.form()
    if form.get("everywhere"):
        await p.sessions.revoke_user(user.name)
    else:
        await p.sessions.revoke(request.session.get("sid", ""))
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def home(request: Request) -> Response:
    user = await current_user(request)
    return RedirectResponse("/login" if user is None else home_of(user), status_code=303)


routes = [Route("/", home), Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
          Route("/logout", logout, methods=["POST"])]

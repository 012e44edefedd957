"""Log-in and log-out. A session starts fresh at log-in (new cookie content, new CSRF token); a failed log-in
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
    user = current_user(request)
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
    request.session.clear()
    request.session.update({"user": user.name, "role": user.role, "since": time.time()})
    csrf_token(request.session)
    return RedirectResponse(home_of(user), status_code=303)


@action()
async def logout(request: Request, user) -> Response:
    await parts(request).queue.release(user.name, time.time())
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def home(request: Request) -> Response:
    user = current_user(request)
    return RedirectResponse("/login" if user is None else home_of(user), status_code=303)


routes = [Route("/", home), Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
          Route("/logout", logout, methods=["POST"])]

"""The console's ASGI app: :func:`create_app` (settings and :class:`~stream_app.console.web.Parts`, nothing
wired at import), :func:`build_parts` (the production parts: Redis queue and records, the worker's Redis state,
the detectors topic, the candidates/labels/detections followers, the labels publisher, the sampler) and
:func:`serve` (uvicorn)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from stream_app.console import routes_auth, routes_detectors, routes_health, routes_review, routes_trends
from stream_app.console.routes_review import ItemViews
from stream_app.console.settings import ConsoleSettings
from stream_app.console.web import HERE, SECURITY_HEADERS, Parts, templates

log = logging.getLogger("synapse.console")


class SecurityHeaders:
    """Pure ASGI middleware: the CSP and the other security headers on every response; pages are never cached."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS.items():
                    if k.lower().encode() not in names:
                        headers.append((k.encode(), v.encode()))
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: ConsoleSettings, parts: Parts) -> Starlette:
    """The console over ``parts``; the background services in ``parts.services`` run while the app runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(svc(), name=getattr(svc, "__name__", "service")) for svc in parts.services]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            for close in parts.closers:
                with contextlib.suppress(Exception):
                    await close()

    app = Starlette(
        routes=[*routes_auth.routes, *routes_review.routes, *routes_detectors.routes, *routes_health.routes,
                *routes_trends.routes,
                Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static")],
        middleware=[Middleware(SecurityHeaders),
                    Middleware(SessionMiddleware, secret_key=settings.session_secret(), session_cookie="synapse_console",
                               max_age=int(settings.console_session_hours * 3600), same_site="strict",
                               https_only=settings.console_secure_cookies)],
        lifespan=lifespan)
    if parts.sessions is None:
        from stream_app.console.sessions import MemorySessions

        parts.sessions = MemorySessions(settings.console_session_hours * 3600)
    app.state.settings = settings
    app.state.parts = parts
    app.state.templates = templates()
    app.state.item_views = ItemViews(parts.state, parts.catalog)
    return app


def _every(seconds: float, fn, name: str):
    async def loop():
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis or the broker away: try again next time
                log.warning("%s failed: %s: %s", name, type(exc).__name__, exc)
            await asyncio.sleep(seconds)
    loop.__name__ = name
    return loop


def build_parts(settings: ConsoleSettings) -> Parts:
    """The production parts: everything in Redis and Kafka, as configured."""
    from stream_app.console.auth import UserStore
    from stream_app.console.catalog import KafkaCatalog
    from stream_app.console.feed import CandidateIntake, DetectionIntake, LabelIntake, TopicFollower
    from stream_app.console.publisher import KafkaLabelSink, Publisher
    from stream_app.console.queue_redis import RedisReviewQueue
    from stream_app.console.seeding import SeedSuggester
    from stream_app.console.sessions_redis import RedisSessions
    from stream_app.console.stats import RedisRecords, Sampler
    from stream_app.trend_board import KafkaTrendBoard
    from stream_app.worker.state import RedisState
    from stream_app.worker.state.redis import redis_client

    client = redis_client(settings)   # a RedisCluster when settings.redis_cluster
    queue = RedisReviewQueue(client, settings.redis_prefix, settings.console_lease_seconds, settings.console_undo_seconds)
    state = RedisState(client, settings.redis_prefix)
    records = RedisRecords(client, settings.redis_prefix)
    catalog = KafkaCatalog(settings)
    sink = KafkaLabelSink(settings)
    publisher = Publisher(queue, sink)
    group = settings.console_group
    followers = [
        TopicFollower(settings, settings.topic("candidates"), group,
                      CandidateIntake(queue, state, settings.max_text_chars)),
        TopicFollower(settings, settings.topic("labels"), group + "-labels", LabelIntake(queue)),
        TopicFollower(settings, settings.topic("detections"), group + "-detections", DetectionIntake(records)),
    ]
    sampler = Sampler(state, catalog, records, settings.audit_confidence)
    services = [f.run for f in followers] + [publisher.run,
                                              _every(settings.console_stats_seconds, sampler.sample, "sampler")]
    return Parts(queue=queue, catalog=catalog, users=UserStore(settings.users_path()), state=state, records=records,
                 suggester=SeedSuggester(settings) if settings.llm_seeds() else None, services=services,
                 sessions=RedisSessions(client, settings.redis_prefix, settings.console_session_hours * 3600),
                 trends=KafkaTrendBoard(settings),
                 closers=[sink.stop, client.aclose])


def serve(settings: ConsoleSettings | None = None) -> None:
    import uvicorn

    settings = settings or ConsoleSettings()
    if settings.console_secret is None:
        log.warning("SYNAPSE_CONSOLE_SECRET is not set: a random key signs the sessions (they end with the process)")
    app = create_app(settings, build_parts(settings))
    print(f"[console] http://{settings.console_host}:{settings.console_port}/ (started {time.strftime('%H:%M:%S')})",
          flush=True)
    uvicorn.run(app, host=settings.console_host, port=settings.console_port, log_level="warning",
                proxy_headers=False, server_header=False)

"""Web endpoints served by the worker (Faust's web server, bound to ``web_host:web_port``).

* ``GET /metrics``: Prometheus text format.
* ``GET /healthz``: liveness. 200 when the worker consumes; 503 while starting or when the posts
  consumer has lag but has not advanced for ``SYNAPSE_HEALTH_STALL_SECONDS`` (an agent that silently
  stopped), with a JSON body saying why.
"""
from __future__ import annotations

import json

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


def register_pages(w) -> None:
    """``/metrics`` and ``/healthz`` on the worker ``w``'s web server."""
    runtime = w.runtime

    @w.app.page("/metrics")
    async def metrics_page(web, request):
        svc = runtime.service
        if svc is None:  # still loading the model: do not hold the scrape
            return web.bytes(b"# starting\n", content_type=PROMETHEUS_CONTENT_TYPE, status=503)
        try:
            await svc.refresh_gauges()
        except Exception:  # noqa: BLE001 - Redis down: serve what we have (counters stay correct)
            pass
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 by definition
        return web.bytes(svc.metrics.exposition(), content_type=PROMETHEUS_CONTENT_TYPE)

    @w.app.page("/healthz")
    async def health_page(web, request):
        healthy, body = runtime.health()
        return web.bytes(json.dumps({"healthy": healthy, **body}).encode(), status=200 if healthy else 503,
                         content_type="application/json")

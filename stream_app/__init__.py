"""The streaming layer: Faust app, settings, topics, CLI, web and metrics endpoints.

``faust -A stream_app worker`` finds ``stream_app.app`` here; the attribute is loaded lazily so that
``synapse-stream eval`` (and anything else that does not need Faust) never imports it.
"""


_app = None


def __getattr__(name):
    global _app
    if name == "app":   # built on first access, from the environment's settings
        if _app is None:
            from stream_app.worker.app import create_app
            from stream_app.worker.preflight import check_broker_or_exit, check_device_or_exit
            from stream_app.worker.settings import Settings

            settings = Settings()
            check_device_or_exit(settings)   # SYNAPSE_DEVICE=cuda without a GPU: one line and exit 2
            check_broker_or_exit(settings)   # wrong credentials: one line and exit 2, not endless retries
            _app = create_app(settings)
        return _app
    raise AttributeError(name)

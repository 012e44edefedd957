"""The streaming layer: Faust app, settings, topics, CLI, web and metrics endpoints.

``faust -A stream_app worker`` finds ``stream_app.app`` here; the attribute is loaded lazily so that
``synapse-stream eval`` (and anything else that does not need Faust) never imports it.
"""


def __getattr__(name):
    if name == "app":
        from .faust_app import app

        return app
    raise AttributeError(name)

"""The worker: the Faust app (``app.create_app``), its runtime and the Faust-free service behind it, state,
settings, topics and their administration, metrics and web pages. Nothing here imports the dev stack
(``stream_app.devstack``)."""

"""Shared by the tests that drive the worker's service directly: its settings (the hashing embedder, one
online-IBG detector). The Redis server they run against is the ``redis_url`` fixture (conftest.py)."""
from __future__ import annotations

import tempfile

from stream_app.worker.settings import Settings


def service_settings(**kw) -> Settings:
    det = {"name": "scam", "tau": 0.5, "d_max": 50, "candidates": "ibg"}
    return Settings(_env_file=None, embedder="hashing-64", detectors=[det], data_dir=tempfile.mkdtemp(), **kw)

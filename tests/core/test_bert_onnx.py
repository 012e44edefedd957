"""The torch-free BERT exporter (:mod:`synapse_stream.embedders.bert_onnx`).

* a tiny random BERT (2 layers, hidden 32, 4 heads) written to a temp folder exports, passes the ONNX
  checker and matches a numpy implementation of BERT + mean pooling written here (no torch involved);
* the real all-MiniLM-L6-v2 export passes the checker, matches sentence-transformers on torch
  (cosine > 0.9999 on 50 texts of mixed lengths, including a one-letter text and one truncated at 256
  tokens), and padding in a batch does not change a text's vector.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("safetensors")

import onnx
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

from synapse_stream.embedders import bert_onnx
from synapse_stream.embedders.onnx import (
    OnnxEmbedder,
    _exporter,
    _fingerprint,
    export_fp32,
)
from synapse_stream.exceptions import EmbedderError

REPO = Path(__file__).resolve().parents[2]
TINY = {"model_type": "bert", "hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2,
        "intermediate_size": 64, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "vocab_size": 50,
        "max_position_embeddings": 40, "type_vocab_size": 2, "position_embedding_type": "absolute"}


# ---------------------------------------------------------------------- a tiny random BERT
def tiny_weights(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, i = cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape, scale=0.3):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": r(cfg["vocab_size"], h, scale=1.0),
         "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], h, scale=1.0),
         "embeddings.token_type_embeddings.weight": r(cfg["type_vocab_size"], h, scale=1.0),
         "embeddings.LayerNorm.weight": 1 + r(h, scale=0.1), "embeddings.LayerNorm.bias": r(h, scale=0.1),
         "embeddings.position_ids": np.arange(cfg["max_position_embeddings"], dtype=np.int64)[None],  # a buffer
         "pooler.dense.weight": r(h, h), "pooler.dense.bias": r(h)}                                    # unused
    for n in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{n}"
        for name, (o, k) in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                             "attention.self.value": (h, h), "attention.output.dense": (h, h),
                             "intermediate.dense": (i, h), "output.dense": (h, i)}.items():
            w[f"{p}.{name}.weight"] = r(o, k, scale=1 / math.sqrt(k) * 1.5)
            w[f"{p}.{name}.bias"] = r(o, scale=0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{ln}.weight"] = 1 + r(h, scale=0.1)
            w[f"{p}.{ln}.bias"] = r(h, scale=0.1)
    return w


def write_tiny(folder: Path, cfg: dict = TINY, *, prefix: str = "", seed: int = 0) -> tuple[Path, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    w = tiny_weights(cfg, seed)
    save_file({prefix + k: v for k, v in w.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder, w


def reference(cfg: dict, w: dict, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
    """BERT (eval) + masked mean pooling in float64 numpy, one text at a time, padding dropped first."""
    from math import erf

    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    d = h // nh
    eps = cfg["layer_norm_eps"]
    W = {k: v.astype(np.float64) for k, v in w.items()}
    verf = np.vectorize(erf)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * W[p + ".weight"] + W[p + ".bias"]

    def lin(x, p):
        return x @ W[p + ".weight"].T + W[p + ".bias"]

    def act(x):
        a = cfg["hidden_act"]
        if a == "gelu":
            return 0.5 * x * (1 + verf(x / math.sqrt(2)))
        if a == "relu":
            return np.maximum(x, 0)
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    out = []
    for row in range(ids.shape[0]):
        keep = mask[row].astype(bool)
        n = int(keep.sum())
        assert keep[:n].all(), "right padding only"
        t_ids, t_types = ids[row, :n], types[row, :n]
        x = (W["embeddings.word_embeddings.weight"][t_ids] + W["embeddings.position_embeddings.weight"][:n]
             + W["embeddings.token_type_embeddings.weight"][t_types])
        x = ln(x, "embeddings.LayerNorm")
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{layer}"
            q, k, v = (lin(x, f"{p}.attention.self.{m}").reshape(n, nh, d).transpose(1, 0, 2)
                       for m in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            ctx = (s / s.sum(-1, keepdims=True)) @ v                      # [heads, n, d]
            x = ln(lin(ctx.transpose(1, 0, 2).reshape(n, h), f"{p}.attention.output.dense") + x,
                   f"{p}.attention.output.LayerNorm")
            x = ln(lin(act(lin(x, f"{p}.intermediate.dense")), f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        out.append(x.mean(0))
    return np.asarray(out)


def tiny_batch(seed: int = 1, vocab: int = 50):
    rng = np.random.default_rng(seed)
    lengths = [1, 3, 7, 12, 20, 5]
    S = max(lengths)
    ids = np.zeros((len(lengths), S), np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(1, vocab, n)
        mask[r, :n] = 1
        types[r, n // 2:n] = 1                                             # a second segment: uses both type rows
    return ids, mask, types


def run(path: Path, ids, mask, types) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("prefix", ["", "bert."])
def test_tiny_random_bert_matches_numpy_reference(tmp_path, act, prefix):
    cfg = dict(TINY, hidden_act=act)
    folder, w = write_tiny(tmp_path / "tiny", cfg, prefix=prefix)
    if prefix:  # a *ForSequenceClassification checkpoint also has head tensors outside bert.*
        extra = load_file(str(folder / "model.safetensors"))
        extra["classifier.weight"] = np.ones((2, cfg["hidden_size"]), np.float32)
        save_file(extra, str(folder / "model.safetensors"))
    path = bert_onnx.export_bert_onnx(folder, tmp_path / "tiny.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    ids, mask, types = tiny_batch()
    got = run(path, ids, mask, types)
    want = reference(cfg, w, ids, mask, types)
    assert got.shape == (ids.shape[0], cfg["hidden_size"]) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_tiny_reference_detects_a_wrong_graph(tmp_path):
    """The numpy reference is sharp enough to fail: weights off by 2 % in one query projection do not match.
    (A shifted bias right before a LayerNorm would not do: LayerNorm removes it.)"""
    folder, w = write_tiny(tmp_path / "tiny")
    path = bert_onnx.export_bert_onnx(folder, tmp_path / "tiny.onnx")
    ids, mask, types = tiny_batch()
    w2 = dict(w)
    w2["encoder.layer.1.attention.self.query.weight"] = w["encoder.layer.1.attention.self.query.weight"] * 1.02
    assert np.abs(run(path, ids, mask, types) - reference(TINY, w2, ids, mask, types)).max() > 1e-3


def test_tiny_graph_interface_and_padding(tmp_path):
    folder, _ = write_tiny(tmp_path / "tiny")
    path = bert_onnx.export_bert_onnx(folder, tmp_path / "tiny.onnx")
    m = onnx.load(str(path))
    assert m.opset_import[0].version == 17
    ins = {i.name: i for i in m.graph.input}
    assert list(ins) == ["input_ids", "attention_mask", "token_type_ids"]
    for i in ins.values():
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in i.type.tensor_type.shape.dim] == ["batch", "seq"]
    (out,) = m.graph.output
    assert out.name == "sentence_embedding"
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 32]
    # the same text alone and padded to 30 tokens next to a long one
    ids, mask, types = tiny_batch()
    alone = run(path, ids[3:4, :12], mask[3:4, :12], types[3:4, :12])
    pad = np.zeros((2, 30), np.int64)
    pad_mask = np.zeros_like(pad)
    pad[0, :12], pad_mask[0, :12] = ids[3, :12], 1
    pad[1], pad_mask[1] = np.arange(1, 31) % 50, 1
    pad_types = np.zeros_like(pad)
    pad_types[0, :12] = types[3, :12]
    batched = run(path, pad, pad_mask, pad_types)
    np.testing.assert_allclose(batched[0], alone[0], rtol=1e-5, atol=1e-5)


def test_unsupported_configs_are_refused(tmp_path):
    for change, word in [({"model_type": "roberta"}, "model_type"),
                         ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
                         ({"hidden_act": "silu"}, "hidden_act")]:
        assert word in bert_onnx.unsupported_reason(dict(TINY, **change))
        with pytest.raises(EmbedderError, match=word):
            bert_onnx.build_bert_onnx(dict(TINY, **change), tiny_weights(TINY))
    w = tiny_weights(TINY)
    del w["encoder.layer.1.attention.self.key.weight"]
    with pytest.raises(EmbedderError, match="encoder.layer.1.attention.self.key.weight"):
        bert_onnx.build_bert_onnx(TINY, w)
    folder, _ = write_tiny(tmp_path / "cls")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(EmbedderError, match="mean pooling"):
        bert_onnx.export_bert_onnx(folder, tmp_path / "cls.onnx")


def test_ensure_onnx_exports_and_quantises_without_torch(tmp_path):
    """In a fresh interpreter: ensure_onnx on a BERT folder (fp32 and int8) never imports torch or transformers."""
    folder, _ = write_tiny(tmp_path / "tiny")
    code = (
        "import sys\n"
        "from synapse_stream.embedders.onnx import ensure_onnx\n"
        f"p8 = ensure_onnx({str(folder)!r}, 'int8', {str(tmp_path / 'cache')!r})\n"
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(p8.name)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith(".int8.onnx")
    fp32 = sorted((tmp_path / "cache").glob("*.fp32.onnx"))
    int8 = sorted((tmp_path / "cache").glob("*.int8.onnx"))
    assert len(fp32) == 1 and len(int8) == 1
    ids, mask, types = tiny_batch()
    a, b = run(fp32[0], ids, mask, types), run(int8[0], ids, mask, types)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.95, cos


def test_fingerprint_names_the_exporter(tmp_path):
    """A torch.onnx file (old name, no exporter part) is never taken for a bert_onnx file, and vice versa."""
    folder, _ = write_tiny(tmp_path / "tiny")
    assert _fingerprint(folder) == _fingerprint(folder, "bert_onnx") != _fingerprint(folder, "torch")


def test_only_plain_bert_folders_skip_torch(tmp_path):
    folder, _ = write_tiny(tmp_path / "bert")
    assert _exporter(folder) == "bert_onnx"
    other, _ = write_tiny(tmp_path / "roberta", dict(TINY, model_type="roberta"))
    assert _exporter(other) == "torch"
    (folder / "model.safetensors").rename(folder / "weights.bin")   # no safetensors: only torch can read it
    assert _exporter(folder) == "torch"


def test_fallback_without_torch_says_why(tmp_path):
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        pytest.skip("torch and transformers are installed: the fallback would run")
    except ImportError:
        pass
    other, _ = write_tiny(tmp_path / "roberta", dict(TINY, model_type="roberta"))
    with pytest.raises(EmbedderError, match="without torch.*model_type 'roberta'"):
        export_fp32(other, tmp_path / "x.onnx")


# ---------------------------------------------------------------------- the real all-MiniLM-L6-v2
def mixed_texts() -> list[str]:
    """50 made-up texts: one letter, short and mid-length phrases, and two long enough to be truncated at 256."""
    words = ["free", "crypto", "giveaway", "tonight", "only", "the", "film", "was", "dull", "but", "the", "cast", "tried", "hard", "weather", "in", "lisbon", "is", "mild", "click", "here", "to", "claim", "your", "prize", "I", "loved", "every", "minute", "of", "it", "unsubscribe"]
    rng = np.random.default_rng(3)
    texts = ["a", "I", "ok!", "ünïcödé ✓ text", "Limited offer: double your crypto now " * 60,
             " ".join(rng.choice(words, 400))]
    while len(texts) < 50:
        texts.append(" ".join(rng.choice(words, int(rng.integers(2, 60)))))
    return texts


@pytest.fixture(scope="module")
def minilm_onnx(tmp_path_factory):
    return OnnxEmbedder(variant="fp32", batch_size=16, threads=2, cache_dir=tmp_path_factory.mktemp("onnx"))


def test_real_export_passes_checker(minilm_onnx):
    onnx.checker.check_model(str(minilm_onnx.path), full_check=True)
    assert minilm_onnx.dim == 384
    assert bert_onnx.EXPORTER_VERSION in onnx.load(str(minilm_onnx.path), load_external_data=False).producer_version


@pytest.mark.slow  # about 20 s: loads torch and sentence-transformers
def test_real_export_matches_sentence_transformers(minilm_onnx):
    try:
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the torch reference needs torch and sentence-transformers, not installed here ({exc})")
    from synapse_stream.embedders import make_embedder

    texts = mixed_texts()
    n_tokens = [sum(e.attention_mask) for e in minilm_onnx._tok.encode_batch(texts)]
    assert n_tokens[0] == 3                                      # [CLS] a [SEP]
    assert n_tokens[4] == n_tokens[5] == 256                     # truncated at 256 tokens
    assert len(set(n_tokens)) > 20                               # mixed lengths
    ref = make_embedder("minilm").encode(texts)
    got = minilm_onnx.encode(texts)                              # batches of 16 texts padded to their longest
    cos = (got * ref).sum(1)
    assert cos.min() > 0.9999, (cos.argmin(), cos.min())
    assert np.abs(got - ref).max() < 1e-3


def test_real_export_padding_does_not_change_a_vector(minilm_onnx):
    texts = mixed_texts()
    long = texts[4]
    for text in ("a", texts[10], texts[20]):
        alone = minilm_onnx.encode([text])[0]
        padded = minilm_onnx.encode([text, long])[0]             # one batch: the text padded to 256 tokens
        assert float(alone @ padded) > 0.99999

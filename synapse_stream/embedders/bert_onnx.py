"""A torch-free ONNX exporter for BERT encoders with sentence-transformers' mean pooling.

The graph is written op by op with ``onnx.helper`` from the weights in ``model.safetensors``
(read with ``safetensors.numpy``), so exporting needs only ``numpy``, ``onnx`` and ``safetensors``
(and running it ``onnxruntime``): no torch, no transformers. It is the same computation as
Hugging Face's ``BertModel`` (eval mode: no dropout) followed by a masked mean over the tokens:

* embeddings: word + absolute position (``0..seq-1``) + token type, then LayerNorm;
* ``num_hidden_layers`` post-LN encoder layers: self-attention with ``num_attention_heads`` heads, the
  attention mask turned into an additive bias ``(1 - mask) * float32 min`` (as HF does) broadcast over
  heads and query positions, a dense output + residual + LayerNorm, then a feed-forward block with
  ``hidden_act`` (``gelu`` is the exact erf GELU) + residual + LayerNorm;
* pooling: ``sum(hidden * mask) / max(sum(mask), 1e-9)`` over the sequence (the BERT pooler is not used).

Interface (identical to the former ``torch.onnx`` export): inputs ``input_ids``, ``attention_mask``,
``token_type_ids`` (int64 ``[batch, seq]``, both axes dynamic), output ``sentence_embedding``
``[batch, hidden_size]`` (float32, not normalised). Opset 17 (``LayerNormalization``; GELU is written
as ``Erf``/``Mul``, which ONNX Runtime fuses back into one op).

>>> export_bert_onnx("path/to/model", "model.fp32.onnx")             # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..exceptions import EmbedderError

OPSET = 17
EXPORTER_VERSION = "bert_onnx-1"     # part of the cache fingerprint: bump when the graph changes
SUPPORTED_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"


def unsupported_reason(config: dict) -> str | None:
    """Why this exporter cannot build ``config`` (``None`` if it can): a BERT with absolute positions."""
    mtype = config.get("model_type", "bert")
    if mtype != "bert":
        return f"model_type {mtype!r} is not 'bert'"
    pos = config.get("position_embedding_type", "absolute")
    if pos != "absolute":
        return f"position_embedding_type {pos!r} is not 'absolute'"
    act = config.get("hidden_act", "gelu")
    if act not in SUPPORTED_ACTS:
        return f"hidden_act {act!r} is not one of {SUPPORTED_ACTS}"
    if config.get("is_decoder") or config.get("add_cross_attention"):
        return "decoder / cross-attention models are not supported"
    if config["hidden_size"] % config["num_attention_heads"]:
        return "hidden_size is not a multiple of num_attention_heads"
    return None


def load_bert_weights(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The encoder's tensors from ``model.safetensors``, keyed without a ``bert.`` prefix, float32.

    Old TF-converted names (``LayerNorm.gamma`` / ``LayerNorm.beta``) are mapped to ``weight`` / ``bias``.
    """
    from safetensors.numpy import load_file

    path = Path(model_dir) / "model.safetensors"
    if not path.exists():
        raise EmbedderError(f"{model_dir}: the torch-free ONNX export needs model.safetensors")
    raw = load_file(str(path))
    prefixed = any(k.startswith("bert.") for k in raw)
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if prefixed:
            if not key.startswith("bert."):
                continue                          # heads of a *ForXxx checkpoint (cls., classifier.)
            key = key[len("bert."):]
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[key] = value
    return out


class _Graph:
    """Small helper: numbered node and tensor names, initialisers from numpy arrays."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self._scalars: dict[str, str] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
        return name

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar initialiser, made once and shared."""
        if name not in self._scalars:
            self._scalars[name] = self.const(name, np.array(value, np.float32))
        return self._scalars[name]

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        from onnx import helper

        self._n += 1
        out = name or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self._n}", **attrs))
        return out


def build_bert_onnx(config: dict, weights: dict[str, np.ndarray]):
    """The ``onnx.ModelProto`` of the encoder plus mean pooling (see the module docstring)."""
    from onnx import TensorProto, helper

    reason = unsupported_reason(config)
    if reason:
        raise EmbedderError(f"the torch-free ONNX exporter cannot build this model: {reason}")
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    act = config.get("hidden_act", "gelu")

    def w(name: str) -> np.ndarray:
        try:
            return np.asarray(weights[name], dtype=np.float32)
        except KeyError:
            raise EmbedderError(f"model.safetensors has no tensor {name!r} (nor bert.{name})") from None

    g = _Graph()
    f32 = np.float32
    c_one = g.const("one_f", np.array(1.0, f32))
    c_half = g.const("half_f", np.array(0.5, f32))
    c_neg = g.const("mask_neg", np.array(np.finfo(f32).min, f32))
    c_scale = g.const("attn_scale", np.array(1.0 / math.sqrt(head_dim), f32))
    c_eps_pool = g.const("pool_eps", np.array(1e-9, f32))
    c_split = g.const("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    c_merge = g.const("merge_heads", np.array([0, 0, hidden], np.int64))
    c_ax1 = g.const("axes_1", np.array([1], np.int64))
    c_ax2 = g.const("axes_2", np.array([2], np.int64))
    c_ax12 = g.const("axes_1_2", np.array([1, 2], np.int64))
    c_zero1 = g.const("i64_zero_1d", np.array([0], np.int64))

    def layer_norm(x: str, prefix: str) -> str:
        return g.op("LayerNormalization", [x, g.const(f"{prefix}.weight", w(f"{prefix}.weight")),
                                           g.const(f"{prefix}.bias", w(f"{prefix}.bias"))], axis=-1, epsilon=eps)

    def linear(x: str, prefix: str) -> str:        # torch Linear: x @ W.T + b, W stored [out, in]
        wt = g.const(f"{prefix}.weight_t", w(f"{prefix}.weight").T)
        return g.op("Add", [g.op("MatMul", [x, wt]), g.const(f"{prefix}.bias", w(f"{prefix}.bias"))])

    def activation(x: str) -> str:
        if act == "gelu":                           # exact: 0.5 x (1 + erf(x / sqrt 2))
            erf = g.op("Erf", [g.op("Div", [x, g.scalar("sqrt2", math.sqrt(2.0))])])
            return g.op("Mul", [g.op("Mul", [x, c_half]), g.op("Add", [erf, c_one])])
        if act == "relu":
            return g.op("Relu", [x])
        # tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.scalar("gelu_c", 0.044715)])])
        th = g.op("Tanh", [g.op("Mul", [inner, g.scalar("sqrt_2_over_pi", math.sqrt(2 / math.pi))])])
        return g.op("Mul", [g.op("Mul", [x, c_half]), g.op("Add", [th, c_one])])

    # embeddings
    words = g.op("Gather", [g.const("embeddings.word_embeddings.weight", w("embeddings.word_embeddings.weight")),
                            "input_ids"], axis=0)
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)          # [seq], 1-D
    pos = g.op("Slice", [g.const("embeddings.position_embeddings.weight", w("embeddings.position_embeddings.weight")),
                         c_zero1, seq_len, c_zero1])                   # rows 0..seq-1: absolute positions
    types = g.op("Gather", [g.const("embeddings.token_type_embeddings.weight",
                                    w("embeddings.token_type_embeddings.weight")), "token_type_ids"], axis=0)
    x = layer_norm(g.op("Add", [g.op("Add", [words, pos]), types]), "embeddings.LayerNorm")

    # attention mask -> additive bias [batch, 1, 1, seq]; float mask [batch, seq, 1] for the pooling
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.op("Unsqueeze", [g.op("Mul", [g.op("Sub", [c_one, mask_f]), c_neg]), c_ax12])

    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.attention.self.query"), c_split])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.attention.self.key"), c_split])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.attention.self.value"), c_split])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), c_scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), c_merge])
        x = layer_norm(g.op("Add", [linear(ctx, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
        inter = activation(linear(x, f"{p}.intermediate.dense"))
        x = layer_norm(g.op("Add", [linear(inter, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")

    # mean pooling over the unmasked tokens
    m3 = g.op("Unsqueeze", [mask_f, c_ax2])
    summed = g.op("ReduceSum", [g.op("Mul", [x, m3]), c_ax1], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [m3, c_ax1], keepdims=0), c_eps_pool])
    g.op("Div", [summed, count], name=OUTPUT)

    dyn = ["batch", "seq"]
    graph = helper.make_graph(
        g.nodes, "bert_mean_pooling",
        [helper.make_tensor_value_info(n, TensorProto.INT64, dyn) for n in INPUTS],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="synapse-stream", producer_version=EXPORTER_VERSION)
    model.ir_version = 8                           # readable by onnxruntime >= 1.10
    return model


def read_config(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.exists():
        raise EmbedderError(f"{model_dir}: no config.json")
    return json.loads(path.read_text())


def check_mean_pooling(model_dir: str | os.PathLike) -> None:
    """Raise unless the sentence-transformers folder pools by mean (the only pooling in the graph)."""
    pooling_cfg = Path(model_dir) / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_cfg.read_text()) if pooling_cfg.exists() else {"pooling_mode_mean_tokens": True}
    if not pooling.get("pooling_mode_mean_tokens", False):
        raise EmbedderError(f"{model_dir}: only mean pooling is supported by the ONNX embedder, got {pooling}")


def export_bert_onnx(model_dir: str | os.PathLike, dest: str | os.PathLike, *, check: bool = True) -> Path:
    """Write the fp32 ONNX file of the BERT + mean pooling in ``model_dir`` to ``dest`` (atomically).

    ``check`` runs ``onnx.checker.check_model`` (with shape inference) on the file before it is renamed
    into place. Needs ``numpy``, ``onnx`` and ``safetensors`` only.
    """
    import onnx

    model_dir, dest = Path(model_dir), Path(dest)
    check_mean_pooling(model_dir)
    model = build_bert_onnx(read_config(model_dir), load_bert_weights(model_dir))
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        onnx.save_model(model, str(tmp))
        if check:
            onnx.checker.check_model(str(tmp), full_check=True)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest

"""Static (bag-of-token-vectors) embedders: thousands of posts per second on one core, less precise.

* :class:`WordLlamaEmbedder`: ``wordllama`` (PyPI) ships its weights inside the wheel
  (``wordllama/weights/l2_supercat_256.safetensors``); it is loaded offline by pointing its
  ``cache_dir`` at the package folder.
* :class:`Model2VecEmbedder`: a model2vec static model distilled **locally** from the packaged
  all-MiniLM-L6-v2 (one forward pass per word piece, mean pooled; PCA to 256 dimensions; Zipf/SIF
  weighting, as ``model2vec.distill`` does, but without its extra dependencies, which would downgrade
  transformers). Distilled once into ``cache_dir`` (default ``$SYNAPSE_STATIC_CACHE`` or
  ``~/.cache/synapse-stream/static``) and loaded with ``model2vec.StaticModel``. Output is cast to
  float32 (model2vec may store float16).

Both are optional: ``pip install wordllama model2vec``. Truncation: the text is cut to
``max_chars`` characters (default 2,048, as for MiniLM's 8 × 256); static models have no token
limit that matters for cost.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..exceptions import EmbedderError
from .base import Embedder
from .sentence import DEFAULT_MODEL, resolve_model_path

DEFAULT_MAX_CHARS = 2048


def default_static_cache() -> Path:
    env = os.environ.get("SYNAPSE_STATIC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "synapse-stream" / "static"


class WordLlamaEmbedder(Embedder):
    def __init__(self, config: str = "l2_supercat", *, dim: int = 256, batch_size: int = 64,
                 max_chars: int | None = None, **_ignored) -> None:
        try:
            import wordllama
            from wordllama import WordLlama
        except ImportError as exc:
            raise EmbedderError("the wordllama embedder needs `pip install wordllama` (its weights ship in the wheel)") from exc
        pkg = Path(wordllama.__file__).resolve().parent
        try:
            self._wl = WordLlama.load(config=config, dim=dim, cache_dir=pkg, disable_download=True)
        except Exception as exc:
            raise EmbedderError(f"cannot load wordllama {config}-{dim} from {pkg} offline: {exc}") from exc
        self.dim = int(dim)
        self.batch_size = int(batch_size)
        self.max_chars = int(max_chars or DEFAULT_MAX_CHARS)
        self.name = f"wordllama:{config}:{dim}"

    def _encode(self, texts: list[str], *, progress: bool) -> np.ndarray:
        texts = [t[: self.max_chars] for t in texts]
        return np.asarray(self._wl.embed(texts, norm=True, batch_size=self.batch_size), dtype=np.float32)


# ---------------------------------------------------------------------- model2vec, distilled here
def distill_model2vec(model: str = DEFAULT_MODEL, dest: str | os.PathLike | None = None, *, pca_dims: int = 256,
                      sif_coefficient: float = 1e-4, batch_size: int = 512) -> Path:
    """Distil a model2vec static model from a local sentence-transformers folder; returns its folder.

    Recipe of ``model2vec.distill.distill_from_model`` (mean pooling over ``[CLS] token [SEP]``, PCA,
    SIF weights from Zipf ranks), with the ``[unusedN]`` and special tokens left out of the ranks and
    set to zero vectors.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from model2vec import StaticModel
    from tokenizers import Tokenizer
    from transformers import AutoModel

    model_dir = Path(resolve_model_path(model))
    dest = Path(dest) if dest else default_static_cache() / f"model2vec-{_base(model_dir, model)}-{pca_dims}"
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    vocab = tok.get_vocab()
    n = max(vocab.values()) + 1
    by_id = [""] * n
    for t, i in vocab.items():
        by_id[i] = t
    special = {tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")} - {None}
    keep = [i for i, t in enumerate(by_id) if i not in special and not re.fullmatch(r"\[unused\d+\]", t)]
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    net = AutoModel.from_pretrained(str(model_dir)).eval()
    out = np.zeros((len(keep), net.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(keep), batch_size):
            ids = torch.tensor([[cls_id, i, sep_id] for i in keep[s:s + batch_size]], dtype=torch.long)
            hidden = net(input_ids=ids, attention_mask=torch.ones_like(ids),
                         token_type_ids=torch.zeros_like(ids)).last_hidden_state
            out[s:s + len(ids)] = hidden.mean(1).float().numpy()
    # PCA (eigendecomposition of the covariance, as model2vec), then SIF weights by Zipf rank
    xc = out - out.mean(0)
    vals, vecs = np.linalg.eigh((xc.T @ xc) / (len(xc) - 1))
    comps = vecs[:, ::-1][:, :pca_dims]
    red = xc @ comps
    signs = np.sign(red[np.argmax(np.abs(red), axis=0), range(red.shape[1])])
    red *= signs
    inv_rank = 1.0 / np.arange(2, len(keep) + 2)
    proba = inv_rank / inv_rank.sum()
    red *= (sif_coefficient / (sif_coefficient + proba))[:, None]
    table = np.zeros((n, red.shape[1]), dtype=np.float32)
    table[keep] = red
    sm = StaticModel(vectors=table, tokenizer=tok, normalize=True, base_model_name=_base(model_dir, model),
                     config={"model_type": "model2vec", "architectures": ["StaticModel"], "apply_pca": pca_dims,
                             "sif_coefficient": sif_coefficient, "hidden_dim": int(red.shape[1]), "normalize": True,
                             "pooling": "mean"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + "."))
    try:
        sm.save_pretrained(str(tmp))
        if dest.exists():  # another process finished first: keep its copy
            return dest
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _base(model_dir: Path, model: str) -> str:
    return (model_dir.name if model_dir.name != "model" else DEFAULT_MODEL).replace("/", "_")


class Model2VecEmbedder(Embedder):
    def __init__(self, path: str | os.PathLike | None = None, *, model: str = DEFAULT_MODEL, batch_size: int = 1024,
                 max_chars: int | None = None, **_ignored) -> None:
        try:
            from model2vec import StaticModel
        except ImportError as exc:
            raise EmbedderError("the model2vec embedder needs `pip install model2vec`") from exc
        folder = Path(path) if path else default_static_cache() / f"model2vec-{_base(Path(resolve_model_path(model)), model)}-256"
        if not (folder / "model.safetensors").exists():
            if path:
                raise EmbedderError(f"no model2vec model in {folder}")
            folder = distill_model2vec(model, folder)
        try:
            self._m = StaticModel.from_pretrained(str(folder))
        except Exception as exc:
            raise EmbedderError(f"cannot load model2vec model from {folder}: {exc}") from exc
        self.dim = int(self._m.dim)
        self.batch_size = int(batch_size)
        self.max_chars = int(max_chars or DEFAULT_MAX_CHARS)
        self.name = f"model2vec:{folder.name}"

    def _encode(self, texts: list[str], *, progress: bool) -> np.ndarray:
        texts = [t[: self.max_chars] for t in texts]
        return np.asarray(self._m.encode(texts, batch_size=self.batch_size, show_progress_bar=False,
                                         use_multiprocessing=False), dtype=np.float32)

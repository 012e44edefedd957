"""An on-disk embedding cache keyed by content hash.

The key of a text is ``sha1(embedder.name + "\\0" + text)``; vectors live in ``.npz`` chunks under
``cache_dir/<embedder name>/``, each written atomically (temp file + rename). Re-running an
evaluation on the same data embeds nothing again.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Embedder


def text_key(model_name: str, text: str) -> bytes:
    return hashlib.sha1(model_name.encode("utf-8") + b"\0" + text.encode("utf-8", "surrogatepass")).digest()


class CachedEmbedder(Embedder):
    def __init__(self, inner: Embedder, cache_dir: str | os.PathLike) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", inner.name)
        self.dir = Path(cache_dir) / safe
        self.dir.mkdir(parents=True, exist_ok=True)
        self._mem: dict[bytes, np.ndarray] = {}
        for chunk in sorted(self.dir.glob("*.npz")):
            with np.load(chunk) as z:
                for k, v in zip(z["keys"], z["vecs"]):
                    # numpy "S20" drops trailing NUL bytes of a digest: pad back to the 20-byte key
                    self._mem[bytes(k).ljust(20, b"\0")] = v

    def __len__(self) -> int:
        return len(self._mem)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        keys = [text_key(self.name, t) for t in texts]
        missing = {}
        for k, t in zip(keys, texts):
            if k not in self._mem and k not in missing:
                missing[k] = t
        if missing:
            vecs = self.inner.encode(list(missing.values()), progress=progress)
            new_keys = list(missing)
            self._write_chunk(new_keys, vecs)
            self._mem.update(zip(new_keys, vecs))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._mem[k] for k in keys]).astype(np.float32, copy=False)

    def _encode(self, texts, *, progress):  # pragma: no cover - encode is overridden
        raise NotImplementedError

    def _write_chunk(self, keys: list[bytes], vecs: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype="S20"), vecs=np.asarray(vecs, dtype=np.float32))
        os.replace(tmp, self.dir / f"{uuid.uuid4().hex}.npz")

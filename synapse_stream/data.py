"""Reading pools and seed files, and building the paper's imbalanced benchmark.

Pool files (label 1 = the rare class):

* TSV with a header line: a text column (``text`` or ``sentence``), a ``label`` column, optionally
  ``id``; read with no quoting, since posts contain ``"``.
* JSONL: one ``{"id", "text", "label"}`` object per line (``id`` optional).

Seed files: one synthetic text per line; or JSONL with ``text`` (rows with ``label`` 0 are skipped);
or a TSV with a header containing a text column and ``label`` (only ``label == 1`` rows are seeds).

Every problem ends in one :class:`~synapse_stream.exceptions.DataError` with a clear message.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .exceptions import DataError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
_TEXT_COLUMNS = ("text", "sentence")


@dataclass
class Pool:
    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # int8, 1 = rare class

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())

    def truth(self) -> dict[str, int]:
        return dict(zip(self.ids, self.labels.tolist()))

    def subset(self, rows: Sequence[int]) -> "Pool":
        rows = list(rows)
        return Pool([self.ids[i] for i in rows], [self.texts[i] for i in rows], self.labels[rows].copy())

    def describe(self) -> dict:
        n = len(self)
        return {"posts": n, "positives": self.positives, "negatives": n - self.positives,
                "prevalence": self.positives / n if n else 0.0}


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from None
    return text.splitlines()


def _is_jsonl(path: Path, lines: list[str]) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    first = next((ln for ln in lines if ln.strip()), "")
    return first.lstrip().startswith("{")


def _parse_label(value, where: str) -> int:
    try:
        y = int(str(value).strip())
    except (TypeError, ValueError):
        raise DataError(f"{where}: label {value!r} is not 0 or 1") from None
    if y not in (0, 1):
        raise DataError(f"{where}: label {y} is not 0 or 1")
    return y


def _jsonl_rows(path: Path, lines: list[str]) -> list[dict]:
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def _tsv_rows(path: Path, lines: list[str]) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: empty file") from None
    return header, [r for r in reader if r and any(c.strip() for c in r)]


def load_pool(path: str | Path) -> Pool:
    path = Path(path)
    lines = _read_lines(path)
    ids, texts, labels = [], [], []
    if _is_jsonl(path, lines):
        for n, obj in enumerate(_jsonl_rows(path, lines), 1):
            if "text" not in obj or "label" not in obj:
                raise DataError(f"{path}: row {n} lacks {'text' if 'text' not in obj else 'label'!r}")
            if not isinstance(obj["text"], str):
                raise DataError(f"{path}: row {n}: text must be a string")
            ids.append(str(obj.get("id", n - 1)))
            texts.append(obj["text"])
            labels.append(_parse_label(obj["label"], f"{path}: row {n}"))
    else:
        header, rows = _tsv_rows(path, lines)
        tcol = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
        if tcol is None or "label" not in header:
            raise DataError(f"{path}: a TSV pool needs a header with a text column ('text' or 'sentence') "
                            f"and 'label'; found {header}")
        lcol = header.index("label")
        icol = header.index("id") if "id" in header else None
        for n, r in enumerate(rows, 2):
            if len(r) <= max(tcol, lcol):
                raise DataError(f"{path}:{n}: missing columns (expected {len(header)}, got {len(r)})")
            ids.append(r[icol] if icol is not None and icol < len(r) else str(len(ids)))
            texts.append(r[tcol].strip())
            labels.append(_parse_label(r[lcol], f"{path}:{n}"))
    if not texts:
        raise DataError(f"{path}: no posts")
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: duplicate post ids")
    pool = Pool(ids, texts, np.asarray(labels, dtype=np.int8))
    if pool.positives == 0:
        raise DataError(f"{path}: no positives (label 1): recall is undefined")
    return pool


def load_seed_texts(path: str | Path) -> list[str]:
    path = Path(path)
    lines = _read_lines(path)
    if _is_jsonl(path, lines):
        out = []
        for n, obj in enumerate(_jsonl_rows(path, lines), 1):
            if not isinstance(obj.get("text"), str):
                raise DataError(f"{path}: row {n} lacks a string 'text'")
            if "label" in obj and _parse_label(obj["label"], f"{path}: row {n}") != 1:
                continue
            out.append(obj["text"])
    else:
        first = lines[0].strip().lower().split("\t") if lines else []
        if "label" in first and any(c in first for c in _TEXT_COLUMNS):
            header, rows = _tsv_rows(path, lines)
            tcol = next(header.index(c) for c in _TEXT_COLUMNS if c in header)
            lcol = header.index("label")
            out = [r[tcol].strip() for r in rows if len(r) > max(tcol, lcol) and r[lcol].strip() == "1"]
        else:
            out = [ln.strip() for ln in lines if ln.strip()]
    out = [t for t in out if t.strip()]
    if not out:
        raise DataError(f"{path}: no seed texts")
    return out


def make_imbalanced(pool: Pool, positive_share: float = 0.10, *, seed: int = 0) -> Pool:
    """Keep every negative, subsample positives so they are ``positive_share`` of the result (paper, Table 1).

    On SST-2 train (29,780 negatives) this keeps 3,308 of 37,569 positives: 33,088 posts.
    """
    neg = np.flatnonzero(pool.labels == 0)
    pos = np.flatnonzero(pool.labels == 1)
    k = int(len(neg) * positive_share / (1 - positive_share))
    if k > len(pos):
        raise DataError(f"pool has {len(pos)} positives, {k} needed for a {positive_share:.0%} share")
    keep = np.sort(np.concatenate([neg, np.random.default_rng(seed).choice(pos, size=k, replace=False)]))
    return pool.subset(keep.tolist())

"""Seeds for a new detector: suggested by the configured LLM and picked by ACS (:class:`SeedSuggester`, the same
steps as ``synapse-stream seeds generate``), or typed and uploaded (:func:`parse_upload`, :func:`typed`)."""
from __future__ import annotations

import json
import threading

from synapse_stream.exceptions import ConfigError, SynapseError

MAX_SEEDS = 500
MAX_SEED_CHARS = 2_000


class SeedSuggester:
    """``suggest(description)``: ``n`` examples from the LLM (near copies removed), ``k`` of them picked by ACS.
    Blocking (run it in a thread); the embedder is loaded once, on first use."""

    def __init__(self, settings, n: int = 60, k: int = 20, timeout: float = 60.0) -> None:
        self.settings, self.n, self.k, self.timeout = settings, n, k, timeout
        self._embedder = None
        self._lock = threading.Lock()

    def embedder(self):
        from synapse_stream.embedders import make_embedder

        with self._lock:
            if self._embedder is None:
                self._embedder = make_embedder(self.settings.embedder)
            return self._embedder

    def diagnose(self, texts: list[str]) -> list[str]:
        """Seed diagnostics of ``texts`` (:func:`synapse_stream.seed_report.diagnose`: near-duplicates, diversity,
        ACS coverage), as lines to show beside the suggestions; blocking (embeds), [] for no text."""
        from synapse_stream.seed_report import diagnose

        if not texts:
            return []
        return diagnose(self.embedder().encode(list(texts))).lines()

    def suggest(self, description: str) -> list[str]:
        from synapse_stream.llm import ChatClient, generate_seeds
        from synapse_stream.seeds import acs_select

        if not description.strip():
            raise ConfigError("describe the detector first: the LLM writes examples of the description")
        emb = self.embedder()
        s = self.settings
        client = ChatClient(s.llm_base_url, s.llm_model, s.llm_api_key, timeout=self.timeout, max_retries=2)
        with client:
            texts = generate_seeds(client, description, self.n, embedder=emb, batch=min(25, self.n))
        if len(texts) <= self.k:
            return texts
        res = acs_select(emb.encode(texts), self.k)
        return [texts[i] for i in res.indices]


def typed(text: str) -> list[str]:
    """Seeds typed into a box: one per line, blank lines ignored."""
    return [ln.strip() for ln in (text or "").splitlines() if ln.strip()]


def parse_upload(data: bytes, filename: str = "") -> list[str]:
    """An uploaded seed file: one text per line, or JSON lines with a ``"text"`` (``.jsonl``)."""
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError("the seed file is not UTF-8 text") from None
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if filename.lower().endswith((".jsonl", ".ndjson")) or (lines and lines[0].lstrip().startswith("{")):
        out = []
        for n, ln in enumerate(lines, 1):
            try:
                doc = json.loads(ln)
            except ValueError:
                raise ConfigError(f"the seed file's line {n} is not JSON") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                raise ConfigError(f"the seed file's line {n} has no \"text\"")
            out.append(doc["text"].strip())
        return [t for t in out if t]
    return [ln.strip() for ln in lines]


def check_seeds(texts: list[str]) -> list[str]:
    """The seeds to publish: unique, non-empty, each at most ``MAX_SEED_CHARS``, at most ``MAX_SEEDS``."""
    out, seen = [], set()
    for t in texts:
        t = t.strip()
        if not t or t in seen:
            continue
        if len(t) > MAX_SEED_CHARS:
            raise ConfigError(f"a seed has {len(t):,} characters; at most {MAX_SEED_CHARS:,}")
        seen.add(t)
        out.append(t)
    if len(out) > MAX_SEEDS:
        raise ConfigError(f"{len(out)} seeds; at most {MAX_SEEDS}")
    if not out:
        raise ConfigError("a detector needs at least one seed: keep a suggestion, type one or upload a file")
    return out


__all__ = ["SeedSuggester", "typed", "parse_upload", "check_seeds", "SynapseError"]

"""Synthetic positive seeds from a one-line description, written by an LLM.

Two parts, neither needs Faust or Kafka:

* :class:`ChatClient`: a small synchronous client for any OpenAI-compatible ``/chat/completions``
  endpoint (OpenAI, vLLM, Ollama, LM Studio, llama.cpp server...). It has a timeout, retries with
  exponential backoff and jitter on HTTP 429 / 5xx / connection errors (a ``Retry-After`` header is
  honoured), a client-side rate limiter, and clear :class:`~synapse_stream.exceptions.LLMError`
  messages for a rejected key (401/403), a wrong URL or model (404), an unreachable endpoint and an
  unusable answer. The API key is kept as a :class:`pydantic.SecretStr`: it never appears in a repr,
  a log line or an exception message.
* :func:`generate_seeds`: asks the LLM, in several calls, for ``n`` diverse synthetic examples of
  the described trend and removes exact and near duplicates.

Prompt design (see :data:`SYSTEM_PROMPT` and :func:`build_messages`):

* The **system message** frames the task (synthetic posts for training a moderation detector,
  never published), asks for realistic posts as users write them (no commentary, numbering or
  disclaimers) and for **strict JSON only**: ``{"examples": ["...", ...]}``.
* Each **user message** restates the description and asks for ``k`` examples with one *focus* per
  axis: a **style** (casual post, reply, direct message, advert...), a **length** (under 15 words
  ... a short paragraph), a **target / angle** (general audience, one person, a group, a third
  party...) and a **wording** (plain, slang, euphemisms, urgent tone...). The focus changes from
  call to call (each axis cycles through its own shuffled order, and the axes have coprime-ish
  lengths, so consecutive calls differ on every axis), and the message asks that posts differ from
  each other within the batch too.
* From the second call on, the user message lists a sample of the examples already collected
  (each cut to 100 characters, at most 20) and asks the model not to repeat or paraphrase them.

Parsing is forgiving (:func:`parse_examples`): code fences are stripped, a bare JSON list or an
object with another list field is accepted, a truncated JSON answer keeps its complete strings, and
only if no JSON is found are numbered or bulleted lines used. Items are whitespace-normalised;
empty and overlong ones are dropped.

Duplicates (:class:`Deduplicator`): exact copies after case and whitespace normalisation, and near
copies: cosine ≥ ``dedupe_threshold`` with an embedder, or, without one, a Jaccard similarity ≥ 0.8
of character 3-gram sets.

>>> parse_examples('```json\\n{"examples": ["Send 1 BTC, get 2 back", "  Free   coins!  "]}\\n```')
['Send 1 BTC, get 2 back', 'Free coins!']
>>> parse_examples('Sure! Here they are:\\n1. first post\\n2) second post')
['first post', 'second post']
>>> d = Deduplicator()
>>> d.add_many(["Double your bitcoin today!", "double your  BITCOIN today!", "Double your bitcoin today!!",
...             "The weather is mild"])
['Double your bitcoin today!', 'The weather is mild']
"""
from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
from pydantic import SecretStr

from .exceptions import ConfigError, LLMError

log = logging.getLogger(__name__)

__all__ = [
    "ChatClient", "ChatResult", "Deduplicator", "generate_seeds", "parse_examples", "build_messages",
    "SYSTEM_PROMPT", "STYLES", "LENGTHS", "TARGETS", "WORDINGS",
]

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})   # plus any other 5xx


# ---------------------------------------------------------------------- client
@dataclass(frozen=True)
class ChatResult:
    """One chat completion: the answer text, the endpoint's ``usage`` (if any) and why it stopped."""

    content: str
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str | None = None


def _display_url(url: str) -> str:
    """The URL without user info or query string (either might hold a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(headers: httpx.Headers, now: Callable[[], float] = time.time) -> float | None:
    """Seconds asked by ``retry-after-ms`` / ``Retry-After`` (delta seconds or an HTTP date), or None."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())


class ChatClient:
    """A synchronous client for an OpenAI-compatible chat-completions endpoint.

    ``base_url`` is the API root (``https://api.openai.com/v1``, ``http://localhost:11434/v1`` for
    Ollama, ``http://host:8000/v1`` for vLLM); a URL that already ends in ``/chat/completions`` is
    accepted too. ``api_key`` (str or SecretStr) is sent as a Bearer token and is never shown.

    ``max_retries`` extra attempts are made after HTTP 429, 5xx, 408 or a connection error/timeout,
    sleeping ``backoff · 2^attempt`` seconds (at most ``max_backoff``), scaled by a random factor in
    [0.5, 1] (jitter); a ``Retry-After`` (or ``retry-after-ms``) header replaces that delay. A
    Retry-After longer than ``max_retry_after`` fails at once (a quota that resets in an hour is no
    reason to block). 400/401/403/404 and other 4xx are not retried. ``max_calls_per_minute`` spaces
    calls (retries included) at least ``60 / max_calls_per_minute`` seconds apart.

    ``sleep``, ``clock`` and ``transport`` (an ``httpx`` transport) can be injected for tests.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | SecretStr | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_calls_per_minute: float | None = None,
        *,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url or not str(base_url).strip():
            raise ConfigError("the LLM base URL is empty (set --llm-base-url or SYNAPSE_LLM_BASE_URL)")
        url = str(base_url).strip().rstrip("/")
        if url.endswith("/chat/completions"):
            url = url[: -len("/chat/completions")]
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"the LLM base URL must start with http:// or https://, got {_display_url(url)!r}")
        if not model or not str(model).strip():
            raise ConfigError("the LLM model name is empty (set --llm-model or SYNAPSE_LLM_MODEL)")
        if timeout <= 0:
            raise ConfigError(f"the LLM timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if max_calls_per_minute is not None and max_calls_per_minute <= 0:
            raise ConfigError(f"max_calls_per_minute must be positive, got {max_calls_per_minute}")
        self.base_url = url
        self.model = str(model).strip()
        if isinstance(api_key, SecretStr):
            key = api_key.get_secret_value()
        else:
            key = api_key
        self._api_key: SecretStr | None = SecretStr(key) if key else None
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_retry_after = float(max_retry_after)
        self.max_calls_per_minute = max_calls_per_minute
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._next_slot: float | None = None
        self.calls = 0                       # HTTP requests made (retries included)
        self.usage: dict[str, int] = {}      # summed ``usage`` of every successful answer
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout), headers=headers, transport=transport,
                                  follow_redirects=False)

    # -- plumbing ---------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    @property
    def display_url(self) -> str:
        return _display_url(self.base_url)

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def __repr__(self) -> str:
        key = "'**********'" if self._api_key is not None else "None"
        return f"ChatClient(base_url={self.display_url!r}, model={self.model!r}, api_key={key})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            if secret:
                text = text.replace(secret, "**********")
        return text

    def _wait_for_slot(self) -> None:
        """Client-side rate limit: calls at least ``60 / max_calls_per_minute`` seconds apart."""
        if not self.max_calls_per_minute:
            return
        interval = 60.0 / float(self.max_calls_per_minute)
        with self._lock:
            now = self._clock()
            slot = now if self._next_slot is None else max(now, self._next_slot)
            self._next_slot = slot + interval
        if slot > now:
            log.debug("rate limit: waiting %.2f s before the next LLM call", slot - now)
            self._sleep(slot - now)

    def _delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return base * (0.5 + 0.5 * self._rng.random())

    # -- the call ---------------------------------------------------------
    def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatResult:
        """POST the chat and return the first choice's text and the token usage.

        Raises :class:`LLMError` with a clear message when the endpoint cannot be used.
        """
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": float(temperature)}
        if max_tokens is not None:
            body["max_tokens"] = int(max_tokens)
        if extra:
            body.update(extra)
        headers = {}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        attempts = self.max_retries + 1
        last_problem = ""
        for attempt in range(attempts):
            self._wait_for_slot()
            self.calls += 1
            delay: float | None = None
            try:
                resp = self._http.post(self.url, json=body, headers=headers)
            except httpx.TimeoutException as exc:
                kind = "connect" if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) else "read"
                if kind == "connect":
                    last_problem = f"cannot reach the LLM endpoint at {self.display_url}: connection timed out after {self.timeout:g} s"
                else:
                    last_problem = (f"the LLM endpoint at {self.display_url} did not answer within "
                                    f"{self.timeout:g} s")
            except httpx.TransportError as exc:
                reason = self._redact(_snippet(str(exc) or type(exc).__name__))
                last_problem = f"cannot reach the LLM endpoint at {self.display_url}: {type(exc).__name__}: {reason}"
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return self._result(resp)
                retryable = status in RETRY_STATUS or status >= 500
                if not retryable:
                    raise self._http_error(resp)
                err = self._error_body(resp)
                if status == 429:
                    code = str((err or {}).get("code") or (err or {}).get("type") or "")
                    if code == "insufficient_quota":
                        raise LLMError("the LLM account has no quota left (HTTP 429 insufficient_quota); "
                                       "check the plan and billing of the API key")
                    wait = _retry_after(resp.headers)
                    if wait is not None and wait > self.max_retry_after:
                        raise LLMError(f"the LLM endpoint is rate-limiting (HTTP 429) and asks to wait {wait:.0f} s "
                                       f"(more than {self.max_retry_after:.0f} s); try later or lower the call rate")
                    delay = wait
                    last_problem = "the LLM endpoint kept rate-limiting (HTTP 429)"
                else:
                    wait = _retry_after(resp.headers)
                    delay = min(wait, self.max_retry_after) if wait is not None else None
                    detail = self._redact(_snippet((err or {}).get("message") or resp.text or ""))
                    last_problem = f"the LLM endpoint at {self.display_url} failed with HTTP {status}" + (
                        f": {detail}" if detail else "")
            if attempt + 1 < attempts:
                if delay is None:
                    delay = self._delay(attempt)
                log.warning("LLM call failed (%s); retrying in %.2f s (attempt %d of %d)",
                            last_problem, delay, attempt + 2, attempts)
                self._sleep(delay)
        raise LLMError(f"{last_problem} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})")

    # -- answers ----------------------------------------------------------
    @staticmethod
    def _error_body(resp: httpx.Response) -> dict | None:
        try:
            data = resp.json()
        except ValueError:
            return None
        if isinstance(data, dict):
            err = data.get("error", data)
            if isinstance(err, dict):
                return err
            if isinstance(err, str):
                return {"message": err}
        return None

    def _http_error(self, resp: httpx.Response) -> LLMError:
        status = resp.status_code
        if status in (401, 403):
            if self._api_key is None:
                return LLMError(f"the LLM endpoint at {self.display_url} requires an API key (HTTP {status}); "
                                "set SYNAPSE_LLM_API_KEY")
            return LLMError(f"the LLM endpoint rejected the API key (HTTP {status}); check SYNAPSE_LLM_API_KEY "
                            f"and that it is valid for {self.display_url}")
        detail = self._redact(_snippet((self._error_body(resp) or {}).get("message") or resp.text or ""))
        tail = f": {detail}" if detail else ""
        if status == 404:
            return LLMError(f"the LLM endpoint returned HTTP 404 for {_display_url(self.url)} with model "
                            f"{self.model!r}; check --llm-base-url (it usually ends in /v1) and --llm-model{tail}")
        return LLMError(f"the LLM endpoint refused the request (HTTP {status}){tail}")

    def _result(self, resp: httpx.Response) -> ChatResult:
        try:
            data = resp.json()
        except ValueError:
            raise LLMError("the LLM answer could not be parsed: the endpoint returned a non-JSON body: "
                           + self._redact(_snippet(resp.text))) from None
        try:
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError("the LLM answer could not be parsed: no choices[0].message in "
                           + self._redact(_snippet(json.dumps(data)[:400]))) from None
        if isinstance(content, list):   # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content.strip():
            refusal = message.get("refusal") if isinstance(message, dict) else None
            why = f" (the model refused: {_snippet(refusal)})" if refusal else ""
            raise LLMError(f"the LLM answer could not be parsed: the answer is empty{why}")
        usage = {}
        raw = data.get("usage") if isinstance(data, dict) else None
        if isinstance(raw, dict):
            usage = {k: int(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for k, v in usage.items():
                self.usage[k] = self.usage.get(k, 0) + v
        return ChatResult(content=content, usage=usage, finish_reason=choice.get("finish_reason"),
                          model=data.get("model"))


# ---------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)(?:```|\Z)", re.S)
_NUMBERED = re.compile(r"^\s*(?:\(?\d{1,4}[.):]|[-*•])\s+(.+?)\s*$")
_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def _clean(item: str) -> str:
    text = " ".join(str(item).split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] in "“" and text[-1] in "”":
        text = text[1:-1].strip()
    return text


def _items_from_json(data: Any) -> list | None:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("examples", "posts", "items", "data", "texts"):
            if isinstance(data.get(key), list):
                return data[key]
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def _as_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("text", "example", "post", "content"):
            if isinstance(item.get(key), str):
                return item[key]
    return None


def parse_examples(content: str, *, max_chars: int = 1000, min_chars: int = 3) -> list[str]:
    """The example texts in an LLM answer (see the module docstring); raises LLMError if there are none.

    Order of attempts: the whole answer (or the inside of its first code fence) as JSON; the
    outermost ``{...}`` or ``[...]`` inside it as JSON; the complete string literals of a truncated
    JSON answer; numbered (``1.``, ``2)``) or bulleted lines.
    """
    text = (content or "").strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1).strip()
    items: list | None = None
    candidates = [text]
    for open_, close in (("{", "}"), ("[", "]")):
        i, j = text.find(open_), text.rfind(close)
        if 0 <= i < j:
            candidates.append(text[i:j + 1])
    for cand in candidates:
        try:
            items = _items_from_json(json.loads(cand))
        except ValueError:
            continue
        if items is not None:
            break
    if items is None:
        start = text.find("[")
        looks_json = start >= 0 and ('"examples"' in text or text.lstrip().startswith(("[", "{")))
        if looks_json:    # truncated JSON (max_tokens hit): keep its complete strings
            found = []
            for m in _STRING.finditer(text, start):
                try:
                    found.append(json.loads(f'"{m.group(1)}"'))
                except ValueError:
                    continue
            items = found or None
    if items is None:
        lines = [m.group(1) for m in map(_NUMBERED.match, text.splitlines()) if m]
        items = lines or None
    if items is None:
        raise LLMError('the LLM answer could not be parsed: expected JSON {"examples": [...]}, got: '
                       + repr(_snippet(content or "", 160)))
    out = []
    for item in items:
        t = _as_text(item)
        if t is None:
            continue
        t = _clean(t)
        if min_chars <= len(t) <= max_chars:
            out.append(t)
    return out


# ---------------------------------------------------------------------- duplicates
def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _trigrams(text: str) -> frozenset[str]:
    t = re.sub(r"[^\w ]+", "", _normal(text))
    t = " ".join(t.split())
    if len(t) < 3:
        return frozenset({t})
    return frozenset(t[i:i + 3] for i in range(len(t) - 2))


class Deduplicator:
    """Keeps the first of every group of exact or near copies.

    Exact: equal after case folding and whitespace collapsing. Near: cosine ≥ ``threshold`` of the
    embedder's unit vectors, or (no embedder) Jaccard ≥ ``jaccard`` of character 3-gram sets
    (punctuation removed). Each new text is compared with every kept one: O(n) per text.
    """

    def __init__(self, embedder=None, *, threshold: float = 0.92, jaccard: float = 0.8) -> None:
        self.embedder = embedder
        self.threshold = float(threshold)
        self.jaccard = float(jaccard)
        self.texts: list[str] = []
        self._keys: set[str] = set()
        self._grams: list[frozenset[str]] = []
        self._vecs: np.ndarray | None = None
        self.dropped_exact = 0
        self.dropped_near = 0

    def __len__(self) -> int:
        return len(self.texts)

    def add_many(self, texts: Sequence[str]) -> list[str]:
        """Add the texts that are not copies; returns those added, in order."""
        fresh: list[str] = []
        keys: set[str] = set()
        for t in texts:
            k = _normal(t)
            if not k or k in self._keys or k in keys:
                self.dropped_exact += 1
                continue
            keys.add(k)
            fresh.append(t)
        if not fresh:
            return []
        added: list[str] = []
        if self.embedder is not None:
            vecs = np.asarray(self.embedder.encode(fresh), dtype=np.float32)
            kept = [] if self._vecs is None else [self._vecs]
            mat = self._vecs if self._vecs is not None else np.zeros((0, vecs.shape[1]), np.float32)
            new_rows = []
            for t, v in zip(fresh, vecs):
                sims = mat @ v if len(mat) else np.zeros(0)
                if new_rows:
                    sims = np.concatenate([sims, np.asarray(new_rows) @ v])
                if len(sims) and float(sims.max()) >= self.threshold:
                    self.dropped_near += 1
                    continue
                new_rows.append(v)
                added.append(t)
            if new_rows:
                kept.append(np.asarray(new_rows, dtype=np.float32))
                self._vecs = np.vstack(kept)
        else:
            for t in fresh:
                g = _trigrams(t)
                if any(len(g & h) / max(1, len(g | h)) >= self.jaccard for h in self._grams):
                    self.dropped_near += 1
                    continue
                self._grams.append(g)
                added.append(t)
        for t in added:
            self._keys.add(_normal(t))
        self.texts.extend(added)
        return added


# ---------------------------------------------------------------------- prompts
SYSTEM_PROMPT = (
    "You write synthetic examples of social-media posts for training a content-moderation detector. "
    "The examples are never published: they are only used to find similar real posts for human review, "
    "so they must look exactly like real posts of the described kind. Write each post as a real user "
    "would: no commentary, no labels, no numbering, no quotation marks around it, no disclaimers. "
    'Answer with strict JSON only, without code fences or any other text: {"examples": ["...", "..."]}'
)

STYLES = (
    "casual social-media post", "reply in a comment thread", "direct message to one person",
    "formal-sounding announcement", "emotional first-person account", "short question to followers",
    "advert or promotional copy", "forum post asking for or giving advice", "sarcastic or ironic remark",
    "text-message shorthand with abbreviations and typos", "news-style headline with a comment",
)
LENGTHS = ("very short (under 15 words)", "one sentence", "two or three sentences",
           "a short paragraph (40 to 80 words)", "mixed: some very short, some two or three sentences")
TARGETS = ("addressed to a general audience", "addressed to one specific person",
           "aimed at a specific group or community", "about a third party",
           "from the perspective of someone affected by it", "from someone spreading or promoting it",
           "in a local or regional context")
WORDINGS = ("plain everyday words", "slang and informal spelling",
            "euphemisms and indirect hints instead of the obvious keywords", "an urgent, pressuring tone",
            "a calm, matter-of-fact tone", "mixed with unrelated everyday chatter",
            "emoji or unusual punctuation", "vocabulary a non-native speaker might use")


def build_messages(description: str, k: int, focus: dict[str, str], avoid: Sequence[str] = ()) -> list[dict]:
    """The chat messages of one call: the system prompt, then the description, ``k``, the focus and
    the examples to avoid (already shortened by the caller)."""
    lines = [
        f"Trend to illustrate: {description.strip()}",
        "",
        f"Write {k} different posts that are clear positive examples of this trend.",
        "For this batch:",
        f"- style: {focus['style']}",
        f"- length: {focus['length']}",
        f"- target / angle: {focus['target']}",
        f"- wording: {focus['wording']}",
        "Within the batch, every post must differ from the others in wording, in who or what it is about "
        "and in how it is phrased; do not reuse an opening or a template.",
    ]
    if avoid:
        lines += ["", "Already written (do not repeat or paraphrase these; cover new ground):"]
        lines += [f"- {a}" for a in avoid]
    lines += ["", f'Answer with JSON only: {{"examples": [ ...{k} strings... ]}}']
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def _focus_cycle(rng: random.Random):
    orders = {name: rng.sample(list(axis), len(axis))
              for name, axis in (("style", STYLES), ("length", LENGTHS), ("target", TARGETS), ("wording", WORDINGS))}

    def focus(i: int) -> dict[str, str]:
        return {name: order[i % len(order)] for name, order in orders.items()}

    return focus


def generate_seeds(
    client,
    description: str,
    n: int,
    *,
    batch: int = 25,
    temperature: float = 0.9,
    dedupe_threshold: float = 0.92,
    embedder=None,
    max_calls: int | None = None,
    min_fraction: float = 0.5,
    max_chars: int = 1000,
    max_tokens: int | None = None,
    avoid_shown: int = 20,
    seed: int = 0,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[str]:
    """``n`` unique synthetic positive examples of ``description``, asked for ``batch`` at a time.

    ``client`` is a :class:`ChatClient` (anything with its ``complete(messages, temperature=...,
    max_tokens=...)``). Every call gets a different focus (style, length, target, wording) and a
    sample of at most ``avoid_shown`` examples already collected. Answers are parsed with
    :func:`parse_examples` and de-duplicated with a :class:`Deduplicator` (``embedder`` cosine ≥
    ``dedupe_threshold``, else 3-gram Jaccard ≥ 0.8). An answer that cannot be parsed costs a call
    and is otherwise skipped; errors of the endpoint itself (bad key, unreachable) propagate.

    Stops at ``n`` unique examples or after ``max_calls`` calls (default ``3 · ceil(n / batch) + 2``);
    raises :class:`LLMError` if fewer than ``ceil(min_fraction · n)`` were collected. ``progress``
    is called as ``progress(collected, n, calls)`` after every call.
    """
    if not description or not description.strip():
        raise ConfigError("the trend description is empty")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    if max_calls is None:
        max_calls = 3 * math.ceil(n / batch) + 2
    need_min = max(1, math.ceil(min_fraction * n))
    rng = random.Random(seed)
    focus = _focus_cycle(rng)
    dedupe = Deduplicator(embedder, threshold=dedupe_threshold)
    calls = parsed_ok = 0
    last_parse_error: LLMError | None = None
    while len(dedupe) < n and calls < max_calls:
        missing = n - len(dedupe)
        k = min(batch, missing + max(2, missing // 5))
        shown = dedupe.texts if len(dedupe.texts) <= avoid_shown else rng.sample(dedupe.texts, avoid_shown)
        avoid = [t if len(t) <= 100 else t[:99] + "…" for t in shown]
        messages = build_messages(description, k, focus(calls), avoid)
        result = client.complete(messages, temperature=temperature, max_tokens=max_tokens)
        calls += 1
        try:
            items = parse_examples(result.content, max_chars=max_chars)
        except LLMError as exc:
            last_parse_error = exc
            log.warning("LLM call %d: %s", calls, exc)
        else:
            parsed_ok += 1
            added = dedupe.add_many(items)
            log.info("LLM call %d: %d examples, %d new (%d/%d)", calls, len(items), len(added),
                     len(dedupe), n)
        if progress is not None:
            progress(len(dedupe), n, calls)
    texts = dedupe.texts[:n]
    if len(texts) < need_min:
        if parsed_ok == 0 and last_parse_error is not None:
            raise LLMError(f"{last_parse_error} (no usable answer in {calls} call{'s' if calls > 1 else ''}; "
                           "the model may have refused, or it does not follow JSON instructions)")
        raise LLMError(f"the LLM produced only {len(texts)} unique examples of the {n} requested after {calls} "
                       f"calls (at least {need_min} are needed; {dedupe.dropped_exact} exact and "
                       f"{dedupe.dropped_near} near duplicates were dropped)")
    return texts

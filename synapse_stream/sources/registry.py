"""One registry of candidate sources: names, factories, and which of them the default policy uses.

>>> from synapse_stream.sources import registry
>>> registry.names()[:4]            # the built-ins first, then any plug-in
('ibg', 'gble', 'model', 'knn')
>>> registry.POLICY_DEFAULT
('ibg', 'gble', 'model')
>>> [type(s).__name__ for s in registry.build(["ibg", "model"]).values()]
['IBG', 'ModelGuided']
>>> registry.live_names()[:3]       # knn has no live form
('ibg', 'gble', 'model')

The built-in sources register themselves when their module is imported; the registry imports them the
first time it is asked anything, so nothing is wired at import time. A new source is a module with a
:class:`~synapse_stream.sources.base.CandidateSource` subclass and a :func:`register` call, plus its module name
in :data:`BUILTIN`; a plug-in outside this package is named in ``SYNAPSE_SOURCE_PLUGINS`` (comma-separated
module names, imported after the built-ins: the same variable for ``eval`` and for every worker).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..exceptions import ConfigError
from .base import CandidateSource, SourceParams

#: modules of the built-in sources (``synapse_stream.sources.<name>``), in the order the registry lists them
BUILTIN = ("ibg", "gble", "model", "knn")
#: the sources of the default policy (``eval --method policy`` and the worker's ``candidates = "policy"``)
POLICY_DEFAULT = ("ibg", "gble", "model")

Factory = Callable[[SourceParams], CandidateSource]


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: ``batch`` builds it for a fixed pool (``eval``); ``live`` for the worker's rounds
    (``None``: the source has no live form). ``summary``: one line for ``--help`` and the docs."""

    name: str
    batch: Factory
    live: Factory | None = None
    summary: str = ""


_specs: dict[str, SourceSpec] = {}
_loaded = False


def register(spec: SourceSpec, *, replace: bool = False) -> SourceSpec:
    """Add a source under ``spec.name`` (a name already taken is an error unless ``replace``)."""
    _load()
    if not spec.name or not spec.name.isidentifier():
        raise ConfigError(f"a candidate source needs a plain name, got {spec.name!r}")
    if spec.name in _specs and not replace and _specs[spec.name] != spec:
        raise ConfigError(f"candidate source {spec.name!r} is already registered")
    _specs[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a source (tests register example sources and remove them again)."""
    _specs.pop(name, None)


PLUGINS_ENV = "SYNAPSE_SOURCE_PLUGINS"


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN:
        importlib.import_module(f"{__package__}.{module}")
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            _loaded = False
            raise ConfigError(f"{PLUGINS_ENV}: cannot import candidate source module {module!r}: {exc}") from None


def names() -> tuple[str, ...]:
    """Every registered source: the built-ins in :data:`BUILTIN`'s order, then the others as registered."""
    _load()
    order = list(_specs)
    return tuple(sorted(order, key=lambda n: (BUILTIN.index(n) if n in BUILTIN else len(BUILTIN), order.index(n))))


def live_names() -> tuple[str, ...]:
    """The sources that can run in the worker's live rounds (in :func:`names`' order)."""
    return tuple(n for n in names() if _specs[n].live is not None)


def spec(name: str) -> SourceSpec:
    _load()
    try:
        return _specs[name]
    except KeyError:
        raise ConfigError(f"unknown candidate source {name!r}; choose from {', '.join(_specs)}") from None


def check(chosen: Iterable[str], *, live: bool = False) -> tuple[str, ...]:
    """``chosen`` as a tuple of distinct registered names (live: with a live form), else a ConfigError."""
    chosen = tuple(chosen)
    allowed = live_names() if live else names()
    bad = [c for c in chosen if c not in allowed]
    if bad or not chosen or len(set(chosen)) != len(chosen):
        kind = "live " if live else ""
        raise ConfigError(f"candidate sources: give distinct {kind}source names from {', '.join(allowed)}, "
                          f"got {list(chosen)}")
    return chosen


def build(chosen: Iterable[str] = POLICY_DEFAULT, params: SourceParams | None = None, *,
          live: bool = False) -> dict[str, CandidateSource]:
    """New sources by name, in the order given (``live``: their live forms)."""
    params = params or SourceParams()
    out = {}
    for name in check(chosen, live=live):
        s = spec(name)
        out[name] = (s.live if live else s.batch)(params)   # type: ignore[misc]
    return out

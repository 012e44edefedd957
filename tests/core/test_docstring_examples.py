"""Every runnable example in the core's docstrings (``>>>``), module by module: one check over the whole package, so
an example that goes stale fails here rather than misleading a reader."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import synapse_stream

MODULES = sorted(m.name for m in pkgutil.walk_packages(synapse_stream.__path__, "synapse_stream."))


def test_the_package_has_examples_to_run():
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name)))
    assert examples >= 100


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert not res.failed, f"{res.failed} of {res.attempted} examples failed in {name}"

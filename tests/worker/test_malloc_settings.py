"""The allocator settings of the worker (stream_app/worker/memory.py): a fixed mmap threshold and malloc_trim."""
from __future__ import annotations

import ctypes.util
import sys

import pytest

from stream_app.worker import memory

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or memory._glibc() is False,
                           reason="glibc's mallopt/malloc_trim only")


def test_zero_or_none_leaves_glibc_alone():
    assert memory.fix_mmap_threshold(0) is False
    assert memory.fix_mmap_threshold(None) is False


@glibc
def test_threshold_is_set_and_trim_runs():
    assert ctypes.util.find_library("c")
    assert memory.fix_mmap_threshold(1 << 20) is True
    assert isinstance(memory.trim(), bool)


def test_settings_default_to_the_measured_fix(monkeypatch, tmp_path):
    from stream_app.worker.settings import Settings

    monkeypatch.chdir(tmp_path)
    s = Settings(_env_file=None)
    assert s.malloc_mmap_threshold == 1 << 20 and s.malloc_trim is True and s.gble_ef == 32
    monkeypatch.setenv("SYNAPSE_MALLOC_MMAP_THRESHOLD", "0")
    monkeypatch.setenv("SYNAPSE_GBLE_EF", "64")
    s = Settings(_env_file=None)
    assert s.malloc_mmap_threshold == 0 and s.gble_ef == 64


@pytest.mark.parametrize("dropped,enabled,trims", [(0, True, 0), (40, True, 1), (40, False, 0)])
def test_the_round_thread_trims_after_a_round_that_let_go_of_expired_posts(monkeypatch, dropped, enabled, trims):
    from types import SimpleNamespace

    from stream_app.worker.service import scheduler

    calls = []
    monkeypatch.setattr(scheduler.memory, "trim", lambda: calls.append(1) or True)

    class Rounds:
        def compute(self, inp):
            self.dropped = dropped           # as LiveRounds._apply_changes sets it
            return ("out", inp)

    part = scheduler.RoundScheduler(SimpleNamespace(settings=SimpleNamespace(malloc_trim=enabled)))
    assert part._compute(Rounds(), "inp") == ("out", "inp")
    assert len(calls) == trims

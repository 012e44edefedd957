"""glibc's allocator and a long-running worker: freed memory back to the system.

Two measured fixes for resident memory that kept creeping up after the window had filled (docs/soak.md,
"Resident memory"):

* :func:`fix_mmap_threshold`: by default glibc raises its mmap threshold to the size of every large block freed
  (up to 32 MiB), so after the first snapshot or hnswlib segment is freed, later ones of that size come from
  the heaps of the model and round threads, where freed space stays fragmented instead of going back. A fixed
  threshold (``mallopt(M_MMAP_THRESHOLD)``, ``SYNAPSE_MALLOC_MMAP_THRESHOLD``) keeps every block above it in its
  own mapping, returned whole on free.
* :func:`trim`: ``malloc_trim(0)`` after a round that let go of expired segments returns the free pages of every
  heap.

Both do nothing (and say so by returning False) where the C library is not glibc.

>>> isinstance(trim(), bool)
True
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("synapse.service")
_M_MMAP_THRESHOLD = -3   # glibc's <malloc.h>
_libc = None


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim"):
                    _libc = lib
            except OSError:
                pass
    return _libc


def fix_mmap_threshold(nbytes: int | None) -> bool:
    """Blocks of at least ``nbytes`` get their own mapping from now on (None or 0: glibc's dynamic default)."""
    lib = _glibc()
    if not nbytes or not lib:
        return False
    ok = bool(lib.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
    if not ok:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) refused", nbytes)
    return ok


def trim() -> bool:
    """Give the free pages of every malloc heap back to the system; True if any were."""
    lib = _glibc()
    return bool(lib.malloc_trim(0)) if lib else False

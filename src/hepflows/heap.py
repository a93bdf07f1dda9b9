"""Keep freed memory in the process heap, so that each training step reuses the pages of the last.

A training step of a flow allocates every hidden activation it saves for the backward pass and
every gradient afresh: at the seed study's architecture about 80 blocks of 2 MB a step. With
its default settings glibc's ``malloc`` gives such blocks back to the kernel on ``free`` (they
are ``mmap``-ed, or trimmed off the top of the heap), so the next step touches fresh pages and
pays a page fault, and the kernel's zeroing, on every 4 kB of them: 10,600 to 19,000 faults a
seed training step on a 2-core CPU, under one with these settings (README, Performance).

:func:`retain_freed_memory` sets glibc's ``M_MMAP_THRESHOLD`` to its largest value (32 MB on
64-bit Linux: smaller blocks come from the heap) and ``M_TRIM_THRESHOLD`` to
:data:`TRIM_THRESHOLD_BYTES` (freed memory up to that much stays in the heap for the next
allocation). It is what the allocators the PyTorch CPU tuning guide recommends (jemalloc,
tcmalloc) do by default, without preloading a library. The peak resident memory is unchanged;
memory freed below the peak is kept until the process ends rather than returned. Elsewhere than
on glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "retain_freed_memory"]

#: glibc's largest accepted ``M_MMAP_THRESHOLD`` on 64-bit (``HEAP_MAX_SIZE / 2``).
MMAP_THRESHOLD_BYTES = 32 * 2**20

#: Freed memory the heap keeps before giving any back (``M_TRIM_THRESHOLD``).
TRIM_THRESHOLD_BYTES = 2**30

# mallopt parameter numbers, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc (not musl)
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory() -> bool:
    """Make glibc keep freed blocks of up to 32 MB for reuse; True if the settings took effect.

    Process-wide and idempotent; call it once before the first large allocations (the
    ``hepflows`` command does, for every step).
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_ok and trim_ok

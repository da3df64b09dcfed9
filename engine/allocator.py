"""An opt-in for programs built on the engine: keep big NumPy arrays out of glibc's heap.

glibc raises its mmap threshold each time a large block is freed, after which prefill's big
temporary arrays come from the heap, which fragments and stays resident: +70 MB peak RSS over a
4096-token context, measured. Pinning the threshold is a setting for the whole process (every
library's allocations), so the engine never does it by itself: bonsai-tui's entry point asks for it.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt's parameter number
GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def keep_big_arrays_out_of_the_heap() -> None:
    """Pin glibc's mmap threshold at its default 128 KB. Other C libraries: nothing to do."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)

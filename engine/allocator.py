"""An opt-in for programs built on the engine: where glibc puts NumPy's temporary arrays.

Left to itself, glibc raises its mmap threshold (up to 32 MB) each time a large block is freed, so
prefill's biggest temporaries (a 512-token pass: 8-13 MB each) end up in the heap, which fragments
and stays resident. The first answer here pinned the threshold at 128 KB, which kept them out but
sent every array above 128 KB to a fresh mmap: each one's pages faulted in, zeroed, and unmapped
again (a TLB shootdown on the other core) at every use. Decode makes several a token (the 151,669
logits alone are 600 KB) and a prefill several per layer: 1.38 million page faults over a
three-turn chat, against 0.12 million, and a later turn's first token 0.83-1.13 s against 0.61 s
(benchmarks/README.md, "The allocator"). Now the threshold is 4 MB, above every temporary of a
decode step and of a short prefill, below the big ones of a 512-token pass; and the heap keeps up
to 64 MB of freed memory instead of trimming at 128 KB (trimming would fault the pages in again
on the next token). Peak RSS with a full 4,096-token context: 961 MiB, against 935 pinned at 128 KB.

Both are settings for the whole process (every library's allocations), so the engine never makes
them by itself: bonsai-tui's entry point asks for them.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024  # blocks this big or bigger get their own mapping
TRIM_THRESHOLD = 64 * 1024 * 1024  # free memory the heap keeps at its top before giving it back


def keep_big_arrays_out_of_the_heap() -> None:
    """Pin glibc's mmap threshold at 4 MB and its trim threshold at 64 MB. Other C libraries:
    nothing to do."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)

"""BLAS at one thread while a batch runs on the model's own pool.

Prefill runs one BLAS call per pool thread; BLAS's own threads would only busy-wait between calls
and steal those cores. The thread count is one setting for the whole process, so it is lowered while
any batch runs (in any thread, for any model) and given back, as the caller had it, when the last
one ends: `import engine` and loading a model leave it alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController


class _BlasThreads:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches = 0
        self._controller: ThreadpoolController | None = None  # found on first use (~1 ms), then reused
        self._limiter = None

    @contextmanager
    def single(self) -> Iterator[None]:
        with self._lock:
            if self._batches == 0:
                self._controller = self._controller or ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._batches += 1
        try:
            yield
        finally:
            with self._lock:
                self._batches -= 1
                if self._batches == 0:
                    self._limiter.restore_original_limits()
                    self._limiter = None


single_threaded = _BlasThreads().single

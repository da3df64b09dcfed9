"""Numba's threading layer, chosen on purpose, and the guard that keeps a layer that is not
thread-safe from being entered by two threads at once.

The kernels are `parallel=True`; Numba runs them on one of three layers, picked at the first
parallel launch of the process:

- omp (GNU OpenMP, part of every gcc-built Linux): thread-safe, so two threads may run forward
  passes at once (a model switch while the old reply winds down, the server's slots).
- tbb (needs the tbb package): thread-safe too.
- workqueue (Numba's own, always there): aborts the whole process when a second thread launches
  a parallel kernel while one runs.

Measured with other processes keeping cores busy (benchmarks/busy_core.py, figures in
benchmarks/README.md): omp and workqueue decode alike, idle and busy. So: omp first, then tbb,
then workqueue, unless NUMBA_THREADING_LAYER says otherwise; under workqueue (or before the first
launch, when the layer is not known yet) forward passes take turns behind one lock.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, nullcontext

import numba

PREFERRED_LAYERS = ["omp", "tbb", "workqueue"]
THREAD_SAFE_LAYERS = {"omp", "tbb"}

_one_at_a_time = threading.Lock()


def choose_layer() -> None:
    """Prefer the thread-safe layers. Takes effect only before the process's first parallel
    launch; an explicit NUMBA_THREADING_LAYER (environment) is left alone."""
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = list(PREFERRED_LAYERS)


def layer() -> str | None:
    """The layer in use, or None before the first parallel launch."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def launch_guard() -> AbstractContextManager[object]:
    """Hold around a forward pass: nothing under a thread-safe layer, a process-wide lock else."""
    return nullcontext() if layer() in THREAD_SAFE_LAYERS else _one_at_a_time

"""Numba's threading layer, chosen on purpose, and the guard that keeps a layer that is not
thread-safe from being entered by two threads at once.

The kernels are `parallel=True`; Numba runs them on one of three layers, picked at the first
parallel launch of the process:

- omp (GNU OpenMP, part of every gcc-built Linux): thread-safe, so two threads may run forward
  passes at once (a model switch while the old reply winds down, the server's slots).
- tbb (needs the tbb package): thread-safe too.
- workqueue (Numba's own, always there): aborts the whole process when a second thread launches
  a parallel kernel while one runs.

One thread launches them all: GNU OpenMP gives every thread that starts a parallel kernel a team
of its own, and once it manages more threads than there are cores (two launching threads on 2
cores: 4) it cuts its spin-wait at the barriers from ~3 ms to 1,000 turns, so the workers sleep
and are woken by futex between the ~200 parallel regions of every token. Measured on 2 cores: a
reply decoded on a second thread ran at 35-48 tok/s with 1.1-1.5 cores busy and 0.4-0.5 s of
system time per 128 tokens, against 56-70 tok/s on the thread that loaded the model. So a program
that is not single-threaded (the app: a loading worker, then a reply worker per turn) runs the
engine through `on_engine_thread`, and every launch comes from one long-lived thread.

Other processes keeping cores busy (a laptop always runs something) are the other enemy of a
spinning team: with one of 2 cores taken, a 2-thread team waits at every barrier for the thread
that shares its core with the other process (decode fell to a quarter of idle; with both cores
taken, to 5 %). So a forward pass asks `ThreadBudget` how many threads to run: the requested
count, less the cores other processes keep busy (the CPU time of the CPUs we may use minus
this process's own, averaged over the last half second). One thread on the free core
keeps most of the idle speed (figures in benchmarks/README.md, benchmarks/busy_core.py).

Measured with other processes keeping cores busy: omp and workqueue decode alike, idle and busy. So: omp first, then tbb,
then workqueue, unless NUMBA_THREADING_LAYER says otherwise; under workqueue (or before the first
launch, when the layer is not known yet) forward passes take turns behind one lock.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import numba

PREFERRED_LAYERS = ["omp", "tbb", "workqueue"]
THREAD_SAFE_LAYERS = {"omp", "tbb"}

_one_at_a_time = threading.Lock()
ENGINE_THREAD_NAME = "bonsai-engine"
_engine_thread: ThreadPoolExecutor | None = None  # started on first use, ended by release_engine_thread
_engine_thread_lock = threading.Lock()
T = TypeVar("T")


def on_engine_thread(work: Callable[[], T]) -> T:
    """Run `work` on the process's one engine thread and return what it returns (or raise what it
    raised); calls from several threads take turns. It runs in a copy of the caller's context
    variables (a UI toolkit finds its app through them). On the engine thread itself, it runs at once."""
    global _engine_thread
    if threading.current_thread().name.startswith(ENGINE_THREAD_NAME):
        return work()
    with _engine_thread_lock:
        if _engine_thread is None:
            _engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=ENGINE_THREAD_NAME)
        future = _engine_thread.submit(contextvars.copy_context().run, work)
    return future.result()


def release_engine_thread() -> None:
    """Let the engine thread end once its work is done (a program that is done with the engine:
    a live thread that ran batches keeps OpenBLAS from taking a new thread count in this build)."""
    global _engine_thread
    with _engine_thread_lock:
        if _engine_thread is not None:
            _engine_thread.shutdown(wait=False)
            _engine_thread = None


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


def busy_cpu_seconds(proc_stat: str, cpus: set[int]) -> float:
    """CPU time spent busy so far (user, nice, system, irq, softirq, steal: not idle or iowait) on
    the given CPUs, from the text of /proc/stat (whose counts are in clock ticks)."""
    ticks = 0
    for line in proc_stat.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
            ticks += user + nice + system + irq + softirq + steal
    return ticks / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _usable_cpus() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


class ThreadBudget:
    """The threads a forward pass runs on: `wanted`, less the cores other processes kept busy
    since the last look (never fewer than one), looked at again once `recheck_seconds` have passed.

    "Busy elsewhere" is the CPU time of the CPUs this process may use, less this process's own,
    over the wall time between two looks: an average, so a task that only blinked does not count
    and there is no race between two readings (counting running tasks at an instant was: a worker
    of ours seen running in one reading and asleep in the next looked like someone else's work).
    Half a core or more counts as a core. adaptive=False always gives `wanted` (a benchmark compares
    fixed thread counts); so does a system without /proc."""

    def __init__(self, wanted: int, adaptive: bool = True, recheck_seconds: float = 0.5) -> None:
        self.wanted = wanted
        self.adaptive = adaptive
        self.recheck_seconds = recheck_seconds
        self._cpus = _usable_cpus()
        self._threads = wanted
        self._last: tuple[float, float, float] | None = None  # wall, busy CPU seconds, our CPU seconds

    def threads(self) -> int:
        if not self.adaptive:
            return self.wanted
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= self.recheck_seconds:
            sample = self._sample(now)
            if sample is not None and self._last is not None:
                wall = sample[0] - self._last[0]
                elsewhere = ((sample[1] - self._last[1]) - (sample[2] - self._last[2])) / wall
                self._threads = self.threads_for(elsewhere)
            self._last = sample
        return self._threads

    def threads_for(self, cores_busy_elsewhere: float) -> int:
        busy = int(cores_busy_elsewhere + 0.5)
        return max(1, min(self.wanted, len(self._cpus) - busy))

    def _sample(self, now: float) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as stat:
                busy = busy_cpu_seconds(stat.read(), self._cpus)
        except (OSError, ValueError):
            return None
        own = os.times()
        return now, busy, own.user + own.system

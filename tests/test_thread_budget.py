"""How many threads a forward pass runs on while other processes keep cores busy (engine/threads.py)."""

import subprocess
import sys
import time

import pytest

from engine import threads
from engine.threads import ThreadBudget, busy_cpu_seconds

PROC_STAT = """cpu  900 10 300 5000 40 5 7 3 0 0
cpu0 400 10 100 2500 20 2 3 1 0 0
cpu1 500 0 200 2500 20 3 4 2 0 0
intr 12345
procs_running 3
"""


def test_busy_cpu_seconds_sums_the_busy_fields_of_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(threads, "_CLOCK_TICKS", 100)
    assert busy_cpu_seconds(PROC_STAT, {0}) == pytest.approx((400 + 10 + 100 + 2 + 3 + 1) / 100)
    assert busy_cpu_seconds(PROC_STAT, {1}) == pytest.approx((500 + 0 + 200 + 3 + 4 + 2) / 100)
    assert busy_cpu_seconds(PROC_STAT, {0, 1}) == pytest.approx(12.25)
    assert busy_cpu_seconds(PROC_STAT, {7}) == 0.0


def _budget(wanted, cpus, samples):
    """A budget on `cpus` CPUs fed (wall, busy CPU s, own CPU s) samples instead of /proc."""
    budget = ThreadBudget(wanted, recheck_seconds=0)
    budget._cpus = set(range(cpus))
    feed = iter(samples)
    budget._sample = lambda now: next(feed)
    return budget


def test_budget_takes_away_the_cores_others_kept_busy():
    budget = _budget(2, 2, [
        (0.0, 0.0, 0.0),
        (1.0, 2.0, 2.0),   # all the busy time was ours: 2 threads
        (2.0, 3.9, 2.9),   # we ran 0.9 s, someone else 1.0 s: one core taken
        (3.0, 5.9, 3.9),   # two hogs shared the cores with our one thread: still one
        (4.0, 7.5, 5.5),   # 0.4 s elsewhere: less than half a core, both again
    ])
    assert [budget.threads() for _ in range(5)] == [2, 2, 1, 1, 2]


def test_budget_never_exceeds_what_was_asked_nor_falls_below_one():
    budget = _budget(1, 8, [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)])
    assert [budget.threads(), budget.threads()] == [1, 1]
    assert ThreadBudget(2).threads_for(5.0) == 1


def test_budget_looks_again_only_after_the_recheck_interval():
    budget = _budget(2, 2, [(0.0, 0.0, 0.0), (9.0, 9.0, 0.0)])
    budget.recheck_seconds = 3600
    budget._last = (time.monotonic(), 0.0, 0.0)
    assert budget.threads() == 2  # no new sample is taken within the hour


def test_fixed_budget_ignores_load():
    budget = _budget(2, 2, [])
    budget.adaptive = False
    assert budget.threads() == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_spinning_process_takes_a_thread_away():
    budget = ThreadBudget(len(threads._usable_cpus()), recheck_seconds=0.3)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        budget.threads()  # the first look only takes a sample
        deadline = time.monotonic() + 10
        fewer = False
        while not fewer and time.monotonic() < deadline:
            time.sleep(0.35)
            fewer = budget.threads() < budget.wanted
        assert fewer
    finally:
        hog.kill()
        hog.wait()

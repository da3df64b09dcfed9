"""How many threads a forward pass runs on while other processes keep cores busy (engine/threads.py)."""

import subprocess
import sys
import time

import pytest

from engine import threads
from engine.threads import ThreadBudget, running_tasks, thread_state


def test_running_tasks_reads_procs_running():
    text = "cpu  1 2 3\nctxt 99\nprocs_running 3\nprocs_blocked 0\n"
    assert running_tasks(text) == 3
    with pytest.raises(ValueError):
        running_tasks("cpu 1 2 3\n")


def test_thread_state_skips_a_name_with_spaces_and_parentheses():
    assert thread_state("4242 (py (x) y) R 1 4242 0") == "R"
    assert thread_state("17 (bonsai-engine_0) S 1 17") == "S"


@pytest.fixture
def busy(monkeypatch):
    load = {"cores": 0}
    monkeypatch.setattr(threads, "cores_busy_elsewhere", lambda samples=3: load["cores"])
    return load


def test_budget_gives_the_free_cores_never_fewer_than_one(busy):
    budget = ThreadBudget(2, recheck_seconds=0)
    budget._cores = 2
    assert budget.threads() == 2
    busy["cores"] = 1
    assert budget.threads() == 1
    busy["cores"] = 5
    assert budget.threads() == 1
    busy["cores"] = 0
    assert budget.threads() == 2


def test_budget_never_exceeds_what_was_asked(busy):
    budget = ThreadBudget(1, recheck_seconds=0)
    budget._cores = 8
    assert budget.threads() == 1


def test_budget_looks_again_only_after_the_recheck_interval(busy):
    budget = ThreadBudget(2, recheck_seconds=3600)
    budget._cores = 2
    assert budget.threads() == 2
    busy["cores"] = 1
    assert budget.threads() == 2  # the first answer holds until the interval has passed
    budget._checked_at -= 3600
    assert budget.threads() == 1


def test_fixed_budget_ignores_load(busy):
    busy["cores"] = 1
    assert ThreadBudget(2, adaptive=False).threads() == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_spinning_process_counts_as_a_busy_core():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        seen = 0
        while seen < 1 and time.monotonic() < deadline:
            seen = threads.cores_busy_elsewhere()
            time.sleep(0.05)
        assert seen >= 1
    finally:
        hog.kill()
        hog.wait()

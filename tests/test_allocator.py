"""engine/allocator.py: a decode step's temporaries reuse the heap's pages (no page faults per
array), while a 512-token pass's big ones still get mappings of their own, given back when freed.
Counted in a fresh process (the setting is process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, resource
import numpy as np
from engine.allocator import keep_big_arrays_out_of_the_heap
keep_big_arrays_out_of_the_heap()

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

np.ones(151_669, dtype=np.float32).sum()  # the logits of one token: 600 KB
before = faults()
for _ in range(100):
    np.ones(151_669, dtype=np.float32).sum()
small = faults() - before
base = resident_mb()
big = np.ones(16 * 2**20 // 4, dtype=np.float32)  # 16 MB, as a long prompt's activations
held = resident_mb() - base
del big
print(json.dumps({"small_faults": small, "big_held_mb": held, "big_kept_mb": resident_mb() - base}))
"""


def test_small_temporaries_reuse_pages_and_big_ones_are_given_back() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    probe = json.loads(out)
    # each 600 KB array on a fresh mapping would fault its 148 pages in: 14,800 faults for 100
    assert probe["small_faults"] < 500
    assert probe["big_held_mb"] > 15
    assert probe["big_kept_mb"] < 1  # the 16 MB went back to the system with the array

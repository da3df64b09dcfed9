"""Matrix kernels and attention's fp16 read against their NumPy twins, on every instruction-set path
this CPU has.

The host's own path runs in this process; each narrower one (BONSAI_TUI_CPU=avx2, generic) in a
subprocess, since Numba's target CPU is fixed per process (tests/kernel_twins.py does the work).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import engine
import kernel_twins
from conftest import run_on_capped_path
import reference
from engine import simd
from engine.cpu import CAPS

PATHS_BELOW = {"avx512": ["avx2", "generic"], "avx2": ["generic"], "generic": []}[simd.KERNEL]
# int8 prefill + decode vs the float64 reference on the tiny model: measured 0.10 max, argmax 100 %
INT8_LOGIT_ATOL = 0.25


def test_this_process_path_matches_the_float64_twins() -> None:
    checks = kernel_twins.run()
    assert len(checks) == (7 if simd.AVAILABLE else 3)  # Q1_0, attention's fp16 read, then Q2_0 (tests/q2_twins.py)


@pytest.mark.parametrize("cap", PATHS_BELOW)
def test_each_capped_path_matches_the_float64_twins(cap: str) -> None:
    printed = run_on_capped_path(kernel_twins.__file__, cap)
    expected = {
        "avx2": "avx2 | float32 lookup table + unpack/BLAS; fp16 keys F16C; int8 AVX2 GEMV; int8 AVX2 GEMM; "
        "Q2_0 float32 lookup table + unpack/BLAS; int8 AVX2 GEMV (Q2_0); int8 AVX2 GEMM (Q2_0)",
        "generic": "generic | float32 lookup table + unpack/BLAS; fp16 keys by bit arithmetic; "
        "Q2_0 float32 lookup table + unpack/BLAS",
    }[cap]
    assert printed == expected


@pytest.mark.skipif(simd.KERNEL == "generic", reason="no int8 kernel to mix up")
def test_a_cap_after_numba_is_loaded_is_refused() -> None:
    """Numba imported first compiles for the host: its cache would give a capped process the host's
    kernels with other tiles (memory corruption), so the cap is refused in one line."""
    env = {**os.environ, "BONSAI_TUI_CPU": "avx2"}
    result = subprocess.run([sys.executable, "-c", "import numba, engine"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "BONSAI_TUI_CPU=avx2: import engine before numba (Numba already targets this CPU)\n"


def test_an_unknown_cap_is_a_one_line_error() -> None:
    env = {**os.environ, "BONSAI_TUI_CPU": "sse9"}
    result = subprocess.run([sys.executable, "-c", "import engine"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"BONSAI_TUI_CPU='sse9': expected one of {', '.join(CAPS)}\n"


@pytest.mark.skipif(not simd.AVAILABLE, reason="no int8 kernel on this CPU")
def test_int8_prefill_and_decode_stay_close_to_the_float64_reference(tiny_model: engine.Model, tiny_model_path) -> None:
    ids = tiny_model.tokenize(kernel_twins_prompt())
    want = reference.forward(str(tiny_model_path), ids)
    prefill = tiny_model.logits(ids)  # batch kernels
    cache = tiny_model.new_cache(len(ids))
    decode = np.stack([tiny_model.forward([t], cache, i) for i, t in enumerate(ids)])  # GEMV
    for got in (prefill, decode):
        assert 2e-4 < np.abs(got - want).max() < INT8_LOGIT_ATOL  # rounded, by the activations' rounding only
        assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.95


def kernel_twins_prompt() -> str:
    return "<|im_start|>user\nhello there, tell me about the trees and the sea<|im_end|>\n<|im_start|>assistant\n"

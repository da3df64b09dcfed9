"""BONSAI_TUI_CPU: cap the instruction set the whole process uses, to measure and test each kernel path.

    BONSAI_TUI_CPU=avx512   (or unset) whatever the host has: AVX-512 VNNI kernels where present
    BONSAI_TUI_CPU=avx2     what a laptop without AVX-512 gets: Numba compiles for Haswell
                            (NUMBA_CPU_NAME=haswell; no NUMBA_CPU_FEATURES beyond the CPU's own:
                            AVX2, FMA, F16C, BMI2, as every AVX2 CPU has), OpenBLAS runs its Haswell kernels
    BONSAI_TUI_CPU=generic  plain x86-64: Numba for its generic CPU, OpenBLAS told Prescott (runs its SSE "Katmai" kernels)

Numba reads NUMBA_CPU_NAME once, when it is first imported, and OpenBLAS reads OPENBLAS_CORETYPE
when NumPy loads it: apply_cap() must run before either (engine/__init__.py calls it first thing).
A cap never adds what the host lacks: simd.py still checks the host's own features.
No imports beyond the standard library here, for that reason.
"""

from __future__ import annotations

import os

CAPS = ("avx512", "avx2", "generic")
_SETTINGS = {  # cap -> the environment that makes Numba and OpenBLAS generate no more than it
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "OPENBLAS_CORETYPE": "Haswell"},
    "generic": {"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": "", "OPENBLAS_CORETYPE": "Prescott"},
}


def requested_cap() -> str:
    """The cap asked for by BONSAI_TUI_CPU ("avx512" when unset); an unknown value is a one-line error."""
    value = os.environ.get("BONSAI_TUI_CPU", "").strip().lower() or "avx512"
    if value not in CAPS:
        raise SystemExit(f"BONSAI_TUI_CPU={value!r}: expected one of {', '.join(CAPS)}")
    return value


def apply_cap() -> str:
    """Set the environment for the requested cap (before Numba / NumPy load) and return the cap.

    Imported too late (Numba already loaded), Numba keeps the host as its target; simd.py still
    picks no kernel above the cap.
    """
    cap = requested_cap()
    for name, value in _SETTINGS.get(cap, {}).items():
        os.environ.setdefault(name, value)
    return cap

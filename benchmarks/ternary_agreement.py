"""Ours and llama.cpp against the float64 reference on tiny models: ternary in both layouts, and 1-bit.

An outside check of the Q2_0 layout (llama.cpp opens only the 64-weight blocks): if we read the
codes in another order than llama.cpp does, its logits would be far from the reference's. Beside it,
how far our int8 prefill (the GEMM, one pass) and int8 decode (the GEMV, a token at a time) move
the logits, against the reference and against our exact (float32) path. For a full-size replica,
benchmarks/agreement.py MODEL compares the same paths (and llama.cpp) on a real chat sequence.
Usage: .venv/bin/python benchmarks/ternary_agreement.py [--llama-python /work/llama-venv/bin/python]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import reference  # noqa: E402

from engine.synth import write_model  # noqa: E402

IDS = list(range(300, 340))
LLAMA_LOGITS = """
import sys, numpy as np
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_threads=2, n_ctx=128, logits_all=True, verbose=False)
llm.eval([int(t) for t in sys.argv[3].split(",")])
np.save(sys.argv[2], np.array(llm.scores[: len(sys.argv[3].split(","))]))
"""


def decoded(model: engine.Model, ids: list[int]) -> np.ndarray:
    cache = model.new_cache(len(ids))
    return np.stack([model.forward([t], cache, i) for i, t in enumerate(ids)])


def line(label: str, got: np.ndarray, want: np.ndarray) -> str:
    agree = (got.argmax(-1) == want.argmax(-1)).mean()
    correlation = min(np.corrcoef(a, b)[0, 1] for a, b in zip(got, want, strict=True))
    return f"  {label}: largest |difference| {np.abs(got - want).max():.3f}, lowest correlation {correlation:.5f}, argmax agreement {agree:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llama-python", default="/work/llama-venv/bin/python")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    models = {  # (file, llama.cpp opens it)
        "ternary g128 (Q2_0)": (write_model(folder / "t128.gguf", "tiny", seed=5, weight_type="Q2_0", q2_layout="g128", tied=False), False),
        "ternary g64 (Q2_0)": (write_model(folder / "t64.gguf", "tiny", seed=5, weight_type="Q2_0", q2_layout="g64", tied=False), True),
        "1-bit (Q1_0)": (write_model(folder / "q1.gguf", "tiny", seed=5), True),
    }
    for label, (path, llama_opens) in models.items():
        want = reference.forward(str(path), IDS)
        with engine.load(path, threads=2, exact=True) as exact, engine.load(path, threads=2) as fast:
            exact_logits = exact.logits(IDS)
            print(f"{label}, {len(IDS)} tokens (our int8 kernels: {fast.blocks[0].w_gate_up.kernel_names()['prefill']})")
            print(line("ours exact vs reference", exact_logits, want))
            print(line("ours int8 prefill vs reference", fast.logits(IDS), want))
            print(line("ours int8 prefill vs ours exact", fast.logits(IDS), exact_logits))
            print(line("ours int8 decode vs ours exact", decoded(fast, IDS), exact_logits))
        if llama_opens:
            out = path.with_suffix(".npy")
            subprocess.run([args.llama_python, "-c", LLAMA_LOGITS, str(path), str(out), ",".join(map(str, IDS))], check=True)
            print(line("llama.cpp vs reference", np.load(out), want))


if __name__ == "__main__":
    main()

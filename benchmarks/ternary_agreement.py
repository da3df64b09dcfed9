"""llama.cpp against the float64 reference on tiny models: a g64 ternary one and a 1-bit one.

An outside check of the Q2_0 layout (llama.cpp opens only the 64-weight blocks): if we read the
codes in another order than llama.cpp does, its logits would be far from the reference's.
Usage: .venv/bin/python benchmarks/ternary_agreement.py [--llama-python /work/llama-venv/bin/python]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llama-python", default="/work/llama-venv/bin/python")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    models = {
        "ternary g64 (Q2_0)": write_model(folder / "t64.gguf", "tiny", seed=5, weight_type="Q2_0", q2_layout="g64", tied=False),
        "1-bit (Q1_0)": write_model(folder / "q1.gguf", "tiny", seed=5),
    }
    for label, path in models.items():
        out = path.with_suffix(".npy")
        subprocess.run([args.llama_python, "-c", LLAMA_LOGITS, str(path), str(out), ",".join(map(str, IDS))], check=True)
        theirs, want = np.load(out), reference.forward(str(path), IDS)
        agree = (theirs.argmax(-1) == want.argmax(-1)).mean()
        print(f"{label}: largest |llama.cpp - reference| {np.abs(theirs - want).max():.3f}, argmax agreement {agree:.0%}")


if __name__ == "__main__":
    main()

"""How far the int8 paths move the logits: each int8 kernel path (decode GEMV and prefill GEMM, on
AVX-512 VNNI and AVX2) against the exact (float32) path, and all against llama.cpp.

Usage: python benchmarks/agreement.py MODEL.gguf [--tokens 64] [--llama-python /path/to/venv/bin/python]

Every engine scores the same token sequence (the chat prompt, then the exact engine's greedy
reply): decoded one token at a time (GEMV), and as one prefill pass (GEMM). The narrower
instruction sets run in subprocesses under BONSAI_TUI_CPU (Numba's target is fixed per process).
The int8 engine's own greedy reply is also generated, to see where it first departs from the exact
one. With --llama-python (an environment with llama-cpp-python) llama.cpp scores the sequence too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import engine
from engine import simd

PROMPT = [{"role": "user", "content": "Tell me three things about bonsai trees and how to water them."}]

LLAMA_LOGITS = """
import json, sys, numpy as np
from llama_cpp import Llama
path, ids_file, out = sys.argv[1:4]
ids = json.load(open(ids_file))
llm = Llama(model_path=path, n_ctx=len(ids) + 8, n_threads=2, logits_all=True, verbose=False)
llm.eval(ids)
np.save(out, np.array(llm.scores[: len(ids)], dtype=np.float32))
"""


def decode_logits(model: engine.Model, ids: list[int]) -> np.ndarray:
    cache = model.new_cache(len(ids))
    return np.stack([model.forward([t], cache, pos) for pos, t in enumerate(ids)])


def greedy(model: engine.Model, prompt: list[int], n: int) -> list[int]:
    cache = model.new_cache(len(prompt) + n)
    logits = model.forward(prompt, cache, 0)
    out = []
    for pos in range(len(prompt), len(prompt) + n):
        out.append(int(np.argmax(logits)))
        logits = model.forward([out[-1]], cache, pos)
    return out


def compare(name: str, a: np.ndarray, b: np.ndarray) -> dict:
    correlation = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)]
    return {
        "pair": name,
        "min_correlation": round(float(np.min(correlation)), 5),
        "mean_correlation": round(float(np.mean(correlation)), 5),
        "max_abs_diff": round(float(np.abs(a - b).max()), 4),
        "logit_scale": round(float(np.abs(b).max()), 2),
        "argmax_agreement": round(float((a.argmax(-1) == b.argmax(-1)).mean()), 4),
    }


def llama_logits(python: str, path: str, ids: list[int]) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        ids_file, out = f"{tmp}/ids.json", f"{tmp}/logits.npy"
        with open(ids_file, "w") as f:
            json.dump(ids, f)
        subprocess.run([python, "-c", LLAMA_LOGITS, path, ids_file, out], check=True)
        return np.load(out)


def int8_logits(path: str, ids: list[int]) -> dict[str, np.ndarray]:
    """This process's int8 path: decode (one token at a time) and prefill (one pass) logits."""
    model = engine.load(path)
    if not model.int8_decode:
        sys.exit("no int8 kernel on this CPU (or under this BONSAI_TUI_CPU): nothing to compare")
    return {"decode": decode_logits(model, ids), "prefill": model.logits(ids)}


def capped_int8_logits(cap: str, path: str, ids: list[int]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        ids_file, out = f"{tmp}/ids.json", f"{tmp}/logits.npz"
        with open(ids_file, "w") as f:
            json.dump(ids, f)
        env = {**os.environ, "BONSAI_TUI_CPU": cap}
        subprocess.run([sys.executable, __file__, path, "--dump", ids_file, out], env=env, check=True)
        return dict(np.load(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--llama-python")
    parser.add_argument("--dump", nargs=2, metavar=("IDS_JSON", "OUT_NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        with open(args.dump[0]) as f:
            np.savez(args.dump[1], **int8_logits(args.model, json.load(f)))
        return
    exact = engine.load(args.model, exact=True)
    prompt = exact.template.render(PROMPT, add_generation_prompt=True)
    prompt_ids = exact.tokenize(prompt)
    reply = greedy(exact, prompt_ids, args.tokens)
    ids = prompt_ids + reply
    exact_logits = decode_logits(exact, ids)
    fast_reply = greedy(engine.load(args.model), prompt_ids, args.tokens)
    same = next((i for i, (a, b) in enumerate(zip(reply, fast_reply, strict=True)) if a != b), len(reply))
    paths = {simd.KERNEL: int8_logits(args.model, ids)}
    if simd.KERNEL == "avx512":
        paths["avx2"] = capped_int8_logits("avx2", args.model, ids)
    reference = llama_logits(args.llama_python, args.model, ids) if args.llama_python else None
    report = [compare("exact vs llama.cpp", exact_logits, reference)] if reference is not None else []
    for isa, logits in paths.items():
        for kind, values in logits.items():
            report.append(compare(f"int8 {kind} {isa} vs exact", values, exact_logits))
            if reference is not None:
                report.append(compare(f"int8 {kind} {isa} vs llama.cpp", values, reference))
    print(json.dumps({"positions": len(ids), "greedy_tokens_identical": f"{same}/{len(reply)}", "pairs": report}, indent=1))


if __name__ == "__main__":
    main()

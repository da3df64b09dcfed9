"""How far the int8 decode path moves the logits: int8 vs exact (float32) decode, and both vs llama.cpp.

Usage: python benchmarks/agreement.py MODEL.gguf [--tokens 64] [--llama-python /path/to/venv/bin/python]

Both engines decode the same token sequence one token at a time (the chat prompt, then the exact
engine's greedy reply), so their logits are compared position by position; the int8 engine's own
greedy reply is also generated, to see where it first departs from the exact one. With
--llama-python (an environment where llama-cpp-python is installed) llama.cpp scores the same
sequence too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np

import engine

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--llama-python")
    args = parser.parse_args()
    exact = engine.load(args.model, exact=True)
    fast = engine.load(args.model)
    if not fast.int8_decode:
        sys.exit("this CPU has no int8 decode kernel (AVX-512 VNNI): nothing to compare")
    prompt = exact.template.render(PROMPT, add_generation_prompt=True)
    prompt_ids = exact.tokenize(prompt)
    reply = greedy(exact, prompt_ids, args.tokens)
    ids = prompt_ids + reply
    exact_logits, fast_logits = decode_logits(exact, ids), decode_logits(fast, ids)
    fast_reply = greedy(fast, prompt_ids, args.tokens)
    same = next((i for i, (a, b) in enumerate(zip(reply, fast_reply, strict=True)) if a != b), len(reply))
    report = [compare("int8 vs exact", fast_logits, exact_logits)]
    if args.llama_python:
        reference = llama_logits(args.llama_python, args.model, ids)
        report += [compare("exact vs llama.cpp", exact_logits, reference),
                   compare("int8 vs llama.cpp", fast_logits, reference)]
    print(json.dumps({"positions": len(ids), "greedy_tokens_identical": f"{same}/{len(reply)}", "pairs": report}, indent=1))


if __name__ == "__main__":
    main()

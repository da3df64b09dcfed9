"""tg (and optionally pp) of llama.cpp after 0 / 1,024 / 4,096 tokens of context, like llama-bench -d,
through llama-cpp-python, for the table beside `bonsai-tui bench --depth N`.

Run it from a separate environment (`pip install llama-cpp-python`): it is not a dependency.
Usage: python benchmarks/llama_cpp_depth.py MODEL.gguf [--threads 2] [--depths 0,1024,4096]
       [-n 128] [-p 0] [--runs 3] [--flash-attn]
One JSON object per depth on stdout. The context is filled once per depth with random ids (not
timed); every run then rewinds to it (n_tokens = depth: eval drops the cache past that point).
"""

import argparse
import json
import random
import statistics
import time

from llama_cpp import Llama

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--depths", default="0,1024,4096")
parser.add_argument("-n", "--gen-tokens", type=int, default=128)
parser.add_argument("-p", "--prompt-tokens", type=int, default=0)
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--flash-attn", action="store_true")
args = parser.parse_args()
depths = [int(d) for d in args.depths.split(",")]
n_ctx = max(depths) + max(args.gen_tokens, args.prompt_tokens) + 16
llm = Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads, n_ctx=n_ctx,
            n_batch=512, flash_attn=args.flash_attn, verbose=False)  # KV cache type: f16 (the default)
random.seed(0)
prompt = [random.randrange(1000, 150000) for _ in range(args.prompt_tokens)]


def rates(tokens: int, seconds: list[float]) -> tuple[float, float]:
    values = [tokens / s for s in seconds]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def timed_from(depth: int, run) -> float:
    llm.n_tokens = depth
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def generate(n: int) -> None:
    for i in range(n):
        llm.eval([1000 + i])


for depth in depths:
    llm.reset()
    llm.eval([random.randrange(1000, 150000) for _ in range(depth)])
    timed_from(depth, lambda: generate(4))  # warm-up
    result = {"depth": depth, "threads": args.threads, "flash_attn": args.flash_attn}
    if prompt:
        result["pp_tokens"] = len(prompt)
        result["pp_tok_s"], result["pp_std"] = rates(len(prompt), [timed_from(depth, lambda: llm.eval(prompt)) for _ in range(args.runs)])
    tg = [timed_from(depth, lambda: generate(args.gen_tokens)) for _ in range(args.runs)]
    result["tg_tokens"] = args.gen_tokens
    result["tg_tok_s"], result["tg_std"] = rates(args.gen_tokens, tg)
    print(json.dumps(result), flush=True)

"""pp512 / tg128 of llama.cpp (through llama-cpp-python) on a GGUF, for the comparison table.

Run it from a separate environment (`pip install llama-cpp-python`): it is not a dependency.
Usage: python benchmarks/llama_cpp_bench.py MODEL.gguf [THREADS [PP TG RUNS]]   (defaults 2, 512 128 3)
"""

import json
import random
import resource
import statistics
import sys
import time

from llama_cpp import Llama

path = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
pp_tokens, tg_tokens, runs = (int(a) for a in sys.argv[3:6]) if len(sys.argv) > 5 else (512, 128, 3)
load_started = time.perf_counter()
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512, verbose=False)
load_s = time.perf_counter() - load_started
random.seed(0)
prompt = [random.randrange(1000, 150000) for _ in range(pp_tokens)]


def prompt_processing() -> float:
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    return len(prompt) / (time.perf_counter() - start)


def token_generation(n: int = tg_tokens) -> float:
    llm.reset()
    llm.eval([1000])
    start = time.perf_counter()
    for i in range(n):
        llm.eval([1000 + i])
    return n / (time.perf_counter() - start)


prompt_processing(), token_generation()  # warm-up
pp = [prompt_processing() for _ in range(runs)]
tg = [token_generation() for _ in range(runs)]
spread = statistics.stdev if runs > 1 else (lambda _: 0.0)
print(json.dumps({f"pp{pp_tokens}": statistics.mean(pp), "pp_std": spread(pp),
                  f"tg{tg_tokens}": statistics.mean(tg), "tg_std": spread(tg), "threads": threads,
                  "load_s": load_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

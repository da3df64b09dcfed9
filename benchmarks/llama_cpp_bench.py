"""pp512 / tg128 of llama.cpp (through llama-cpp-python) on a GGUF, for the comparison table.

Run it from a separate environment (`pip install llama-cpp-python`): it is not a dependency.
Usage: python benchmarks/llama_cpp_bench.py MODEL.gguf [THREADS]
"""

import json
import random
import statistics
import sys
import time

from llama_cpp import Llama

path = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512, verbose=False)
random.seed(0)
prompt = [random.randrange(1000, 150000) for _ in range(512)]


def prompt_processing() -> float:
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    return len(prompt) / (time.perf_counter() - start)


def token_generation(n: int = 128) -> float:
    llm.reset()
    llm.eval([1000])
    start = time.perf_counter()
    for i in range(n):
        llm.eval([1000 + i])
    return n / (time.perf_counter() - start)


prompt_processing(), token_generation()  # warm-up
pp = [prompt_processing() for _ in range(3)]
tg = [token_generation() for _ in range(3)]
print(json.dumps({"pp512": statistics.mean(pp), "pp_std": statistics.stdev(pp),
                  "tg128": statistics.mean(tg), "tg_std": statistics.stdev(tg), "threads": threads}))

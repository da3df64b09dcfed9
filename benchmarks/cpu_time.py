"""CPU time per token on one thread, ours or llama.cpp's: a figure a busy machine barely moves.

Wall-clock tok/s on a shared 2-core machine is mostly scheduling when other processes run (every
parallel region waits for both threads to get a core); the CPU time one thread spends per token is
what the kernels cost. Usage:
    python benchmarks/cpu_time.py MODEL.gguf            # bonsai-tui (honours BONSAI_TUI_CPU)
    /path/to/llama-venv/bin/python benchmarks/cpu_time.py MODEL.gguf --llama
Prints one JSON line: CPU ms per decoded token (128 tokens) and per prompt token (a 512-token pass).
"""

from __future__ import annotations

import json
import sys
import time

PP, TG = 512, 128


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def ours(path: str) -> dict:
    import numpy as np

    import engine
    from engine.bench import kernels_used

    model = engine.load(path, threads=1)
    prompt = list(range(1000, 1000 + PP))
    model.forward(prompt[:16], model.new_cache(PP), 0)  # warm-up

    def decode() -> None:
        cache, token = model.new_cache(TG + 1), 1000
        for pos in range(TG):
            token = int(np.argmax(model.forward([token], cache, pos)))

    prefill = cpu_seconds(lambda: model.forward(prompt, model.new_cache(PP), 0))
    return {"engine": "bonsai-tui", **kernels_used(model), "pp_ms_per_token": 1e3 * prefill / PP,
            "tg_ms_per_token": 1e3 * cpu_seconds(decode) / TG}


def llama(path: str) -> dict:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_threads=1, n_threads_batch=1, n_ctx=1024, n_batch=512, verbose=False)
    prompt = list(range(1000, 1000 + PP))
    llm.eval(prompt[:16])
    llm.reset()
    prefill = cpu_seconds(lambda: llm.eval(prompt))
    llm.reset()
    llm.eval([1000])
    decode = cpu_seconds(lambda: [llm.eval([1000 + i]) for i in range(TG)])
    info = llama_cpp.llama_print_system_info().decode()
    return {"engine": "llama.cpp", "avx512": "AVX512 = 1" in info, "pp_ms_per_token": 1e3 * prefill / PP,
            "tg_ms_per_token": 1e3 * decode / TG}


if __name__ == "__main__":
    print(json.dumps(llama(sys.argv[1]) if "--llama" in sys.argv else ours(sys.argv[1])))

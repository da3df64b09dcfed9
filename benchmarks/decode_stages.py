"""Where a decoded token's time goes, stage by stage: CPU ms per token on one thread.

Usage: python benchmarks/decode_stages.py MODEL.gguf [TOKENS [CONTEXT]]   (honours BONSAI_TUI_CPU)
TOKENS decoded (64) after CONTEXT cached positions (64: a prompt; more: random keys and values
written straight into the cache, so a deep context costs no prefill).
Prints one JSON line: the whole token, then each stage (its kernels' CPU time summed over the
token's calls), and "python and numpy" = whole token minus the stages. Every stage's kernel is
wrapped where the model calls it (a Python call around each: ~1 µs, ~300 calls a token).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict


def main(path: str, tokens: int, context: int) -> dict:
    import numpy as np

    import engine
    from engine import attention, kernels, lanes, matrix, sampling, simd

    spent: dict[str, float] = defaultdict(float)

    def timed(stage: str, fn):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.process_time() - start

        return wrapper

    llm = engine.load(path, threads=1)
    lm_head = llm.lm_head
    quantize = lanes.quantize_rows

    def matvec(self, row):  # the GEMV, split into its activation rounding (measured apart) and the rest
        if self.int8:
            codes = np.empty((1, row.shape[0]), np.int8)
            scales = np.empty((1, row.shape[0] // lanes.Q8_BLOCK), np.float32)
            corrections = np.empty((1, row.shape[0] // kernels.Q1_BLOCK), np.float32)
            start = time.process_time()
            quantize(row[None, :], codes, scales, corrections)
            rounding = time.process_time() - start
            spent["activation rounding"] += rounding
            spent["lm head" if self is lm_head else "gemv"] -= 2 * rounding  # ours, and the GEMV's own (inside)
        return original_matvec(self, row)

    original_matvec = matrix.Q1Matrix.matvec
    matrix.Q1Matrix.matvec = matvec
    lm_head.matmul = timed("lm head", lm_head.matmul)
    for block in llm.blocks:
        for name in ("wqkv", "wo", "w_gate_up", "w_down"):
            weights = getattr(block, name)
            weights.matmul = timed("gemv", weights.matmul)
    kernels.rmsnorm_rows = timed("rmsnorm", kernels.rmsnorm_rows)
    kernels.rope_neox = timed("rope", kernels.rope_neox)
    kernels.rope_table = timed("rope", kernels.rope_table)
    kernels.silu_mul = timed("silu", kernels.silu_mul)
    cache = llm.new_cache(context + tokens + 1)
    cache.attend_one_token = timed("attention", cache.attend_one_token)
    cache.store = timed("kv store", cache.store)
    llm.token_embd.rows_as_float = timed("embedding", llm.token_embd.rows_as_float)

    c = llm.config
    llm.forward(list(range(1000, 1064)), cache, 0)  # a prompt to attend to
    noise = np.random.default_rng(0)
    for start in range(64, context, 512):
        shape = (min(512, context - start), c.n_head_kv, c.head_dim)
        for layer in range(c.n_layers):
            cache.store(layer, start, noise.standard_normal(shape, np.float32), noise.standard_normal(shape, np.float32))
    sampling.sample(llm.forward([1000], cache, context), np.zeros(0, np.int64), sampling.PRESETS[sampling.DEFAULT_PRESET],
                    np.random.default_rng(0))  # every decode kernel compiled or loaded before the clock runs
    params, rng, recent = sampling.PRESETS[sampling.DEFAULT_PRESET], np.random.default_rng(0), np.zeros(0, np.int64)
    spent.clear()
    token, whole = 1000, 0.0
    for pos in range(context + 1, context + 1 + tokens):
        start = time.process_time()
        logits = llm.forward([token], cache, pos)
        whole += time.process_time() - start
        start = time.process_time()
        token = sampling.sample(logits, recent, params, rng)
        spent["sampling"] += time.process_time() - start
    stages = {name: round(1e3 * seconds / tokens, 2) for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])}
    inside = sum(seconds for name, seconds in spent.items() if name != "sampling")
    return {"engine": "bonsai-tui", "kernel": simd.KERNEL, "kv_cache": cache.kind, "f16c": attention.HAS_F16C,
            "context": context,
            "token_ms": round(1e3 * whole / tokens, 2), **stages,
            "python and numpy": round(1e3 * (whole - inside) / tokens, 2)}


if __name__ == "__main__":
    tokens, context = (int(a) for a in (sys.argv[2:4] + ["64", "64"][len(sys.argv[2:4]):]))
    print(json.dumps(main(sys.argv[1], tokens, max(64, context))))

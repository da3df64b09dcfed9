"""Speed measurement in the manner of llama-bench: prompt processing (pp) and token generation (tg)
timed apart, warm-up excluded, plus time to first token, load time, peak memory and the machine's
memory-read bandwidth (the ceiling for decode, which streams every weight once per token)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numba
import numpy as np
from numba import njit, prange

from engine.cpu import requested_cap
from engine.kv_cache import DEFAULT_KIND, KVCache
from engine.model import Model
from engine.sampling import SamplingParams
from engine.session import ChatSession

TTFT_PROMPT = "Write a short poem about a bonsai tree growing on a rock by the sea, please, in four lines."


@dataclass
class BenchResult:
    model: str
    model_bytes: int
    threads: int
    decode: str  # the kernels that ran (kernels_used), under the instruction-set cap `cpu`
    prefill: str
    cpu: str
    depth: int  # tokens already in the context before each pp / tg run (llama-bench -d)
    pp_tokens: int
    tg_tokens: int
    pp_tok_s: float
    pp_tok_s_std: float
    tg_tok_s: float
    tg_tok_s_std: float
    load_s: float
    ttft_s: float
    ttft_prompt_tokens: int
    peak_rss_mb: float
    kv_cache: str  # its type: "f16" or "q8"
    kv_cache_mb: float
    bandwidth_gb_s: float
    decode_ceiling_tok_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def kernels_used(model: Model) -> dict[str, str]:
    """The decode and prefill kernels of the model's layers, named with their weight type: a Q2_0
    file's are not a Q1_0 file's (the token embeddings may be another type, and only gather rows)."""
    return model.blocks[0].w_gate_up.kernel_names()


@njit(cache=True, parallel=True)
def _read_all(data: np.ndarray) -> int:
    total = 0
    for i in prange(data.shape[0]):
        total += data[i]
    return total


def read_bandwidth_gb_s(threads: int, megabytes: int = 512, repeats: int = 5) -> float:
    """Best-of-n parallel read rate over a buffer much larger than the caches."""
    numba.set_num_threads(threads)
    data = np.ones(megabytes * (1 << 20) // 8, dtype=np.uint64)
    _read_all(data)
    best = min(_timed(lambda: _read_all(data)) for _ in range(repeats))
    return data.nbytes / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rates(tokens: int, seconds: list[float]) -> tuple[float, float]:
    rates = [tokens / s for s in seconds]
    return statistics.mean(rates), statistics.stdev(rates) if len(rates) > 1 else 0.0


def filled_cache(model: Model, n_ctx: int, depth: int) -> KVCache:
    """A cache holding `depth` tokens of context (random ids, prefilled once, not timed)."""
    cache = model.new_cache(n_ctx)
    if depth:
        rng = np.random.default_rng(1)
        model.forward(rng.integers(0, model.config.n_vocab - 1000, size=depth).tolist(), cache, 0)
    return cache


def prompt_processing(model: Model, n_tokens: int, cache: KVCache, runs: int, depth: int = 0) -> list[float]:
    """Seconds per prefill of n_tokens at positions depth.. (each run overwrites the last)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.config.n_vocab - 1000, size=n_tokens).tolist()
    model.forward(ids[:16], cache, depth)  # warm-up
    return [_timed(lambda: model.forward(ids, cache, depth)) for _ in range(runs)]


def token_generation(model: Model, n_tokens: int, cache: KVCache, runs: int, depth: int = 0) -> list[float]:
    """Seconds per greedy decode of n_tokens at positions depth.."""
    model.forward([0], cache, depth)  # warm-up

    def generate() -> None:
        token = 1000
        for pos in range(depth, depth + n_tokens):
            token = int(np.argmax(model.forward([token], cache, pos)))

    return [_timed(generate) for _ in range(runs)]


def time_to_first_token(model: Model, n_ctx: int, turn_tokens: int = 32) -> tuple[float, int]:
    """First-token time of a fresh chat turn of about `turn_tokens` tokens, template included."""
    session = ChatSession(model, n_ctx=n_ctx, params=SamplingParams(temperature=0.0))
    words = TTFT_PROMPT.split()
    while len(words) > 1 and len(session.render([{"role": "user", "content": " ".join(words)}])) > turn_tokens:
        words.pop()
    done = list(session.chat([{"role": "user", "content": " ".join(words)}], max_tokens=1))[-1]
    return done.stats.ttft_s, done.stats.prompt_tokens


def load_seconds(path: str, threads: int, exact: bool = False) -> float:
    """Open the model and run one token: the time a user waits before the model is ready."""
    start = time.perf_counter()
    with Model(path, threads, exact, adapt_threads=False) as model:
        model.forward([0], model.new_cache(8), 0)
        return time.perf_counter() - start


def run_bench(
    path: str, pp: int = 512, tg: int = 128, threads: int = 2, runs: int = 3, n_ctx: int = 4096,
    exact: bool = False, progress: Callable[[str], None] = lambda _: None, depth: int = 0, kv_cache: str | None = None,
) -> BenchResult:
    """pp and tg as llama-bench measures them, each after `depth` tokens of context (-d)."""
    n_ctx = max(n_ctx, depth + max(pp, tg))
    load_s = load_seconds(path, threads, exact)
    model = Model(path, threads, exact, kv_cache or DEFAULT_KIND, adapt_threads=False)
    progress(f"loaded in {load_s:.2f} s; pp{pp} x{runs}")
    cache = filled_cache(model, n_ctx, depth)  # pp and tg both run after it, overwriting their own positions
    pp_mean, pp_std = _rates(pp, prompt_processing(model, pp, cache, runs, depth)) if pp else (0.0, 0.0)
    progress(f"pp{pp}: {pp_mean:.1f} tok/s; tg{tg} x{runs}")
    tg_mean, tg_std = _rates(tg, token_generation(model, tg, cache, runs, depth))
    del cache
    progress(f"tg{tg}: {tg_mean:.1f} tok/s; time to first token")
    ttft, ttft_tokens = time_to_first_token(model, n_ctx)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the probe's buffer
    progress("memory bandwidth")
    bandwidth = read_bandwidth_gb_s(threads)
    kv_mb = model.new_cache(n_ctx).nbytes / 2**20
    size = model.file.file_size
    model.close()
    return BenchResult(
        model=model.config.name, model_bytes=size, threads=threads,
        **kernels_used(model), cpu=requested_cap(), depth=depth, pp_tokens=pp, tg_tokens=tg,
        pp_tok_s=pp_mean, pp_tok_s_std=pp_std, tg_tok_s=tg_mean, tg_tok_s_std=tg_std,
        load_s=load_s, ttft_s=ttft, ttft_prompt_tokens=ttft_tokens,
        peak_rss_mb=peak_rss_mb, kv_cache=model.kv_cache, kv_cache_mb=kv_mb,
        bandwidth_gb_s=bandwidth, decode_ceiling_tok_s=bandwidth * 1e9 / size,
    )

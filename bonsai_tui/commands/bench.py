"""`bonsai-tui bench`: prompt-processing and generation speed, first-token time, load time, memory."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bonsai_tui.commands.common import add_kv_cache_argument
from bonsai_tui.settings import cache_dir
from engine.bench import BenchResult, run_bench
from engine.synth import write_model

SYNTHETIC_NAME = "bonsai-1.7b-synthetic.gguf"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a GGUF file")
    source.add_argument("--synthetic", action="store_true",
                        help="a random-weight replica of Bonsai-1.7B (written once to the cache dir)")
    parser.add_argument("-p", "--prompt-tokens", type=int, default=512, help="pp: prompt length")
    parser.add_argument("-n", "--gen-tokens", type=int, default=128, help="tg: tokens generated")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-d", "--depth", type=non_negative, default=0,
                        help="tokens of context before each pp / tg run, as llama-bench -d")
    parser.add_argument("--ctx", type=int, default=4096, help="context (KV cache) size, raised to fit depth + pp / tg")
    parser.add_argument("--exact", action="store_true", help="decode with float32 activations, not int8")
    add_kv_cache_argument(parser)
    parser.add_argument("--cold", action="store_true", help="also time a load with an empty Numba cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a token count of 0 or more, got {text!r}")
    return value


def synthetic_model() -> Path:
    path = cache_dir() / SYNTHETIC_NAME
    if not path.exists():
        print(f"writing the synthetic Bonsai-1.7B replica to {path} (once)", file=sys.stderr)
        write_model(path, preset="bonsai-1.7b", seed=0)
    return path


def cold_load_seconds(path: Path, threads: int, exact: bool) -> float:
    """Load in a fresh process whose Numba cache is empty, so every kernel compiles."""
    with tempfile.TemporaryDirectory() as empty:
        code = f"from engine.bench import load_seconds; print(load_seconds({str(path)!r}, {threads}, {exact}))"
        env = {**os.environ, "NUMBA_CACHE_DIR": empty}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    path = synthetic_model() if args.synthetic else Path(args.model)
    log = (lambda _: None) if args.json else (lambda line: print(f"  {line}", file=sys.stderr))
    result = run_bench(
        str(path), args.prompt_tokens, args.gen_tokens, args.threads, args.runs, args.ctx, args.exact, log, args.depth,
        args.kv_cache,
    )
    extra = {"load_cold_s": cold_load_seconds(path, args.threads, args.exact)} if args.cold else {}
    if args.json:
        print(json.dumps({**result.as_dict(), **extra}))
    else:
        print(table(result, extra))
    return 0


def table(r: BenchResult, extra: dict[str, float]) -> str:
    at = f" @ d{r.depth}" if r.depth else ""  # llama-bench's notation
    rows = [
        ("model", f"{r.model} ({r.model_bytes / 1e6:.1f} MB), {r.threads} threads"),
        ("decode", r.decode),
        ("prefill", r.prefill),
        (f"pp{r.pp_tokens}{at}", f"{r.pp_tok_s:.2f} ± {r.pp_tok_s_std:.2f} tok/s"),
        (f"tg{r.tg_tokens}{at}", f"{r.tg_tok_s:.2f} ± {r.tg_tok_s_std:.2f} tok/s"),
        ("first token", f"{r.ttft_s:.3f} s for a {r.ttft_prompt_tokens}-token chat turn"),
        ("load (warm JIT)", f"{r.load_s:.2f} s"),
        *([("load (cold JIT)", f"{extra['load_cold_s']:.2f} s")] if extra else []),
        ("peak RSS", f"{r.peak_rss_mb:.0f} MB ({r.kv_cache} KV cache allocated: {r.kv_cache_mb:.0f} MB)"),
        ("read bandwidth", f"{r.bandwidth_gb_s:.1f} GB/s -> decode ceiling {r.decode_ceiling_tok_s:.1f} tok/s"),
    ]
    return "\n".join(f"{name:>16}  {value}" for name, value in rows)

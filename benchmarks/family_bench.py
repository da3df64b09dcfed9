"""The family table: `bonsai-tui bench` and llama.cpp, one after the other on the same replicas.

Usage (one size per call, so each run stays short; always under the bench lock):
    flock /tmp/bench.lock .venv/bin/python benchmarks/family_bench.py 1.7b [-p 512 -n 128]
Replicas (written by `bonsai-tui synth --preset ... [--layout g64]`) are read from
~/.cache/bonsai-tui/{bonsai,ternary}-SIZE[-g64]-synthetic.gguf. llama.cpp runs on the 1-bit file and
on the g64 ternary file (it cannot open PrismML's 128-weight layout). Prints one JSON line per
measurement, then the markdown rows for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CACHE = Path.home() / ".cache" / "bonsai-tui"
LLAMA_PYTHON = os.environ.get("LLAMA_PYTHON", "/work/llama-venv/bin/python")
HERE = Path(__file__).resolve().parent


def replicas(size: str) -> list[tuple[str, Path, bool]]:
    """(label, file, llama.cpp can open it)."""
    return [
        (f"Bonsai {size.upper()} 1-bit (Q1_0)", CACHE / f"bonsai-{size}-synthetic.gguf", True),
        (f"Ternary {size.upper()} (Q2_0, 128-weight blocks)", CACHE / f"ternary-{size}-synthetic.gguf", False),
        (f"Ternary {size.upper()} (Q2_0, 64-weight blocks)", CACHE / f"ternary-{size}-g64-synthetic.gguf", True),
    ]


def ours(path: Path, pp: int, tg: int, threads: int) -> dict:
    command = [sys.executable, "-m", "bonsai_tui.cli", "bench", "--model", str(path), "-p", str(pp), "-n", str(tg),
               "--runs", "1", "--ctx", "1024", "--threads", str(threads), "--json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=HERE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def llama(path: Path, pp: int, tg: int, threads: int) -> dict | None:
    if not Path(LLAMA_PYTHON).exists():
        return None
    command = [LLAMA_PYTHON, str(HERE / "llama_cpp_bench.py"), str(path), str(threads), str(pp), str(tg), "1"]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("size", choices=["1.7b", "4b", "8b"])
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    rows = []
    for label, path, llama_opens in replicas(args.size):
        mine = ours(path, args.p, args.n, args.threads)
        print(json.dumps({**mine, "model": label, "engine": "bonsai-tui"}), flush=True)
        theirs = llama(path, args.p, args.n, args.threads) if llama_opens else None
        if theirs is not None:
            print(json.dumps({**theirs, "model": label, "engine": "llama.cpp"}), flush=True)
        rows.append(row(label, path, args.p, args.n, mine, theirs))
    print("\n".join(rows))


def row(label: str, path: Path, pp: int, tg: int, mine: dict, theirs: dict | None) -> str:
    def pair(ours_value: str, key: str, fmt: str) -> str:
        if theirs is None:
            return f"{ours_value} / (cannot open)"
        if "error" in theirs:
            return f"{ours_value} / error"
        return f"{ours_value} / {format(theirs[key], fmt)}"

    return (
        f"| {label} | {path.stat().st_size / 2**20:,.0f} MiB "
        f"| {pair(format(mine['pp_tok_s'], '.1f'), f'pp{pp}', '.1f')} "
        f"| {pair(format(mine['tg_tok_s'], '.1f'), f'tg{tg}', '.1f')} "
        f"| {pair(format(mine['load_s'], '.1f'), 'load_s', '.1f')} "
        f"| {pair(format(mine['peak_rss_mb'], ',.0f'), 'peak_rss_mb', ',.0f')} |"
    )


if __name__ == "__main__":
    main()

"""The family table: `bonsai-tui bench` and llama.cpp, one after the other on the same replicas.

Usage (one size per call; each measurement takes the bench lock for itself, `--lock ''` for none):
    .venv/bin/python benchmarks/family_bench.py 1.7b [-p 512 -n 128] [--only ternary]
        [--llama-p 8 --llama-n 8 --llama-timeout 600]
Replicas (written by `bonsai-tui synth --preset ... [--layout g64]`) are read from
~/.cache/bonsai-tui/{bonsai,ternary}-SIZE[-g64]-synthetic.gguf. llama.cpp runs on the 1-bit file and
on the g64 ternary file (it cannot open PrismML's 128-weight layout). Its Q2_0 dot product is plain C
in llama-cpp-python 0.3.36, so on ternary files it gets its own, shorter --llama-p / --llama-n and a
time limit (a run that hits it is reported as such). Prints one JSON line per measurement, then the
markdown rows for benchmarks/README.md.
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


def locked(command: list[str], lock: str) -> list[str]:
    return ["flock", lock, *command] if lock else command


def ours(path: Path, pp: int, tg: int, threads: int, lock: str = "") -> dict:
    command = [sys.executable, "-m", "bonsai_tui.cli", "bench", "--model", str(path), "-p", str(pp), "-n", str(tg),
               "--runs", "1", "--ctx", "1024", "--threads", str(threads), "--json"]
    out = subprocess.run(locked(command, lock), capture_output=True, text=True, check=True, cwd=HERE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def llama(path: Path, pp: int, tg: int, threads: int, lock: str = "", timeout: float | None = None) -> dict | None:
    if not Path(LLAMA_PYTHON).exists():
        return None
    command = [LLAMA_PYTHON, str(HERE / "llama_cpp_bench.py"), str(path), str(threads), str(pp), str(tg), "1"]
    if timeout:  # the limit is on llama.cpp's own run, not on the wait for the lock
        command = ["timeout", str(timeout), *command]
    out = subprocess.run(locked(command, lock), capture_output=True, text=True)
    if out.returncode == 124:
        return {"error": f"no result within {timeout:.0f} s"}
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("size", choices=["1.7b", "4b", "8b"])
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", choices=["1-bit", "ternary"], help="only these replicas")
    parser.add_argument("--llama-p", type=int, default=8, help="llama.cpp's prompt on the ternary file")
    parser.add_argument("--llama-n", type=int, default=8, help="llama.cpp's generated tokens on the ternary file")
    parser.add_argument("--llama-timeout", type=float, default=600, help="seconds for llama.cpp on the ternary file")
    parser.add_argument("--lock", default="/tmp/bench.lock", help="flock file taken for each measurement ('' for none)")
    args = parser.parse_args()
    rows = []
    for label, path, llama_opens in replicas(args.size):
        ternary = label.startswith("Ternary")
        if args.only and (args.only == "ternary") != ternary:
            continue
        mine = ours(path, args.p, args.n, args.threads, args.lock)
        print(json.dumps({**mine, "model": label, "engine": "bonsai-tui"}), flush=True)
        theirs, their_p, their_n = None, args.p, args.n
        if llama_opens and ternary:
            their_p, their_n = args.llama_p, args.llama_n
            theirs = llama(path, their_p, their_n, args.threads, args.lock, args.llama_timeout)
        elif llama_opens:
            theirs = llama(path, args.p, args.n, args.threads, args.lock)
        if theirs is not None:
            print(json.dumps({**theirs, "model": label, "engine": "llama.cpp"}), flush=True)
        rows.append(row(label, path, (args.p, args.n), (their_p, their_n), mine, theirs))
        if theirs is not None and (their_p, their_n) != (args.p, args.n):  # ours again at llama.cpp's sizes
            same = ours(path, their_p, their_n, args.threads, args.lock)
            print(json.dumps({**same, "model": label, "engine": "bonsai-tui"}), flush=True)
            rows.append(row(f"{label}, llama.cpp's sizes", path, (their_p, their_n), (their_p, their_n), same, theirs))
    print("\n".join(rows))


def row(label: str, path: Path, sizes: tuple[int, int], their_sizes: tuple[int, int], mine: dict, theirs: dict | None) -> str:
    """A markdown row: ours / llama.cpp's, llama.cpp's prompt and generation sizes named where they differ."""
    def pair(ours_value: str, key: str, fmt: str, size: str = "") -> str:
        if theirs is None:
            return f"{ours_value} / (cannot open)"
        if "error" in theirs:
            return f"{ours_value} / {theirs['error']}"
        return f"{ours_value} / {format(theirs[key], fmt)}{size}"

    (pp, tg), (their_pp, their_tg) = sizes, their_sizes
    their_pp_name = f" (pp{their_pp})" if their_pp != pp else ""
    their_tg_name = f" (tg{their_tg})" if their_tg != tg else ""
    return (
        f"| {label} | {path.stat().st_size / 2**20:,.0f} MiB "
        f"| pp{pp} {pair(format(mine['pp_tok_s'], '.1f'), f'pp{their_pp}', '.1f', their_pp_name)} "
        f"| tg{tg} {pair(format(mine['tg_tok_s'], '.1f'), f'tg{their_tg}', '.1f', their_tg_name)} "
        f"| {pair(format(mine['load_s'], '.1f'), 'load_s', '.1f')} s "
        f"| {pair(format(mine['peak_rss_mb'], ',.0f'), 'peak_rss_mb', ',.0f')} MiB "
        f"| {mine['ttft_s']:.2f} s |"
    )


if __name__ == "__main__":
    main()

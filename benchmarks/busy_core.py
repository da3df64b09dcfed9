"""Decode speed while other processes keep cores busy, per Numba threading layer / wait policy.

    python benchmarks/busy_core.py MODEL.gguf [--tokens 64] [--hogs 0 1 2] [--configs default omp-passive workqueue]

Each run is `bonsai-tui generate --json` in a fresh process (the threading layer is chosen once
per process), with N `python3 -c "while True: pass"` hogs running beside it. Reports decode tok/s
and first-token time, and each as a share of the same configuration's idle figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {
    "default": {},  # what the engine chooses
    "omp-active": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "active"},
    "omp-passive": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive"},
    "omp-spin0": {"NUMBA_THREADING_LAYER": "omp", "GOMP_SPINCOUNT": "0"},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "tbb": {"NUMBA_THREADING_LAYER": "tbb"},
}
PROMPT = "Tell me about bonsai trees and how to care for them."


def run(model: str, tokens: int, env: dict[str, str]) -> dict:
    cli = Path(sys.executable).with_name("bonsai-tui")
    command = [str(cli), "generate", "--model", model, "--prompt", PROMPT, "--max-tokens", str(tokens), "--json", "--seed", "1"]
    out = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--hogs", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=["default", "omp-passive", "workqueue"], choices=list(CONFIGS))
    args = parser.parse_args()
    for name in args.configs:
        idle = None
        for hogs in args.hogs:
            workers = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
            time.sleep(0.5)
            try:
                result = run(args.model, args.tokens, CONFIGS[name])
            finally:
                for worker in workers:
                    worker.kill()
                    worker.wait()
            if "error" in result:
                print(f"{name:12} hogs {hogs}: {result['error']}", flush=True)
                continue
            stats = result.get("stats", result)
            tok_s, ttft = stats["decode_tok_s"], stats["ttft_s"]
            idle = idle or tok_s
            print(f"{name:12} hogs {hogs}: {tok_s:5.1f} tok/s ({100 * tok_s / idle:3.0f} % of idle) · first token {ttft:.2f} s", flush=True)


if __name__ == "__main__":
    main()

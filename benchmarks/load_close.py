"""Loading and closing a model again and again (what a server that swaps models does): resident
memory and thread count after each cycle, to show that close() gives everything back.

    flock /tmp/bench.lock .venv/bin/python benchmarks/load_close.py --model ~/.cache/bonsai-tui/bonsai-1.7b-synthetic.gguf [--cycles 5]

Each cycle loads the model, runs a 64-token prefill and one decode step, and closes it. Prints one
JSON object: seconds per cycle, and resident MB and threads after each.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import threading
import time

import engine


def resident_mb() -> float:
    with open("/proc/self/statm", encoding="utf-8") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    rss, threads, seconds = [], [], []
    for _ in range(args.cycles):
        start = time.perf_counter()
        with engine.load(args.model, threads=args.threads) as model:
            cache = model.new_cache(65)
            model.forward(list(range(1000, 1064)), cache, 0)
            model.forward([5], cache, 64)
        del model, cache
        gc.collect()
        seconds.append(round(time.perf_counter() - start, 2))
        rss.append(round(resident_mb(), 1))
        threads.append(threading.active_count())
    print(json.dumps({"cycles": args.cycles, "seconds": seconds, "rss_mb_after_close": rss, "threads_after_close": threads}))


if __name__ == "__main__":
    main()

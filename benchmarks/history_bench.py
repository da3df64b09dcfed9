"""How long a long conversation takes to come back from the history: 1,000 messages written to a
fresh store, then `Store.load_conversation` (what reopening it from the sidebar reads) timed, best
of --runs. Moved here from the tests, which check only that it comes back whole and in order.

    flock /tmp/bench.lock .venv/bin/python benchmarks/history_bench.py [--messages 1000] [--runs 5]

Prints one JSON object (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bonsai_tui.store import Store

STATS = {"prompt_tokens": 17, "cached_tokens": 5, "generated_tokens": 9, "prefill_s": 0.2, "decode_s": 0.5, "ttft_s": 0.25}


def best_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    messages = [
        {"role": ("user", "assistant")[i % 2], "content": f"message {i} " + "text " * 60}
        | ({"stats": STATS} if i % 2 else {})
        for i in range(args.messages)
    ]
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "history.sqlite3") as store:
        conversation_id = store.create_conversation("long", messages=messages)
        print(json.dumps({
            "messages": args.messages,
            "load_conversation_ms": round(best_ms(lambda: store.load_conversation(conversation_id), args.runs), 2),
        }))


if __name__ == "__main__":
    main()

"""Speed through `bonsai-tui serve` against `bonsai-tui generate`, in one run.

    flock /tmp/bench.lock python benchmarks/server_bench.py ~/.cache/bonsai-tui/bonsai-1.7b-synthetic.gguf

1. `generate --json`: the engine's decode tok/s and first-token time for a ~32-token chat turn.
2. The same through the server (one client, streamed with the openai client): first-token time as
   the client sees it (request sent -> first content chunk) and decode tok/s from chunk arrivals.
3. Two clients at once on a `--parallel 2` server: each one's first-token time and tok/s, and the
   total tokens per second.
Every request has its own prompt (nothing cached but the template's first tokens) and greedy
sampling, so each reply runs to max_tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai

BIN = Path(sys.executable).with_name("bonsai-tui")
TOPICS = ["rivers", "mountains", "deserts", "forests", "glaciers", "islands", "volcanoes", "canyons", "lakes", "reefs"]


def prompt(i: int) -> str:
    """About 32 tokens once templated, different from the first word on."""
    return f"{TOPICS[i % len(TOPICS)].capitalize()} {i}: tell me three short facts about them, in plain words, one line each."


def generate_figures(model: str, tokens: int, threads: int) -> dict:
    out = subprocess.run(
        [str(BIN), "generate", "--model", model, "--prompt", prompt(99), "--max-tokens", str(tokens),
         "--temperature", "0", "--threads", str(threads), "--json"],
        capture_output=True, text=True, check=True,
    )
    stats = json.loads(out.stdout)["stats"]
    return {"ttft_s": stats["ttft_s"], "decode_tok_s": stats["decode_tok_s"], "prompt_tokens": stats["prompt_tokens"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_once(client: openai.OpenAI, i: int, tokens: int) -> dict:
    sent = time.perf_counter()
    arrivals: list[float] = []
    stream = client.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": prompt(i)}], max_tokens=tokens, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
        if chunk.usage:
            usage = chunk.usage
    n = usage.completion_tokens if usage else len(arrivals)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return {"ttft_s": arrivals[0] - sent, "decode_tok_s": (n - 1) / span if span else 0.0, "tokens": n,
            "finished_at": arrivals[-1]}


def concurrent(client: openai.OpenAI, first: int, tokens: int, n_clients: int) -> dict:
    results: list[dict] = [{} for _ in range(n_clients)]
    start = time.perf_counter()
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, stream_once(client, first + k, tokens)))
               for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["finished_at"] for r in results) - start
    return {"clients": [{k: round(v, 3) for k, v in r.items() if k != "finished_at"} for r in results],
            "total_tok_s": sum(r["tokens"] for r in results) / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    report: dict = {"tokens": args.tokens, "threads": args.threads, "generate": [], "server_1_client": [], "server_2_clients": []}
    report["generate"].append(generate_figures(args.model, args.tokens, args.threads))
    port = free_port()
    server = subprocess.Popen(
        [str(BIN), "serve", "--model", args.model, "--port", str(port), "--parallel", "2", "--threads", str(args.threads)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
        stream_once(client, 50, 4)  # warm-up: first request of the process
        for run in range(args.runs):
            report["server_1_client"].append({k: round(v, 3) for k, v in stream_once(client, run, args.tokens).items() if k != "finished_at"})
            report["server_2_clients"].append(concurrent(client, 10 + 2 * run, args.tokens, 2))
    finally:
        server.terminate()
        server.wait(30)
    report["generate"].append(generate_figures(args.model, args.tokens, args.threads))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The real app, driven headless by Textual's Pilot, against `bonsai-tui generate` on the same prompt.

    python benchmarks/app_speed.py MODEL.gguf [--tokens 512] [--sizes 80x24 200x50] [--turns 3]

For each terminal size: the app opens the model, then the script types the prompt and Enter,
waits for the reply, and reads its stats (decode tok/s, first-token time) from the reply; later
turns ask follow-up questions (first-token time after a `--tokens` reply). While the first reply
streams it types one key every ~0.5 s and times key-to-echo (key sent -> the message box shows
it). The CLI figure is `bonsai-tui generate --json` with the same prompt, seed and token budget,
run right before, in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bonsai_tui.app import BonsaiApp, ChatOptions
from bonsai_tui.screens.chat import ChatScreen
from engine.sampling import SamplingParams

PROMPTS = [
    "Tell me about bonsai trees and how to care for them.",
    "Which species would you pick for a beginner, and why?",
    "How often should I water it in summer?",
]
PARAMS = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, seed=1)


def cli(model: str, tokens: int) -> dict:
    command = [
        str(Path(sys.executable).with_name("bonsai-tui")), "generate", "--model", model, "--prompt", PROMPTS[0],
        "--max-tokens", str(tokens), "--json", "--seed", "1", "--temperature", "0.8", "--top-k", "40", "--top-p", "0.95",
    ]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["stats"]


async def until(pilot, condition, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        await pilot.pause(0.01)


async def in_app(model: str, tokens: int, size: tuple[int, int], turns: int) -> list[dict]:
    options = ChatOptions(Path(model), max_tokens=tokens, choose_params=lambda _: PARAMS)
    app = BonsaiApp(options)
    results = []
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and bool(app.screen.query("#prompt")))
        screen = app.screen
        for turn in range(turns):
            await pilot.press(*PROMPTS[turn], "enter")
            await until(pilot, lambda: screen.generator.busy)
            echoes = []
            while screen.generator.busy:
                if turn == 0 and screen._reply is not None and screen._reply.content:
                    before = screen.prompt.text
                    sent = time.perf_counter()
                    await pilot.press("x")
                    await until(pilot, lambda: screen.prompt.text != before)
                    echoes.append(time.perf_counter() - sent)
                    await pilot.pause(0.5)
                else:
                    await pilot.pause(0.05)
            screen.prompt.clear()
            await pilot.pause()
            stats = screen.chat_messages[-1].stats
            results.append({**stats.as_dict(), "echo_ms": [round(1000 * e) for e in echoes]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--sizes", nargs="+", default=["80x24", "200x50"])
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("BONSAI_TUI_HOME", "/tmp/bonsai-app-speed")  # keep the user's history out of it
    for size_text in args.sizes:
        size = tuple(int(v) for v in size_text.split("x"))
        c = cli(args.model, args.tokens)
        print(f"{size_text} CLI:   {c['decode_tok_s']:.1f} tok/s · first token {c['ttft_s']:.2f} s ({c['generated_tokens']} tokens)", flush=True)
        for turn, r in enumerate(asyncio.run(in_app(args.model, args.tokens, size, args.turns)), 1):
            echo = f" · key-to-echo median {statistics.median(r['echo_ms'])} ms, worst {max(r['echo_ms'])} ms" if r["echo_ms"] else ""
            print(
                f"{size_text} app turn {turn}: {r['decode_tok_s']:.1f} tok/s ({100 * r['decode_tok_s'] / c['decode_tok_s']:.0f} % of CLI)"
                f" · prompt {r['prompt_tokens']} ({r['cached_tokens']} cached) · first token {r['ttft_s']:.2f} s"
                f" ({r['generated_tokens']} tokens){echo}",
                flush=True,
            )


if __name__ == "__main__":
    main()

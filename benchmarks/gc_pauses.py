"""Python's cycle-collector pauses in the app while replies stream: the real app headless, three
turns, every collection timed through `gc.callbacks`.

    python benchmarks/gc_pauses.py MODEL.gguf [--tokens 256] [--unfreeze]

`--unfreeze` undoes the app's `gc.freeze()` of the objects of startup once the chat is shown (as
the app ran before it froze them), to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from pathlib import Path

from bonsai_tui.app import BonsaiApp, ChatOptions
from bonsai_tui.screens.chat import ChatScreen

QUESTIONS = [
    "Tell me about bonsai trees and how to care for them.",
    "Which species would you pick for a beginner, and why?",
    "How often should I water it in summer?",
]


async def measure(model: Path, tokens: int, unfreeze: bool) -> list[tuple[int, float]]:
    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    app = BonsaiApp(ChatOptions(model, max_tokens=tokens))
    async with app.run_test(size=(80, 24)):
        while not (isinstance(app.screen, ChatScreen) and app.screen.query("#prompt")):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # the app freezes the objects of startup after the chat's first paint
        if unfreeze:
            gc.unfreeze()
        print(f"objects the collector tracks: {len(gc.get_objects()):,}, frozen: {gc.get_freeze_count():,}")
        gc.callbacks.append(timed)
        screen = app.screen
        for question in QUESTIONS:
            await screen.send(question)
            while screen.generator.busy:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        gc.callbacks.remove(timed)
    return pauses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--unfreeze", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("BONSAI_TUI_HOME", tempfile.mkdtemp(prefix="bonsai-gc-"))  # not the user's history
    pauses = asyncio.run(measure(args.model, args.tokens, args.unfreeze))
    for generation in range(3):
        times = [seconds for g, seconds in pauses if g == generation]
        print(f"generation {generation}: {len(times)} collections, longest {1000 * max(times, default=0):.1f} ms,"
              f" total {1000 * sum(times):.0f} ms")


if __name__ == "__main__":
    main()

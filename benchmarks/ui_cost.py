"""The UI thread's CPU per streamed batch, with no engine: what one batch of a reply costs the app.

    python benchmarks/ui_cost.py [--size 80x24] [--earlier 0 2 8] [--chars 2400] [--batch 20]

The real conversation view and message widgets with the app's styles, headless (Textual lays out
and renders each frame as on a terminal; only the write to the terminal is skipped): `--earlier`
finished turns above (a question and a reply of `--chars` characters, Markdown, several
paragraphs), then a reply streamed `--batch` characters at a time (~5 tokens, one 100 ms batch
at 50 tok/s) until it is `--chars` long; each batch is followed by 50 ms for the screen to update. Reports
the UI thread's CPU time (`time.thread_time`) per batch, mean over the reply's first and last
quarter, and the median batch (one that adds no line).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from importlib import resources

from textual.app import App, ComposeResult

from bonsai_tui.widgets.chat_message import ChatMessage
from bonsai_tui.widgets.conversation import ConversationView
from engine.session import GenerationStats, StopReason

STATS = GenerationStats(prompt_tokens=40, cached_tokens=0, generated_tokens=512, prefill_s=0.5, decode_s=10.0, ttft_s=0.5)


def reply_text(chars: int, seed: int) -> str:
    """Words of random letters in paragraphs of ~400 characters, like the synthetic model's replies."""
    rng = random.Random(seed)
    words, size = [], 0
    while size < chars:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        words.append(word + ("\n\n" if rng.random() < 0.01 else " "))
        size += len(words[-1])
    return "".join(words)[:chars]


class CostApp(App[None]):
    CSS_PATH = [str(resources.files("bonsai_tui.assets") / "bonsai.tcss")]

    def compose(self) -> ComposeResult:
        yield ConversationView("welcome", id="conversation")


async def measure(size: tuple[int, int], earlier: int, chars: int, batch: int) -> tuple[float, float, float]:
    app = CostApp()
    async with app.run_test(size=size) as pilot:
        view = app.query_one(ConversationView)
        for turn in range(earlier):
            reply = ChatMessage("assistant", reply_text(chars, turn), STATS, StopReason.MAX_TOKENS)
            await view.add([ChatMessage("user", f"question {turn}"), reply])
        streaming = ChatMessage("assistant")
        await view.add([ChatMessage("user", "the question"), streaming])
        streaming.start_stream()
        await pilot.pause()
        text = reply_text(chars, 99)
        costs = []
        for start in range(0, len(text), batch):
            before = time.thread_time()
            await streaming.append(text[start : start + batch])
            await asyncio.sleep(0.05)  # the screen's update timer runs (Pilot's pause would add its own work)
            costs.append(time.thread_time() - before)
        quarter = max(1, len(costs) // 4)
        return sum(costs[:quarter]) / quarter, sum(costs[-quarter:]) / quarter, statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="80x24")
    parser.add_argument("--earlier", type=int, nargs="+", default=[0, 2, 8])
    parser.add_argument("--chars", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    for earlier in args.earlier:
        first, last, median = asyncio.run(measure(size, earlier, args.chars, args.batch))
        print(
            f"{args.size}, {earlier} earlier turns: UI CPU per batch {1000 * first:.1f} ms in the reply's first quarter,"
            f" {1000 * last:.1f} ms in its last (median batch {1000 * median:.1f} ms)", flush=True,
        )


if __name__ == "__main__":
    main()

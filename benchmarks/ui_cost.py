"""The UI thread's CPU per streamed batch, with no engine: what one batch of a reply costs the app.

    python benchmarks/ui_cost.py [--size 80x24] [--earlier 0 2 8] [--chars 2400] [--batch 20]

The real conversation view and message widgets with the app's styles, headless (Textual lays out
and renders each frame as on a terminal; only the write to the terminal is skipped): `--earlier`
finished turns above (a question and a reply of `--chars` characters, Markdown, several
paragraphs), then a reply streamed `--batch` characters at a time (~5 tokens, one 100 ms batch
at 50 tok/s) until it is `--chars` long; each batch is followed by `--pace` seconds (0.05) for the
screen to update, and the status bar takes the live figures as the chat screen gives them. Reports
the UI thread's CPU time (`time.thread_time`) per batch, mean over the reply's first and last
quarter, and the median batch (one that adds no line); and the share of the stream's wall time the
UI thread was busy (with `--pace 0.1`: a 50 tok/s reply).
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
from bonsai_tui.screens.reply_streaming import STATUS_SECONDS
from bonsai_tui.widgets.status_bar import ModelSummary, StatusBar
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
        yield StatusBar(ModelSummary("Bonsai-1.7B", 248_302_272, 2, 4096), id="status")


async def measure(size: tuple[int, int], earlier: int, chars: int, batch: int, pace: float) -> tuple[float, float, float]:
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
        status = app.query_one(StatusBar)
        status_every = max(1, round(STATUS_SECONDS / pace)) if pace else 1
        started_cpu, started = time.thread_time(), time.perf_counter()
        for number, start in enumerate(range(0, len(text), batch)):
            before = time.thread_time()
            await streaming.append(text[start : start + batch])
            if number % status_every == 0:  # the live figures, as the chat screen passes them on
                status.live_tok_s = 50 + number % 7 / 10
                status.context_used = 600 + 5 * number
            await asyncio.sleep(pace)  # the screen's update timer runs (Pilot's pause would add its own work)
            costs.append(time.thread_time() - before)
        share = (time.thread_time() - started_cpu) / (time.perf_counter() - started)
        print(f"    UI thread busy {100 * share:.1f} % of the {time.perf_counter() - started:.1f} s stream", flush=True)
        quarter = max(1, len(costs) // 4)
        return sum(costs[:quarter]) / quarter, sum(costs[-quarter:]) / quarter, statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="80x24")
    parser.add_argument("--earlier", type=int, nargs="+", default=[0, 2, 8])
    parser.add_argument("--chars", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between batches (0.1: a 50 tok/s reply's pace)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    for earlier in args.earlier:
        first, last, median = asyncio.run(measure(size, earlier, args.chars, args.batch, args.pace))
        print(
            f"{args.size}, {earlier} earlier turns: UI CPU per batch {1000 * first:.1f} ms in the reply's first quarter,"
            f" {1000 * last:.1f} ms in its last (median batch {1000 * median:.1f} ms)", flush=True,
        )


if __name__ == "__main__":
    main()

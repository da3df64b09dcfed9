"""`bonsai-tui download`: fetch a model into the Hugging Face cache with a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from bonsai_tui import hub

# "1.7b" -> Bonsai 1.7B, "ternary-4b" -> Ternary 4B, ...: the short names `bonsai-tui download` accepts
VARIANTS = {m.label.removeprefix("Bonsai ").lower().replace(" ", "-"): m for m in (*hub.BONSAI_MODELS, *hub.TERNARY_MODELS)}


def add_model_choice_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", help=f"Hugging Face repo (default: {hub.DEFAULT_MODEL.repo}, or the last one used)")
    parser.add_argument("--file", help="GGUF file in that repo")


def model_choice(args: argparse.Namespace) -> hub.ModelChoice:
    if args.repo or args.file:
        return hub.known_choice(args.repo or hub.DEFAULT_MODEL.repo, args.file or hub.DEFAULT_MODEL.filename)
    return hub.remembered_choice()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "variant", nargs="?", type=str.lower, choices=list(VARIANTS),
        help="which Bonsai model (default: the last one used, else 1.7b)",
    )
    add_model_choice_arguments(parser)


def progress_line(p: hub.Progress, name: str, width: int = 30) -> str:
    fraction = p.done / p.total if p.total else 0.0
    bar = "█" * int(fraction * width)
    eta = f"{p.eta_s:.0f} s left" if p.eta_s is not None else ""
    return (f"{name} [{bar:<{width}}] {fraction:4.0%} {p.done / 1e6:7.1f}/{p.total / 1e6:.1f} MB "
            f"{p.bytes_per_s / 1e6:5.1f} MB/s {eta:<11}")


class ProgressPrinter:
    """Redraws one status line, at most ten times a second (and always the last one)."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name, self.stream = name, stream or sys.stderr  # read when drawing starts, not at import
        self.last_drawn = 0.0

    def __call__(self, p: hub.Progress) -> None:
        now = time.monotonic()
        if p.done < p.total and now - self.last_drawn < 0.1:
            return
        self.last_drawn = now
        print("\r" + progress_line(p, self.name), end="", file=self.stream, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.variant and (args.repo or args.file):
        print("bonsai-tui: give either a Bonsai variant or --repo/--file, not both", file=sys.stderr)
        return 2
    choice = VARIANTS[args.variant] if args.variant else model_choice(args)
    try:
        choice = hub.resolve(choice)  # a ternary model's file name comes from the hub's file list
        path = hub.download(choice, ProgressPrinter(choice.filename))
    except hub.HubError as error:
        print(f"\nbonsai-tui: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nbonsai-tui: {hub.DownloadCancelled()}", file=sys.stderr)
        return 130
    print(file=sys.stderr)
    print(path)
    return 0

"""`bonsai-tui download`: fetch a model into the Hugging Face cache with a progress bar."""

from __future__ import annotations

import argparse
import sys

from bonsai_tui import hub


def add_model_choice_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", help=f"Hugging Face repo (default: {hub.DEFAULT_MODEL.repo}, or the last one used)")
    parser.add_argument("--file", help="GGUF file in that repo")


def model_choice(args: argparse.Namespace) -> hub.ModelChoice:
    if args.repo or args.file:
        return hub.known_choice(args.repo or hub.DEFAULT_MODEL.repo, args.file or hub.DEFAULT_MODEL.filename)
    return hub.remembered_choice()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_choice_arguments(parser)


def progress_line(p: hub.Progress, name: str, width: int = 30) -> str:
    fraction = p.done / p.total if p.total else 0.0
    bar = "█" * int(fraction * width)
    eta = f"{p.eta_s:4.0f} s left" if p.eta_s is not None else ""
    return (f"\r{name} [{bar:<{width}}] {fraction:4.0%} {p.done / 1e6:7.1f}/{p.total / 1e6:.1f} MB "
            f"{p.bytes_per_s / 1e6:5.1f} MB/s {eta}")


def run(args: argparse.Namespace) -> int:
    choice = model_choice(args)
    try:
        path = hub.download(choice, lambda p: print(progress_line(p, choice.filename), end="", file=sys.stderr))
    except hub.HubError as error:
        print(f"\nbonsai-tui: {error}" if not isinstance(error, hub.DownloadCancelled) else f"\n{error}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(path)
    return 0

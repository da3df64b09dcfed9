"""`bonsai-tui synth`: write a random-weight Qwen3 GGUF in Bonsai's layout."""

from __future__ import annotations

import argparse

from engine.synth import PRESETS, write_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="the .gguf file to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    path = write_model(args.out, preset=args.preset, seed=args.seed)
    print(f"wrote {path} ({path.stat().st_size:,} bytes, random weights)")
    return 0

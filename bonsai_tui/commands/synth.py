"""`bonsai-tui synth`: write a random-weight Qwen3 GGUF in Bonsai's layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.synth import PRESETS, write_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="the .gguf file to write (missing folders are created)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--layout", choices=("g128", "g64"), default="g128",
        help="Q2_0 blocks of the ternary presets: PrismML's 128 weights (default) or mainline llama.cpp's 64",
    )


def run(args: argparse.Namespace) -> int:
    if args.layout != "g128" and PRESETS[args.preset].weight_type != "Q2_0":
        print(f"bonsai-tui synth: --layout is for the ternary presets; {args.preset} has no Q2_0 weights", file=sys.stderr)
        return 2
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        path = write_model(args.out, preset=args.preset, seed=args.seed, q2_layout=args.layout)
    except (FileExistsError, NotADirectoryError):  # a file where a folder should be
        print(f"bonsai-tui synth: cannot write {args.out}: {_file_in_the_way(args.out)} is a file, not a folder",
              file=sys.stderr)
        return 2
    except OSError as error:
        print(f"bonsai-tui synth: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes, random weights)")
    return 0


def _file_in_the_way(out: Path) -> Path:
    return next((parent for parent in reversed(out.parents) if parent.exists() and not parent.is_dir()), out.parent)

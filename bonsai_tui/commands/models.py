"""`bonsai-tui models`: the GGUF models in the Hugging Face cache; `--delete REPO` removes one."""

from __future__ import annotations

import argparse
import sys

from bonsai_tui import hub


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delete", metavar="REPO", help="remove this repo's files from the cache")


def run(args: argparse.Namespace) -> int:
    if args.delete:
        freed = hub.delete_cached(args.delete)
        if not freed:
            print(f"bonsai-tui: {args.delete} is not in the Hugging Face cache", file=sys.stderr)
            return 2
        print(f"removed {args.delete} ({freed / 1e6:.1f} MB)")
        return 0
    cached = hub.cached_models()
    downloaded = {(repo, name) for repo, name, _, _ in cached}
    print("Known Bonsai models:")
    for m in (*hub.BONSAI_MODELS, *hub.TERNARY_MODELS):
        found = hub.cached_path(m) if not m.filename else None  # a ternary file: whatever its name
        mark = "downloaded" if (m.repo, m.filename) in downloaded or found else f"~{m.approx_bytes / 1e6:,.0f} MB"
        print(f"  {m.label:<12} {m.repo}/{found.name if found else m.filename or '<its Q2_0 GGUF>'}  [{mark}]")
    print("GGUF files in the Hugging Face cache:" if cached else "No GGUF files in the Hugging Face cache.")
    for repo, name, path, size in cached:
        print(f"  {repo}/{name}  {size / 1e6:.1f} MB  {path}")
    return 0

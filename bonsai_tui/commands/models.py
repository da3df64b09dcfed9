"""`bonsai-tui models`: the GGUF models in the Hugging Face cache; `--delete REPO` removes one."""

from __future__ import annotations

import argparse

from bonsai_tui import hub


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delete", metavar="REPO", help="remove this repo's files from the cache")


def run(args: argparse.Namespace) -> int:
    if args.delete:
        freed = hub.delete_cached(args.delete)
        print(f"removed {args.delete} ({freed / 1e6:.1f} MB)" if freed else f"{args.delete} is not in the cache")
        return 0 if freed else 2
    downloaded = {(repo, name) for repo, name, _, _ in hub.cached_models()}
    print("Known Bonsai models:")
    for m in hub.BONSAI_MODELS:
        mark = "downloaded" if (m.repo, m.filename) in downloaded else f"~{m.approx_bytes / 1e6:,.0f} MB"
        print(f"  {m.label:<12} {m.repo}/{m.filename}  [{mark}]")
    print("In the Hugging Face cache:")
    for repo, name, path, size in hub.cached_models() or [("(none)", "", None, 0)]:
        print(f"  {repo}/{name}  {size / 1e6:.1f} MB  {path or ''}")
    return 0

"""What glibc's malloc settings cost a chat: three turns of 512-token replies through ChatSession,
with the mmap and trim thresholds given, and the page faults and peak RSS of the whole run.

    python benchmarks/allocator.py MODEL.gguf [--mmap-threshold BYTES] [--trim-threshold BYTES] [--glibc-default]

Each setting in a process of its own (mallopt is process-wide). Without flags: the settings of
`engine.allocator.keep_big_arrays_out_of_the_heap()`, which `bonsai-tui` uses. `--glibc-default`
leaves glibc alone (its threshold then rises with each large free, up to 32 MB).
"""

from __future__ import annotations

import argparse
import ctypes
import resource

import engine
from engine import allocator
from engine.session import ChatSession, DoneEvent

QUESTIONS = [
    "Tell me about bonsai trees and how to care for them.",
    "Which species would you pick for a beginner, and why?",
    "How often should I water it in summer?",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--mmap-threshold", type=int, default=None)
    parser.add_argument("--trim-threshold", type=int, default=None)
    parser.add_argument("--glibc-default", action="store_true")
    parser.add_argument("--tokens", type=int, default=512)
    args = parser.parse_args()
    if args.mmap_threshold is None and args.trim_threshold is None:
        setting = "glibc's own" if args.glibc_default else "bonsai-tui's"
        if not args.glibc_default:
            allocator.keep_big_arrays_out_of_the_heap()
    else:
        libc = ctypes.CDLL("libc.so.6")
        setting = f"mmap {args.mmap_threshold} trim {args.trim_threshold}"
        if args.mmap_threshold is not None:
            libc.mallopt(allocator.M_MMAP_THRESHOLD, args.mmap_threshold)
        if args.trim_threshold is not None:
            libc.mallopt(allocator.M_TRIM_THRESHOLD, args.trim_threshold)
    turns = []
    with engine.load(args.model) as model:
        params = model.default_params().with_changes(temperature=0.8, top_k=40, top_p=0.95, seed=1)
        session = ChatSession(model, n_ctx=4096, params=params)
        messages: list[dict[str, str]] = []
        for question in QUESTIONS:
            messages.append({"role": "user", "content": question})
            done = [e for e in session.chat(messages, max_tokens=args.tokens) if isinstance(e, DoneEvent)][0]
            messages.append({"role": "assistant", "content": done.text})
            s = done.stats
            turns.append(f"prompt {s.prompt_tokens} ({s.cached_tokens} cached): first token {s.ttft_s:.2f} s, {s.decode_tok_s:.1f} tok/s")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{setting}: " + " | ".join(turns) + f" | page faults {usage.ru_minflt:,}, peak RSS {usage.ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()

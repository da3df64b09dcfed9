"""`bonsai-tui generate`: one reply, streamed to stdout (or one JSON object with --json)."""

from __future__ import annotations

import argparse
import json
import sys

import engine
from bonsai_tui.commands.common import add_sampling_arguments, add_threads_argument, sampling_params
from bonsai_tui.commands.documents import add_documents_arguments, documents_context
from engine.session import ChatSession, DoneEvent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="path to a GGUF file")
    parser.add_argument("--prompt", required=True, help="the user message (or raw text with --raw)")
    parser.add_argument("--system", default=None, help="system prompt")
    parser.add_argument("--raw", action="store_true", help="feed the prompt as is, without the chat template")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--ctx", type=int, default=0, help="context size in tokens (default: min(model, 4096))")
    parser.add_argument("--think", action="store_true", help="let the model think (enable_thinking)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    add_documents_arguments(parser)
    add_threads_argument(parser)
    add_sampling_arguments(parser)


def run(args: argparse.Namespace) -> int:
    with engine.load(args.model, threads=args.threads) as model:
        return generate(model, args)


def generate(model: engine.Model, args: argparse.Namespace) -> int:
    try:
        params = sampling_params(args, model.default_params())
    except ValueError as error:
        print(f"bonsai-tui generate: {error}", file=sys.stderr)
        return 2
    session = ChatSession(model, n_ctx=args.ctx, params=params)
    retrieval = documents_context(args, session, model)
    if retrieval is False:
        return 2
    if args.raw:
        events = session.generate(model.tokenize(args.prompt), args.max_tokens)
    else:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        messages.append({"role": "user", "content": retrieval.prompt(args.prompt) if retrieval else args.prompt})
        events = session.chat(messages, args.max_tokens, enable_thinking=args.think)
    streamed = 0
    for event in events:
        if isinstance(event, DoneEvent):
            if not args.json:
                print(event.text[streamed:])  # an incomplete last character, if any
            report(event, args.json, sources=[s.as_citation() for s in retrieval.sources] if retrieval else None)
        elif not args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
            streamed += len(event.text)
    return 0


def report(done: DoneEvent, as_json: bool, sources: list[dict] | None = None) -> None:
    if as_json:
        print(json.dumps({
            "prompt_tokens": done.prompt_ids,
            "tokens": done.token_ids,
            "text": done.text,
            "stop_reason": done.stop_reason.value,
            "stats": done.stats.as_dict(),
            **({"sources": sources} if sources is not None else {}),
        }))
        return
    s = done.stats
    print(
        f"[{done.stop_reason.value}: {s.generated_tokens} tokens, prefill {s.prefill_tok_s:.1f} tok/s, "
        f"decode {s.decode_tok_s:.1f} tok/s, first token {s.ttft_s:.2f} s]",
        file=sys.stderr,
    )

"""`bonsai-tui generate`: one reply, streamed to stdout (or one JSON object with --json)."""

from __future__ import annotations

import argparse
import json
import sys

import engine
from bonsai_tui.commands.common import add_kv_cache_argument, add_sampling_arguments, add_threads_argument, sampling_params
from bonsai_tui.commands.documents import add_documents_arguments, documents_context
from engine import constraints
from engine.constraints import Constraint, ConstraintError
from engine.session import ChatSession, DoneEvent

EXIT_INCOMPLETE = 1  # under --json-object / --json-schema: the budget ran out before the JSON ended


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
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json-object", action="store_true", help="the reply is one JSON object (constrained decoding)")
    shape.add_argument("--json-schema", metavar="FILE", default=None,
                       help="the reply is valid against this JSON Schema file (constrained decoding); "
                       f"exit {EXIT_INCOMPLETE} if --max-tokens runs out before the JSON is complete")
    add_threads_argument(parser)
    add_kv_cache_argument(parser)
    add_sampling_arguments(parser)


def run(args: argparse.Namespace) -> int:
    with engine.load(args.model, threads=args.threads, kv_cache=args.kv_cache) as model:
        return generate(model, args)


def generate(model: engine.Model, args: argparse.Namespace) -> int:
    try:
        params = sampling_params(args, model.default_params())
    except ValueError as error:
        print(f"bonsai-tui generate: {error}", file=sys.stderr)
        return 2
    try:
        constraint = output_constraint(args, model)
    except ConstraintError as error:
        print(f"bonsai-tui generate: {error}", file=sys.stderr)
        return 2
    session = ChatSession(model, n_ctx=args.ctx, params=params)
    retrieval = documents_context(args, session, model)
    if retrieval is False:
        return 2
    if args.raw:
        events = session.generate(model.tokenize(args.prompt), args.max_tokens, constraint)
    else:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        messages.append({"role": "user", "content": retrieval.prompt(args.prompt) if retrieval else args.prompt})
        events = session.chat(messages, args.max_tokens, enable_thinking=args.think, constraint=constraint)
    streamed = 0
    for event in events:
        if isinstance(event, DoneEvent):
            if not args.json:
                print(event.text[streamed:])  # an incomplete last character, if any
            report(event, args.json, sources=[s.as_citation() for s in retrieval.sources] if retrieval else None)
            if event.incomplete:
                print(f"bonsai-tui generate: incomplete JSON: generation stopped ({event.stop_reason.value}) "
                      "before it was complete; raise --max-tokens", file=sys.stderr)
                return EXIT_INCOMPLETE
        elif not args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
            streamed += len(event.text)
    return 0


def output_constraint(args: argparse.Namespace, model: engine.Model) -> Constraint | None:
    """--json-object / --json-schema FILE as an engine constraint; ConstraintError (one line) if unusable."""
    if args.json_object:
        return constraints.json_object(model)
    if args.json_schema is None:
        return None
    try:
        with open(args.json_schema, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConstraintError(f"cannot read the JSON Schema {args.json_schema}: {error.strerror or error}") from None
    return constraints.json_schema(model, text)


def report(done: DoneEvent, as_json: bool, sources: list[dict] | None = None) -> None:
    if as_json:
        print(json.dumps({
            "prompt_tokens": done.prompt_ids,
            "tokens": done.token_ids,
            "text": done.text,
            "stop_reason": done.stop_reason.value,
            "incomplete": done.incomplete,
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

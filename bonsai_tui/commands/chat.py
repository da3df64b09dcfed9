"""`bonsai-tui` with no subcommand: open the chat app on a model file, or on a server (--endpoint)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from bonsai_tui import hub
from bonsai_tui.backends import Endpoint, RemoteError
from bonsai_tui.commands.common import add_kv_cache_argument, add_sampling_arguments, add_threads_argument, sampling_params
from bonsai_tui.commands.download import add_model_choice_arguments, model_choice
from bonsai_tui.demo import demo_model_path
from bonsai_tui.documents.retrieve import DEFAULT_BUDGET_FRACTION
from bonsai_tui.generation_settings import CUSTOM, MODEL_DEFAULT
from engine.sampling import SamplingParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="path to a GGUF file")
    source.add_argument(
        "--demo",
        action="store_true",
        help="try the app on a tiny random-weight model (written on the fly; its replies are noise)",
    )
    source.add_argument("--endpoint", metavar="URL", help="chat with an OpenAI-compatible server instead "
                        "(bonsai-tui serve, llama-server, vLLM...), e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", help="the --endpoint's API key")
    parser.add_argument("--model-name", help="the --endpoint's model to use (default: its first)")
    add_model_choice_arguments(parser)
    parser.add_argument("--ctx", type=int, default=0, help="context size in tokens (default: min(model, 4096))")
    parser.add_argument("--max-tokens", type=int, default=512, help="longest reply, in tokens")
    parser.add_argument("--system", default="", help="system prompt")
    parser.add_argument("--docs-budget", type=float, default=DEFAULT_BUDGET_FRACTION, metavar="FRACTION",
                        help=f"share of the context attached documents' passages may fill (default {DEFAULT_BUDGET_FRACTION:g})")
    add_threads_argument(parser)
    add_kv_cache_argument(parser)
    add_sampling_arguments(parser)


def _fail(message: str) -> int:
    print(f"bonsai-tui: {message}", file=sys.stderr)
    return 2


def _model_path(args: argparse.Namespace) -> Path | None:
    """The file to open at once, or None: then the app downloads `model_choice(args)` first."""
    if args.demo:
        return demo_model_path()
    if args.model:
        return args.model
    return hub.cached_path(model_choice(args))  # no network: a cached model opens offline at once


def _preset_name(args: argparse.Namespace) -> str:
    flags = [name for name in vars(SamplingParams()) if name != "seed" and getattr(args, name, None) is not None]
    if flags:
        return CUSTOM
    return args.preset or MODEL_DEFAULT


def run(args: argparse.Namespace) -> int:
    try:
        sampling_params(args, SamplingParams())  # reject bad flags before loading anything
    except ValueError as error:
        return _fail(str(error))
    if args.ctx < 0 or args.max_tokens < 1:
        return _fail("--ctx must be 0 or more and --max-tokens at least 1")
    if not 0 < args.docs_budget <= 1:
        return _fail(f"--docs-budget must be in (0, 1], not {args.docs_budget:g}")
    if args.model and (args.repo or args.file):
        return _fail("give either --model PATH or --repo/--file, not both")
    endpoint = None
    if args.endpoint:
        if args.repo or args.file:
            return _fail("give either --endpoint URL or --repo/--file, not both")
        try:
            endpoint = Endpoint(args.endpoint, api_key=args.api_key, model_name=args.model_name).connect()
        except RemoteError as error:
            return _fail(str(error))
    elif args.api_key or args.model_name:
        return _fail("--api-key and --model-name go with --endpoint URL")
    path = None if endpoint else _model_path(args)
    if path is not None and not path.is_file():
        return _fail(f"{path}: no such file")

    from bonsai_tui.app import BonsaiApp, ChatOptions

    options = ChatOptions(
        model_path=path,
        model_choice=model_choice(args),
        threads=args.threads,
        kv_cache=args.kv_cache,
        n_ctx=args.ctx,
        system_prompt=args.system,
        max_tokens=args.max_tokens,
        preset=_preset_name(args),
        choose_params=partial(sampling_params, args),
        docs_budget=args.docs_budget,
        endpoint=endpoint,
    )
    app = BonsaiApp(options)
    app.run()
    if app.crash_message:
        return _fail(app.crash_message)
    return app.return_code or 0

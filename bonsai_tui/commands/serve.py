"""`bonsai-tui serve`: an OpenAI-compatible HTTP API on this machine's model (see bonsai_tui/server)."""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from bonsai_tui import hub
from bonsai_tui.commands.common import add_kv_cache_argument, add_threads_argument
from bonsai_tui.commands.download import ProgressPrinter, add_model_choice_arguments, model_choice

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="path to a GGUF file")
    add_model_choice_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="(default: 8080, as llama-server)")
    parser.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` (all but /health)")
    parser.add_argument("--insecure", action="store_true", help="allow a non-local --host without --api-key")
    parser.add_argument("--alias", default=None, help="the model's id in /v1/models (default: the file name)")
    parser.add_argument("--ctx", type=int, default=0, help="context of each slot in tokens (default: min(model, 4096))")
    parser.add_argument("--parallel", type=int, default=1, help="conversation slots, each with its own KV cache")
    parser.add_argument("--queue", type=int, default=16, help="requests that may wait for a slot; beyond: 503")
    add_threads_argument(parser)
    add_kv_cache_argument(parser)


def _fail(message: str) -> int:
    print(f"bonsai-tui serve: {message}", file=sys.stderr)
    return 2


def check_arguments(args: argparse.Namespace) -> str | None:
    """The first thing wrong with the flags, as one line, or None."""
    if args.model and (args.repo or args.file):
        return "give either --model PATH or --repo/--file, not both"
    if args.model and not args.model.is_file():
        return f"{args.model}: no such file"
    if args.host not in LOCAL_HOSTS and not args.api_key and not args.insecure:
        return (f"refusing to listen on {args.host} without --api-key: anyone who can reach this machine "
                "could use it (add --api-key KEY, or --insecure if you mean it)")
    if not 0 < args.port < 65536:
        return "--port must be between 1 and 65535"
    if args.ctx < 0 or args.parallel < 1 or args.queue < 0:
        return "--ctx must be 0 or more, --parallel at least 1 and --queue 0 or more"
    return None


def model_path(args: argparse.Namespace) -> Path:
    if args.model:
        return args.model
    choice = model_choice(args)
    return hub.download(choice, ProgressPrinter(choice.filename))  # a cached model: no network


def run(args: argparse.Namespace) -> int:
    problem = check_arguments(args)
    if problem:
        return _fail(problem)
    try:
        path = model_path(args)
    except hub.HubError as error:
        return _fail(str(error))

    import uvicorn

    import engine
    from bonsai_tui.server.app import ServerOptions, create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    server: uvicorn.Server | None = None
    failure: list[str] = []

    def stop_on_load_error(message: str) -> None:
        failure.append(message)
        if server is not None:
            server.should_exit = True

    options = ServerOptions(
        load=partial(engine.load, path, threads=args.threads, kv_cache=args.kv_cache),
        model_id=args.alias or path.name,
        n_ctx=args.ctx,
        parallel=args.parallel,
        queue=args.queue,
        api_key=args.api_key,
        on_load_error=stop_on_load_error,
    )
    app = create_app(options)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, access_log=False, log_level="warning",
        timeout_graceful_shutdown=3,
    )
    state = app.state.server

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # Ctrl-C: end the replies, then the connections
            state.stop_replies()
            super().handle_exit(sig, frame)

    server = Server(config)
    where = f"http://{args.host}:{args.port}"
    print(f"bonsai-tui serve: {path.name} on {where}/v1 (loading; /health says 200 when ready). Ctrl-C stops.",
          file=sys.stderr)
    try:
        server.run()
    finally:
        if state.scheduler is not None:
            state.scheduler.model.close()
    if failure:
        return _fail(failure[0])
    if not server.started:
        return _fail(f"could not listen on {where} (is the port in use?)")
    return 0

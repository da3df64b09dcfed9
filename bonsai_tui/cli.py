"""The `bonsai-tui` command: the chat app by default, plus scripting subcommands.

Each subcommand lives in `bonsai_tui/commands/<name>.py` and provides
`add_arguments(parser)` and `run(args) -> int`; this file only dispatches and turns
failures into one-line messages (the traceback goes to a log file, never to the screen).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bonsai_tui.crash_log import log_crash
from engine.allocator import keep_big_arrays_out_of_the_heap
from engine.errors import EngineError

# name -> (module under bonsai_tui.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("generate", "generate a reply non-interactively (scripting, testing)"),
    "serve": ("serve", "serve the model over an OpenAI-compatible HTTP API"),
    "synth": ("synth", "write a random-weight GGUF in Bonsai's layout (tests, benchmarks)"),
    "bench": ("bench", "measure prompt and generation speed, first-token time, memory"),
    "download": ("download", "download a model from Hugging Face (with resume and checksum)"),
    "models": ("models", "list or delete downloaded models"),
    "history": ("history", "list saved conversations (newest first, or --search TEXT)"),
    "export": ("export", "write a saved conversation as Markdown or JSON"),
    "import": ("import_", "add a JSON messages file to the history as a new conversation"),
}
CHAT_COMMAND = "chat"


def build_parser(name: str, module_name: str, help_text: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"bonsai_tui.commands.{module_name}")
    prog = "bonsai-tui" if name == CHAT_COMMAND else f"bonsai-tui {name}"
    epilog = None
    if name == CHAT_COMMAND:
        epilog = "subcommands:\n" + "\n".join(
            f"  {sub:<10} {text}" for sub, (_, text) in SUBCOMMANDS.items()
        )
    parser = argparse.ArgumentParser(
        prog=prog,
        description=help_text,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    parser.set_defaults(run=module.run)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    if argv and argv[0] in SUBCOMMANDS:
        module_name, help_text = SUBCOMMANDS[argv[0]]
        return build_parser(argv[0], module_name, help_text).parse_args(argv[1:])
    return build_parser(CHAT_COMMAND, "chat", "Chat with a Bonsai 1-bit model in your terminal.").parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    keep_big_arrays_out_of_the_heap()  # a process-wide setting: the program's choice, not the engine's
    try:
        return int(args.run(args) or 0)
    except EngineError as error:
        print(f"bonsai-tui: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbonsai-tui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # last resort: one line for the user, the details in the log
        print(f"bonsai-tui: unexpected error: {error} (details in {log_crash()})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

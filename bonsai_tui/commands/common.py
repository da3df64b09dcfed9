"""Arguments shared by several subcommands: the model file, threads, the KV cache type, and sampling parameters."""

from __future__ import annotations

import argparse

from engine.kv_cache import DEFAULT_KIND, KINDS
from engine.sampling import PRESETS, SamplingParams

_SAMPLING_FLAGS = (
    ("--temperature", "temperature", float, "0 = greedy"),
    ("--top-k", "top_k", int, "keep the k most likely tokens (0 = off)"),
    ("--top-p", "top_p", float, "nucleus sampling mass"),
    ("--min-p", "min_p", float, "drop tokens below this fraction of the best"),
    ("--repeat-penalty", "repeat_penalty", float, "1 = off"),
    ("--presence-penalty", "presence_penalty", float, "0 = off"),
    ("--frequency-penalty", "frequency_penalty", float, "0 = off"),
    ("--seed", "seed", int, "for reproducible sampling"),
)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling (defaults: the model's general.sampling.* or the Balanced preset)")
    group.add_argument("--preset", choices=sorted(PRESETS), help="start from one of the tutorial presets")
    for flag, dest, kind, help_text in _SAMPLING_FLAGS:
        group.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")


def add_kv_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kv-cache", choices=KINDS, default=None,
                        help=f"KV cache type: fp16, or int8 with a scale per 32 values (default: {DEFAULT_KIND})")


def sampling_params(args: argparse.Namespace, model_default: SamplingParams) -> SamplingParams:
    """The model's defaults, then the preset, then single flags; raises ValueError when invalid."""
    params = PRESETS[args.preset] if args.preset else model_default
    changes = {dest: getattr(args, dest) for _, dest, _, _ in _SAMPLING_FLAGS if getattr(args, dest) is not None}
    params = params.with_changes(**changes)
    params.validate()
    return params

"""A repository's file list on the hub, and which file is a ternary model's GGUF.

The Ternary-Bonsai repositories are known by name, not their files: the Q2_0 GGUF is picked from
what the hub lists (PrismML's own 128-weight layout before a "g64" conversion for mainline llama.cpp).
"""

from __future__ import annotations

from collections.abc import Iterable

import huggingface_hub
from huggingface_hub import constants


def list_files(repo: str) -> dict[str, int]:
    """{path: bytes} of every file in the repository (one listing request; huggingface_hub's errors pass)."""
    api = huggingface_hub.HfApi(endpoint=constants.ENDPOINT)  # read now: tests and HF_ENDPOINT move it
    tree = api.list_repo_tree(repo, recursive=True)
    return {entry.path: entry.size for entry in tree if isinstance(entry, huggingface_hub.hf_api.RepoFile)}


def is_ternary_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf") and "q2_0" in name.lower()


def pick_ternary_gguf(names: Iterable[str]) -> str | None:
    """The repository's Q2_0 GGUF: PrismML's layout first, then a g64 one; None if there is none."""
    candidates = [name for name in names if is_ternary_gguf(name)]
    return min(candidates, key=lambda name: ("g64" in name.lower(), len(name), name), default=None)

"""A repository's file list on the hub, and which file is a ternary model's GGUF.

The Ternary-Bonsai repositories are known by name, not their files: the Q2_0 GGUF is picked from
what the hub lists (PrismML's own 128-weight layout before a "g64" conversion for mainline llama.cpp).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from huggingface_hub import constants, get_session, hf_raise_for_status
from huggingface_hub.utils import build_hf_headers


def list_files(repo: str) -> dict[str, int]:
    """{path: bytes} of the files in the repository: one request to the hub's tree API, through
    huggingface_hub's session. (HfApi.list_repo_tree would retry for ~20 s with warnings on stderr,
    which a TUI cannot show; a model repo's few files fit in the API's first page.)"""
    url = f"{constants.ENDPOINT}/api/models/{quote(repo)}/tree/main"
    response = get_session().get(
        url, params={"recursive": "true"}, headers=build_hf_headers(), timeout=constants.HF_HUB_ETAG_TIMEOUT
    )
    hf_raise_for_status(response)
    return {entry["path"]: int(entry["size"]) for entry in response.json() if entry.get("type") == "file"}


def is_ternary_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf") and "q2_0" in name.lower()


def pick_ternary_gguf(names: Iterable[str]) -> str | None:
    """The repository's Q2_0 GGUF: PrismML's layout first, then a g64 one; None if there is none."""
    candidates = [name for name in names if is_ternary_gguf(name)]
    return min(candidates, key=lambda name: ("g64" in name.lower(), len(name), name), default=None)

"""The models on offer (the Bonsai variants), which of them the Hugging Face cache holds (never
touching the network), which one the user chose last, and a ternary model's file name.

Lookups go through `huggingface_hub`'s public API and its standard cache, so HF_HOME, HF_HUB_CACHE,
HF_HUB_OFFLINE and a file another Hugging Face tool already downloaded behave as everywhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants, errors

from bonsai_tui.hub.errors import NotCachedOffline, NotOnHub, call_hub
from bonsai_tui.hub.repo_files import is_ternary_gguf, list_files, pick_ternary_gguf
from bonsai_tui.settings import config_dir


@dataclass(frozen=True)
class ModelChoice:
    repo: str
    filename: str
    label: str = ""
    approx_bytes: int = 0  # shown before the hub has told us the exact size

    @property
    def name(self) -> str:
        return self.label or f"{self.repo}/{self.filename}"


BONSAI_MODELS = (
    ModelChoice("prism-ml/Bonsai-1.7B-gguf", "Bonsai-1.7B-Q1_0.gguf", "Bonsai 1.7B", 248_302_272),
    ModelChoice("prism-ml/Bonsai-4B-gguf", "Bonsai-4B-Q1_0.gguf", "Bonsai 4B", 572_270_624),
    ModelChoice("prism-ml/Bonsai-8B-gguf", "Bonsai-8B-Q1_0.gguf", "Bonsai 8B", 1_158_654_496),
)
DEFAULT_MODEL = BONSAI_MODELS[0]
# Ternary-Bonsai (Q2_0): no file name here (""): resolve() reads the repo's Q2_0 GGUF from the hub
TERNARY_MODELS = (
    ModelChoice("prism-ml/Ternary-Bonsai-1.7B-gguf", "", "Ternary 1.7B", 457_000_000),
    ModelChoice("prism-ml/Ternary-Bonsai-4B-gguf", "", "Ternary 4B", 1_070_000_000),
    ModelChoice("prism-ml/Ternary-Bonsai-8B-gguf", "", "Ternary 8B", 2_180_000_000),
)


# ---- the cache, without network -----------------------------------------------------------


def cached_path(choice: ModelChoice) -> Path | None:
    """The complete file in the Hugging Face cache, or None. Never touches the network."""
    if not choice.filename:  # a ternary model: its Q2_0 GGUF, whatever the file is called
        files = {name: path for repo, name, path, _ in cached_models() if repo == choice.repo}
        name = pick_ternary_gguf(files)
        return files[name] if name else None
    found = huggingface_hub.try_to_load_from_cache(choice.repo, choice.filename)
    return Path(found) if isinstance(found, str) else None


def _scan_cache() -> huggingface_hub.HFCacheInfo | None:
    # scan_cache_dir's default is the cache path as it was when its module was first imported;
    # the explicit one follows constants.HF_HUB_CACHE like the rest of huggingface_hub
    try:
        return huggingface_hub.scan_cache_dir(constants.HF_HUB_CACHE)
    except errors.CacheNotFound:
        return None


def cached_models() -> list[tuple[str, str, Path, int]]:
    """(repo, filename, path, bytes) of every GGUF file in the Hugging Face cache."""
    info = _scan_cache()
    if info is None:
        return []
    found = []
    for repo in info.repos:
        for revision in repo.revisions:
            for file in revision.files:
                if file.file_name.endswith(".gguf"):
                    found.append((repo.repo_id, file.file_name, Path(file.file_path), file.size_on_disk))
    return sorted(found)


def delete_cached(repo: str) -> int:
    """Remove a repo's files from the cache; returns bytes freed."""
    info = _scan_cache()
    if info is None:
        return 0
    hashes = [rev.commit_hash for r in info.repos if r.repo_id == repo for rev in r.revisions]
    if not hashes:
        return 0
    strategy = info.delete_revisions(*hashes)
    strategy.execute()
    return strategy.expected_freed_size


# ---- remembered choice --------------------------------------------------------------------


def _choice_file() -> Path:
    return config_dir() / "model.json"


def known_choice(repo: str, filename: str) -> ModelChoice:
    """The Bonsai variant with this repo and file (labels and sizes), or a plain choice."""
    known = {(m.repo, m.filename): m for m in BONSAI_MODELS}
    ternary = {m.repo: m for m in TERNARY_MODELS}
    if repo in ternary and (not filename or is_ternary_gguf(filename)):
        return replace(ternary[repo], filename=filename)
    return known.get((repo, filename), ModelChoice(repo, filename))


def resolve(choice: ModelChoice) -> ModelChoice:
    """The choice with its file name: a ternary model's Q2_0 GGUF, from the cache, else from the
    hub's file list (one request), with the hub's size."""
    if choice.filename:
        return choice
    files = {name: size for repo, name, _, size in cached_models() if repo == choice.repo}
    if pick_ternary_gguf(files) is None:
        if constants.HF_HUB_OFFLINE:
            raise NotCachedOffline(f"{choice.name} is not downloaded and HF_HUB_OFFLINE is set")
        files = call_hub(lambda: list_files(choice.repo), choice)
    name = pick_ternary_gguf(files)
    if name is None:
        raise NotOnHub(f"{choice.repo} has no Q2_0 GGUF file")
    return replace(choice, filename=name, approx_bytes=files[name])


def remembered_choice() -> ModelChoice:
    try:
        data = json.loads(_choice_file().read_text(encoding="utf-8"))
        return known_choice(data["repo"], data["filename"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_MODEL


def remember_choice(choice: ModelChoice) -> None:
    data = {"repo": choice.repo, "filename": choice.filename}
    try:
        _choice_file().write_text(json.dumps(data), encoding="utf-8")
    except OSError:
        pass  # not remembering is not worth an error

"""Models from the Hugging Face hub: known Bonsai variants, cached lookups, downloads with progress,
resume and sha256 verification, and errors a user can act on.

catalog.py (the models on offer, what the cache holds, the remembered choice) ->
repo_files.py (a repository's file list, a ternary model's GGUF) -> resumable_download.py (the
bytes: progress, resume, verification, the standard cache layout); errors.py turns every failure
into a one-line HubError. The app and the commands use the names below (`hub.download(...)`).
"""

from bonsai_tui.hub.catalog import (
    BONSAI_MODELS,
    DEFAULT_MODEL,
    TERNARY_MODELS,
    ModelChoice,
    cached_models,
    cached_path,
    delete_cached,
    known_choice,
    remember_choice,
    remembered_choice,
    resolve,
)
from bonsai_tui.hub.errors import (
    AuthRequired,
    ChecksumMismatch,
    DiskFull,
    DownloadCancelled,
    HubError,
    HubUnreachable,
    NotCachedOffline,
    NotOnHub,
)
from bonsai_tui.hub.resumable_download import Progress, download

__all__ = [
    "BONSAI_MODELS",
    "DEFAULT_MODEL",
    "TERNARY_MODELS",
    "AuthRequired",
    "ChecksumMismatch",
    "DiskFull",
    "DownloadCancelled",
    "HubError",
    "HubUnreachable",
    "ModelChoice",
    "NotCachedOffline",
    "NotOnHub",
    "Progress",
    "cached_models",
    "cached_path",
    "delete_cached",
    "download",
    "known_choice",
    "remember_choice",
    "remembered_choice",
    "resolve",
]

"""Models from the Hugging Face hub: known Bonsai variants, cached lookups, downloads with progress,
resume and sha256 verification, and errors a user can act on.

Lookups go through `huggingface_hub`'s public API and its standard cache, so HF_HOME, HF_HUB_CACHE,
HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE behave as in every other Hugging Face tool, and a file
another tool already downloaded is reused. The transfer itself is ours (a few lines on
huggingface_hub's HTTP session): an interrupted download leaves a `<etag>.incomplete` blob in the
cache, which the next attempt resumes with a ranged request.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TypeVar

import httpx2
import huggingface_hub
from filelock import FileLock
from huggingface_hub import constants, errors, get_session, hf_raise_for_status
from huggingface_hub.utils import build_hf_headers

from bonsai_tui.hub_files import is_ternary_gguf, list_files, pick_ternary_gguf
from bonsai_tui.settings import config_dir

CHUNK_BYTES = 1 << 20  # per write and progress update: the bar moves smoothly, a stop loses little
RETRIES = 5  # a dropped connection resumes where it stopped this many times running without new bytes
RETRY_PAUSE_S = 1.0


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


class HubError(Exception):
    """A download problem, as one line that says what to do. The subclasses say which kind."""


class HubUnreachable(HubError):
    """No network, or the hub is down."""


class NotOnHub(HubError):
    """The repository or the file does not exist (or is private)."""


class AuthRequired(HubError):
    """The repository is gated or private: a token (HF_TOKEN) is needed."""


class NotCachedOffline(HubError):
    """HF_HUB_OFFLINE is set and the file is not in the cache."""


class ChecksumMismatch(HubError):
    """The downloaded bytes do not match the hub's sha256, even after fetching them again."""


class DiskFull(HubError):
    def __init__(self, needed: int, free: int, where: Path) -> None:
        self.needed, self.free, self.where = needed, free, where
        super().__init__(
            f"not enough disk space in {where}: the model needs {needed / 1e6:,.0f} MB more, "
            f"{free / 1e6:,.0f} MB free (free some space and retry: the download resumes)"
        )


class DownloadCancelled(HubError):
    def __init__(self) -> None:
        super().__init__("download cancelled; it resumes where it stopped next time")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    bytes_per_s: float

    @property
    def eta_s(self) -> float | None:
        if self.bytes_per_s <= 0 or self.total <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.bytes_per_s)


ProgressCallback = Callable[[Progress], None]
T = TypeVar("T")


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
        files = _call(lambda: list_files(choice.repo), choice)
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


# ---- download -----------------------------------------------------------------------------


class _Reporter:
    """Turns byte counts into Progress (with the speed of this transfer) and honours `cancel`."""

    def __init__(self, report: ProgressCallback, cancel: threading.Event, done: int, total: int) -> None:
        self.report, self.cancel, self.total = report, cancel, total
        self.restart(done)

    def restart(self, done: int) -> None:
        self.done, self.start_done, self.started = done, done, time.monotonic()
        self.report(Progress(done, self.total, 0.0))

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise DownloadCancelled()

    def add(self, n: int) -> None:
        self.done += n
        elapsed = time.monotonic() - self.started
        speed = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        self.report(Progress(self.done, self.total, speed))


@dataclass(frozen=True)
class RemoteFile:
    url: str  # where the bytes are (the hub may redirect to a CDN)
    commit: str
    etag: str
    size: int

    @property
    def sha256(self) -> str | None:
        return self.etag if re.fullmatch(r"[0-9a-f]{64}", self.etag) else None  # LFS files: etag = sha256


def remote_file(choice: ModelChoice) -> RemoteFile:
    """The hub's metadata for the file: one HEAD request."""
    url = huggingface_hub.hf_hub_url(choice.repo, choice.filename)
    meta = _call(lambda: huggingface_hub.get_hf_file_metadata(url), choice)
    if not meta.commit_hash or not meta.etag or meta.size is None:
        raise HubError(f"the hub at {constants.ENDPOINT} did not describe {choice.filename} (not a Hugging Face hub?)")
    return RemoteFile(meta.location or url, meta.commit_hash, meta.etag, meta.size)


def download(
    choice: ModelChoice,
    progress: ProgressCallback = lambda _: None,
    cancel: threading.Event | None = None,
) -> Path:
    """The model file, from the cache if it is there (no network), else fetched and verified.

    Safe to call from a worker thread: `progress` is called on that thread, and setting `cancel`
    stops the transfer within one chunk (raising DownloadCancelled). huggingface_hub deletes its
    partial files on failure, so a stopped or killed download would start over; we keep our own
    `<etag>.incomplete` blob and resume it with a ranged request, then file the verified blob in the
    standard cache layout (blobs/, snapshots/<commit>/, refs/main).
    """
    cancel = cancel or threading.Event()
    choice = resolve(choice)
    found = cached_path(choice)
    if found:
        return found
    if constants.HF_HUB_OFFLINE:
        raise NotCachedOffline(f"{choice.filename} is not downloaded and HF_HUB_OFFLINE is set")
    remote = remote_file(choice)
    folder_name = f"models--{choice.repo.replace('/', '--')}"
    folder = Path(constants.HF_HUB_CACHE) / folder_name
    blob = folder / "blobs" / remote.etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    # huggingface_hub's own lock file for this blob, so another HF tool fetching it waits for us
    lock = Path(constants.HF_HUB_CACHE) / ".locks" / folder_name / f"{remote.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        for _attempt in range(2):
            if not blob.exists():
                _fetch_blob(remote, blob, choice, progress, cancel)
            if _matches(blob, remote, cancel):
                break
            blob.unlink()  # corrupt: never load it; fetch again once
        else:
            raise ChecksumMismatch(
                f"{choice.filename} failed its sha256 check twice: the server sends a bad copy (nothing was kept)"
            )
    path = _link_snapshot(folder, remote, choice.filename, blob)
    remember_choice(choice)
    return path


def _matches(blob: Path, remote: RemoteFile, cancel: threading.Event) -> bool:
    if blob.stat().st_size != remote.size:
        return False
    return remote.sha256 is None or sha256_of(blob, cancel) == remote.sha256


def _fetch_blob(
    remote: RemoteFile, blob: Path, choice: ModelChoice, progress: ProgressCallback, cancel: threading.Event
) -> None:
    partial = blob.with_name(blob.name + ".incomplete")
    done = partial.stat().st_size if partial.exists() else 0
    if done > remote.size:  # not a prefix of this file: start over
        partial.unlink()
        done = 0
    _check_disk_space(remote.size - done, blob.parent)
    try:
        with open(partial, "ab") as out:
            _call(lambda: _transfer(remote, out, _Reporter(progress, cancel, done, remote.size)), choice)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        # the partial file stays: once there is room, the next attempt resumes from it
        raise DiskFull(remote.size - partial.stat().st_size, shutil.disk_usage(blob.parent).free, blob.parent) from None
    os.replace(partial, blob)


def _transfer(remote: RemoteFile, out: BinaryIO, reporter: _Reporter) -> None:
    """Append the file's bytes from `reporter.done` on to `out`, resuming after a dropped
    connection (RETRIES times in a row without new bytes) and starting over if the server ignores
    the range. Raises OSError if the server sends a different size than the hub announced."""
    failures = 0
    while reporter.done < remote.size:
        before = reporter.done
        try:
            _get(remote, out, reporter)
        except (httpx2.ConnectError, httpx2.TimeoutException, httpx2.RemoteProtocolError):
            failures = 0 if reporter.done > before else failures + 1
            if failures > RETRIES:
                raise
            if reporter.cancel.wait(RETRY_PAUSE_S):
                raise DownloadCancelled() from None
            continue
        if reporter.done != remote.size:
            raise OSError(f"the server sent {reporter.done:,} bytes of {remote.size:,}")


def _get(remote: RemoteFile, out: BinaryIO, reporter: _Reporter) -> None:
    """One GET from byte `reporter.done` on (a ranged request when resuming)."""
    headers = build_hf_headers()
    if reporter.done:
        headers["Range"] = f"bytes={reporter.done}-"
    with get_session().stream("GET", remote.url, headers=headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
        hf_raise_for_status(response)
        if reporter.done and response.status_code == 200:  # the range was ignored: the whole file comes
            out.seek(0)
            out.truncate()
            reporter.restart(0)
        for chunk in response.iter_bytes(CHUNK_BYTES):
            reporter.check_cancel()  # before writing: a stopped download keeps only what it had reported
            out.write(chunk)
            reporter.add(len(chunk))
            if reporter.done > remote.size:
                raise OSError(f"the server sent more than the {remote.size:,} bytes the hub announced")


def _link_snapshot(folder: Path, remote: RemoteFile, filename: str, blob: Path) -> Path:
    pointer = folder / "snapshots" / remote.commit / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if not pointer.exists():
        try:
            pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        except OSError:  # no symlinks on this filesystem: a copy, as huggingface_hub does
            shutil.copyfile(blob, pointer)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(remote.commit)
    return pointer


def sha256_of(path: Path, cancel: threading.Event | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled()
            digest.update(chunk)
    return digest.hexdigest()


def _check_disk_space(needed: int, where: Path) -> None:
    free = shutil.disk_usage(where).free
    if needed > free:
        raise DiskFull(needed, free, where)


def _call(fn: Callable[[], T], choice: ModelChoice) -> T:
    """Run a huggingface_hub call, turning its exceptions into one-line HubErrors."""
    try:
        return fn()
    except HubError:  # ours (a cancel)
        raise
    except errors.GatedRepoError:
        raise AuthRequired(f"{choice.repo} needs you to accept its terms and log in (set HF_TOKEN)") from None
    except errors.RepositoryNotFoundError:
        raise NotOnHub(f"no repository {choice.repo} on the hub (or it is private: set HF_TOKEN)") from None
    except errors.RemoteEntryNotFoundError:
        raise NotOnHub(f"{choice.repo} has no file {choice.filename}") from None
    except errors.HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise AuthRequired(f"the hub refused access to {choice.repo} (HTTP {status}): set HF_TOKEN") from None
        raise HubUnreachable(f"the hub answered HTTP {status or '?'} for {choice.filename}; try again later") from None
    except errors.OfflineModeIsEnabled:
        raise NotCachedOffline(f"{choice.filename} is not downloaded and HF_HUB_OFFLINE is set") from None
    except httpx2.TransportError as error:  # refused, DNS, timeout, dropped mid-transfer (after retries)
        reason = f": {error}" if str(error) else ""
        raise HubUnreachable(f"cannot reach the hub at {constants.ENDPOINT} (no network?){reason}") from None
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise  # the caller knows how much is still needed, and where
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HubError(f"downloading {choice.filename} failed: {first_line}") from None

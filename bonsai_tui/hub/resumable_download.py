"""A model file fetched into the Hugging Face cache with progress, resume and sha256 verification.

The transfer is ours (a few lines on huggingface_hub's HTTP session): huggingface_hub deletes its
partial files on failure, while an interrupted download here leaves a `<etag>.incomplete` blob in
the cache, which the next attempt resumes with a ranged request. The verified blob is filed in the
standard cache layout, so every other Hugging Face tool finds it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx2
import huggingface_hub
from filelock import FileLock
from huggingface_hub import constants, get_session, hf_raise_for_status
from huggingface_hub.utils import build_hf_headers

from bonsai_tui.hub.catalog import ModelChoice, cached_path, remember_choice, resolve
from bonsai_tui.hub.errors import ChecksumMismatch, DiskFull, DownloadCancelled, HubError, NotCachedOffline, call_hub

CHUNK_BYTES = 1 << 20  # per write and progress update: the bar moves smoothly, a stop loses little
RETRIES = 5  # a dropped connection resumes where it stopped this many times running without new bytes
RETRY_PAUSE_S = 1.0


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
    meta = call_hub(lambda: huggingface_hub.get_hf_file_metadata(url), choice)
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
            call_hub(lambda: _transfer(remote, out, _Reporter(progress, cancel, done, remote.size)), choice)
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

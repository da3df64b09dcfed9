"""What can go wrong with the hub, each as one line that says what to do, and the translation of
huggingface_hub's and the network's exceptions into them."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx2
from huggingface_hub import constants, errors

if TYPE_CHECKING:
    from bonsai_tui.hub.catalog import ModelChoice

T = TypeVar("T")


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


def call_hub(fn: Callable[[], T], choice: ModelChoice) -> T:
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

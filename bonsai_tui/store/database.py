"""The history's SQLite file, safe against crashes and twins.

Every write is its own short transaction, committed before the call returns, so a crash or kill -9
loses at most what was never handed to the store (the reply still streaming). WAL mode with
synchronous=FULL keeps committed turns through a power cut too, and lets two app instances read and
write at once (SQLite serialises the writers; `busy_timeout` makes one wait for the other).

A damaged file is moved aside (never deleted, never silently replaced) and reported as a
StoreError; a database locked for longer than the timeout is reported the same way.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from bonsai_tui.settings import data_dir
from bonsai_tui.store.schema import MIGRATIONS, SCHEMA_VERSION, SEARCH_INDEX

HISTORY_FILE = "history.sqlite3"
_Database = TypeVar("_Database", bound="HistoryDatabase")


class StoreError(Exception):
    """A one-line, user-facing reason the history could not be read or written."""


def default_path() -> Path:
    return data_dir() / HISTORY_FILE


class HistoryDatabase:
    """The open history file: checked, migrated to SCHEMA_VERSION, with its full-text index when
    this SQLite has FTS5 (`full_text_search`). Thread-safe: one connection behind a lock.

    Raises StoreError (one line) when the file is damaged (after moving it aside, so opening it
    again starts a new, empty history), locked too long by another program, or unwritable.
    """

    def __init__(self, path: Path | str | None = None, busy_timeout: float = 5.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._connection = self._open()
        self.full_text_search = self._ensure_search_index()

    # ---- opening ------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the history {self.path}: {error}") from error
        try:
            self._configure(connection)
            self._check_integrity(connection)
            self._migrate(connection)
        except BaseException as error:
            connection.close()
            if isinstance(error, sqlite3.OperationalError):
                raise self._translated(error) from error
            if isinstance(error, sqlite3.DatabaseError):  # not a database, or a malformed one
                raise self._damaged(str(error)) from error
            raise
        return connection

    def _configure(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")

    def _check_integrity(self, connection: sqlite3.Connection) -> None:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(problems[0])

    def _migrate(self, connection: sqlite3.Connection) -> None:
        # the version is read inside the write transaction, so two instances opening an old file
        # at once migrate it once
        with self._transaction(connection):
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the history {self.path} was written by a newer bonsai-tui (schema {version}); "
                    "please upgrade bonsai-tui"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _ensure_search_index(self) -> bool:
        with self._writing() as connection:
            if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'message_search'").fetchone():
                return True
            try:
                connection.execute("SAVEPOINT search_index")
                for statement in SEARCH_INDEX:
                    connection.execute(statement)
                connection.execute("RELEASE search_index")
            except sqlite3.OperationalError as error:
                if "fts5" not in str(error):
                    raise
                connection.execute("ROLLBACK TO search_index")
                connection.execute("RELEASE search_index")
                return False
        return True

    def _damaged(self, reason: str) -> StoreError:
        backup = self._backup_path()
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.rename(f"{backup}{suffix}")
        except OSError as error:
            return StoreError(f"the history {self.path} is damaged ({reason}) and could not be moved aside: {error}")
        return StoreError(
            f"the history {self.path} was damaged ({reason}); it was moved to {backup.name} "
            "and a new, empty history starts"
        )

    def _backup_path(self) -> Path:
        """history.sqlite3.corrupt-20250102-150405 (with -1, -2, ... if that name is taken)."""
        name = f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        candidates = (self.path.with_name(name if n == 0 else f"{name}-{n}") for n in range(1000))
        return next(path for path in candidates if not path.exists())

    def _translated(self, error: sqlite3.Error) -> StoreError:
        if "locked" in str(error) or "busy" in str(error):
            return StoreError(
                f"the history {self.path} is locked by another program (waited {self.busy_timeout:g} s); try again"
            )
        if isinstance(error, sqlite3.OperationalError):
            return StoreError(f"cannot use the history {self.path}: {error}")
        return StoreError(f"the history {self.path} is damaged ({error}); restart bonsai-tui to move it aside")

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self: _Database) -> _Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- transactions -------------------------------------------------------------------------

    @staticmethod
    @contextmanager
    def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        connection.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors_translated(), self._transaction(self._connection) as connection:
            yield connection

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors_translated():
            yield self._connection

    @contextmanager
    def _errors_translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise self._translated(error) from error

    def writing(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the shared connection, for modules that keep their own tables
        here (documents/index.py); keep it short, the chat's saves wait for it."""
        return self._writing()

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._reading()

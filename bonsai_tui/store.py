"""The conversation history: one SQLite file in the user data dir, safe against crashes and twins.

Every write is its own short transaction, committed before the call returns, so a crash or kill -9
loses at most what was never handed to the store (the reply still streaming). WAL mode with
synchronous=FULL keeps committed turns through a power cut too, and lets two app instances read and
write at once (SQLite serialises the writers; `busy_timeout` makes one wait for the other).

A damaged file is moved aside (never deleted, never silently replaced) and reported as a
StoreError; a database locked for longer than the timeout is reported the same way.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonsai_tui.settings import data_dir

HISTORY_FILE = "history.sqlite3"
TITLE_LENGTH = 60

# A reply's status: how it ended. User and system messages are always complete.
COMPLETE = "complete"
STOPPED = "stopped"  # the user stopped it; the partial text is kept
_STATUS_BY_STOP_REASON = {"eos": COMPLETE, "cancelled": STOPPED}  # other reasons are kept as they are
_STOP_REASON_BY_STATUS = {status: reason for reason, status in _STATUS_BY_STOP_REASON.items()}

# MIGRATIONS[n] takes a database from schema version n to n + 1 (PRAGMA user_version).
# Append new steps; never edit a released one.
MIGRATIONS: list[list[str]] = [
    [  # 1: conversations and their messages
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            updated REAL NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            system_prompt TEXT NOT NULL DEFAULT '',
            params_json TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created REAL NOT NULL,
            UNIQUE (conversation_id, position)
        )""",
        "CREATE INDEX conversations_by_update ON conversations(updated DESC)",
    ],
    [  # 2: the sampling preset, and how each reply ended with its token counts and speed
        "ALTER TABLE conversations ADD COLUMN preset TEXT NOT NULL DEFAULT ''",
        f"ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT '{COMPLETE}'",
        "ALTER TABLE messages ADD COLUMN prompt_tokens INTEGER",
        "ALTER TABLE messages ADD COLUMN generated_tokens INTEGER",
        "ALTER TABLE messages ADD COLUMN stats_json TEXT",
    ],
    [  # 3: attached documents (bonsai_tui/documents/index.py): files, their passages, which
        # conversation attached what, and the passages each question was given
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            skipped TEXT,
            indexed REAL NOT NULL
        )""",
        """CREATE TABLE passages (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            heading TEXT NOT NULL,
            text TEXT NOT NULL
        )""",
        "CREATE INDEX passages_by_document ON passages(document_id)",
        """CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            added REAL NOT NULL,
            UNIQUE (conversation_id, path)
        )""",
        """CREATE TABLE attachment_documents (
            attachment_id INTEGER NOT NULL REFERENCES attachments(id) ON DELETE CASCADE,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            PRIMARY KEY (attachment_id, document_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE message_sources (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL,
            path TEXT NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            heading TEXT NOT NULL,
            score REAL NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (message_id, rank)
        )""",
    ],
    [  # 4: the documents' context block a question was sent with (NULL: none)
        "ALTER TABLE messages ADD COLUMN context TEXT",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

# The full-text index is derived data, not schema: it is built (and back-filled) whenever the
# SQLite at hand has FTS5, and search falls back to LIKE when it has not.
SEARCH_INDEX = [
    "CREATE VIRTUAL TABLE message_search USING fts5(content, content='messages', content_rowid='id')",
    "CREATE VIRTUAL TABLE title_search USING fts5(title, content='conversations', content_rowid='id')",
    """CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
        INSERT INTO message_search(rowid, content) VALUES (new.id, new.content); END""",
    """CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO message_search(message_search, rowid, content) VALUES ('delete', old.id, old.content); END""",
    """CREATE TRIGGER message_search_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO message_search(message_search, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO message_search(rowid, content) VALUES (new.id, new.content); END""",
    """CREATE TRIGGER title_search_insert AFTER INSERT ON conversations BEGIN
        INSERT INTO title_search(rowid, title) VALUES (new.id, new.title); END""",
    """CREATE TRIGGER title_search_delete AFTER DELETE ON conversations BEGIN
        INSERT INTO title_search(title_search, rowid, title) VALUES ('delete', old.id, old.title); END""",
    """CREATE TRIGGER title_search_update AFTER UPDATE OF title ON conversations BEGIN
        INSERT INTO title_search(title_search, rowid, title) VALUES ('delete', old.id, old.title);
        INSERT INTO title_search(rowid, title) VALUES (new.id, new.title); END""",
    "INSERT INTO message_search(message_search) VALUES ('rebuild')",
    "INSERT INTO title_search(title_search) VALUES ('rebuild')",
]

_SUMMARY_SELECT = """
    SELECT c.id, c.title, c.created, c.updated, c.model,
           (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)
    FROM conversations c
"""
_NEWEST_FIRST = " ORDER BY c.updated DESC, c.id DESC"


class StoreError(Exception):
    """A one-line, user-facing reason the history could not be read or written."""


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the history list."""

    id: int
    title: str
    created: float  # Unix time
    updated: float
    model: str
    message_count: int


@dataclass(frozen=True)
class StoredMessage:
    id: int
    position: int  # 0, 1, 2, ... within its conversation
    role: str  # "user" | "assistant" | "system"
    content: str
    status: str  # COMPLETE, STOPPED, or a stop reason such as "max_tokens" / "context_full"
    prompt_tokens: int | None
    generated_tokens: int | None
    stats: dict[str, Any] | None  # the reply's generation stats, as given to add_message
    created: float
    context: str | None = None  # a question's documents block, as the model was sent it
    sources: tuple[dict[str, Any], ...] = ()  # the passages in it: {path, start_line, end_line, heading, score, text}

    @property
    def stop_reason(self) -> str | None:
        """The engine's StopReason value for a reply with stats, else None."""
        if self.stats is None:
            return None
        return _STOP_REASON_BY_STATUS.get(self.status, self.status)

    def as_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Conversation:
    """A whole conversation: what `load_conversation` returns and `export` writes."""

    id: int
    title: str
    created: float
    updated: float
    model: str
    system_prompt: str
    params: dict[str, Any]  # sampling parameters (and max_tokens), as given to set_params
    preset: str
    messages: list[StoredMessage]


def reply_status(stop_reason: str) -> str:
    """The status stored for a reply that ended with the engine's `stop_reason` value."""
    return _STATUS_BY_STOP_REASON.get(stop_reason, stop_reason)


def title_from(text: str) -> str:
    """A conversation title from its first user message: the first line, shortened."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


def default_path() -> Path:
    return data_dir() / HISTORY_FILE


def search_terms(text: str) -> list[str]:
    """Words as FTS5's default tokenizer sees them, so FTS and LIKE search agree."""
    return re.findall(r"\w+", text)


class Store:
    """The history database. Thread-safe; every method commits before it returns.

    Raises StoreError (one line) when the file is damaged (after moving it aside, so constructing
    a Store again starts a new, empty history), locked too long by another program, or unwritable.
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

    def __enter__(self) -> Store:
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

    # ---- conversations ------------------------------------------------------------------------

    def create_conversation(
        self,
        title: str = "",
        *,
        model: str = "",
        system_prompt: str = "",
        params: Mapping[str, Any] | None = None,
        preset: str = "",
        messages: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """A new conversation (with `messages`, dicts as add_message takes, all in one commit).

        An empty title is filled from the first user message when it arrives."""
        now = time.time()
        with self._writing() as connection:
            cursor = connection.execute(
                "INSERT INTO conversations (title, created, updated, model, system_prompt, params_json, preset)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (title, now, now, model, system_prompt, json.dumps(dict(params or {})), preset),
            )
            conversation_id = int(cursor.lastrowid)
            for message in messages:
                self._insert_message(connection, conversation_id, **message)
        return conversation_id

    def rename(self, conversation_id: int, title: str) -> None:
        with self._writing() as connection:
            self._update_conversation(connection, conversation_id, title=title)

    def set_params(
        self,
        conversation_id: int,
        *,
        system_prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        preset: str | None = None,
        model: str | None = None,
    ) -> None:
        """Change what the next replies are generated with; None leaves a field as it is."""
        changes = {"system_prompt": system_prompt, "preset": preset, "model": model}
        if params is not None:
            changes["params_json"] = json.dumps(dict(params))
        with self._writing() as connection:
            self._update_conversation(
                connection, conversation_id, **{k: v for k, v in changes.items() if v is not None}
            )

    def delete(self, conversation_id: int) -> None:
        with self._writing() as connection:
            if connection.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
                raise StoreError(f"no conversation {conversation_id} in the history")

    def list_conversations(self, limit: int | None = None) -> list[ConversationSummary]:
        """Newest (most recently updated) first."""
        with self._reading() as connection:
            rows = connection.execute(_SUMMARY_SELECT + _NEWEST_FIRST + " LIMIT ?", (limit or -1,))
            return [ConversationSummary(*row) for row in rows]

    def load_conversation(self, conversation_id: int) -> Conversation:
        with self._reading() as connection:
            row = connection.execute(
                "SELECT id, title, created, updated, model, system_prompt, params_json, preset"
                " FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchone()
            if row is None:
                raise StoreError(f"no conversation {conversation_id} in the history")
            rows = connection.execute(
                "SELECT id, position, role, content, status, prompt_tokens, generated_tokens, stats_json, created, context"
                " FROM messages WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
            sources = self._sources(connection, conversation_id)
        messages = [
            StoredMessage(
                *fields[:7], json.loads(fields[7]) if fields[7] else None, fields[8], fields[9], sources.get(fields[0], ())
            )
            for fields in rows
        ]
        return Conversation(*row[:6], json.loads(row[6]), row[7], messages)

    def search(self, text: str, limit: int = 200) -> list[ConversationSummary]:
        """Conversations whose title or one message holds every word of `text` (word prefixes
        match: "pyth" finds "Python"), newest first. Blank text lists everything."""
        terms = search_terms(text)
        if not terms:
            return self.list_conversations(limit) if not text.strip() else []
        if self.full_text_search:
            query = " ".join('"' + term.replace('"', '""') + '"*' for term in terms)
            where = (
                " WHERE c.id IN (SELECT rowid FROM title_search WHERE title_search MATCH ?"
                " UNION SELECT m.conversation_id FROM message_search JOIN messages m ON m.id = message_search.rowid"
                " WHERE message_search MATCH ?)"
            )
            arguments: list[Any] = [query, query]
        else:
            patterns = ["%" + re.sub(r"([\\%_])", r"\\\1", term) + "%" for term in terms]
            every_word = " AND ".join(["{column} LIKE ? ESCAPE '\\'"] * len(terms))
            where = (
                f" WHERE ({every_word.format(column='c.title')}) OR EXISTS (SELECT 1 FROM messages m"
                f" WHERE m.conversation_id = c.id AND {every_word.format(column='m.content')})"
            )
            arguments = patterns * 2
        with self._reading() as connection:
            rows = connection.execute(_SUMMARY_SELECT + where + _NEWEST_FIRST + " LIMIT ?", (*arguments, limit))
            return [ConversationSummary(*row) for row in rows]

    @staticmethod
    def _sources(connection: sqlite3.Connection, conversation_id: int) -> dict[int, tuple[dict[str, Any], ...]]:
        rows = connection.execute(
            "SELECT s.message_id, s.path, s.start_line, s.end_line, s.heading, s.score, s.text FROM message_sources s"
            " JOIN messages m ON m.id = s.message_id WHERE m.conversation_id = ? ORDER BY s.message_id, s.rank",
            (conversation_id,),
        )
        by_message: dict[int, tuple[dict[str, Any], ...]] = {}
        for message_id, *fields in rows:
            source = dict(zip(("path", "start_line", "end_line", "heading", "score", "text"), fields))
            by_message[message_id] = (*by_message.get(message_id, ()), source)
        return by_message

    # ---- messages -----------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        status: str = COMPLETE,
        stats: Mapping[str, Any] | None = None,
        context: str | None = None,
        sources: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Append a message, committed before this returns; the first user message titles an
        untitled conversation. `stats` is the reply's GenerationStats as a dict (its
        prompt_tokens and generated_tokens are also kept as columns); a question asked over
        documents keeps its `context` block and the `sources` in it. Returns the message id."""
        with self._writing() as connection:
            return self._insert_message(
                connection, conversation_id, role, content, status=status, stats=stats, context=context, sources=sources
            )

    def truncate(self, conversation_id: int, keep: int) -> None:
        """Keep only the first `keep` messages (an edit or a regenerate replaces the later turns)."""
        with self._writing() as connection:
            connection.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?", (conversation_id, keep)
            )
            self._update_conversation(connection, conversation_id)

    def replace_tail(
        self,
        conversation_id: int,
        keep: int,
        messages: Sequence[Mapping[str, Any]],
        *,
        system_prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        preset: str | None = None,
    ) -> None:
        """In one transaction: keep the first `keep` messages, append `messages` (dicts as
        add_message takes), and set what the next replies are generated with (None: unchanged)."""
        changes = {"system_prompt": system_prompt, "preset": preset}
        if params is not None:
            changes["params_json"] = json.dumps(dict(params))
        with self._writing() as connection:
            connection.execute("DELETE FROM messages WHERE conversation_id = ? AND position >= ?", (conversation_id, keep))
            for message in messages:
                self._insert_message(connection, conversation_id, **message)
            self._update_conversation(connection, conversation_id, **{k: v for k, v in changes.items() if v is not None})

    def _insert_message(
        self,
        connection: sqlite3.Connection,
        conversation_id: int,
        role: str,
        content: str,
        status: str = COMPLETE,
        stats: Mapping[str, Any] | None = None,
        context: str | None = None,
        sources: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        title = connection.execute("SELECT title FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if title is None:
            raise StoreError(f"no conversation {conversation_id} in the history")
        position = connection.execute(
            "SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()[0]
        columns = {
            "conversation_id": conversation_id,
            "position": position,
            "role": role,
            "content": content,
            "status": status,
            "created": time.time(),
            "context": context,
            **(self._stats_columns(stats) if stats is not None else {}),
        }
        cursor = connection.execute(
            f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            tuple(columns.values()),
        )
        connection.executemany(
            "INSERT INTO message_sources (message_id, rank, path, start_line, end_line, heading, score, text)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (cursor.lastrowid, rank, s["path"], s["start_line"], s["end_line"], s.get("heading", ""), s["score"], s["text"])
                for rank, s in enumerate(sources)
            ],
        )
        untitled = not title[0] and role == "user"
        self._update_conversation(connection, conversation_id, **({"title": title_from(content)} if untitled else {}))
        return int(cursor.lastrowid)

    @staticmethod
    def _stats_columns(stats: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "prompt_tokens": stats.get("prompt_tokens"),
            "generated_tokens": stats.get("generated_tokens"),
            "stats_json": json.dumps(dict(stats)),
        }

    @staticmethod
    def _update_conversation(connection: sqlite3.Connection, conversation_id: int, **columns: Any) -> None:
        """Set `columns` and mark the conversation as just updated (it moves to the top of the list)."""
        columns["updated"] = time.time()
        assignments = ", ".join(f"{column} = ?" for column in columns)
        cursor = connection.execute(
            f"UPDATE conversations SET {assignments} WHERE id = ?", (*columns.values(), conversation_id)
        )
        if cursor.rowcount == 0:
            raise StoreError(f"no conversation {conversation_id} in the history")

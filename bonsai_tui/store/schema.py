"""The history's tables: the migrations that build them (PRAGMA user_version counts the steps
taken) and the full-text index over titles and messages."""

from __future__ import annotations

from bonsai_tui.store.records import COMPLETE

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

"""`Store`: the history's operations — conversations, their messages (with a reply's stats and a
question's document sources), and search (FTS5 when SQLite has it, else LIKE, same words)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bonsai_tui.store.database import HistoryDatabase, StoreError
from bonsai_tui.store.records import COMPLETE, Conversation, ConversationSummary, StoredMessage, title_from

_SUMMARY_SELECT = """
    SELECT c.id, c.title, c.created, c.updated, c.model,
           (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)
    FROM conversations c
"""
_NEWEST_FIRST = " ORDER BY c.updated DESC, c.id DESC"


def search_terms(text: str) -> list[str]:
    """Words as FTS5's default tokenizer sees them, so FTS and LIKE search agree."""
    return re.findall(r"\w+", text)


class Store(HistoryDatabase):
    """The history. Thread-safe; every method commits before it returns, and any failure is a
    one-line StoreError (see HistoryDatabase for the damaged and the locked file)."""

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

"""Attached files, their passages and an FTS5 index over them, in the history database.

A file is indexed once, whichever conversations attach it (`documents`, `passages`); a
conversation's attachments (`attachments`) list the files they cover (`attachment_documents`), so
a search is limited to what that conversation attached. Before each use a file's size and
modification time are compared with the stored ones; when they differ the file is read again and,
if its content hash changed, its passages are replaced. Files that cannot be used are kept too,
with the reason (`skipped`), so the note can be repeated without reading them again.

The FTS5 table (porter stemming over unicode61 words, BM25 ranking) is derived data: created here,
on first use, like the history's own search index. Work is written in batches of a few hundred
files, one short transaction each, so a chat turn can be saved while a big folder is indexed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bonsai_tui.documents.chunk import Passage, chunk
from bonsai_tui.documents.extract import Skipped, extract, read_bytes, content_hash
from bonsai_tui.store import Store, StoreError

SEARCH_INDEX = [
    "CREATE VIRTUAL TABLE passage_search USING fts5("
    "text, heading, content='passages', content_rowid='id', tokenize='porter unicode61')",
    """CREATE TRIGGER passage_search_insert AFTER INSERT ON passages BEGIN
        INSERT INTO passage_search(rowid, text, heading) VALUES (new.id, new.text, new.heading); END""",
    """CREATE TRIGGER passage_search_delete AFTER DELETE ON passages BEGIN
        INSERT INTO passage_search(passage_search, rowid, text, heading)
        VALUES ('delete', old.id, old.text, old.heading); END""",
    "INSERT INTO passage_search(passage_search) VALUES ('rebuild')",
]
# bm25() weights per column: a word in a heading says more about a passage than one in its text
BM25_WEIGHTS = (1.0, 2.0)
# folders that hold tools' files, not the user's documents
IGNORED_FOLDERS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache"})
BATCH_FILES = 256
BATCH_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    path: Path | None  # the file just read


@dataclass
class IndexReport:
    document_ids: list[int] = field(default_factory=list)  # every usable file, in walk order
    files: int = 0
    reindexed: int = 0  # read and split this time (new or changed)
    passages: int = 0  # passages written this time
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)
    skipped_ids: list[int] = field(default_factory=list)

    def notes(self) -> list[str]:
        return [f"skipped {path}: {reason}" for path, reason in self.skipped]


@dataclass(frozen=True)
class Attachment:
    path: Path
    files: int  # usable files under it
    skipped: int


@dataclass(frozen=True)
class Hit:
    passage_id: int
    path: Path
    start_line: int
    end_line: int
    heading: str
    text: str
    score: float  # -bm25: higher is better


class DocumentIndexError(Exception):
    """A one-line reason documents cannot be attached or searched."""


class DocumentIndex:
    """The documents of the history database at `store`. Thread-safe as the store is."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ensure_search_index()

    def _ensure_search_index(self) -> None:
        with self.store.writing() as connection:
            if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'passage_search'").fetchone():
                return
            try:
                for statement in SEARCH_INDEX:
                    connection.execute(statement)
            except sqlite3.OperationalError as error:
                if "fts5" in str(error):
                    raise DocumentIndexError("this Python's SQLite has no FTS5: documents cannot be searched") from None
                raise

    # ---- indexing ---------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[Path | str],
        progress: Callable[[Progress], None] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> IndexReport:
        """Bring the index up to date for these files and folders (recursively). Raises
        DocumentIndexError for a path that does not exist; unusable files are reported, not raised."""
        files = list(_files_under([Path(p) for p in paths]))
        report = IndexReport(files=len(files))
        known = self._known_files()
        batch: list[tuple[Path, os.stat_result, str, list[Passage] | str | None]] = []
        batch_bytes = 0
        for number, (path, stat) in enumerate(files, start=1):
            if cancelled():
                break
            row = known.get(str(path))
            if row is not None and (row[1], row[2]) == (stat.st_size, stat.st_mtime_ns):
                if row[3] is None:
                    report.document_ids.append(row[0])
                else:
                    report.skipped.append((path, row[3]))
                    report.skipped_ids.append(row[0])
            else:
                batch.append(self._read(path, stat, row))
                batch_bytes += stat.st_size
            if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                self._write(batch, report)
                batch, batch_bytes = [], 0
            if progress is not None:
                progress(Progress(number, len(files), path))
        self._write(batch, report)
        return report

    def _known_files(self) -> dict[str, tuple[int, int, int, str | None, str]]:
        with self.store.reading() as connection:
            rows = connection.execute("SELECT path, id, size, mtime_ns, skipped, content_hash FROM documents")
            return {row[0]: row[1:] for row in rows}

    @staticmethod
    def _read(path: Path, stat: os.stat_result, row: tuple | None) -> tuple[Path, os.stat_result, str, list[Passage] | str | None]:
        """(path, stat, hash, passages or the reason it was skipped) — outside any transaction."""
        try:
            data = read_bytes(path)
        except Skipped as reason:
            return path, stat, "", str(reason)
        digest = content_hash(data)
        if row is not None and row[4] == digest and row[3] is None:
            return path, stat, digest, None  # touched, not changed: keep its passages
        try:
            return path, stat, digest, chunk(extract(path, data))
        except Skipped as reason:
            return path, stat, digest, str(reason)

    def _write(self, batch: list[tuple], report: IndexReport) -> None:
        if not batch:
            return
        now = time.time()
        with self.store.writing() as connection:
            for path, stat, digest, outcome in batch:
                skipped = outcome if isinstance(outcome, str) else None
                document_id = connection.execute(
                    "INSERT INTO documents (path, size, mtime_ns, content_hash, skipped, indexed) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,"
                    " content_hash = excluded.content_hash, skipped = excluded.skipped, indexed = excluded.indexed"
                    " RETURNING id",
                    (str(path), stat.st_size, stat.st_mtime_ns, digest, skipped, now),
                ).fetchone()[0]
                if skipped is not None:
                    connection.execute("DELETE FROM passages WHERE document_id = ?", (document_id,))
                    report.skipped.append((path, skipped))
                    report.skipped_ids.append(document_id)
                    continue
                report.document_ids.append(document_id)
                if outcome is None:
                    continue
                connection.execute("DELETE FROM passages WHERE document_id = ?", (document_id,))
                connection.executemany(
                    "INSERT INTO passages (document_id, start_line, end_line, heading, text) VALUES (?, ?, ?, ?, ?)",
                    [(document_id, p.start_line, p.end_line, p.heading, p.text) for p in outcome],
                )
                report.reindexed += 1
                report.passages += len(outcome)

    # ---- attachments of a conversation ---------------------------------------------------------

    def attach(
        self,
        conversation_id: int,
        path: Path | str,
        progress: Callable[[Progress], None] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> IndexReport:
        """Attach a file or folder to the conversation (indexing what is new or changed)."""
        path = _absolute(path)
        report = self.index([path], progress, cancelled)
        if cancelled():
            return report
        with self.store.writing() as connection:
            attachment_id = connection.execute(
                "INSERT INTO attachments (conversation_id, path, added) VALUES (?, ?, ?)"
                " ON CONFLICT (conversation_id, path) DO UPDATE SET path = excluded.path RETURNING id",
                (conversation_id, str(path), time.time()),
            ).fetchone()[0]
            connection.execute("DELETE FROM attachment_documents WHERE attachment_id = ?", (attachment_id,))
            connection.executemany(
                "INSERT OR IGNORE INTO attachment_documents (attachment_id, document_id) VALUES (?, ?)",
                [(attachment_id, document_id) for document_id in report.document_ids + report.skipped_ids],
            )
        return report

    def detach(self, conversation_id: int, path: Path | str) -> None:
        with self.store.writing() as connection:
            connection.execute(
                "DELETE FROM attachments WHERE conversation_id = ? AND path = ?", (conversation_id, str(_absolute(path)))
            )

    def attachments(self, conversation_id: int) -> list[Attachment]:
        with self.store.reading() as connection:
            rows = connection.execute(
                "SELECT a.path, COUNT(d.id) FILTER (WHERE d.skipped IS NULL), COUNT(d.id) FILTER (WHERE d.skipped IS NOT NULL)"
                " FROM attachments a LEFT JOIN attachment_documents ad ON ad.attachment_id = a.id"
                " LEFT JOIN documents d ON d.id = ad.document_id"
                " WHERE a.conversation_id = ? GROUP BY a.id ORDER BY a.added, a.id",
                (conversation_id,),
            ).fetchall()
        return [Attachment(Path(path), files, skipped) for path, files, skipped in rows]

    def refresh(self, conversation_id: int, progress: Callable[[Progress], None] | None = None) -> IndexReport:
        """Re-check every attachment of the conversation (changed files re-indexed, new files in
        attached folders added, removed ones dropped). A vanished attachment is noted, not raised."""
        total = IndexReport()
        for attachment in self.attachments(conversation_id):
            if not attachment.path.exists():
                total.skipped.append((attachment.path, "no longer exists"))
                continue
            report = self.attach(conversation_id, attachment.path, progress)
            total.document_ids += report.document_ids
            total.files += report.files
            total.reindexed += report.reindexed
            total.passages += report.passages
            total.skipped += report.skipped
            total.skipped_ids += report.skipped_ids
        return total

    def conversation_documents(self, conversation_id: int) -> list[int]:
        with self.store.reading() as connection:
            rows = connection.execute(
                "SELECT DISTINCT ad.document_id FROM attachments a JOIN attachment_documents ad ON ad.attachment_id = a.id"
                " WHERE a.conversation_id = ?",
                (conversation_id,),
            )
            return [row[0] for row in rows]

    # ---- search ---------------------------------------------------------------------------------

    def search(self, fts_query: str, document_ids: Iterable[int], limit: int = 50) -> list[Hit]:
        """Passages of these documents matching an FTS5 query, best BM25 score first."""
        weights = ", ".join(str(w) for w in BM25_WEIGHTS)
        try:
            with self.store.reading() as connection:
                # ranked on ids alone first: the text of every matching passage is not read
                rows = connection.execute(
                    f"WITH best AS (SELECT p.id, bm25(passage_search, {weights}) AS rank"
                    " FROM passage_search JOIN passages p ON p.id = passage_search.rowid"
                    " WHERE passage_search MATCH ? AND p.document_id IN (SELECT value FROM json_each(?))"
                    " ORDER BY rank, p.id LIMIT ?)"
                    " SELECT p.id, d.path, p.start_line, p.end_line, p.heading, p.text, best.rank"
                    " FROM best JOIN passages p ON p.id = best.id JOIN documents d ON d.id = p.document_id"
                    " ORDER BY best.rank, p.id",
                    (fts_query, json.dumps(list(document_ids)), limit),
                ).fetchall()
        except StoreError as error:
            raise DocumentIndexError(f"cannot search the documents: {error}") from None
        return [Hit(id_, Path(path), start, end, heading, text, -rank) for id_, path, start, end, heading, text, rank in rows]

    def terms_matched(self, terms: Sequence[str], passage_ids: Sequence[int]) -> dict[int, int]:
        """How many of the (FTS5-quoted) terms each of these passages holds, as FTS5 tokenizes and
        stems them (one indexed lookup per term)."""
        counts = dict.fromkeys(passage_ids, 0)
        with self.store.reading() as connection:
            for term in terms:
                rows = connection.execute(
                    "SELECT rowid FROM passage_search WHERE passage_search MATCH ? AND rowid IN (SELECT value FROM json_each(?))",
                    (term, json.dumps(list(passage_ids))),
                )
                for (passage_id,) in rows:
                    counts[passage_id] += 1
        return counts


def _absolute(path: Path | str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def _files_under(paths: Sequence[Path]) -> Iterator[tuple[Path, os.stat_result]]:
    """Every file of these paths, folders walked in name order (hidden entries and tools' folders
    left out), each once."""
    seen: set[Path] = set()
    for given in paths:
        root = _absolute(given)
        if not root.exists():
            raise DocumentIndexError(f"{given}: no such file or folder")
        if root.is_file():
            candidates: Iterable[Path] = [root]
        else:
            candidates = _walk(root)
        for path in candidates:
            if path in seen:
                continue
            seen.add(path)
            try:
                stat = path.stat()
            except OSError:
                continue
            yield path, stat


def _walk(root: Path) -> Iterator[Path]:
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in IGNORED_FOLDERS)
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(folder) / name

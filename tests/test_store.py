"""The conversation history: SQLite store, crash safety, concurrency, search, export and import."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonsai_tui import cli
from bonsai_tui.export import ImportFormatError, from_json, to_json, to_markdown
from bonsai_tui.store import COMPLETE, SCHEMA_VERSION, STOPPED, Store, StoreError, reply_status, title_from

REPO = Path(__file__).resolve().parents[1]
PARAMS = {"temperature": 0.7, "top_k": 30, "top_p": 0.9, "min_p": 0.05, "seed": 42, "max_tokens": 300}
STATS = {"prompt_tokens": 17, "cached_tokens": 5, "generated_tokens": 9, "prefill_s": 0.2, "decode_s": 0.5, "ttft_s": 0.25}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BONSAI_TUI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    with Store() as store:
        yield store


def sample_conversation(store: Store) -> int:
    conversation_id = store.create_conversation(
        model="prism-ml/Bonsai-8B-gguf/Bonsai-8B.gguf", system_prompt="Answer in one line.", params=PARAMS, preset="Creative"
    )
    store.add_message(conversation_id, "user", "What is a bonsai?\nAnd why so small?")
    store.add_message(conversation_id, "assistant", "A small tree in a pot.", stats=STATS)
    store.add_message(conversation_id, "user", "Tell me more")
    store.add_message(conversation_id, "assistant", "Bonsai are", status=reply_status("cancelled"), stats=STATS)
    return conversation_id


# ---- round trip -------------------------------------------------------------------------------


def test_conversation_round_trip_through_a_new_connection(store: Store, home: Path) -> None:
    conversation_id = sample_conversation(store)
    with Store(home / "data" / "history.sqlite3") as reopened:
        conversation = reopened.load_conversation(conversation_id)
    assert conversation.title == "What is a bonsai?"  # titled by the first user message's first line
    assert conversation.model == "prism-ml/Bonsai-8B-gguf/Bonsai-8B.gguf"
    assert conversation.system_prompt == "Answer in one line."
    assert conversation.params == PARAMS and conversation.preset == "Creative"
    assert [(m.position, m.role, m.content, m.status) for m in conversation.messages] == [
        (0, "user", "What is a bonsai?\nAnd why so small?", COMPLETE),
        (1, "assistant", "A small tree in a pot.", COMPLETE),
        (2, "user", "Tell me more", COMPLETE),
        (3, "assistant", "Bonsai are", STOPPED),
    ]
    first_reply, stopped_reply = conversation.messages[1], conversation.messages[3]
    assert first_reply.stats == STATS and (first_reply.prompt_tokens, first_reply.generated_tokens) == (17, 9)
    assert first_reply.stop_reason == "eos" and stopped_reply.stop_reason == "cancelled"
    assert conversation.messages[0].stats is None and conversation.messages[0].stop_reason is None
    assert conversation.created <= conversation.messages[0].created <= conversation.updated


def test_params_rename_and_truncate_change_only_what_they_name(store: Store) -> None:
    conversation_id = sample_conversation(store)
    store.set_params(conversation_id, preset="Precise")
    store.rename(conversation_id, "Trees")
    store.truncate(conversation_id, keep=2)  # an edit of the second question replaces the later turns
    conversation = store.load_conversation(conversation_id)
    assert (conversation.title, conversation.preset, conversation.params) == ("Trees", "Precise", PARAMS)
    assert conversation.system_prompt == "Answer in one line."
    assert [m.content for m in conversation.messages] == ["What is a bonsai?\nAnd why so small?", "A small tree in a pot."]
    store.add_message(conversation_id, "user", "Edited question")
    assert [m.position for m in store.load_conversation(conversation_id).messages] == [0, 1, 2]
    assert store.load_conversation(conversation_id).title == "Trees"  # a title, once set, stays


def test_list_is_newest_first_and_delete_removes_messages(store: Store) -> None:
    older = store.create_conversation("older", messages=[{"role": "user", "content": "one"}])
    newer = store.create_conversation("newer")
    assert [c.id for c in store.list_conversations()] == [newer, older]
    store.add_message(older, "assistant", "two")  # a new turn brings a conversation to the top
    summaries = store.list_conversations()
    assert [(c.id, c.title, c.message_count) for c in summaries] == [(older, "older", 2), (newer, "newer", 0)]
    store.delete(older)
    assert [c.id for c in store.list_conversations()] == [newer]
    assert store._connection.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    with pytest.raises(StoreError, match=f"no conversation {older}"):
        store.load_conversation(older)
    with pytest.raises(StoreError, match=f"no conversation {older}"):
        store.add_message(older, "user", "lost?")


def test_titles_come_from_the_first_non_blank_line() -> None:
    assert title_from("\n\n  Hello   there  \nsecond") == "Hello there"
    long = title_from("word " * 40)
    assert len(long) == 60 and long.endswith("…")


def test_a_thousand_message_conversation_loads_whole_and_in_order(store: Store) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "text " * 60}
        | ({"stats": STATS} if i % 2 else {})
        for i in range(1000)
    ]
    conversation_id = store.create_conversation("long", messages=messages)
    conversation = store.load_conversation(conversation_id)  # its speed: benchmarks/history_bench.py
    assert [m.content for m in conversation.messages] == [m["content"] for m in messages]
    assert conversation.messages[999].stats == STATS


# ---- schema versions --------------------------------------------------------------------------

# The first released schema, written out by hand (not taken from MIGRATIONS) as an old file holds it.
VERSION_1 = """
CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    updated REAL NOT NULL, model TEXT NOT NULL DEFAULT '', system_prompt TEXT NOT NULL DEFAULT '',
    params_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE messages (id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (conversation_id, position));
CREATE INDEX conversations_by_update ON conversations(updated DESC);
INSERT INTO conversations VALUES (1, 'Old chat', 100.0, 200.0, 'old.gguf', 'Be kind.', '{"temperature": 0.2}');
INSERT INTO messages VALUES (1, 1, 0, 'user', 'Remember the marmalade', 150.0);
INSERT INTO messages VALUES (2, 1, 1, 'assistant', 'Noted.', 160.0);
PRAGMA user_version = 1;
"""


def test_a_version_1_file_is_migrated_forward_without_losing_anything(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(VERSION_1)
    with Store(path) as store:
        assert store._connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        conversation = store.load_conversation(1)
        assert (conversation.title, conversation.model, conversation.system_prompt) == ("Old chat", "old.gguf", "Be kind.")
        assert conversation.params == {"temperature": 0.2} and conversation.preset == ""
        assert [(m.content, m.status, m.stats) for m in conversation.messages] == [
            ("Remember the marmalade", COMPLETE, None),
            ("Noted.", COMPLETE, None),
        ]
        assert [c.id for c in store.search("marmal")] == [1]  # old messages are indexed for search
        store.add_message(1, "assistant", "More.", status=STOPPED, stats=STATS)
    with Store(path) as reopened:  # and a second open finds nothing left to migrate
        assert [m.status for m in reopened.load_conversation(1).messages] == [COMPLETE, COMPLETE, STOPPED]


def test_a_file_from_a_newer_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    with sqlite3.connect(path) as newer:
        newer.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer bonsai-tui"):
        Store(path)
    assert not list(tmp_path.glob("*.corrupt-*"))
    with sqlite3.connect(path) as newer:
        assert newer.execute("PRAGMA user_version").fetchone()[0] == 99


# ---- crashes, twins, damage, locks ------------------------------------------------------------

CHILD_WRITER = """
import sys
from bonsai_tui.store import Store

store = Store(sys.argv[1])
chat = store.create_conversation("kept")
turn = 0
while True:
    store.add_message(chat, "user" if turn % 2 == 0 else "assistant", f"turn {turn}")
    print(turn, flush=True)  # printed only after the commit returned
    turn += 1
    # a long transaction, so the kill often lands in the middle of one
    store.create_conversation("bulk", messages=[{"role": "user", "content": "x" * 200}] * 300)
"""


def test_sigkill_mid_write_loses_no_committed_message(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    reported = [int(child.stdout.readline()) for _ in range(20)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reported += [int(line) for line in child.stdout.read().split()]

    with Store(path) as store:  # opens cleanly: the interrupted transaction is rolled back
        assert store._connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        contents = [m.content for m in store.load_conversation(1).messages]
        assert contents[: len(reported)] == [f"turn {turn}" for turn in reported]
        assert len(contents) - len(reported) in (0, 1)  # at most the one committed but not yet printed
        bulk_sizes = {c.message_count for c in store.list_conversations() if c.title == "bulk"}
        assert bulk_sizes <= {300}  # each long write is all there or not at all


TWIN_WRITER = """
import sys
from bonsai_tui.store import Store

store = Store(sys.argv[1], busy_timeout=20)
own = store.create_conversation(sys.argv[2])
for turn in range(40):
    store.add_message(1, "user", f"{sys.argv[2]} {turn}")
    store.add_message(own, "assistant", f"own {turn}")
"""


def test_two_app_instances_write_at_once_without_losing_or_mixing_turns(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with Store(path) as store:
        store.create_conversation("shared")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    twins = [
        subprocess.Popen([sys.executable, "-c", TWIN_WRITER, str(path), name], env=env, stderr=subprocess.PIPE, text=True)
        for name in ("left", "right")
    ]
    for twin in twins:
        assert twin.wait(timeout=60) == 0, twin.stderr.read()
    with Store(path) as store:
        shared = store.load_conversation(1).messages
        assert [m.position for m in shared] == list(range(80))
        for name in ("left", "right"):  # each writer's turns are all there, in its order
            assert [m.content for m in shared if m.content.startswith(name)] == [f"{name} {t}" for t in range(40)]
        own = {c.title: c.message_count for c in store.list_conversations()}
        assert own == {"shared": 80, "left": 40, "right": 40}


def test_two_threads_share_one_store(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    conversation_id = store.create_conversation("threads")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: store.add_message(conversation_id, "user", str(n)), range(100)))
    messages = store.load_conversation(conversation_id).messages
    assert sorted(int(m.content) for m in messages) == list(range(100))
    assert [m.position for m in messages] == list(range(100))


def test_a_garbage_file_is_moved_aside_not_reset(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"definitely not SQLite " * 300)
    with pytest.raises(StoreError) as caught:
        Store(path)
    backups = list(tmp_path.glob("history.sqlite3.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"definitely not SQLite " * 300
    assert str(caught.value) == (
        f"the history {path} was damaged (file is not a database); it was moved to {backups[0].name} "
        "and a new, empty history starts"
    )
    with Store(path) as fresh:  # opening again starts a new history beside the backup
        assert fresh.list_conversations() == []


def test_a_damaged_page_is_detected_and_the_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with Store(path) as store:
        store.create_conversation("big", messages=[{"role": "user", "content": "hello " * 200}] * 200)
        store._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[3 * 4096 : 6 * 4096] = bytes(range(256)) * 48  # three pages of nonsense
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged .*malformed.*moved to history.sqlite3.corrupt-"):
        Store(path)
    [backup] = tmp_path.glob("history.sqlite3.corrupt-*[0-9]")
    assert backup.read_bytes() == bytes(data)


def test_a_locked_database_gives_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with Store(path, busy_timeout=0.2) as store:
        conversation_id = store.create_conversation("t")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match=r"is locked by another program \(waited 0.2 s\); try again"):
                store.add_message(conversation_id, "user", "waiting")
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.add_message(conversation_id, "user", "after")  # nothing was half-written meanwhile
        assert [m.content for m in store.load_conversation(conversation_id).messages] == ["after"]


# ---- search -----------------------------------------------------------------------------------


@pytest.mark.parametrize("full_text", [True, False], ids=["fts5", "like"])
def test_search_titles_and_messages(store: Store, full_text: bool) -> None:
    assert store.full_text_search  # this SQLite has FTS5; the LIKE path is forced below
    store.full_text_search = full_text
    python = store.create_conversation("Python questions", messages=[{"role": "user", "content": "list comprehension?"}])
    cooking = store.create_conversation("Dinner", messages=[{"role": "assistant", "content": "Bake the bread at 100% heat"}])
    empty = store.create_conversation("Empty one")

    def found(text: str) -> list[int]:
        return [c.id for c in store.search(text)]

    assert found("pyth") == [python]  # a word prefix in a title
    assert found("COMPREHENSION") == [python]  # case-insensitive, in a message
    assert found("bread heat") == [cooking]  # every word, in one message
    assert found("100%") == [cooking]  # LIKE wildcards are plain text
    assert found("bread python") == []
    assert found("nothing here") == [] and found("?!") == []
    assert found("  ") == [empty, cooking, python]  # blank: everything, newest first
    store.rename(empty, "Sourdough bread")
    assert found("bread") == [empty, cooking]
    store.delete(cooking)
    assert found("bread") == [empty]
    store.add_message(python, "assistant", "Use a loop")
    assert found("loop") == [python]
    store.truncate(python, 1)  # the reply is gone from the search too
    assert found("loop") == []


# ---- export and import ------------------------------------------------------------------------


def test_json_export_import_round_trip(store: Store) -> None:
    original = store.load_conversation(sample_conversation(store))
    document = json.loads(to_json(original))
    assert document["messages"][0] == {"role": "system", "content": "Answer in one line."}
    assert document["parameters"] == PARAMS and document["title"] == "What is a bonsai?"
    copy = store.load_conversation(store.create_conversation(**from_json(to_json(original)).as_new_conversation()))
    assert copy.id != original.id
    assert (copy.title, copy.model, copy.system_prompt, copy.params, copy.preset) == (
        original.title, original.model, original.system_prompt, original.params, original.preset
    )
    assert [m.as_chat() for m in copy.messages] == [m.as_chat() for m in original.messages]


def test_markdown_export_reads_as_a_transcript(store: Store) -> None:
    markdown = to_markdown(store.load_conversation(sample_conversation(store)))
    assert markdown.startswith("# What is a bonsai?\n\n- Model: prism-ml/Bonsai-8B-gguf/Bonsai-8B.gguf\n")
    assert "- Preset: Creative\n" in markdown and "temperature 0.7" in markdown
    assert "## System\n\nAnswer in one line.\n\n## User\n\nWhat is a bonsai?\nAnd why so small?\n" in markdown
    assert markdown.endswith("## Assistant\n\nBonsai are\n\n*(stopped before the end)*\n")


def test_import_accepts_plain_openai_messages() -> None:
    imported = from_json(json.dumps([
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": "Hello"},
    ]))
    assert imported.messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert (imported.title, imported.system_prompt, imported.params) == ("", "", {})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "not JSON: Expecting property name"),
        ('{"title": "x"}', 'expected an object with a "messages" list'),
        ('{"messages": {}}', "messages must be a list"),
        ('{"messages": ["hi"]}', r"messages\[0\] must be an object with role and content"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', r"messages\[0\].role must be one of system, user, assistant \(got 'bot'\)"),
        ('{"messages": [{"role": "user", "content": 5}]}', r"messages\[0\].content must be text"),
        ('{"messages": [{"role": "system", "content": "only"}]}', "no user or assistant message"),
        ('{"messages": [{"role": "user", "content": "x"}], "parameters": {"top_p": 7}}', r"parameters: top_p must be in \(0, 1\]"),
        ('{"messages": [{"role": "user", "content": "x"}], "parameters": {"max_tokens": -1}}', "max_tokens must be a positive"),
        ('{"messages": [{"role": "user", "content": "x"}], "title": 3}', "title must be a string"),
    ],
)
def test_import_rejects_bad_files_with_a_clear_reason(text: str, error: str) -> None:
    with pytest.raises(ImportFormatError, match=error):
        from_json(text)


# ---- command line -----------------------------------------------------------------------------


def test_history_export_and_import_commands(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conversation_id = sample_conversation(store)
    assert cli.main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "UPDATED", "MSGS", "TITLE"]
    assert lines[1].split()[0] == str(conversation_id) and lines[1].endswith("    4  What is a bonsai?")

    out = tmp_path / "chat.json"
    assert cli.main(["export", str(conversation_id), "--format", "json", "-o", str(out)]) == 0
    assert cli.main(["export", str(conversation_id), "--format", "json", "-o", str(out)]) == 2
    assert "exists (add --force to overwrite it)" in capsys.readouterr().err
    assert cli.main(["import", str(out), "--title", "Copy"]) == 0
    assert capsys.readouterr().out == f"imported 4 messages as conversation {conversation_id + 1}: Copy\n"
    assert cli.main(["export", str(conversation_id + 1)]) == 0
    assert capsys.readouterr().out.startswith("# Copy\n")

    assert cli.main(["export", "77"]) == 2
    assert capsys.readouterr().err == "bonsai-tui export: no conversation 77 in the history\n"
    (tmp_path / "bad.json").write_text('{"messages": 1}')
    assert cli.main(["import", str(tmp_path / "bad.json")]) == 2
    assert capsys.readouterr().err == f"bonsai-tui import: {tmp_path / 'bad.json'}: messages must be a list\n"
    assert cli.main(["history", "--search", "zebra"]) == 0
    assert capsys.readouterr().out == "No matching conversations.\n"


# ---- the store's lifetime in the app ----------------------------------------------------------


@pytest.mark.anyio
async def test_the_app_keeps_one_store_across_model_loads_and_closes_it(
    home: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bonsai_tui import app as app_module
    from bonsai_tui.screens.chat import ChatScreen
    from conftest import until

    opened: list[RecordedStore] = []

    class RecordedStore(Store):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.closed = False
            opened.append(self)

        def close(self) -> None:
            self.closed = True
            super().close()

    monkeypatch.setattr(app_module, "Store", RecordedStore)
    app = app_module.BonsaiApp(app_module.ChatOptions(tiny_model_path, threads=1))
    async with app.run_test() as pilot:
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        first_chat = app.screen
        await until(pilot, lambda: bool(first_chat.query("#prompt")) and first_chat.prompt.has_focus)
        app.call_later(app._open_model, tiny_model_path)  # the user picks a model again
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen is not first_chat)
        await until(pilot, lambda: bool(app.screen.query("#prompt")) and app.screen.prompt.has_focus)  # settled
        assert len(opened) == 1 and not opened[0].closed
        assert first_chat.model.closed and not app.screen.model.closed  # the old model's pool is freed
    assert [store.closed for store in opened] == [True]

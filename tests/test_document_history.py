"""A question asked over documents keeps its context block and sources in the history, they come
back when the conversation is reopened, and the export shows them under the reply."""

from __future__ import annotations

import json
from pathlib import Path

from bonsai_tui.export import to_json, to_markdown
from bonsai_tui.history import History
from bonsai_tui.store import Store
from bonsai_tui.widgets.params_panel import GenerationSettings
from engine.sampling import SamplingParams

SOURCE = {"path": "docs/leave.md", "start_line": 1, "end_line": 10, "heading": "Leave policy", "score": 1.2, "text": "25 days."}
BLOCK = "<documents>...</documents>"


def saved_turns() -> list[dict]:
    return [
        {"role": "user", "content": "How many days?", "context": BLOCK, "sources": [SOURCE]},
        {"role": "assistant", "content": "25 days.", "stop_reason": "eos",
         "stats": {"prompt_tokens": 40, "generated_tokens": 3}},
        {"role": "user", "content": "And the moon?", "context": "<documents>nothing</documents>", "sources": []},
        {"role": "assistant", "content": "Not in the files.", "stop_reason": "eos",
         "stats": {"prompt_tokens": 60, "generated_tokens": 4}},
        {"role": "user", "content": "Thanks"},
    ]


def test_context_and_sources_are_stored_and_reopened(tmp_path: Path) -> None:
    settings = GenerationSettings(params=SamplingParams(), max_tokens=64, system_prompt="", preset="Balanced")
    with Store(tmp_path / "h.sqlite3") as store:
        history = History(store, "m.gguf")
        conversation_id = history.ensure_conversation()
        history.save(saved_turns(), settings)
        assert history.conversation_id == conversation_id
        messages, _ = History(store, "m.gguf").open(conversation_id, settings)
        assert [(m.get("context"), m.get("sources")) for m in messages] == [
            (BLOCK, [SOURCE]), (None, None), ("<documents>nothing</documents>", []), (None, None), (None, None),
        ]
        history.save(saved_turns(), settings)  # nothing changed: nothing rewritten
        assert [m.id for m in store.load_conversation(conversation_id).messages] == [1, 2, 3, 4, 5]
        conversation = store.load_conversation(conversation_id)
    markdown = to_markdown(conversation)
    assert "## Assistant\n\n25 days.\n\nSources:\n- docs/leave.md, lines 1-10 (Leave policy), score 1.2\n" in markdown
    assert "## Assistant\n\nNot in the files.\n\nSources: nothing relevant found in the attached files\n" in markdown
    assert markdown.count("Sources") == 2
    exported = json.loads(to_json(conversation))["messages"]
    assert [m.get("sources") for m in exported] == [None, [SOURCE], None, [], None]

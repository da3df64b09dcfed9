"""The history sidebar driven through Pilot in a small app of its own: new, switch, rename, delete, search."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from textual import on
from textual.app import App, ComposeResult
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from bonsai_tui.screens.confirm import ConfirmScreen
from bonsai_tui.screens.history_dialogs import HistoryDialogs
from bonsai_tui.screens.rename import RenameScreen
from bonsai_tui.store import Store
from bonsai_tui.widgets.sidebar import ConversationSidebar, short_date
from conftest import until

pytestmark = pytest.mark.anyio


class SidebarApp(HistoryDialogs, App[None]):
    """Just the sidebar, recording the messages it posts."""

    CSS_PATH = str(resources.files("bonsai_tui.assets") / "sidebar.tcss")

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.posted: list[Message] = []

    def compose(self) -> ComposeResult:
        yield ConversationSidebar(self.store, id="sidebar")

    @on(ConversationSidebar.Selected)
    @on(ConversationSidebar.NewRequested)
    @on(ConversationSidebar.Renamed)
    @on(ConversationSidebar.Deleted)
    def record(self, message: Message) -> None:
        self.posted.append(message)

    @property
    def sidebar(self) -> ConversationSidebar:
        return self.query_one(ConversationSidebar)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "history.sqlite3") as store:
        store.create_conversation("Oldest", messages=[{"role": "user", "content": "about marmalade"}])
        store.create_conversation("Middle", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
        store.create_conversation("Newest about Python")
        yield store


def shown(app: SidebarApp) -> list[str]:
    """Each listed conversation's text, as the option list shows it."""
    return [str(option.prompt) for option in app.sidebar.option_list.options]


def titles(app: SidebarApp) -> list[str]:
    return [text.splitlines()[0] for text in shown(app)]


async def listed(pilot: Pilot) -> None:
    """Wait for the sidebar to show the store (it reads it on a worker, searches debounced)."""
    await pilot.pause()
    await until(pilot, lambda: pilot.app.sidebar.up_to_date)
    await pilot.pause()


async def focus_list(pilot: Pilot) -> None:
    await listed(pilot)
    pilot.app.sidebar.option_list.focus()
    await pilot.pause()


async def test_lists_newest_first_with_date_and_size(store: Store) -> None:
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await listed(pilot)
        today = short_date(store.list_conversations()[0].updated)
        assert shown(app) == [
            f"Newest about Python\n{today} · 0 messages",
            f"Middle\n{today} · 2 messages",
            f"Oldest\n{today} · 1 message",
        ]
        assert not app.query_one("#sidebar-empty", Static).display


async def test_new_asks_the_screen_for_a_new_conversation(store: Store) -> None:
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await focus_list(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert [type(m) for m in app.posted] == [ConversationSidebar.NewRequested]


async def test_enter_or_click_switches_conversation_and_marks_the_active_one(store: Store) -> None:
    ids = [c.id for c in store.list_conversations()]
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await focus_list(pilot)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert [(type(m), m.conversation_id) for m in app.posted] == [(ConversationSidebar.Selected, ids[1])]
        app.sidebar.active_id = ids[1]  # the screen opened it
        await pilot.pause()
        assert titles(app) == ["Newest about Python", "▶ Middle", "Oldest"]
        await pilot.click("#sidebar-list", offset=(3, 4))  # the third entry (two lines each)
        await pilot.pause()
        assert app.posted[-1].conversation_id == ids[2]


async def test_the_list_follows_the_store_and_keeps_the_cursor(store: Store) -> None:
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await focus_list(pilot)
        await pilot.press("down")  # on "Middle"
        oldest = store.list_conversations()[2].id
        store.add_message(oldest, "user", "back again")  # the screen saved a turn, then reloads
        app.sidebar.reload()
        await listed(pilot)
        assert titles(app) == ["Oldest", "Newest about Python", "Middle"]
        assert app.sidebar.highlighted.title == "Middle"


async def test_rename_asks_for_a_title_and_saves_it(store: Store) -> None:
    middle = store.list_conversations()[1].id
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await focus_list(pilot)
        await pilot.press("down", "r")
        await pilot.pause()
        assert isinstance(app.screen, RenameScreen)
        assert app.screen.query_one("#rename-title", Input).value == "Middle"
        await pilot.press("escape")  # cancelled: nothing changes
        await pilot.pause()
        assert store.load_conversation(middle).title == "Middle" and app.posted == []

        await pilot.press("r")
        await pilot.pause()
        await pilot.press(*"Jam recipes", "enter")  # the old title is selected, so typing replaces it
        await listed(pilot)
        assert store.load_conversation(middle).title == "Jam recipes"
        assert titles(app) == ["Jam recipes", "Newest about Python", "Oldest"]  # renaming counts as an update
        assert [(type(m), m.conversation_id, m.title) for m in app.posted] == [
            (ConversationSidebar.Renamed, middle, "Jam recipes")
        ]


async def test_delete_asks_first_and_cancel_keeps_everything(store: Store) -> None:
    newest = store.list_conversations()[0].id
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await focus_list(pilot)
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.query_one("#confirm-question").render().plain == (
            "Delete “Newest about Python” and its 0 messages? This cannot be undone."
        )
        await pilot.press("enter")  # the focused button is Cancel: Enter alone deletes nothing
        await pilot.pause()
        assert len(store.list_conversations()) == 3 and app.posted == []

        await pilot.press("delete")
        await pilot.pause()
        await pilot.click("#confirm-yes")
        await listed(pilot)
        assert [c.title for c in store.list_conversations()] == ["Middle", "Oldest"]
        assert titles(app) == ["Middle", "Oldest"]
        assert [(type(m), m.conversation_id) for m in app.posted] == [(ConversationSidebar.Deleted, newest)]


async def test_deleting_what_another_instance_deleted_reports_it(store: Store, tmp_path: Path) -> None:
    app = SidebarApp(store)
    async with app.run_test(notifications=True) as pilot:
        await focus_list(pilot)
        newest = store.list_conversations()[0].id
        with Store(tmp_path / "history.sqlite3") as twin:
            twin.delete(newest)
        await pilot.press("delete", "y")
        await pilot.pause()
        assert app.posted == []
        assert [n.message for n in app._notifications] == [f"no conversation {newest} in the history"]


async def test_search_filters_by_title_and_message_text(store: Store) -> None:
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await focus_list(pilot)
        await pilot.press("slash", *"pyth")
        await listed(pilot)
        assert app.focused is app.query_one("#sidebar-search")
        assert titles(app) == ["Newest about Python"]
        await pilot.press(*["backspace"] * 4, *"marmal")
        await listed(pilot)
        assert titles(app) == ["Oldest"]  # found in a message
        await pilot.press("z")
        await listed(pilot)
        assert titles(app) == []
        assert str(app.query_one("#sidebar-empty", Static).render()) == "No matches."
        await pilot.press(*["backspace"] * 7, "enter")  # cleared: everything again, and back to the list
        await listed(pilot)
        assert titles(app) == ["Newest about Python", "Middle", "Oldest"]
        assert app.focused is app.query_one("#sidebar-list", OptionList)


async def test_an_empty_history_says_so(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.sqlite3") as empty:
        app = SidebarApp(empty)
        async with app.run_test() as pilot:
            await focus_list(pilot)
            await pilot.press("r", "delete")  # nothing to rename or delete: no dialog
            await pilot.pause()
            assert titles(app) == [] and app.screen is app.screen_stack[0]
            assert str(app.query_one("#sidebar-empty", Static).render()) == "No conversations yet."


async def test_search_runs_once_typing_pauses_not_on_every_key(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    searched: list[str] = []
    real_search = store.search
    monkeypatch.setattr(store, "search", lambda text: searched.append(text) or real_search(text))
    app = SidebarApp(store)
    async with app.run_test() as pilot:
        await focus_list(pilot)
        await pilot.press("slash", *"python")
        await listed(pilot)
        assert searched == ["python"] and titles(app) == ["Newest about Python"]

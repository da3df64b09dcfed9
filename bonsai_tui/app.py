"""BonsaiApp: loads the model behind a loading screen, then opens the chat.

Everything the user can do is a binding (shown in the footer and the help screen) and a command
in the palette (Ctrl+P). Styles live in assets/bonsai.tcss; colours come from Textual themes.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.theme import Theme

from bonsai_tui import hub
from bonsai_tui.backends import Endpoint, RemoteBackend
from bonsai_tui.demo import demo_model_path
from bonsai_tui.documents.index import DocumentIndexError
from bonsai_tui.documents.retrieve import DEFAULT_BUDGET_FRACTION
from bonsai_tui.documents.service import DocumentService
from bonsai_tui.history import History
from bonsai_tui.screens.chat import ChatScreen
from bonsai_tui.screens.connect import ConnectScreen
from bonsai_tui.screens.chat_documents import ChatDocuments
from bonsai_tui.screens.download import DownloadScreen
from bonsai_tui.screens.loading import LoadedModel, LoadingScreen
from bonsai_tui.screens.models import ModelsScreen
from bonsai_tui.crash_log import log_crash
from bonsai_tui.settings import config_dir
from bonsai_tui.store import Store, StoreError
from bonsai_tui.widgets.sidebar import ConversationSidebar
from bonsai_tui.generation_settings import MODEL_DEFAULT, GenerationSettings
from engine.threads import release_engine_thread
from engine.model import Model
from engine.sampling import SamplingParams

BONSAI_THEME = Theme(
    name="bonsai",
    primary="#7FB069",  # moss
    secondary="#C9A66B",  # bark
    accent="#E6AA68",
    background="#1B1F1A",
    surface="#232922",
    panel="#2C3329",
    success="#7FB069",
    warning="#E6AA68",
    error="#D1495B",
    dark=True,
)
DEFAULT_THEME = "bonsai"
SWITCH_NOTICE = "Bonsai is still replying: press Esc to stop it, then switch models."


def theme_file() -> Path:
    return config_dir() / "theme.json"


@dataclass(frozen=True)
class ChatOptions:
    """How to open the chat, from the command line."""

    model_path: Path | None  # None: download model_choice first
    model_choice: hub.ModelChoice = hub.DEFAULT_MODEL
    threads: int | None = None
    kv_cache: str | None = None  # "f16" / "q8" (engine.kv_cache.KINDS); None: the engine's default
    n_ctx: int = 0
    system_prompt: str = ""
    max_tokens: int = 512
    preset: str = MODEL_DEFAULT  # the name shown in the panel
    choose_params: Callable[[SamplingParams], SamplingParams] = lambda model_default: model_default
    docs_budget: float = DEFAULT_BUDGET_FRACTION  # share of the context for attached documents' passages
    endpoint: Endpoint | None = None  # a connected server to chat with instead of a local model

    def settings_for(self, model: Model | RemoteBackend) -> GenerationSettings:
        return GenerationSettings(
            params=self.choose_params(model.default_params()),
            max_tokens=self.max_tokens,
            system_prompt=self.system_prompt,
            preset=self.preset,
        )


def freeze_startup_objects() -> None:
    """Move every object alive now (Textual's, the tokenizer's vocabulary, the model's metadata:
    ~185,000) out of the cycle collector's sight. A full collection walked them all on the UI
    thread, 100-150 ms at a time, once or twice a reply: the worst key-to-echo while a reply
    streams. After this one, ~10 ms (benchmarks/README.md, "The allocator, and a cheaper stream").

    Called each time a chat opens: what an earlier freeze kept (a closed chat's widgets, a
    replaced model's metadata, held in reference cycles) is handed back and collected first, once,
    so a model switch leaks nothing."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class HistorySaved(Message):
    """A save of the conversation finished (on the history's thread): refresh the list, or say why not."""

    def __init__(self, conversation_id: int | None, error: StoreError | None) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.error = error


class BonsaiApp(App[None]):
    TITLE = "bonsai-tui"
    CSS_PATH = [str(resources.files("bonsai_tui.assets") / name) for name in ("bonsai.tcss", "sidebar.tcss")]
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f3", "toggle_history", "History"),
    ]

    def __init__(self, options: ChatOptions) -> None:
        super().__init__()
        self.options = options
        self.register_theme(BONSAI_THEME)
        self.theme = self._remembered_theme()
        self.crash_message: str | None = None  # set when a bug ended the app
        self.history: History | None = None  # None when the store cannot be opened

    def _handle_exception(self, error: Exception) -> None:
        """A bug still ends the app as in Textual, but the traceback goes to the log file and the
        user gets one line (printed by the chat command) instead of a wall of text."""
        self.crash_message = f"unexpected error: {error} (details in {log_crash(error)})"
        super()._handle_exception(error)
        self._exit_renderables.clear()

    async def on_mount(self) -> None:
        if self.options.endpoint is not None:
            await self._open_endpoint(self.options.endpoint)
        elif self.options.model_path is None:
            self.push_screen(DownloadScreen(self.options.model_choice, demo_model_path), self._open_model)
        else:
            await self._open_model(self.options.model_path)

    def _replying_chat(self) -> ChatScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, ChatScreen) and s.generator.busy), None)

    async def _open_model(self, path: Path | None) -> None:
        if path is None:
            return
        await self._leave_chats()
        self.push_screen(LoadingScreen(path, self.options.threads, self.options.kv_cache), self._model_loaded)

    async def _leave_chats(self) -> None:
        """Close the chats on the stack before another model or server takes over, and free the
        models they ran on (their thread pools; a model switch would otherwise keep every old one)."""
        chat = self._replying_chat()
        if chat is not None:
            # a download ended while a reply streams: the old model's forward must end before the
            # new one warms up (two threads in Numba's parallel kernels at once is not allowed)
            await chat.generator.finish()
        models = {id(s.model): s.model for s in self.screen_stack if isinstance(s, ChatScreen) and s.model is not None}
        while len(self.screen_stack) > 1:
            self.pop_screen()
        for model in models.values():
            model.close()

    def action_models(self) -> None:
        if self._replying_chat() is not None:
            self.notify(SWITCH_NOTICE, severity="warning")
            return
        self.push_screen(ModelsScreen(), self._model_chosen)

    def action_connect(self) -> None:
        if self._replying_chat() is not None:
            self.notify(SWITCH_NOTICE, severity="warning")
            return
        self.push_screen(ConnectScreen(), self._open_endpoint)

    async def _open_endpoint(self, endpoint: Endpoint | None) -> None:
        """Chat with a connected OpenAI-compatible server (--endpoint, or "Connect to a server")."""
        if endpoint is None:
            return
        await self._leave_chats()
        backend = RemoteBackend(endpoint)
        if self.history is not None:
            self.history.close()
        self.history = self._open_history(backend.history_key)
        chat = ChatScreen(
            backend, self.options.settings_for(backend), n_ctx=self.options.n_ctx, sidebar=self._history_sidebar(),
            documents=self._documents(),
        )
        self.push_screen(chat)
        self.call_after_refresh(freeze_startup_objects)

    def _history_sidebar(self) -> ConversationSidebar | None:
        if self.history is None:
            return None
        sidebar = ConversationSidebar(self.history.store, id="sidebar")
        sidebar.display = False
        return sidebar

    async def _model_chosen(self, choice: hub.ModelChoice | Endpoint | None) -> None:
        if isinstance(choice, Endpoint):
            await self._open_endpoint(choice)
            return
        if choice is None:
            return
        path = hub.cached_path(choice)
        if path is not None:
            hub.remember_choice(choice)
            await self._open_model(path)
        else:
            self.push_screen(DownloadScreen(choice, demo_model_path), self._open_model)

    def _model_loaded(self, loaded: LoadedModel | None) -> None:
        if loaded is None:
            return
        settings = self.options.settings_for(loaded.model)
        if self.history is not None:
            self.history.close()
        self.history = self._open_history(str(loaded.model.path))
        chat = ChatScreen(
            loaded.model, settings, n_ctx=self.options.n_ctx, draft=loaded.draft, send_draft=loaded.send_draft,
            sidebar=self._history_sidebar(), documents=self._documents(),
        )
        self.push_screen(chat)
        self.call_after_refresh(freeze_startup_objects)

    def _documents(self) -> ChatDocuments | None:
        """Attached documents live in the history database; without it (or FTS5) there are none."""
        if self.history is None:
            return None
        try:
            return ChatDocuments(DocumentService(self.history.store, self.options.docs_budget), self.history)
        except (DocumentIndexError, StoreError) as error:
            self.notify(f"{error}. Files cannot be attached this time.", severity="warning", timeout=10)
            return None

    def _open_history(self, model: str) -> History | None:
        if self.history is not None:  # one store for the app's whole run: a new model is a new name
            return History(self.history.store, model)
        try:
            return History(Store(), model)
        except StoreError as error:
            self.notify(f"{error}. Conversations will not be saved this time.", severity="error", timeout=15)
            return None

    # ---- history ----------------------------------------------------------------------------

    def _sidebar(self) -> ConversationSidebar | None:
        if not self.screen_stack:  # a save that finished while the app was closing its screens
            return None
        found = self.screen.query(ConversationSidebar)
        return found.first() if found else None

    def action_toggle_history(self) -> None:
        sidebar = self._sidebar()
        if sidebar is None:
            self.notify("The history is not available.", severity="warning")
            return
        sidebar.display = not sidebar.display
        if sidebar.display:
            options = sidebar.option_list
            if options.highlighted is None and options.option_count:
                options.highlighted = 0  # so Down goes to the next conversation at once
            self.call_after_refresh(options.focus)  # once it is displayed, it can take focus
        elif isinstance(self.screen, ChatScreen):
            self.screen.prompt.focus()

    def on_chat_screen_conversation_changed(self, event: ChatScreen.ConversationChanged) -> None:
        if self.history is not None:
            self.history.save_later(event.messages, event.settings, self._saved)

    def _saved(self, conversation_id: int | None, error: StoreError | None) -> None:
        """On the history's saver thread: hand the outcome to the UI thread."""
        self.post_message(HistorySaved(conversation_id, error))

    def on_history_saved(self, event: HistorySaved) -> None:
        if event.error is not None:
            self.notify(str(event.error), title="Not saved", severity="error")
            return
        sidebar = self._sidebar()
        if sidebar is not None:
            sidebar.reload()
            if self.history is not None and event.conversation_id == self.history.conversation_id:
                sidebar.active_id = event.conversation_id

    def on_unmount(self) -> None:
        release_engine_thread()  # it ends when the reply or load it runs has stopped
        if self.history is not None:
            self.history.close()  # the last turn is written before the process ends
            self.history.store.close()  # the one store of the app's run (see _open_history)

    async def on_conversation_sidebar_selected(self, event: ConversationSidebar.Selected) -> None:
        chat = self.screen
        if self.history is None or not isinstance(chat, ChatScreen):
            return
        if chat.generator.busy:
            self.notify("Wait for the reply to finish (or press Esc) before switching.", severity="warning")
            return
        try:
            messages, settings = self.history.open(event.conversation_id, chat.settings)
        except StoreError as error:
            self.notify(str(error), severity="error")
            return
        await chat.load_conversation(messages, settings)
        sidebar = self._sidebar()
        if sidebar is not None:
            sidebar.active_id = event.conversation_id
        chat.prompt.focus()  # ready to continue the conversation

    async def on_conversation_sidebar_new_requested(self) -> None:
        if isinstance(self.screen, ChatScreen):
            await self.screen.action_new_chat()

    async def on_conversation_sidebar_deleted(self, event: ConversationSidebar.Deleted) -> None:
        if self.history is not None and self.history.conversation_id == event.conversation_id:
            self.history.forget_current()
            if isinstance(self.screen, ChatScreen) and not self.screen.generator.busy:
                await self.screen.action_new_chat()

    # ---- themes -----------------------------------------------------------------------------

    def _remembered_theme(self) -> str:
        try:
            name = json.loads(theme_file().read_text(encoding="utf-8"))["theme"]
        except (OSError, ValueError, KeyError, TypeError):
            return DEFAULT_THEME
        return name if name in self.available_themes else DEFAULT_THEME

    def watch_theme(self, name: str) -> None:
        try:
            theme_file().write_text(json.dumps({"theme": name}), encoding="utf-8")
        except OSError:
            pass  # the theme still applies; it is just not remembered

    # ---- command palette --------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Models", "Pick, download or delete a Bonsai model", self.action_models)
        yield SystemCommand("Connect to a server", "Chat with an OpenAI-compatible API (bonsai-tui serve, llama-server…)", self.action_connect)
        yield SystemCommand("History", "Show or hide the saved conversations (F3)", self.action_toggle_history)
        if isinstance(screen, ChatScreen):
            yield from screen.palette_commands()

"""The chat: the conversation, the message box, the sampling panel and the status line.

The widgets are the conversation: each ChatMessage holds its role and text, and the engine is
sent the messages in screen order (minus turns dropped to fit the context). The pieces live
apart: the conversation view (widgets/conversation.py), the reply streaming
(screens/reply_streaming.py), the history's dialogs (screens/history_dialogs.py); this screen
holds the layout, sending, editing, and the keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer

from bonsai_tui.backends import LocalBackend, RemoteBackend
from bonsai_tui.engine_worker import ReplyGenerator
from bonsai_tui.generation_settings import MODEL_DEFAULT, GenerationSettings
from bonsai_tui.screens.chat_documents import ChatDocuments, DocumentsMixin, saved_documents
from bonsai_tui.screens.help import HelpScreen
from bonsai_tui.screens.history_dialogs import HistoryDialogs
from bonsai_tui.screens.reply_streaming import ReplyStreaming
from bonsai_tui.widgets.attachments import AttachmentBar
from bonsai_tui.widgets.chat_message import ChatMessage
from bonsai_tui.widgets.conversation import ConversationView
from bonsai_tui.widgets.params_panel import MAX_TOKENS_LIMIT, ParamsPanel
from bonsai_tui.widgets.prompt_input import PromptInput
from bonsai_tui.widgets.status_bar import ModelSummary, StatusBar
from engine.model import Model
from engine.sampling import PRESETS

WIDE_ENOUGH_FOR_PANEL = 120  # columns from which the sampling panel opens by default
BUSY_NOTICE = "Bonsai is still replying: press Esc to stop it first (your text stays in the box)."

class ChatScreen(ReplyStreaming, HistoryDialogs, DocumentsMixin, Screen[None]):
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("f2", "toggle_panel", "Sampling"),
        Binding("ctrl+o", "attach_files", "Attach files", show=False),  # in F1 and the palette
        Binding("ctrl+t", "toggle_thinking", "Thinking", show=False),
        Binding("f1,question_mark", "help", "Help"),
    ]

    class ConversationChanged(Message):
        """A message was sent, a reply ended, or the chat was cleared: the state to save."""

        def __init__(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> None:
            super().__init__()
            self.messages = messages
            self.settings = settings

    enable_thinking: reactive[bool] = reactive(False)

    def __init__(
        self,
        model: Model | RemoteBackend,
        settings: GenerationSettings,
        n_ctx: int = 0,
        draft: str = "",
        send_draft: bool = False,
        sidebar: Widget | None = None,
        documents: ChatDocuments | None = None,
    ) -> None:
        super().__init__()
        self.documents = documents  # attached files (None without a history database)
        self.sidebar = sidebar  # the history, shown at the left when the app has one
        self.draft = draft
        self.send_draft = send_draft
        # what replies come from: this machine's engine, or a server (`bonsai-tui --endpoint`)
        self.backend = model if isinstance(model, RemoteBackend) else LocalBackend(model)
        self.model = getattr(self.backend, "model", None)  # the engine's Model when local
        self.settings = settings
        self.session = self.backend.new_session(n_ctx, settings.params)
        self.generator = ReplyGenerator(self, self.session)
        self._reply: ChatMessage | None = None
        self._editing: ChatMessage | None = None

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Container(id="sidebar-slot"):
                if self.sidebar is not None:
                    yield self.sidebar
            with Vertical(id="chat-column"):
                yield ConversationView(self._welcome_text(), id="conversation")
                yield AttachmentBar(id="attachments")
                yield PromptInput(id="prompt")
                yield StatusBar(self._model_summary(), id="status")
            yield ParamsPanel(
                self.settings, self.backend.default_params(), max_tokens_limit=self.session.n_ctx or MAX_TOKENS_LIMIT,
                id="params",
            )
        yield Footer(compact=True)

    def _model_summary(self) -> ModelSummary:
        return self.backend.summary(self.session.n_ctx)

    def _welcome_text(self) -> str:
        return (
            f"{self.backend.name}{' at ' + self.backend.where if self.backend.where else ''} is ready. "
            "Type a message and press Enter.\n"
            "F2 sampling panel · F1 keys · Ctrl+P every command"
        )

    async def on_mount(self) -> None:
        self.query_one("#params", ParamsPanel).display = self.app.size.width >= WIDE_ENOUGH_FOR_PANEL
        self.query_one("#params", ParamsPanel).mark_ignored(self.backend.ignored_params)
        self.prompt.text = self.draft
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.focus()
        if self.send_draft and self.draft.strip():
            await self.send(self.draft)

    def on_unmount(self) -> None:
        self.generator.stop()

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def conversation(self) -> ConversationView:
        return self.query_one("#conversation", ConversationView)

    @property
    def chat_messages(self) -> list[ChatMessage]:
        return self.conversation.messages

    # ---- conversation -----------------------------------------------------------------------

    def saved_messages(self) -> list[dict[str, Any]]:
        """The conversation with each reply's stats, as the history stores it."""
        return self.conversation.saved(saved_documents)

    async def load_conversation(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> None:
        """Show a saved conversation (from the history) and its settings."""
        await self._clear()
        self.settings = settings
        self.session.params = settings.params
        self.query_one("#params", ParamsPanel).load(settings)
        await self.conversation.load(messages)
        await self.show_sources()
        await self.refresh_attachments()

    @on(Button.Pressed, "#earlier")
    async def _show_earlier(self) -> None:
        await self.conversation.show_earlier()
        await self.show_sources()

    async def _clear(self) -> None:
        await self.conversation.clear()
        self._cancel_edit()
        self.status.last_stats = None
        self.status.context_used = 0

    def _announce_change(self) -> None:
        self.post_message(self.ConversationChanged(self.saved_messages(), self.settings))

    # ---- sending ----------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _prompt_submitted(self, event: PromptInput.Submitted) -> None:
        await self.send(event.text)

    async def send(self, text: str) -> None:
        if await self.attach_command(text.strip()):
            return
        if self.generator.busy or self.searching_documents:
            self.notify(BUSY_NOTICE, severity="warning")
            return
        if self._editing is not None:
            await self._remove_from(self._editing)
        self.prompt.clear()
        question = ChatMessage("user", text.strip())
        shown_first = bool(self.attachment_bar.attachments)  # their search takes a moment
        if shown_first:
            await self.conversation.add([question])
            await self.add_documents_context(question)
        await self._start_reply(self.settings.params, None if shown_first else question)

    async def _remove_from(self, first: ChatMessage) -> None:
        """Remove a message and everything after it (an edit replaces the later turns)."""
        await self.conversation.remove_from(first)
        self._cancel_edit()

    # ---- actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generator.busy or self._editing is not None or None
        if action == "regenerate":
            return not self.generator.busy and self._last_reply() is not None or None
        return True

    def _last_reply(self) -> ChatMessage | None:
        replies = [m for m in self.chat_messages if m.role == "assistant"]
        return replies[-1] if replies else None

    def action_stop(self) -> None:
        if self.generator.busy:
            self.generator.stop()
        elif self._editing is not None:
            self._cancel_edit()
            self.prompt.clear()

    async def action_regenerate(self) -> None:
        last = self._last_reply()
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
        elif last is not None:
            await self._regenerate(last)

    @on(ChatMessage.RegenerateRequested)
    async def _regenerate_requested(self, event: ChatMessage.RegenerateRequested) -> None:
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
        else:
            await self._regenerate(event.message)

    async def _regenerate(self, reply: ChatMessage) -> None:
        """Replace `reply` (and anything after it) with a new one, sampled with a new seed."""
        await self._remove_from(reply)
        await self._start_reply(self.settings.params.with_changes(seed=secrets.randbelow(2**31)))

    def action_edit_last(self) -> None:
        questions = [m for m in self.chat_messages if m.role == "user"]
        if questions:
            self.edit(questions[-1])

    @on(PromptInput.EditLastRequested)
    def _edit_last_requested(self) -> None:
        self.action_edit_last()

    @on(ChatMessage.EditRequested)
    def _edit_requested(self, event: ChatMessage.EditRequested) -> None:
        self.edit(event.message)

    def edit(self, message: ChatMessage) -> None:
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
            return
        self._cancel_edit()
        self._editing = message
        message.add_class("-editing")
        self.prompt.text = message.content
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.focus()
        self.refresh_bindings()
        self.notify("Editing: Enter resends from this message (later turns are replaced), Esc cancels.")

    def _cancel_edit(self) -> None:
        if self._editing is not None:
            self._editing.remove_class("-editing")
            self._editing = None
            self.refresh_bindings()

    async def action_new_chat(self) -> None:
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
            return
        # the box is emptied before the awaits: keys typed while the old conversation's widgets
        # are removed belong to the new chat's first message (cleared after, they were lost)
        self.prompt.clear()
        self.prompt.focus()
        await self._clear()
        await self.attachment_bar.show([])  # a new chat starts without attachments
        self._announce_change()

    def action_toggle_panel(self) -> None:
        panel = self.query_one("#params", ParamsPanel)
        panel.display = not panel.display
        if panel.display:
            panel.query_one("#temperature").focus()
        else:
            self.prompt.focus()

    def action_toggle_thinking(self) -> None:
        self.enable_thinking = not self.enable_thinking
        self.notify(f"Thinking {'on' if self.enable_thinking else 'off'} for the next replies")

    def watch_enable_thinking(self, enabled: bool) -> None:
        self.status.thinking = enabled

    def action_help(self) -> None:
        sections = [
            ("Chat", self.BINDINGS),
            ("Message box", [Binding("enter", "", "Send"), Binding("ctrl+j", "", "New line (also Shift+Enter where the terminal sends it)"), Binding("up", "", "Edit your last message (when the box is empty)")]),
            ("A focused message (Tab / Shift+Tab or click)", ChatMessage.BINDINGS),
            ("App", [
                Binding("ctrl+p", "", "Command palette: every action"),
                Binding("f3", "", "History: saved conversations (n new, r rename, d delete, / search)"),
                Binding("ctrl+q", "", "Quit"),
            ]),
        ]
        self.app.push_screen(HelpScreen(sections))

    def action_copy_last_reply(self) -> None:
        last = self._last_reply()
        if last is not None:
            last.action_copy()

    def action_copy_last_code(self) -> None:
        for message in reversed(self.chat_messages):
            if message.check_action("copy_code", ()):
                message.action_copy_code()
                return
        self.notify("No code block in this conversation yet.")

    def apply_preset(self, name: str) -> None:
        self.query_one("#params", ParamsPanel).apply_preset(name)

    @on(ParamsPanel.Changed)
    def _settings_changed(self, event: ParamsPanel.Changed) -> None:
        self.settings = event.settings
        # the engine re-reads its params every token: the change applies mid-reply too
        self.session.params = event.settings.params

    # ---- command palette --------------------------------------------------------------------

    def palette_commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand("Stop the reply", "Stop generating (the partial reply stays)", self.action_stop)
        yield SystemCommand("Regenerate", "Replace the last reply with a new one (new seed)", self.action_regenerate)
        yield SystemCommand("Edit last message", "Change your last message and resend it", self.action_edit_last)
        yield SystemCommand("Copy last reply", "Copy the last reply to the clipboard", self.action_copy_last_reply)
        yield SystemCommand("Copy last code block", "Copy the newest code block to the clipboard", self.action_copy_last_code)
        yield SystemCommand("New chat", "Clear the conversation and start again", self.action_new_chat)
        yield SystemCommand("Toggle sampling panel", "Show or hide the sampling parameters", self.action_toggle_panel)
        yield SystemCommand("Toggle thinking", "Let the model think before answering (enable_thinking)", self.action_toggle_thinking)
        yield SystemCommand("Help: keys", "Show every key binding", self.action_help)
        yield from self.documents_commands()
        for name in [*PRESETS, MODEL_DEFAULT]:
            yield SystemCommand(f"Preset: {name}", f"Use the {name} sampling values", lambda name=name: self.apply_preset(name))

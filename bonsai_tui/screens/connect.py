"""Connect to a server: asks for an OpenAI-compatible endpoint (URL, API key, model) and checks it
(GET /v1/models) before closing. Dismisses with the connected Endpoint, or None."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from bonsai_tui.backends import Endpoint, RemoteError


class ConnectScreen(ModalScreen[Endpoint | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    ConnectScreen { align: center middle; }
    #connect-box { width: 72; max-width: 95%; height: auto; border: round $primary; background: $surface; padding: 1 2; }
    #connect-box Label { margin-top: 1; }
    #connect-status { color: $text-muted; }
    #connect-status.error { color: $error; }
    """

    def __init__(self, url: str = "http://127.0.0.1:8080/v1") -> None:
        super().__init__()
        self.url = url

    def compose(self) -> ComposeResult:
        with Vertical(id="connect-box") as box:
            box.border_title = "Connect to a server"
            box.border_subtitle = "Enter connects · Esc cancels"
            yield Label("OpenAI-compatible API (bonsai-tui serve, llama-server, vLLM, LM Studio, Ollama…)")
            yield Input(self.url, id="connect-url", placeholder="http://host:port/v1")
            yield Label("API key (if the server wants one)")
            yield Input(id="connect-key", password=True)
            yield Label("Model (empty: the server's first)")
            yield Input(id="connect-model")
            yield Label("", id="connect-status")

    def on_mount(self) -> None:
        self.query_one("#connect-url", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        url = self.query_one("#connect-url", Input).value.strip()
        if not url:
            self._show("Enter the server's address, e.g. http://127.0.0.1:8080/v1", error=True)
            return
        key = self.query_one("#connect-key", Input).value.strip() or None
        model = self.query_one("#connect-model", Input).value.strip() or None
        self._show(f"Connecting to {url}…")
        self.connect(Endpoint(url, api_key=key, model_name=model))

    def _show(self, text: str, error: bool = False) -> None:
        status = self.query_one("#connect-status", Label)
        status.set_class(error, "error")
        status.update(text)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def connect(self, endpoint: Endpoint) -> None:
        try:
            endpoint.connect()
        except RemoteError as error:
            self.app.call_from_thread(self._show, str(error), True)
            return
        self.app.call_from_thread(self._connected, endpoint)

    def _connected(self, endpoint: Endpoint) -> None:
        self.dismiss(endpoint)  # not awaited: Textual refuses that from the screen's own handlers

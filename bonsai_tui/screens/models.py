"""Pick a Bonsai model, 1-bit or ternary (sizes, which are downloaded) or delete a downloaded one.

Dismisses with the chosen ModelChoice, or None; the app then opens it, downloading it first if
needed. Its last entry connects to a server instead (an Endpoint, from ConnectScreen).
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from bonsai_tui import hub
from bonsai_tui.backends import Endpoint
from bonsai_tui.screens.confirm import ConfirmScreen
from bonsai_tui.screens.connect import ConnectScreen


def model_line(choice: hub.ModelChoice, downloaded: dict[tuple[str, str], int]) -> str:
    size = downloaded.get((choice.repo, choice.filename))
    if size is not None:
        return f"{choice.name:<14} {size / 1e6:>8,.1f} MB   downloaded"
    return f"{choice.name:<14} {choice.approx_bytes / 1e6:>8,.0f} MB   to download"


CONNECT = "connect"  # the option that opens ConnectScreen


class ModelsScreen(ModalScreen[hub.ModelChoice | Endpoint | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("d,delete", "delete", "Delete download"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="models-box") as box:
            box.border_title = "Models"
            yield OptionList(id="models-list")
            yield Label("Enter opens · d deletes a downloaded model · models live in the Hugging Face cache",
                        id="models-help")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_list()

    def refresh_list(self) -> None:
        downloaded = {(repo, name): size for repo, name, _, size in hub.cached_models()}
        # a downloaded ternary model under its real file name (the list only knows its repo)
        ternary = [hub.known_choice(m.repo, path.name) if (path := hub.cached_path(m)) else m for m in hub.TERNARY_MODELS]
        choices = list(hub.BONSAI_MODELS) + ternary + [
            hub.known_choice(repo, name) for repo, name in downloaded if hub.known_choice(repo, name).label == ""
        ]
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(Option(model_line(c, downloaded), id=f"{c.repo}/{c.filename}") for c in choices)
        options.add_option(Option("Connect to a server…   an OpenAI-compatible API elsewhere", id=CONNECT))
        self.choices = {f"{c.repo}/{c.filename}": c for c in choices}
        self.downloaded = downloaded
        options.highlighted = 0
        options.focus()

    def _highlighted(self) -> hub.ModelChoice | None:
        options = self.query_one(OptionList)
        if options.highlighted is None or options.get_option_at_index(options.highlighted).id == CONNECT:
            return None
        return self.choices[options.get_option_at_index(options.highlighted).id]

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == CONNECT:
            self.app.push_screen(ConnectScreen(), self._connected)
            return
        self.dismiss(self.choices[event.option.id])

    def _connected(self, endpoint: Endpoint | None) -> None:
        if endpoint is not None:
            self.dismiss(endpoint)

    def action_delete(self) -> None:
        choice = self._highlighted()
        if choice is None or (choice.repo, choice.filename) not in self.downloaded:
            self.notify("Only a downloaded model can be deleted.", severity="warning")
            return
        question = f"Delete {choice.name} from the Hugging Face cache? It would have to be downloaded again."
        self.app.push_screen(ConfirmScreen(question, yes="Delete"), lambda yes: yes and self._delete(choice))

    @work(thread=True, exit_on_error=False)
    def _delete(self, choice: hub.ModelChoice) -> None:
        freed = hub.delete_cached(choice.repo)
        self.app.call_from_thread(self.notify, f"Deleted {choice.name} ({freed / 1e6:,.1f} MB freed).")
        self.app.call_from_thread(self.refresh_list)

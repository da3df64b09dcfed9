"""The sampling panel: every generation setting, editable live, validated as it is typed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from bonsai_tui.generation_settings import (
    CUSTOM, FREE_TEXT, JSON_OBJECT, JSON_SCHEMA, MODEL_DEFAULT, GenerationSettings, sample_schema,
)
from engine import constraints
from engine.sampling import PRESETS, SamplingParams

OUTPUT_CHOICES = (("Free text", FREE_TEXT), ("JSON", JSON_OBJECT), ("JSON Schema", JSON_SCHEMA))

MAX_TOKENS_LIMIT = 32768


@dataclass(frozen=True)
class Field:
    """One editable setting: its input id, label, and how text becomes a value."""

    name: str
    label: str
    parse: Callable[[str], Any]
    input_type: str  # Input's "number" / "integer" filter what can be typed


def _optional_int(text: str) -> int | None:
    return int(text) if text.strip() else None


SAMPLING_FIELDS = (
    Field("temperature", "Temperature", float, "number"),
    Field("top_k", "Top-k", int, "integer"),
    Field("top_p", "Top-p", float, "number"),
    Field("min_p", "Min-p", float, "number"),
    Field("repeat_penalty", "Repeat penalty", float, "number"),
    Field("seed", "Seed (empty: random)", _optional_int, "integer"),
)
MAX_TOKENS_FIELD = Field("max_tokens", "Max new tokens", int, "integer")


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _rounded(params: SamplingParams) -> SamplingParams:
    """Presets and GGUF metadata hold float32 values (0.85 reads back as 0.8500000238): show and
    compare them as the decimals a person would type."""
    return replace(params, **{f.name: round(getattr(params, f.name), 6) for f in fields(params) if f.type == "float"})


class ParamsPanel(VerticalScroll):
    """Emits `ParamsPanel.Changed` with the full settings after every valid edit."""

    class Changed(Message):
        def __init__(self, settings: GenerationSettings) -> None:
            super().__init__()
            self.settings = settings

    def __init__(self, settings: GenerationSettings, model_default: SamplingParams, max_tokens_limit: int = MAX_TOKENS_LIMIT, id: str | None = None) -> None:
        super().__init__(id=id)
        self.settings = replace(settings, params=_rounded(settings.params))
        self.model_default = _rounded(model_default)
        self.max_tokens_limit = max_tokens_limit
        self.border_title = "Sampling"

    def compose(self) -> ComposeResult:
        yield Label(self._preset_text(), id="preset-name")
        with Grid(id="presets"):
            for name in [*PRESETS, MODEL_DEFAULT]:
                yield Button(name, id=f"preset-{_slug(name)}", compact=True, classes="preset")
        for field in (*SAMPLING_FIELDS, MAX_TOKENS_FIELD):
            with Horizontal(classes="param-row"):
                yield Label(field.label, classes="param-label")
                yield Input(self._value_text(field), id=field.name, type=field.input_type, compact=True, select_on_focus=False)
            error = Static("", id=f"{field.name}-error", classes="param-error")
            error.display = False
            yield error
        yield Label("System prompt", classes="param-label")
        yield TextArea(self.settings.system_prompt, id="system-prompt", soft_wrap=True, show_line_numbers=False, compact=True)
        yield Label("Output", id="output-label", classes="param-label")
        yield Select(OUTPUT_CHOICES, value=self.settings.output, allow_blank=False, id="output", compact=True)
        schema = TextArea(self._schema_text(), id="json-schema", soft_wrap=True, show_line_numbers=False, compact=True)
        schema.display = self.settings.output == JSON_SCHEMA
        yield schema
        error = Static("", id="json-schema-error", classes="param-error")
        error.display = False
        yield error

    def _schema_text(self) -> str:
        return self.settings.json_schema or sample_schema()

    def _value_text(self, field: Field) -> str:
        if field is MAX_TOKENS_FIELD:
            return str(self.settings.max_tokens)
        return _shown(getattr(self.settings.params, field.name))

    def _preset_text(self) -> str:
        return f"Preset: {self.settings.preset}"

    # ---- edits ------------------------------------------------------------------------------

    def _validated(self, field: Field, text: str) -> GenerationSettings:
        try:
            value = field.parse(text)
        except ValueError:
            raise ValueError(f"{field.label}: enter a number") from None
        if field is MAX_TOKENS_FIELD:
            if not 1 <= value <= self.max_tokens_limit:
                raise ValueError(f"max new tokens must be between 1 and {self.max_tokens_limit} (got {value})")
            return replace(self.settings, max_tokens=value)
        if value == getattr(self.settings.params, field.name):
            return self.settings
        params = self.settings.params.with_changes(**{field.name: value})
        params.validate()
        preset = self.settings.preset if field.name == "seed" else CUSTOM
        return replace(self.settings, params=params, preset=preset)

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        event.stop()
        field = next(f for f in (*SAMPLING_FIELDS, MAX_TOKENS_FIELD) if f.name == event.input.id)
        try:
            settings = self._validated(field, event.value)
        except ValueError as problem:
            self._show_error(event.input, str(problem))
            return
        self._show_error(event.input, "")
        if settings != self.settings:
            self._apply(settings)

    def _show_error(self, field_input: Input, problem: str) -> None:
        field_input.set_class(bool(problem), "-invalid")
        error = self.query_one(f"#{field_input.id}-error", Static)
        error.update(problem)
        error.display = bool(problem)

    @on(TextArea.Changed, "#system-prompt")
    def _system_prompt_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        if event.text_area.text != self.settings.system_prompt:
            self._apply(replace(self.settings, system_prompt=event.text_area.text))

    @on(Button.Pressed, ".preset")
    def _preset_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.apply_preset(str(event.button.label))

    def apply_preset(self, name: str) -> None:
        """Replace the sampling values with a preset's (keeping the seed) and show them."""
        base = self.model_default if name == MODEL_DEFAULT else _rounded(PRESETS[name])
        self._apply(replace(self.settings, params=base.with_changes(seed=self.settings.params.seed), preset=name))
        self.refresh_inputs()

    @on(Select.Changed, "#output")
    def _output_changed(self, event: Select.Changed) -> None:
        event.stop()
        output = str(event.value)
        self.query_one("#json-schema", TextArea).display = output == JSON_SCHEMA
        self.query_one("#json-schema-error", Static).display = output == JSON_SCHEMA and self._schema_problem() is not None
        if output != self.settings.output:
            # the schema in the box is the last usable one (or the sample), so JSON Schema always has one
            self._apply(replace(self.settings, output=output, json_schema=self.settings.json_schema or sample_schema()))

    @on(TextArea.Changed, "#json-schema")
    def _schema_changed(self, event: TextArea.Changed) -> None:
        """Checked as it is typed; only a schema llguidance can compile replaces the last good one."""
        event.stop()
        problem = self._schema_problem()
        error = self.query_one("#json-schema-error", Static)
        error.update(problem or "")
        error.display = problem is not None
        event.text_area.set_class(problem is not None, "-invalid")
        text = event.text_area.text
        if problem is None and text != self._schema_text():
            self._apply(replace(self.settings, json_schema=text))

    def _schema_problem(self) -> str | None:
        text = self.query_one("#json-schema", TextArea).text
        return constraints.schema_problem(text) if text.strip() else "type or paste a JSON Schema"

    def load(self, settings: GenerationSettings) -> None:
        """Show another conversation's settings (no Changed message: the caller knows them)."""
        self.settings = replace(settings, params=_rounded(settings.params))
        self.refresh_inputs()
        self.query_one("#system-prompt", TextArea).text = settings.system_prompt
        self.query_one("#output", Select).value = settings.output
        self.query_one("#json-schema", TextArea).text = self._schema_text()

    def refresh_inputs(self) -> None:
        for field in (*SAMPLING_FIELDS, MAX_TOKENS_FIELD):
            field_input = self.query_one(f"#{field.name}", Input)
            field_input.value = self._value_text(field)
            self._show_error(field_input, "")
        self.query_one("#preset-name", Label).update(self._preset_text())

    def mark_ignored(self, names: frozenset[str]) -> None:
        """Say which settings the model's server does not take (a remote endpoint): they stay
        editable, so the conversation keeps them, but the label tells they change nothing there."""
        for field in SAMPLING_FIELDS:
            if field.name in names:
                row = self.query_one(f"#{field.name}", Input).parent
                label = row.query_one(".param-label", Label)
                label.update(f"{field.label} (ignored)")
                label.tooltip = "The server this chat talks to does not take this setting"
                label.add_class("-ignored")

    def _apply(self, settings: GenerationSettings) -> None:
        self.settings = settings
        self.query_one("#preset-name", Label).update(self._preset_text())
        self.post_message(self.Changed(settings))


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")

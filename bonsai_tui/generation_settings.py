"""What a reply is generated with, as the app keeps it per conversation (and the history saves it)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING

from engine import constraints
from engine.sampling import SamplingParams

if TYPE_CHECKING:
    from engine.constraints import Constraint
    from engine.model import Model

MODEL_DEFAULT = "Model default"  # the preset name for the model's own general.sampling.* values
CUSTOM = "Custom"  # the preset name once a value was edited by hand
# what a reply must be: free text, any JSON object, or valid against a JSON Schema (engine/constraints.py)
FREE_TEXT, JSON_OBJECT, JSON_SCHEMA = "text", "json", "json_schema"
SAMPLE_SCHEMA = "model_card.schema.json"  # under assets/: what the schema box starts with


@dataclass(frozen=True)
class GenerationSettings:
    """What the next reply is generated with; saved per conversation."""

    params: SamplingParams
    max_tokens: int = 512
    system_prompt: str = ""
    preset: str = MODEL_DEFAULT  # a PRESETS name, MODEL_DEFAULT, or CUSTOM after an edit
    output: str = FREE_TEXT  # FREE_TEXT, JSON_OBJECT or JSON_SCHEMA
    json_schema: str = ""  # the schema's text (kept while output is another choice); always a usable one


def sample_schema() -> str:
    """The model card of the Bonsai tutorial's JSON example, as a schema to start from."""
    return (files("bonsai_tui.assets") / SAMPLE_SCHEMA).read_text(encoding="utf-8")


def output_constraint(model: "Model", settings: GenerationSettings) -> "Constraint | None":
    """The engine constraint for the settings' output choice (ConstraintError, one line, if unusable)."""
    if settings.output == JSON_OBJECT:
        return constraints.json_object(model)
    if settings.output == JSON_SCHEMA:
        return constraints.json_schema(model, settings.json_schema or sample_schema())
    return None

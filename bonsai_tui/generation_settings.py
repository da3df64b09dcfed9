"""What a reply is generated with, as the app keeps it per conversation (and the history saves it)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.sampling import SamplingParams

MODEL_DEFAULT = "Model default"  # the preset name for the model's own general.sampling.* values
CUSTOM = "Custom"  # the preset name once a value was edited by hand


@dataclass(frozen=True)
class GenerationSettings:
    """What the next reply is generated with; saved per conversation."""

    params: SamplingParams
    max_tokens: int = 512
    system_prompt: str = ""
    preset: str = MODEL_DEFAULT  # a PRESETS name, MODEL_DEFAULT, or CUSTOM after an edit

"""The model's chat template (`tokenizer.chat_template`), rendered in jinja2's sandbox.

Templates come from the model file, so they run sandboxed (no attribute tricks, no file access).
A file without a template gets plain ChatML, which is what Qwen models speak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import EngineError

CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    def __init__(self, source: str | None) -> None:
        self.source = source or CHATML
        self.is_fallback = not source
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(self.source)
        except TemplateError as error:
            raise EngineError(f"the model's chat template does not parse: {error}") from None

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        enable_thinking: bool = False,
    ) -> str:
        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                enable_thinking=enable_thinking,
            )
        except TemplateError as error:
            raise EngineError(f"the model's chat template failed: {error}") from None

"""Chat templates: the Qwen3 template from the file, rendered sandboxed; ChatML fallback."""

from __future__ import annotations

import pytest

from engine.chat_template import ChatTemplate
from engine.errors import EngineError
from engine.synth import qwen3_chat_template

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"},
    {"role": "user", "content": "Bye"},
]


def test_qwen3_template_without_thinking() -> None:
    text = ChatTemplate(qwen3_chat_template()).render(CONVERSATION, enable_thinking=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"  # earlier thinking is dropped
        "<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_qwen3_template_with_thinking_leaves_the_think_block_to_the_model() -> None:
    text = ChatTemplate(qwen3_chat_template()).render(CONVERSATION[:2], enable_thinking=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_chatml_fallback() -> None:
    template = ChatTemplate(None)
    assert template.is_fallback
    assert template.render(CONVERSATION[:2]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_template_cannot_escape_the_sandbox() -> None:
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(EngineError, match="chat template failed"):
        ChatTemplate(evil).render(CONVERSATION)

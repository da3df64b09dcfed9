"""The GGUF-built tokenizer against ids from Qwen2's reference tokenizer (llama.cpp's vocab tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.gguf_file import GGUFFile
from engine.tokenizer import BonsaiTokenizer


@pytest.fixture(scope="module")
def qwen2(qwen2_vocab: Path) -> BonsaiTokenizer:
    return BonsaiTokenizer(GGUFFile(qwen2_vocab).metadata)


def vocab_cases(qwen2_vocab: Path) -> list[tuple[str, list[int]]]:
    texts = Path(f"{qwen2_vocab}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = Path(f"{qwen2_vocab}.out").read_text(encoding="utf-8").split("\n")
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts, ids)]


def test_every_llama_cpp_vocab_case_gives_the_reference_ids(qwen2: BonsaiTokenizer, qwen2_vocab: Path) -> None:
    cases = vocab_cases(qwen2_vocab)
    assert len(cases) >= 40
    for text, expected in cases:
        assert qwen2.encode(text) == expected, repr(text)
        assert qwen2.decode(expected) == text


@pytest.mark.parametrize(
    "text, ids",
    [
        ("Hello world", [9707, 1879]),
        (" Hello world", [21927, 1879]),
        ("Hello, world!", [9707, 11, 1879, 0]),
        ("<|im_start|>user\nhi<|im_end|>", [151644, 872, 198, 6023, 151645]),
    ],
)
def test_known_ids(qwen2: BonsaiTokenizer, text: str, ids: list[int]) -> None:
    assert qwen2.encode(text) == ids


def test_stop_tokens(qwen2: BonsaiTokenizer) -> None:
    assert qwen2.stop_ids == {151643, 151645}


def test_stream_decoder_never_splits_a_character(tiny_model) -> None:
    tok = tiny_model.tokenizer
    text = "héllo 世界 🌳"
    ids = tok.encode(text)
    decoder = tok.stream_decoder()
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    # the tree emoji is 4 bytes = 4 byte tokens in the tiny vocab: nothing shows until the last
    assert pieces[-5:-2] == ["", "", ""] and pieces[-2] == "🌳"


def test_stream_decoder_hides_control_tokens_but_shows_think(tiny_model) -> None:
    tok = tiny_model.tokenizer
    ids = tok.encode("<think>a</think><|vision_pad|>b")
    decoder = tok.stream_decoder()
    assert "".join(decoder.push(i) for i in ids) == "<think>a</think>b"

"""Bad model files are refused with one line naming the file and the problem."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest

import engine
from bonsai_tui.cli import main
from engine import synth
from engine.errors import ModelFileError
from engine.synth import write_model


def refusal(path: Path) -> str:
    with pytest.raises(ModelFileError) as info:
        engine.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path.name + ": ")
    return message


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("just some text, long enough to have a header" * 3)
    assert "not a GGUF file" in refusal(path)


def test_truncated_download(tmp_path: Path, tiny_model_path: Path) -> None:
    path = tmp_path / "partial.gguf"
    path.write_bytes(tiny_model_path.read_bytes()[:-5000])
    assert "truncated" in refusal(path)


def test_truncated_header(tmp_path: Path, tiny_model_path: Path) -> None:
    path = tmp_path / "stub.gguf"
    path.write_bytes(tiny_model_path.read_bytes()[:3000])
    assert "truncated" in refusal(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in refusal(tmp_path / "absent.gguf")


def test_wrong_architecture(tmp_path: Path) -> None:
    path = tmp_path / "llama.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 128), np.float32))
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    assert "unsupported architecture 'llama'" in refusal(path)


def test_unsupported_tensor_type(tmp_path: Path) -> None:
    path = tmp_path / "q8.gguf"
    writer = gguf.GGUFWriter(path, "qwen3")
    writer.add_tensor("token_embd.weight", np.zeros((4, 34), np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    assert "unsupported type 8" in refusal(path)


def test_missing_tensor(tmp_path: Path) -> None:
    data = write_model(tmp_path / "a.gguf", "tiny", n_layers=1).read_bytes()
    (tmp_path / "b.gguf").write_bytes(data.replace(b"output_norm.weight", b"output_norX.weight"))
    assert "tensor output_norm.weight is missing" in refusal(tmp_path / "b.gguf")


def test_shape_mismatch(tmp_path: Path) -> None:
    says_two_kv_heads = synth._metadata(synth.PRESETS["tiny"], "mismatch")
    has_four = replace(synth.PRESETS["tiny"], n_head_kv=4)
    path = tmp_path / "mismatch.gguf"
    synth._write(path, has_four, says_two_kv_heads, seed=0, tensors=True)
    assert "tensor blk.0.attn_k.weight has shape [256, 256], expected [128, 256]" in refusal(path)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 40)
    assert main(["generate", "--model", str(path), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bonsai-tui: bad.gguf: ")

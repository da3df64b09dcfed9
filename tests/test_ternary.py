"""Q2_0 (ternary Bonsai): each kernel path against its NumPy twin in both layouts, whole models
against the float64 reference, and malformed ternary files refused in one line."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import engine
import reference
from engine import q2_kernels, q2_lanes, simd, synth
from engine.config import ModelConfig
from engine.errors import ModelFileError
from engine.matrix import GEMV_MAX_ROWS, kernel_names
from engine.q2_matrix import Q2Matrix
from engine.synth import random_q2, write_model
from q2_twins import dense_float64 as dense
from q2_twins import rounded_float64
from test_model_files import refusal

LOGIT_ATOL = 1e-3  # float32 engine vs float64 reference, K/V rounded to fp16 (as test_forward)
INT8_LOGIT_ATOL = 0.25  # int8 activations (as test_forward; measured 0.08 on the tiny ternary model)
needs_int8 = pytest.mark.skipif(not simd.AVAILABLE, reason="the int8 kernels need AVX2 or AVX-512 VNNI")
LAYOUTS = ["g128", "g64"]
ROWS = 131  # two full row tiles and a padded third


def hand_row(layout: str, d: float, codes: np.ndarray) -> np.ndarray:
    """One Q2_0 row built by hand: codes 0..3 packed four to a byte, lowest bits first."""
    block = q2_kernels.LAYOUTS[layout][0]
    out = []
    for chunk in codes.reshape(-1, block):
        packed = (chunk.reshape(-1, 4) << np.array([0, 2, 4, 6])).sum(1).astype(np.uint8)
        out.append(np.concatenate([np.array([d], "<f2").view(np.uint8), packed]))
    return np.concatenate(out)[None, :]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_matches_the_spec(layout: str) -> None:
    codes = np.arange(256) % 4  # -d, 0, +d, and +2d (code 3, which ternary files never hold)
    row = hand_row(layout, 0.5, codes)
    assert row.shape[1] == {"g128": 2 * 34, "g64": 4 * 18}[layout]
    out = np.empty((1, 256), np.float32)
    matrix = Q2Matrix(row, 256, ThreadPoolExecutor(1))
    q2_kernels.q2_dequantize(matrix.tiles, 0, 1, out)
    np.testing.assert_array_equal(out[0], 0.5 * (codes - 1.0))
    row[0, 2] = 0b10  # weight 0 is the lowest two bits of the first code byte: +d, the rest -d
    q2_kernels.q2_dequantize(Q2Matrix(row, 256, ThreadPoolExecutor(1)).tiles, 0, 1, out)
    assert list(out[0, :8]) == [0.5, -0.5, -0.5, -0.5, -0.5, 0.0, 0.5, 1.0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_exact_gemv_and_tiled_gemm_match_the_twin(layout: str) -> None:
    rng = np.random.default_rng(1)
    data = random_q2(rng, ROWS, 512, 0.05, layout)
    matrix = Q2Matrix(data, 512, ThreadPoolExecutor(2))
    x = rng.standard_normal((GEMV_MAX_ROWS + 5, 512)).astype(np.float32)
    expected = x.astype(np.float64) @ dense(data, 512).T
    np.testing.assert_allclose(matrix.matmul(x[:1]), expected[:1], atol=1e-4)  # lookup-table GEMV
    np.testing.assert_allclose(matrix.matmul(x), expected, atol=1e-4)  # dequantize + BLAS
    ids = np.array([0, ROWS - 1, 64])
    np.testing.assert_array_equal(matrix.rows_as_float(ids), dense(data, 512)[ids].astype(np.float32))


@needs_int8
def test_int8_prefill_is_one_gemm_of_the_rounded_activations(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch goes through the int8 GEMM (whatever its length), one row through the GEMV."""
    rng = np.random.default_rng(2)
    data = random_q2(rng, ROWS, 512, 0.05, "g64")
    matrix = Q2Matrix(data, 512, ThreadPoolExecutor(2), int8=True)
    calls = []
    for name in ("gemv", "gemm"):
        kernel = getattr(q2_lanes, name)
        monkeypatch.setattr(q2_lanes, name, lambda *a, kernel=kernel, name=name: calls.append(name) or kernel(*a))
    x = rng.standard_normal((GEMV_MAX_ROWS + 5, 512)).astype(np.float32)
    want = rounded_float64(x) @ dense(data, 512).T
    np.testing.assert_allclose(matrix.matmul(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(matrix.matmul(x[:1]), want[:1], rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert calls == ["gemm", "gemv"]


def test_a_row_length_fitting_neither_layout_is_an_error() -> None:
    with pytest.raises(ValueError, match="fit neither Q2_0 layout"):
        Q2Matrix(np.zeros((2, 35), np.uint8), 128, ThreadPoolExecutor(1))


# ---- whole models ---------------------------------------------------------------------------

PROMPT_IDS = list(range(300, 300 + GEMV_MAX_ROWS + 9))  # long enough for the exact path's unpack + BLAS


@pytest.fixture(scope="module")
def ternary_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ternary")
    return {
        layout: write_model(folder / f"{layout}.gguf", "tiny", seed=5, weight_type="Q2_0", q2_layout=layout, tied=False)
        for layout in LAYOUTS
    }


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ternary_logits_match_float64_reference(ternary_paths: dict[str, Path], layout: str) -> None:
    path = ternary_paths[layout]
    model = engine.load(path, threads=2, exact=True)
    assert model.file.q2_layout == layout
    want = reference.forward(str(path), PROMPT_IDS, kv_dtype=np.float16)
    assert np.abs(model.logits(PROMPT_IDS) - want).max() < LOGIT_ATOL  # prefill: dequantize + BLAS
    cache = model.new_cache(8)
    decoded = np.stack([model.forward([t], cache, i) for i, t in enumerate(PROMPT_IDS[:8])])
    assert np.abs(decoded - want[:8]).max() < LOGIT_ATOL  # decode: the exact lookup-table GEMV


@needs_int8
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ternary_int8_prefill_and_decode_stay_close_to_the_reference(ternary_paths: dict[str, Path], layout: str) -> None:
    model = engine.load(ternary_paths[layout], threads=2)
    assert model.int8_decode and model.blocks[0].wqkv.int8
    want = reference.forward(str(ternary_paths[layout]), PROMPT_IDS, kv_dtype=np.float16)
    assert LOGIT_ATOL < np.abs(model.logits(PROMPT_IDS) - want).max() < INT8_LOGIT_ATOL  # the int8 GEMM
    cache = model.new_cache(16)
    decoded = np.stack([model.forward([t], cache, i) for i, t in enumerate(PROMPT_IDS[:16])])
    assert LOGIT_ATOL < np.abs(decoded - want[:16]).max() < INT8_LOGIT_ATOL  # the int8 GEMV


def test_same_weights_in_both_layouts_give_the_same_logits(ternary_paths: dict[str, Path]) -> None:
    g128, g64 = (engine.load(ternary_paths[layout], threads=2, exact=True) for layout in LAYOUTS)
    assert ternary_paths["g64"].stat().st_size > ternary_paths["g128"].stat().st_size
    np.testing.assert_array_equal(
        reference.forward(str(ternary_paths["g128"]), PROMPT_IDS[:4]), reference.forward(str(ternary_paths["g64"]), PROMPT_IDS[:4])
    )
    # float32 sums in two orders, then keys rounded to fp16: a key can land one fp16 step apart
    np.testing.assert_allclose(g128.logits(PROMPT_IDS), g64.logits(PROMPT_IDS), atol=5e-4)
    cache128, cache64 = g128.new_cache(4), g64.new_cache(4)
    for i, t in enumerate(PROMPT_IDS[:4]):
        np.testing.assert_allclose(g128.forward([t], cache128, i), g64.forward([t], cache64, i), atol=5e-4)


@pytest.mark.parametrize("exact", [False, True])
def test_bench_names_the_q2_kernels_that_run(ternary_paths: dict[str, Path], exact: bool) -> None:
    from engine.bench import kernels_used

    with engine.load(ternary_paths["g128"], threads=1, exact=exact) as model:
        names = kernels_used(model)
    expected = kernel_names(simd.AVAILABLE and not exact)
    assert names == {"decode": expected["decode"] + " (Q2_0)", "prefill": expected["prefill"] + " (Q2_0)"}


# ---- malformed ternary files ------------------------------------------------------------------


def test_truncated_ternary_file(tmp_path: Path, ternary_paths: dict[str, Path]) -> None:
    for layout in LAYOUTS:
        path = tmp_path / f"partial-{layout}.gguf"
        path.write_bytes(ternary_paths[layout].read_bytes()[:-3000])
        assert "the file is truncated: tensor output.weight needs bytes up to" in refusal(path)


def test_tensor_sizes_fitting_neither_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    honest = synth.random_q2
    monkeypatch.setattr(synth, "random_q2", lambda *a: np.pad(honest(*a), ((0, 0), (0, 2))))  # 2 bytes too many a row
    path = write_model(tmp_path / "odd.gguf", "tiny", n_layers=1, weight_type="Q2_0")
    assert refusal(path) == (  # 1,050 rows x 256 weights, 2 bytes a row too many, padded to 32
        "odd.gguf: Q2_0 tensor token_embd.weight takes 73,504 bytes, which fits neither Q2_0 layout "
        "(expected 71,400 (g128) or 75,600 (g64))"
    )


def test_tensors_mixing_both_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    honest, calls = synth.random_q2, []
    monkeypatch.setattr(synth, "random_q2", lambda *a: honest(*a[:4], LAYOUTS[len(calls.append(0) or calls) % 2]))
    path = write_model(tmp_path / "mixed.gguf", "tiny", n_layers=1, weight_type="Q2_0")
    assert refusal(path).endswith("its Q2_0 tensors mix the 128- and 64-weight layouts")


def test_the_27b_is_refused_naming_what_runs() -> None:
    with pytest.raises(ModelFileError) as info:
        ModelConfig.from_metadata({"general.architecture": "qwen35"}, "Bonsai-27B-Q1_0.gguf")
    assert str(info.value) == (
        "Bonsai-27B-Q1_0.gguf: unsupported architecture 'qwen35' (this engine runs the qwen3 architecture: "
        "Bonsai 1.7B, 4B and 8B, 1-bit (Q1_0) or ternary (Q2_0); Bonsai 27B (qwen35, vision-language) is not supported)"
    )


def test_synth_layout_is_only_for_ternary_presets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bonsai_tui.cli import main

    assert main(["synth", str(tmp_path / "m.gguf"), "--preset", "tiny", "--layout", "g64"]) == 2
    assert capsys.readouterr().err == "bonsai-tui synth: --layout is for the ternary presets; tiny has no Q2_0 weights\n"

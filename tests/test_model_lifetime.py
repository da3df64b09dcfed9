"""A model's lifetime and what loading one changes in the process: close() gives back its threads,
its file mapping and its memory; loading changes no process-wide setting behind the caller's back."""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import threading
import weakref
from pathlib import Path

import gguf
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import engine
from engine.synth import write_model

PROMPT_IDS = [3, 4, 5]  # a batch: its attention runs on the model's thread pool


def mapped(path: Path) -> int:
    """How many regions of this process's address space map `path`."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        return sum(line.rstrip().endswith(str(path)) for line in maps)


def resident_mb() -> float:
    with open("/proc/self/statm", encoding="utf-8") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def pool_threads() -> int:
    """The models' prefill threads alive now. Counted by name, not threading.active_count(): threads
    that earlier tests left ending (servers, history savers) would make the count move by itself."""
    return sum(t.name.startswith("prefill") for t in threading.enumerate())


def use(model: engine.Model) -> None:
    model.forward(PROMPT_IDS, model.new_cache(64), 0)
    model.forward([5], model.new_cache(64), 0)


def test_close_ends_the_thread_pool_and_unmaps_the_file(tiny_model_path: Path) -> None:
    with engine.load(tiny_model_path, threads=2) as warm_up:  # Numba starts its own threads once
        use(warm_up)
    threads, files = pool_threads(), len(os.listdir("/proc/self/fd"))
    model = engine.load(tiny_model_path, threads=2)
    use(model)
    assert pool_threads() > threads  # the prefill pool's threads
    model.close()
    assert pool_threads() == threads
    assert len(os.listdir("/proc/self/fd")) == files and mapped(tiny_model_path) == 0
    model.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        use(model)


def test_a_load_close_loop_does_not_grow_memory_or_threads(tiny_model_path: Path) -> None:
    with engine.load(tiny_model_path, threads=2) as model:
        use(model)
    threads, rss = pool_threads(), resident_mb()
    models = []
    for _ in range(8):
        with engine.load(tiny_model_path, threads=2) as model:
            use(model)
        models.append(weakref.ref(model))
    del model
    gc.collect()
    assert [ref() for ref in models] == [None] * 8  # nothing holds on to a closed model
    assert pool_threads() == threads and mapped(tiny_model_path) == 0
    assert resident_mb() - rss < 20


def test_a_failed_load_leaves_nothing_open(tmp_path: Path) -> None:
    data = write_model(tmp_path / "a.gguf", "tiny", n_layers=1).read_bytes()
    broken = tmp_path / "b.gguf"
    broken.write_bytes(data.replace(b"output_norm.weight", b"output_norX.weight"))
    threads = pool_threads()
    with pytest.raises(engine.ModelFileError):
        engine.load(broken, threads=2)
    assert mapped(broken) == 0 and pool_threads() == threads


def test_loading_and_prefill_leave_blas_threads_as_they_were(tiny_model_path: Path) -> None:
    if not threadpool_info():
        pytest.skip("numpy reports no BLAS to threadpoolctl")
    with threadpool_limits(3, user_api="blas"):  # the caller's own setting
        with engine.load(tiny_model_path, threads=2) as model:
            use(model)
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {3}


def test_loading_a_model_does_not_tune_the_c_allocator(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class RecordingLibrary:
        def __init__(self, name: str, *args: object, **kwargs: object) -> None:
            self.name = name

        def __getattr__(self, symbol: str):
            calls.append(f"{self.name}:{symbol}")
            return lambda *args: 0

    monkeypatch.setattr(ctypes, "CDLL", RecordingLibrary)
    engine.load(tiny_model_path, threads=1).close()
    assert calls == []


def test_the_program_opts_in_to_the_big_array_allocator_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from bonsai_tui import cli

    asked: list[bool] = []
    monkeypatch.setattr(cli, "keep_big_arrays_out_of_the_heap", lambda: asked.append(True))
    assert cli.main(["history"]) == 0
    assert asked == [True]


def test_metadata_values_keep_the_files_types(tiny_model_path: Path) -> None:
    """The tokenizer's big arrays leave the metadata once the tokenizer holds them; no key's value
    is replaced by a stand-in of another type."""
    reader = gguf.GGUFReader(tiny_model_path)
    with engine.load(tiny_model_path, threads=1) as model:
        meta = model.file.metadata
    for key, field in reader.fields.items():
        if key not in meta or key.startswith("GGUF."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert isinstance(meta[key], list), key
            assert len(meta[key]) == len(field.data), key
        elif field.types[0] == gguf.GGUFValueType.STRING:
            assert isinstance(meta[key], str), key
        else:
            assert isinstance(meta[key], (int, float, bool, np.generic)), key
    assert "tokenizer.ggml.tokens" not in meta and "tokenizer.ggml.merges" not in meta
    assert model.tokenizer.n_vocab == len(reader.fields["tokenizer.ggml.tokens"].data)


def test_bench_closes_every_model_it_loads(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import bench

    loaded: list[engine.Model] = []

    class RecordedModel(engine.Model):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            loaded.append(self)

    monkeypatch.setattr(bench, "Model", RecordedModel)
    monkeypatch.setattr(bench, "read_bandwidth_gb_s", lambda threads: 1.0)
    bench.run_bench(str(tiny_model_path), pp=3, tg=2, threads=1, runs=1, n_ctx=64)
    assert len(loaded) == 2 and all(model.closed for model in loaded)

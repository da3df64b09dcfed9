"""bonsai-tui's inference engine: Bonsai 1-bit (Q1_0) Qwen3 GGUF models in NumPy + Numba.

    import engine
    with engine.load("Bonsai-1.7B-Q1_0.gguf") as model:  # close() ends its thread pool
        session = engine.ChatSession(model)
        for event in session.chat([{"role": "user", "content": "Hello"}]):
            ...

Importing or loading changes nothing process-wide; a program may opt in to
engine.allocator.keep_big_arrays_out_of_the_heap() (bonsai-tui's CLI does).

Reading order: gguf_file -> config -> kernels (simd) -> matrix -> model -> tokenizer -> chat_template
-> sampling -> session.
"""

from __future__ import annotations

from pathlib import Path

from engine.cpu import apply_cap

apply_cap()  # before anything imports Numba or NumPy: BONSAI_TUI_CPU caps their code generation

from engine.config import ModelConfig
from engine.errors import ContextFullError, EngineError, ModelFileError
from engine.kv_cache import DEFAULT_KIND
from engine.model import Model
from engine.sampling import PRESETS, SamplingParams
from engine.session import ChatSession, DoneEvent, GenerationStats, StopReason, TokenEvent


def load(path: str | Path, threads: int | None = None, exact: bool = False, kv_cache: str | None = None) -> Model:
    """Open a GGUF model (memory-mapped). Raises ModelFileError with a one-line reason.

    exact=True: decode with float32 activations instead of int8 ones (slower; see kernels.py).
    kv_cache: "f16" or "q8" (engine.kv_cache.KINDS; None: the default, DEFAULT_KIND).
    """
    return Model(path, threads, exact, kv_cache or DEFAULT_KIND)


__all__ = [
    "ChatSession", "ContextFullError", "DoneEvent", "EngineError", "GenerationStats", "ModelConfig",
    "ModelFileError", "Model", "PRESETS", "SamplingParams", "StopReason", "TokenEvent", "load",
]

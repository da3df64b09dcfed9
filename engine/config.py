"""ModelConfig: every shape and hyper-parameter of a Qwen3 model, read from GGUF metadata only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ModelFileError

SUPPORTED_ARCHITECTURES = ("qwen3",)
# said when a file is refused: the Bonsai 27B, for one, is a qwen35 vision-language model
SUPPORTED_MODELS = (
    "this engine runs the qwen3 architecture: Bonsai 1.7B, 4B and 8B, 1-bit (Q1_0) or ternary (Q2_0); "
    "Bonsai 27B (qwen35, vision-language) is not supported"
)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    architecture: str
    n_layers: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    context_length: int
    rms_eps: float
    rope_base: float
    # YaRN context extension (llama.cpp's ggml_rope_yarn_corr_dims); factor 1 = plain RoPE
    rope_scaling: str = "none"
    rope_factor: float = 1.0
    rope_original_context: int = 0
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    tied_embeddings: bool = True

    @property
    def uses_yarn(self) -> bool:
        return self.rope_scaling == "yarn" and self.rope_factor > 1.0

    @property
    def yarn_attn_factor(self) -> float:
        """cos/sin are scaled by this ("mscale"), as llama.cpp does for YaRN."""
        return 1.0 + 0.1 * math.log(self.rope_factor) if self.uses_yarn else 1.0

    @property
    def n_q(self) -> int:
        return self.n_head * self.head_dim

    @property
    def n_kv(self) -> int:
        return self.n_head_kv * self.head_dim

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any], path: str | Path = "model.gguf", tied: bool = True
    ) -> "ModelConfig":
        arch = metadata.get("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ModelFileError(path, f"unsupported architecture {arch!r} ({SUPPORTED_MODELS})")

        def need(key: str) -> Any:
            full = f"{arch}.{key}"
            if full not in metadata:
                raise ModelFileError(path, f"metadata key {full} is missing")
            return metadata[full]

        n_embd, n_head = int(need("embedding_length")), int(need("attention.head_count"))
        head_dim = int(metadata.get(f"{arch}.attention.key_length", n_embd // n_head))
        tokens = metadata.get("tokenizer.ggml.tokens")
        if not tokens:
            raise ModelFileError(path, "metadata key tokenizer.ggml.tokens is missing")
        scaling = str(metadata.get(f"{arch}.rope.scaling.type", "none"))
        return cls(
            name=str(metadata.get("general.name", Path(path).stem)),
            architecture=arch,
            n_layers=int(need("block_count")),
            n_embd=n_embd,
            n_ff=int(need("feed_forward_length")),
            n_head=n_head,
            n_head_kv=int(metadata.get(f"{arch}.attention.head_count_kv", n_head)),
            head_dim=head_dim,
            n_vocab=len(tokens),
            context_length=int(need("context_length")),
            rms_eps=float(metadata.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
            rope_base=float(metadata.get(f"{arch}.rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            rope_factor=float(metadata.get(f"{arch}.rope.scaling.factor", 1.0)),
            rope_original_context=int(metadata.get(f"{arch}.rope.scaling.original_context_length", 0)),
            yarn_beta_fast=float(metadata.get(f"{arch}.rope.scaling.yarn_beta_fast", 32.0)),
            yarn_beta_slow=float(metadata.get(f"{arch}.rope.scaling.yarn_beta_slow", 1.0)),
            tied_embeddings=tied,
        )

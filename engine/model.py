"""The Qwen3 forward pass, for a batch of new tokens at a time, over weights copied out of a GGUF.

Per block:  x += Wo · attention(rope(norm_q(Wq·n)), rope(norm_k(Wk·n)), Wv·n)     n = rmsnorm(x)
            x += Wdown · (silu(Wgate·m) * Wup·m)                                 m = rmsnorm(x)
then rmsnorm and the LM head (token_embd reused when the file has no output.weight).
Prefill sends the prompt through in passes of up to PREFILL_CHUNK tokens; decode sends one token. Keys and values of
every position stay in a KVCache (fp16 or int8, kv_cache.py) so later tokens attend to them without
recomputing; attention.py reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from engine import attention, blas, kernels, simd
from engine.threads import ThreadBudget, choose_layer, launch_guard
from engine.chat_template import ChatTemplate
from engine.config import ModelConfig
from engine.errors import ModelFileError
from engine.gguf_file import GGML_Q1_0, GGML_Q2_0, GGUFFile
from engine.kv_cache import DEFAULT_KIND, KINDS, KVCache
from engine.matrix import DenseMatrix, Matrix, Q1Matrix
from engine.q2_matrix import Q2Matrix
from engine.sampling import SamplingParams, params_from_metadata
from engine.tokenizer import BonsaiTokenizer

PREFILL_CHUNK = 512  # prompt tokens per pass: bounds a long prompt's activations (each pass unpacks
# every weight once, so longer passes prefill faster: 256 cost pp512 9 %)
ATTENTION_ROWS = 128  # prompt rows per prefill attention job: bounds the [heads, rows, keys] scores
TOKENIZER_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")


@dataclass
class Block:
    attn_norm: np.ndarray
    wqkv: Matrix  # attn_q, attn_k, attn_v stacked: they read the same input, so one pass serves all
    q_norm: np.ndarray
    k_norm: np.ndarray
    wo: Matrix
    ffn_norm: np.ndarray
    w_gate_up: Matrix  # ffn_gate over ffn_up, stacked likewise
    w_down: Matrix



class Model:
    """A loaded model. It owns a thread pool: close() it (or use `with`) when done with it."""

    def __init__(
        self, path: str | Path, threads: int | None = None, exact: bool = False, kv_cache: str = DEFAULT_KIND,
        adapt_threads: bool = True,
    ) -> None:
        """exact=True keeps decode in float32 (lookup-table GEMV) even where the int8 kernel runs.
        kv_cache: the type of every cache new_cache makes, "f16" or "q8" (kv_cache.KINDS).
        adapt_threads: run on fewer threads while other processes keep cores busy (threads.py)."""
        if kv_cache not in KINDS:
            raise ValueError(f"unknown KV cache type {kv_cache!r}: expected one of {', '.join(KINDS)}")
        self.kv_cache = kv_cache
        choose_layer()  # before the first parallel kernel of the process (engine/threads.py)
        self.path = Path(path)
        self.int8_decode = simd.AVAILABLE and not exact
        self.closed = False
        self.file = GGUFFile(self.path)
        self.threads = threads or os.cpu_count() or 1
        self.thread_budget = ThreadBudget(self.threads, adaptive=adapt_threads)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="prefill")
        try:
            meta = self.file.metadata
            self.config = ModelConfig.from_metadata(meta, self.path, tied="output.weight" not in self.file.tensors)
            self.tokenizer = BonsaiTokenizer(meta, self.path)
            for key in TOKENIZER_ARRAYS:
                meta.pop(key, None)  # ~100 MB of Python strings, now held by the tokenizer in its own form
            self.template = ChatTemplate(meta.get("tokenizer.chat_template"))
            self._load_weights()
        except BaseException:
            self.pool.shutdown()
            raise
        finally:
            self.file.close()  # every weight is copied out (or the load failed): the mapping can go
        cfg = self.config
        self.rope_frequencies = kernels.rope_frequencies(
            cfg.head_dim, cfg.rope_base, cfg.rope_factor if cfg.uses_yarn else 1.0,
            cfg.rope_original_context, cfg.yarn_beta_fast, cfg.yarn_beta_slow,
        )

    # ---- loading --------------------------------------------------------------------------

    def _matrix(self, cols: int, *parts: tuple[str, int]) -> Matrix:
        """The tensors `parts` (name, rows), all [rows, cols], stacked by rows into one matrix."""
        types = {self._info(name, (rows, cols)).ggml_type for name, rows in parts}
        if len(types) > 1:
            raise ModelFileError(self.path, f"{', '.join(n for n, _ in parts)} mix weight types")
        data = np.concatenate([self.file.tensor(name) for name, _ in parts])
        if GGML_Q1_0 in types:
            matrix: Matrix | Q2Matrix = Q1Matrix(data, cols, self.pool, self.int8_decode)
        elif GGML_Q2_0 in types:
            matrix = Q2Matrix(data, cols, self.pool, self.int8_decode)
        else:
            matrix = DenseMatrix(data)
        for name, _ in parts:
            self.file.release(name)  # the matrix keeps its own copy; mapped pages need not stay resident
        return matrix

    def _vector(self, name: str, size: int) -> np.ndarray:
        self._info(name, (size,))
        return np.array(self.file.tensor(name), dtype=np.float32)  # a copy: the mapping closes after loading

    def _info(self, name: str, shape: tuple[int, ...]):
        info = self.file.tensors.get(name)
        if info is None:
            raise ModelFileError(self.path, f"tensor {name} is missing")
        if info.shape != shape:
            raise ModelFileError(self.path, f"tensor {name} has shape {list(info.shape)}, expected {list(shape)}")
        return info

    def _load_weights(self) -> None:
        c = self.config
        if c.n_head % c.n_head_kv or c.head_dim % 2:
            raise ModelFileError(self.path, f"{c.n_head} query heads cannot share {c.n_head_kv} KV heads")
        self.token_embd = self._matrix(c.n_embd, ("token_embd.weight", c.n_vocab))
        self.blocks = [
            Block(
                attn_norm=self._vector(f"blk.{i}.attn_norm.weight", c.n_embd),
                wqkv=self._matrix(
                    c.n_embd, (f"blk.{i}.attn_q.weight", c.n_q), (f"blk.{i}.attn_k.weight", c.n_kv),
                    (f"blk.{i}.attn_v.weight", c.n_kv),
                ),
                q_norm=self._vector(f"blk.{i}.attn_q_norm.weight", c.head_dim),
                k_norm=self._vector(f"blk.{i}.attn_k_norm.weight", c.head_dim),
                wo=self._matrix(c.n_q, (f"blk.{i}.attn_output.weight", c.n_embd)),
                ffn_norm=self._vector(f"blk.{i}.ffn_norm.weight", c.n_embd),
                w_gate_up=self._matrix(c.n_embd, (f"blk.{i}.ffn_gate.weight", c.n_ff), (f"blk.{i}.ffn_up.weight", c.n_ff)),
                w_down=self._matrix(c.n_ff, (f"blk.{i}.ffn_down.weight", c.n_embd)),
            )
            for i in range(c.n_layers)
        ]
        self.output_norm = self._vector("output_norm.weight", c.n_embd)
        self.lm_head = self.token_embd if c.tied_embeddings else self._matrix(c.n_embd, ("output.weight", c.n_vocab))

    def close(self) -> None:
        """End the prefill thread pool (waiting for a running forward pass). Closing twice is harmless."""
        self.closed = True
        self.pool.shutdown(wait=True)

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- forward --------------------------------------------------------------------------

    def new_cache(self, n_ctx: int) -> KVCache:
        return KVCache.for_config(self.config, n_ctx, self.kv_cache)

    def forward(
        self,
        tokens: Sequence[int],
        cache: KVCache,
        start_pos: int,
        all_logits: bool = False,
        stopped: Callable[[], bool] | None = None,
    ) -> np.ndarray | None:
        """Run tokens at positions start_pos.. and store their keys/values in the cache.

        Returns the last token's logits [n_vocab], or every token's [T, n_vocab] if all_logits.
        `stopped` is asked before each layer; when it says yes, returns None at once (the cache
        then holds these positions for some layers only: the caller must not count them cached).
        """
        if self.closed:
            raise RuntimeError(f"the model {self.path.name} is closed")
        with launch_guard(), blas.single_threaded() if len(tokens) > 1 else nullcontext():  # see blas.py
            return self._forward(tokens, cache, start_pos, all_logits, stopped)

    def _forward(
        self, tokens: Sequence[int], cache: KVCache, start_pos: int, all_logits: bool, stopped: Callable[[], bool] | None
    ) -> np.ndarray | None:
        numba.set_num_threads(self.thread_budget.threads())  # per calling thread in Numba
        ids = np.asarray(tokens, dtype=np.int64)
        if start_pos + len(ids) > cache.n_ctx:
            raise ValueError(f"positions up to {start_pos + len(ids)} do not fit a context of {cache.n_ctx}")
        if len(ids) > PREFILL_CHUNK:
            chunks = range(0, len(ids), PREFILL_CHUNK)
            logits = []
            for i in chunks:
                logits.append(self._forward(ids[i : i + PREFILL_CHUNK], cache, start_pos + i, all_logits, stopped))
                if logits[-1] is None:
                    return None
            return np.concatenate(logits) if all_logits else logits[-1]
        x = self.token_embd.rows_as_float(ids)
        rotation = kernels.rope_table(self.rope_frequencies, start_pos, len(ids), self.config.yarn_attn_factor)
        for layer, block in enumerate(self.blocks):
            if stopped is not None and stopped():
                return None
            x += self._attention(block, layer, x, cache, start_pos, rotation)
            x += self._feed_forward(block, x)
        hidden = x if all_logits else x[-1:]
        normed = np.empty_like(hidden)
        kernels.rmsnorm_rows(hidden, self.output_norm, self.config.rms_eps, normed)
        logits = self.lm_head.matmul(normed)
        return logits if all_logits else logits[0]

    def _attention(
        self, b: Block, layer: int, x: np.ndarray, cache: KVCache, start_pos: int, rotation: tuple[np.ndarray, np.ndarray]
    ) -> np.ndarray:
        c, n = self.config, len(x)
        h = np.empty_like(x)
        kernels.rmsnorm_rows(x, b.attn_norm, c.rms_eps, h)
        qkv = b.wqkv.matmul(h)
        q, k, v = (np.ascontiguousarray(part) for part in np.split(qkv, [c.n_q, c.n_q + c.n_kv], axis=1))
        q = q.reshape(n, c.n_head, c.head_dim)
        k = k.reshape(n, c.n_head_kv, c.head_dim)
        kernels.rmsnorm_rows(q.reshape(-1, c.head_dim), b.q_norm, c.rms_eps, q.reshape(-1, c.head_dim))
        kernels.rmsnorm_rows(k.reshape(-1, c.head_dim), b.k_norm, c.rms_eps, k.reshape(-1, c.head_dim))
        kernels.rope_neox(q, *rotation)
        kernels.rope_neox(k, *rotation)
        cache.store(layer, start_pos, k, v.reshape(n, c.n_head_kv, c.head_dim))
        out = np.empty_like(q)
        if n == 1:
            cache.attend_one_token(q[0], layer, start_pos + 1, out[0])
        else:
            list(self.pool.map(lambda kv: self._attend_rows(q, cache, layer, kv, start_pos, out), range(c.n_head_kv)))
        return b.wo.matmul(out.reshape(n, c.n_q))

    def _attend_rows(self, q: np.ndarray, cache: KVCache, layer: int, kv: int, start_pos: int, out: np.ndarray) -> None:
        """Prefill attention of every query row for the heads of KV head `kv` (one pool job): its keys
        and values converted from fp16 once, then slices of ATTENTION_ROWS rows."""
        n, group = len(q), self.config.n_head // self.config.n_head_kv
        keys, values = cache.keys_and_values(layer, kv, start_pos + n)
        for i in range(0, n, ATTENTION_ROWS):
            rows = slice(i, min(n, i + ATTENTION_ROWS))
            end = start_pos + rows.stop  # keys past the slice's last row are in every row's future
            attention.attend_rows(q, keys[:end], values[:end], kv, group, rows, start_pos, out)

    def drop_positions(self, cache: KVCache, start: int, stop: int, length: int) -> int:
        """Forget cached positions start..stop of the first `length`: the later ones move down by
        stop - start, their keys rotated back as far (RoPE angles add up), as llama.cpp's context
        shift does. Returns the new length. Later layers' keys still carry what the dropped tokens
        contributed to them, so this approximates a fresh prefill of what remains."""
        if not 0 <= start <= stop <= length <= cache.n_ctx:
            raise ValueError(f"cannot drop positions {start}..{stop} of {length}")
        n = length - stop
        cos, sin = kernels.rope_table(self.rope_frequencies, start - stop, 1, 1.0)  # no YaRN scale twice
        cos, sin = np.repeat(cos, n, axis=0), np.repeat(sin, n, axis=0)
        for layer in range(self.config.n_layers):
            k, v = cache.read(layer, stop, length)
            kernels.rope_neox(k, cos, sin)
            cache.store(layer, start, k, v)
        return length - (stop - start)

    def _feed_forward(self, b: Block, x: np.ndarray) -> np.ndarray:
        h = np.empty_like(x)
        kernels.rmsnorm_rows(x, b.ffn_norm, self.config.rms_eps, h)
        gate_up = b.w_gate_up.matmul(h)
        gate, up = gate_up[:, : self.config.n_ff], gate_up[:, self.config.n_ff :]
        kernels.silu_mul(gate, up)
        return b.w_down.matmul(gate)

    # ---- conveniences ---------------------------------------------------------------------

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits [len(ids), n_vocab] from a fresh context (tests, comparisons)."""
        return self.forward(ids, self.new_cache(len(ids)), 0, all_logits=True)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def default_params(self) -> SamplingParams:
        return params_from_metadata(self.file.metadata)

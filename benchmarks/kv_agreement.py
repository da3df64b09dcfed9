"""How far the int8 KV cache moves the logits at depth: q8 against the fp16 cache over a long context,
and both against the float64 reference over a shorter one.

Usage: python benchmarks/kv_agreement.py MODEL.gguf [--tokens 4000] [--decode 32] [--reference-tokens 1024]

The context is real text (this repository's READMEs, repeated) cut to --tokens ids: the engine
prefills all but the last --decode and decodes those one at a time, recording each token's logits,
with each cache type. Two more caches round keys and values to int8 with one scale per 32 or per
128 dims and store the result in fp16 (read by the fp16 kernel, float query), to choose the
scale block by agreement. The float64 reference (tests/reference.py: full causal attention in
float64 from the file's weights) runs on the first --reference-tokens ids (its [T, T] scores make
4,000 tokens too big), against the engine's decode of the same ids' last --decode tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import engine  # noqa: E402
import reference  # noqa: E402
from agreement import compare  # noqa: E402
from engine.kv_cache import KVCache  # noqa: E402


class RoundedToInt8(KVCache):
    """The fp16 cache holding int8-rounded keys and values: one scale (max |x| / 127) per `block` dims."""

    block = 32

    def store(self, layer: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        super().store(layer, start, self._rounded(k), self._rounded(v))

    def _rounded(self, x: np.ndarray) -> np.ndarray:
        groups = x.reshape(*x.shape[:-1], -1, min(self.block, x.shape[-1]))
        scale = (np.abs(groups).max(-1, keepdims=True) / 127).astype(np.float16).astype(np.float32)
        codes = np.rint(groups / np.where(scale > 0, scale, 1))
        return (codes * scale).reshape(x.shape)


def context_ids(model: engine.Model, n: int) -> list[int]:
    text = (ROOT / "README.md").read_text() + (ROOT / "benchmarks" / "README.md").read_text()
    ids = model.tokenize(text)
    while len(ids) < n:
        ids += ids
    return ids[:n]


def decoded_logits(model: engine.Model, cache: KVCache, ids: list[int], n_decode: int) -> np.ndarray:
    model.forward(ids[:-n_decode], cache, 0)
    start = len(ids) - n_decode
    return np.stack([model.forward([t], cache, pos) for pos, t in enumerate(ids[start:], start)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--reference-tokens", type=int, default=1024, help="0: skip the float64 reference")
    args = parser.parse_args()
    models = {kind: engine.load(args.model, kv_cache=kind) for kind in ("f16", "q8")}
    c = models["f16"].config
    ids = context_ids(models["f16"], args.tokens)
    logits = {kind: decoded_logits(model, model.new_cache(len(ids)), ids, args.decode) for kind, model in models.items()}
    for block in (32, 128):
        rounded = RoundedToInt8(c.n_layers, len(ids), c.n_head_kv, c.head_dim)
        rounded.block = block
        logits[f"int8 rounding, scale per {block}"] = decoded_logits(models["f16"], rounded, ids, args.decode)
    report = [compare(f"{name} vs f16 at {args.tokens}", values, logits["f16"]) for name, values in logits.items() if name != "f16"]
    if args.reference_tokens:
        short = ids[: args.reference_tokens]
        want = reference.forward(args.model, short)[-args.decode :]
        for kind, model in models.items():
            got = decoded_logits(model, model.new_cache(len(short)), short, args.decode)
            report.append(compare(f"{kind} vs float64 reference at {len(short)}", got, want))
    for row in report:
        print(json.dumps(row))


if __name__ == "__main__":
    main()

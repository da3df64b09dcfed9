"""What a JSON constraint costs per token on the real 151,669-token vocabulary.

    python benchmarks/constraint_cost.py ~/.cache/bonsai-tui/bonsai-1.7b-synthetic.gguf

Parts: building llguidance's tokenizer (once per model), compiling a schema (once per request),
then per token: computing the mask, applying it to a row of logits, accepting the sampled token.
The tokens walked are a real reply (the model card from assets/, compact), so the masks are the
ones a reply meets. Beside them, in the same run, one decode step of the model (forward of one
token), and whole short replies with and without the constraint: the machine is shared, so only
ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import llguidance.numpy as llg_numpy
import numpy as np

import engine
from engine import constraints
from engine.sampling import SamplingParams
from engine.session import ChatSession

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "assets" / "model_card.schema.json").read_text())
REPLY = {
    "model_name": "Bonsai-1.7B",
    "parameter_count": "1.7B",
    "bits_per_weight": 1.125,
    "memory_gb": 0.25,
    "top_use_cases": ["on-device chat", "summaries", "structured extraction"],
}


def ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1e3:.3f} ms (median of {len(seconds)})"


def per_token(model: engine.Model, n_logits: int) -> dict[str, list[float]]:
    ids = model.tokenize(json.dumps(REPLY, separators=(",", ":")))
    matcher = constraints.json_schema(model, SCHEMA).start()
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"fill": [], "apply": [], "apply_llguidance_numpy": [], "accept": []}
    for token in ids:
        logits = rng.standard_normal(n_logits).astype(np.float32)
        t0 = time.perf_counter()
        llg_numpy.fill_next_token_bitmask(matcher._matcher, matcher._bitmask)
        t1 = time.perf_counter()
        allowed = np.unpackbits(matcher._bitmask.view(np.uint8), bitorder="little")[: matcher._n_vocab]
        logits[: matcher._n_vocab][allowed == 0] = -np.inf
        logits[matcher._n_vocab :] = -np.inf
        t2 = time.perf_counter()
        other = logits.copy()
        t3 = time.perf_counter()
        llg_numpy.apply_token_bitmask_inplace(other[: matcher._n_vocab], matcher._bitmask)
        t4 = time.perf_counter()
        assert np.isfinite(logits[token]), f"token {token} masked out"
        matcher.accept(token)
        t5 = time.perf_counter()
        times["fill"].append(t1 - t0)
        times["apply"].append(t2 - t1)
        times["apply_llguidance_numpy"].append(t4 - t3)
        times["accept"].append(t5 - t4)
    assert matcher.finished
    times["mask() + accept(), as the session calls them"] = [
        f + a + c for f, a, c in zip(times["fill"], times["apply"], times["accept"])
    ]
    return times


def decode_step(model: engine.Model, steps: int = 8) -> list[float]:
    cache = model.new_cache(64)
    model.forward(model.tokenize("Hello"), cache, 0)
    times = []
    for position in range(1, steps + 1):
        start = time.perf_counter()
        model.forward([42], cache, position)
        times.append(time.perf_counter() - start)
    return times


def decode_speed(model: engine.Model, constraint, tokens: int) -> tuple[float, int]:
    session = ChatSession(model, n_ctx=512, params=SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=1))
    done = list(session.chat([{"role": "user", "content": "Describe this model as JSON."}], tokens, constraint=constraint))[-1]
    return done.stats.decode_tok_s, len(done.token_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="GGUF file (the full-size synthetic Bonsai-1.7B)")
    parser.add_argument("--tokens", type=int, default=16, help="reply length for the decode comparison")
    args = parser.parse_args()
    model = engine.load(args.model)
    print(f"vocabulary: {model.tokenizer.n_vocab} tokens; logits row: {model.config.n_vocab}")

    start = time.perf_counter()
    constraints.llg_tokenizer(model.tokenizer)
    print(f"llguidance tokenizer (once per model): {time.perf_counter() - start:.2f} s")
    compile_times = []
    for _ in range(5):
        start = time.perf_counter()
        constraints.json_schema(model, SCHEMA).start()
        compile_times.append(time.perf_counter() - start)
    print(f"compile the model-card schema + first matcher (per request): {ms(compile_times)}")

    per_token(model, model.config.n_vocab)  # warm up
    decode_step(model, steps=2)  # warm up: the first steps start threads and touch the weights
    step = decode_step(model)
    print(f"one decode step (forward of one token): {ms(step)}")
    for name, seconds in per_token(model, model.config.n_vocab).items():
        share = statistics.median(seconds) / statistics.median(step)
        print(f"per token, {name}: {ms(seconds)} = {share:.1%} of a decode step")
    print(f"one decode step again: {ms(decode_step(model))}")

    card = constraints.json_schema(model, SCHEMA)
    free_speed, _ = decode_speed(model, None, args.tokens)
    json_speed, n = decode_speed(model, card, args.tokens)
    free_again, _ = decode_speed(model, None, args.tokens)
    print(f"decode tok/s over {args.tokens} tokens: free {free_speed:.2f}, under the model-card schema "
          f"{json_speed:.2f} ({n} tokens), free again {free_again:.2f}")


if __name__ == "__main__":
    main()

"""Multi-turn reuse and stop-during-prefill, through ChatSession on a real model file.

    python benchmarks/multiturn.py MODEL.gguf [--reply 512] [--threads 2]

1. Three turns, each reply `--reply` tokens (seeded sampling): first-token time, prompt and cached
   tokens of each turn, as the chat shows them.
2. Turn 2 both ways, each on its own cache: the model's own context (the session's way: the turn-1
   ids, then only the new message) against the canonical rendering (the whole conversation through
   the template, re-tokenized, as before): how many tokens each must prefill after what the cache
   holds, how long that takes, and how far apart the next-token logits are.
3. A stop one second into a ~4,000-token prompt: how long until the session returns.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from engine.model import Model
from engine.sampling import SamplingParams
from engine.session import ChatSession, DoneEvent, common_prefix_length

QUESTIONS = [
    "Tell me about bonsai trees and how to care for them.",
    "Which species would you pick for a beginner, and why?",
    "How often should I water it in summer?",
]


def finish(events) -> DoneEvent:
    for event in events:
        done = event
    return done


def three_turns(model: Model, reply: int, turns: int) -> tuple[ChatSession, list[dict[str, str]], DoneEvent]:
    session = ChatSession(model, n_ctx=4096, params=SamplingParams(temperature=0.8, top_k=40, top_p=0.95, seed=1))
    messages: list[dict[str, str]] = []
    first = None
    for turn, question in enumerate(QUESTIONS[:turns], 1):
        messages.append({"role": "user", "content": question})
        done = finish(session.chat(messages, max_tokens=reply))
        first = first or done
        s = done.stats
        print(
            f"turn {turn}: prompt {s.prompt_tokens} ({s.cached_tokens} cached) · first token {s.ttft_s:.2f} s"
            f" · {s.generated_tokens} tokens · {s.decode_tok_s:.1f} tok/s · {done.stop_reason.value}"
        )
        messages.append({"role": "assistant", "content": done.text})
    return session, messages, first


def both_ways(model: Model, session: ChatSession, first: DoneEvent) -> None:
    conversation = [
        {"role": "user", "content": QUESTIONS[0]},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": QUESTIONS[1]},
    ]
    turn1 = first.prompt_ids + first.token_ids  # what the cache holds after turn 1 (but the last token)
    ways = {"own context": session.prompt_ids(conversation), "canonical": session.render(conversation)}
    logits = {}
    for name, ids in ways.items():
        cache = model.new_cache(len(ids) + 8)
        held = min(common_prefix_length(turn1[:-1], ids), len(ids) - 1)
        model.forward(ids[:held], cache, 0)
        began = time.perf_counter()
        logits[name] = model.forward(ids[held:], cache, held).astype(np.float64)
        print(f"turn 2, {name}: {len(ids)} tokens, {held} in the cache, prefills {len(ids) - held} in {time.perf_counter() - began:.2f} s")
    own, canonical = logits["own context"], logits["canonical"]
    p, q = (np.exp(x - x.max()) / np.exp(x - x.max()).sum() for x in (own, canonical))
    top = lambda x: set(np.argsort(x)[-10:].tolist())  # noqa: E731
    print(
        f"next-token logits, own vs canonical: max |diff| {np.abs(own - canonical).max():.3f}"
        f" (logit spread {canonical.std():.2f}), argmax equal {own.argmax() == canonical.argmax()},"
        f" top-10 overlap {len(top(own) & top(canonical))}/10, KL {float(np.sum(q * np.log(q / p))):.4f} nats"
    )


def stop_during_prefill(model: Model) -> None:
    session = ChatSession(model, n_ctx=4096)
    prompt = model.tokenize("The history of bonsai is long and full of detail. " * 400)[:4000]
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    began = time.perf_counter()
    timer.start()
    done = finish(session.generate(prompt, max_tokens=8, stop=stop))
    ended = time.perf_counter() - began
    print(f"stop 1 s into a {len(prompt)}-token prompt: returned after {ended:.2f} s ({ended - 1:.2f} s after the stop), {done.stop_reason.value}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--reply", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--agreement-only", action="store_true", help="part 2 only (a cheap check on a small model)")
    args = parser.parse_args()
    model = Model(args.model, threads=args.threads)
    finish(ChatSession(model, n_ctx=256).generate(model.tokenize("warm up"), max_tokens=2))
    session, _, first = three_turns(model, args.reply, 1 if args.agreement_only else len(QUESTIONS))
    both_ways(model, session, first)
    if not args.agreement_only:
        stop_during_prefill(model)


if __name__ == "__main__":
    main()

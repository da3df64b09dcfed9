"""ChatSession: KV prefix reuse across turns, stop reasons, cancellation, context limits."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import engine
from engine.errors import ContextFullError
from engine.sampling import SamplingParams
from engine.session import ChatSession, DoneEvent, StopReason, TokenEvent

GREEDY = SamplingParams(temperature=0.0)


def run(events) -> tuple[list[TokenEvent], DoneEvent]:
    events = list(events)
    return events[:-1], events[-1]


def test_second_turn_reuses_the_cached_prefix_and_matches_a_fresh_session(exact_tiny_model: engine.Model) -> None:
    tiny_model = exact_tiny_model
    session = ChatSession(tiny_model, n_ctx=512, params=GREEDY)
    turn1 = [{"role": "user", "content": "hello there"}]
    _, first = run(session.chat(turn1, max_tokens=8))
    assert first.stats.cached_tokens == 0 and first.stats.generated_tokens == 8
    turn2 = turn1 + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "and then?"}]
    _, second = run(session.chat(turn2, max_tokens=8))
    assert second.stats.cached_tokens >= len(session.render(turn1)) - 6  # all but the generation prompt
    _, fresh = run(ChatSession(tiny_model, n_ctx=512, params=GREEDY).chat(turn2, max_tokens=8))
    assert second.token_ids == fresh.token_ids
    assert second.prompt_ids == fresh.prompt_ids


def test_events_stream_the_reply_and_greedy_follows_argmax(tiny_model: engine.Model) -> None:
    session = ChatSession(tiny_model, n_ctx=256, params=GREEDY)
    tokens, done = run(session.generate(tiny_model.tokenize("hello"), max_tokens=5))
    assert [t.index for t in tokens] == [0, 1, 2, 3, 4]
    assert "".join(t.text for t in tokens) == done.text
    assert done.stop_reason is StopReason.MAX_TOKENS
    ids = tiny_model.tokenize("hello") + done.token_ids
    expected = tiny_model.logits(ids[:-1])[len(tiny_model.tokenize("hello")) - 1 :].argmax(-1)
    assert done.token_ids == expected.tolist()


def test_stops_at_end_of_turn(tiny_model: engine.Model) -> None:
    session = ChatSession(tiny_model, n_ctx=256, params=GREEDY)
    prompt = tiny_model.tokenize("hello")
    im_end = tiny_model.tokenizer.token_id("<|im_end|>")
    original = tiny_model.forward

    def forward_preferring_im_end(*args, **kwargs):
        logits = original(*args, **kwargs).copy()
        logits[im_end] = 1e9
        return logits

    tiny_model.forward = forward_preferring_im_end
    try:
        tokens, done = run(session.generate(prompt, max_tokens=5))
    finally:
        del tiny_model.forward
    assert tokens == [] and done.stop_reason is StopReason.EOS and done.token_ids == []


def test_cancel_from_another_thread_stops_within_one_token(tiny_model: engine.Model) -> None:
    session = ChatSession(tiny_model, n_ctx=512, params=GREEDY)
    seen = []
    for event in session.generate(tiny_model.tokenize("hello"), max_tokens=200):
        if isinstance(event, TokenEvent):
            seen.append(event)
            if len(seen) == 3:
                canceller = threading.Thread(target=session.cancel)
                canceller.start()
                canceller.join()
        else:
            done = event
    assert done.stop_reason is StopReason.CANCELLED
    assert len(done.token_ids) == 3 and done.text == "".join(e.text for e in seen)


def test_params_changed_mid_reply_apply_to_the_next_token(tiny_model: engine.Model) -> None:
    prompt = tiny_model.tokenize("hello")
    baseline = run(ChatSession(tiny_model, n_ctx=256, params=GREEDY).generate(prompt, max_tokens=8))[1].token_ids
    session = ChatSession(tiny_model, n_ctx=256, params=GREEDY)
    events = session.generate(prompt, max_tokens=8)
    first = next(events)
    session.params = GREEDY.with_changes(presence_penalty=2.0, repeat_penalty=5.0)
    changed = [first.token_id] + run(events)[1].token_ids[1:]
    assert changed[0] == baseline[0] and changed[1:] != baseline[1:]
    assert len(set(changed)) == len(changed)  # the penalties now forbid any repeat


def test_context_full_stops_generation(tiny_model: engine.Model) -> None:
    session = ChatSession(tiny_model, n_ctx=12, params=GREEDY)
    prompt = tiny_model.tokenize("hello there")
    _, done = run(session.generate(prompt, max_tokens=100))
    assert done.stop_reason is StopReason.CONTEXT_FULL
    assert len(prompt) + len(done.token_ids) == 13  # the last token is sampled but never cached


def test_prompt_too_long_raises_and_fit_messages_drops_oldest_turns(tiny_model: engine.Model) -> None:
    session = ChatSession(tiny_model, n_ctx=96, params=GREEDY)
    messages = [{"role": "system", "content": "be kind"}]
    for i in range(6):
        messages += [{"role": "user", "content": f"question number {i} " * 2}, {"role": "assistant", "content": "ok"}]
    messages.append({"role": "user", "content": "last one"})
    with pytest.raises(ContextFullError, match="context holds 96"):
        session.chat(messages)
    kept = session.fit_messages(messages, reserve=16)
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "last one"
    assert len(kept) < len(messages) and len(session.render(kept)) + 16 <= 96
    with pytest.raises(ContextFullError):
        session.fit_messages([{"role": "user", "content": "word " * 200}], reserve=16)


def test_seeded_sampling_is_reproducible(tiny_model: engine.Model) -> None:
    params = SamplingParams(temperature=1.0, top_k=50, top_p=0.95, seed=123)
    runs = [run(ChatSession(tiny_model, n_ctx=256, params=params).chat([{"role": "user", "content": "hi"}], 10))[1] for _ in range(2)]
    assert runs[0].token_ids == runs[1].token_ids
    assert np.unique(runs[0].token_ids).size > 1

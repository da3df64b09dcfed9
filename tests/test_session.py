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


def test_second_turn_from_the_cache_matches_a_fresh_session_on_the_same_ids(exact_tiny_model: engine.Model) -> None:
    tiny_model = exact_tiny_model
    session = ChatSession(tiny_model, n_ctx=512, params=GREEDY)
    turn1 = [{"role": "user", "content": "hello there"}]
    _, first = run(session.chat(turn1, max_tokens=8))
    assert first.stats.cached_tokens == 0 and first.stats.generated_tokens == 8
    turn2 = turn1 + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "and then?"}]
    _, second = run(session.chat(turn2, max_tokens=8))
    assert second.stats.cached_tokens == len(first.prompt_ids) + 8 - 1
    _, fresh = run(ChatSession(tiny_model, n_ctx=512, params=GREEDY).generate(second.prompt_ids, max_tokens=8))
    assert second.token_ids == fresh.token_ids


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


def _answered(session: ChatSession, messages: list[dict[str, str]], max_tokens: int = 8) -> tuple[DoneEvent, list[dict[str, str]]]:
    """Run one turn; return its DoneEvent and the conversation with the reply appended."""
    _, done = run(session.chat(messages, max_tokens=max_tokens))
    return done, [*messages, {"role": "assistant", "content": done.text}]


def test_later_turns_prefill_only_the_new_message_after_the_models_own_reply_ids(exact_tiny_model: engine.Model) -> None:
    session = ChatSession(exact_tiny_model, n_ctx=512, params=GREEDY)
    first, conversation = _answered(session, [{"role": "user", "content": "hello there"}])
    second, conversation = _answered(session, [*conversation, {"role": "user", "content": "and then?"}])
    # the second prompt is the first prompt and the exact reply ids, then the template's glue
    own_context = first.prompt_ids + first.token_ids
    assert second.prompt_ids[: len(own_context)] == own_context
    glue = exact_tiny_model.tokenize("<|im_end|>\n<|im_start|>user\nand then?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert second.prompt_ids[len(own_context) :] == glue
    # max_tokens stopped the reply before its last token was run: that one token is prefilled again
    assert second.stats.cached_tokens == len(own_context) - 1
    third, _ = _answered(session, [*conversation, {"role": "user", "content": "once more"}])
    assert third.stats.cached_tokens == len(second.prompt_ids) + len(second.token_ids) - 1
    assert third.prompt_ids[: len(second.prompt_ids)] == second.prompt_ids


def test_regenerate_reuses_the_whole_prompt_and_an_earlier_edit_falls_back_to_a_fresh_render(exact_tiny_model: engine.Model) -> None:
    session = ChatSession(exact_tiny_model, n_ctx=512, params=GREEDY)
    first, conversation = _answered(session, [{"role": "user", "content": "hello there"}])
    question = [*conversation, {"role": "user", "content": "and then?"}]
    second, _ = _answered(session, question)
    again, _ = _answered(session, question)  # regenerate: the same messages
    assert again.prompt_ids == second.prompt_ids
    assert again.stats.cached_tokens == len(second.prompt_ids) - 1
    edited = [*conversation, {"role": "user", "content": "what else?"}]  # edit the second question
    after_edit, _ = _answered(session, edited)
    assert after_edit.prompt_ids[: len(first.prompt_ids) + len(first.token_ids)] == first.prompt_ids + first.token_ids
    rewritten = [{"role": "user", "content": "hello here"}, *edited[1:]]  # edit the first: no own ids known
    fresh, _ = _answered(session, rewritten)
    assert fresh.prompt_ids == session.render(rewritten)


def test_a_reopened_conversation_is_rendered_then_continued_from_its_own_ids(exact_tiny_model: engine.Model) -> None:
    saved = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how?"}]
    session = ChatSession(exact_tiny_model, n_ctx=512, params=GREEDY)
    reopened, conversation = _answered(session, saved)
    assert reopened.prompt_ids == session.render(saved) and reopened.stats.cached_tokens == 0
    _, conversation = _answered(session, [*conversation, {"role": "user", "content": "why?"}])
    later, _ = _answered(session, [*conversation[:4], {"role": "user", "content": "why?"}])
    assert later.stats.cached_tokens == len(later.prompt_ids) - 1


def test_the_turn_after_a_stopped_reply_continues_from_its_partial_ids(exact_tiny_model: engine.Model) -> None:
    session = ChatSession(exact_tiny_model, n_ctx=512, params=GREEDY)
    messages = [{"role": "user", "content": "hello there"}]
    events = session.chat(messages, max_tokens=50)
    for event in events:
        if isinstance(event, TokenEvent) and event.index == 2:
            session.cancel()
        done = event
    assert done.stop_reason is StopReason.CANCELLED and len(done.token_ids) == 3
    _, after = run(session.chat([*messages, {"role": "assistant", "content": done.text}, {"role": "user", "content": "go on"}], max_tokens=4))
    assert after.prompt_ids[: len(done.prompt_ids) + 3] == done.prompt_ids + done.token_ids
    assert after.stats.cached_tokens == len(done.prompt_ids) + 2  # the stopped token never ran
    assert after.stop_reason is StopReason.MAX_TOKENS and len(after.token_ids) == 4


def test_a_stop_during_a_long_prefill_ends_it_within_a_layer(tiny_model: engine.Model) -> None:
    session = ChatSession(tiny_model, n_ctx=2048, params=GREEDY)
    prompt = tiny_model.tokenize("word " * 200)
    assert len(prompt) > 600
    layers_run = []
    original = tiny_model._attention

    def attention_then_stop(block, layer, *args):
        layers_run.append(layer)
        if len(layers_run) == tiny_model.config.n_layers + 1:
            stop.set()  # as if Esc came during the first layer of the second 512-token slice
        return original(block, layer, *args)

    stop = threading.Event()
    tiny_model._attention = attention_then_stop
    try:
        tokens, done = run(session.generate(prompt, max_tokens=5, stop=stop))
    finally:
        del tiny_model._attention
    assert tokens == [] and done.stop_reason is StopReason.CANCELLED
    assert layers_run == [*range(tiny_model.config.n_layers), 0]
    assert session.cached_ids == prompt[:512]  # the finished slice stays, for the next turn to reuse


def test_a_stop_set_before_the_generation_starts_is_not_lost(tiny_model: engine.Model) -> None:
    session = ChatSession(tiny_model, n_ctx=256, params=GREEDY)
    stop = threading.Event()
    stop.set()  # the user pressed Esc before the engine thread got to its first step
    tokens, done = run(session.chat([{"role": "user", "content": "hi"}], max_tokens=5, stop=stop))
    assert tokens == [] and done.stop_reason is StopReason.CANCELLED and session.cached_ids == []
    events = session.generate(tiny_model.tokenize("hello"), max_tokens=5)
    session.cancel()  # after the call, before the first event
    assert run(events)[1].stop_reason is StopReason.CANCELLED


def test_the_threading_layer_is_a_thread_safe_one_or_forward_passes_take_turns(tiny_model: engine.Model) -> None:
    from engine import threads

    list(ChatSession(tiny_model, n_ctx=64, params=GREEDY).generate(tiny_model.tokenize("hi"), max_tokens=2))
    assert threads.layer() in threads.PREFERRED_LAYERS
    guard = threads.launch_guard()
    assert (guard is threads._one_at_a_time) == (threads.layer() not in threads.THREAD_SAFE_LAYERS)

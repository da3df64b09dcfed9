"""The endpoints: llama-server's behaviour as the reference, OpenAI's shapes for the /v1 ones.

A generation request: validate (400) -> a slot or the queue (503 when full) -> wait for the reply
to start (a prompt past the context is a 400 before any byte of the response) -> one JSON
object, or SSE chunks ending with `data: [DONE]`. A client that goes away stops its reply.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bonsai_tui.server import validation
from bonsai_tui.server.errors import APIError, bad_request, loading
from bonsai_tui.server.responses import Reply
from bonsai_tui.server.slots import Delta, Failed, Finished, GenerationRequest, Job, QueueFull, Scheduler, Started, Stopped
from engine import constraints
from engine.constraints import Constraint
from engine.errors import ContextFullError, EngineError
from engine.model import Model

DISCONNECT_POLL_S = 0.25  # how often a waiting non-streamed request checks that its client is still there


class ClientGone(Exception):
    pass


def scheduler_of(request: Request) -> Scheduler:
    state = request.app.state.server
    if state.scheduler is None:
        if state.load_error:
            raise APIError(500, f"the model failed to load: {state.load_error}")
        raise loading()
    return state.scheduler


def error_for(error: Exception) -> APIError:
    if isinstance(error, ContextFullError):
        return bad_request(
            f"the prompt is {error.needed - 1} tokens long but the context holds {error.n_ctx} "
            "(each slot's --ctx): shorten the prompt or start the server with a larger --ctx",
            param="messages", code="context_length_exceeded",
        )
    if isinstance(error, Stopped):
        return APIError(503, str(error), code="server_stopping")
    if isinstance(error, (EngineError, ValueError)):
        return bad_request(str(error))
    return APIError(500, f"internal error: {type(error).__name__} (details in the server's log)")


async def next_event(job: Job, request: Request) -> Any:
    while True:
        try:
            return await asyncio.wait_for(job.next(), DISCONNECT_POLL_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                raise ClientGone() from None


def note_usage(request: Request, finished: Finished) -> None:
    """What the request log line says about a reply."""
    s = finished.stats
    request.state.note = (f"prompt {s.prompt_tokens} (cached {s.cached_tokens}), {s.generated_tokens} tokens, "
                          f"{s.decode_tok_s:.1f} tok/s, {finished.finish_reason}")


def sse(data: dict[str, Any] | str) -> dict[str, str]:
    return {"data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}


async def stream_events(job: Job, reply: Reply, include_usage: bool, request: Request) -> AsyncIterator[dict[str, str]]:
    try:
        if reply.kind == "chat":
            yield sse(reply.first_chunk())
        while True:
            event = await job.next()
            if isinstance(event, Delta):
                yield sse(reply.chunk(event.text, event.tokens))
            elif isinstance(event, Finished):
                note_usage(request, event)
                yield sse(reply.last_chunk(event.finish_reason, event.stats))
                if include_usage:
                    yield sse(reply.usage_chunk(event.stats))
                yield sse("[DONE]")
                return
            elif isinstance(event, Failed):  # the status line went out already: the error goes in the stream
                error = error_for(event.error)
                request.state.note = f"ended by an error: {error.message}"
                yield sse(error.body())
                return
    finally:  # also when the client disconnects: sse-starlette cancels this generator
        job.stop.set()


async def generate(request: Request, body: dict[str, Any], reply: Reply, gen_request: GenerationRequest) -> Response:
    scheduler = scheduler_of(request)
    stream = validation.field_of(body, "stream", bool, False)
    stream_options = validation.field_of(body, "stream_options", dict, {})
    include_usage = bool(stream_options.get("include_usage", False))
    try:
        job = scheduler.submit(gen_request, asyncio.get_running_loop())
    except QueueFull:
        raise APIError(503, f"the server is busy ({scheduler.capacity} requests running or queued): retry shortly",
                       code="server_busy", headers={"Retry-After": "1"}) from None
    except Stopped as stopped:
        raise error_for(stopped) from None
    handed_over = False
    tokens = []
    try:
        while True:
            event = await next_event(job, request)
            if isinstance(event, Failed):
                raise error_for(event.error)
            if isinstance(event, Started) and stream:
                handed_over = True
                return EventSourceResponse(stream_events(job, reply, include_usage, request), sep="\n", ping=15,
                                         shutdown_grace_period=2.0)  # Ctrl-C: room for the closing error event
            if isinstance(event, Delta):
                tokens.extend(event.tokens)
            elif isinstance(event, Finished):
                note_usage(request, event)
                return JSONResponse(reply.complete(event.text, event.finish_reason, tokens, event.stats))
    except ClientGone:
        request.state.note = "client went away"
        return Response(status_code=499)
    finally:
        if not handed_over:
            job.stop.set()


def _reply(request: Request, kind: str) -> Reply:
    state = request.app.state.server
    return Reply(kind, state.options.model_id, scheduler_of(request).model.tokenizer)


def constraint_for(model: Model, body: dict[str, Any]) -> Constraint | None:
    """response_format as an engine constraint (compiled here, so a bad schema is a 400 now)."""
    wanted = validation.response_format(body)
    if wanted is None:
        return None
    kind, schema = wanted
    try:
        return constraints.json_object(model) if kind == "json_object" else constraints.json_schema(model, schema)
    except constraints.ConstraintError as error:
        raise bad_request(str(error), param="response_format") from None


async def chat_completions(request: Request) -> Response:
    model = scheduler_of(request).model
    body = validation.parse_json(await request.body())
    gen_request = validation.chat_request(body, model.default_params())
    gen_request.constraint = await run_in_threadpool(constraint_for, model, body)
    return await generate(request, body, _reply(request, "chat"), gen_request)


async def completions(request: Request) -> Response:
    model = scheduler_of(request).model
    body = validation.parse_json(await request.body())
    gen_request = await run_in_threadpool(
        validation.completion_request, body, model.default_params(), model.tokenize, model.tokenizer.n_vocab
    )
    gen_request.constraint = await run_in_threadpool(constraint_for, model, body)
    return await generate(request, body, _reply(request, "text"), gen_request)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", **scheduler_of(request).load()})


async def models(request: Request) -> Response:
    state = request.app.state.server
    entry: dict[str, Any] = {"id": state.options.model_id, "object": "model", "created": state.created, "owned_by": "bonsai-tui"}
    if state.scheduler is not None:
        config = state.scheduler.model.config
        entry["meta"] = {"n_ctx": state.scheduler.n_ctx, "n_ctx_train": config.context_length,
                         "n_vocab": config.n_vocab, "n_embd": config.n_embd}
    return JSONResponse({"object": "list", "data": [entry]})


async def tokenize(request: Request) -> Response:
    model = scheduler_of(request).model
    body = validation.parse_json(await request.body())
    content = validation.field_of(body, "content", str)
    if content is None:
        raise bad_request("content must be a string", param="content")
    ids = await run_in_threadpool(model.tokenize, content)
    if validation.field_of(body, "with_pieces", bool, False):
        pieces = [model.tokenizer.token_bytes(i).decode("utf-8", errors="replace") for i in ids]
        return JSONResponse({"tokens": [{"id": i, "piece": p} for i, p in zip(ids, pieces)]})
    return JSONResponse({"tokens": ids})


async def detokenize(request: Request) -> Response:
    model = scheduler_of(request).model
    body = validation.parse_json(await request.body())
    ids = validation.token_ids(body, model.tokenizer.n_vocab)
    return JSONResponse({"content": model.detokenize(ids)})


async def apply_template(request: Request) -> Response:
    model = scheduler_of(request).model
    body = validation.parse_json(await request.body())
    messages = validation.messages(body)
    thinking = validation.field_of(body, "chat_template_kwargs", dict, {}).get("enable_thinking", False)
    try:
        prompt = model.template.render(messages, add_generation_prompt=True, enable_thinking=bool(thinking))
    except EngineError as error:
        raise bad_request(str(error)) from None
    return JSONResponse({"prompt": prompt})


ROUTES = [
    Route("/health", health, methods=["GET"]),
    Route("/v1/health", health, methods=["GET"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/models", models, methods=["GET"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/completions", completions, methods=["POST"]),
    Route("/tokenize", tokenize, methods=["POST"]),
    Route("/detokenize", detokenize, methods=["POST"]),
    Route("/apply-template", apply_template, methods=["POST"]),
]

"""The Starlette application: routes, the API key, one log line per request, and the model
loading on a thread after the server is up (so /health can say 503 while it loads)."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bonsai_tui.server.errors import EXCEPTION_HANDLERS, APIError
from bonsai_tui.server.routes import ROUTES
from bonsai_tui.server.slots import Scheduler
from engine.errors import EngineError
from engine.model import Model

log = logging.getLogger("bonsai_tui.server")
OPEN_PATHS = {"/health", "/v1/health"}  # answered without the API key (load balancers, scripts waiting for the load)


@dataclass
class ServerOptions:
    load: Callable[[], Model]
    model_id: str
    n_ctx: int = 0
    parallel: int = 1
    queue: int = 16  # requests that may wait for a slot; more get a 503
    api_key: str | None = None
    on_load_error: Callable[[str], None] = lambda message: None


class ServerState:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.created = int(time.time())
        self.scheduler: Scheduler | None = None
        self.load_error: str | None = None

    def load(self) -> None:
        started = time.perf_counter()
        try:
            model = self.options.load()
            self.scheduler = Scheduler(model, self.options.parallel, self.options.n_ctx, self.options.queue)
        except Exception as error:  # one line for the operator; the server then stops
            self.load_error = str(error) if isinstance(error, EngineError) else f"{type(error).__name__}: {error}"
            if not isinstance(error, EngineError):
                log.error("loading failed", exc_info=error)
            self.options.on_load_error(self.load_error)
            return
        log.info("model loaded in %.1f s: %d slot(s) of %d tokens", time.perf_counter() - started,
                 self.options.parallel, self.scheduler.n_ctx)

    def stop_replies(self) -> None:
        """Ctrl-C: end every reply now (streams get an error event), so the server can close."""
        if self.scheduler is not None:
            self.scheduler.stop_all()

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()


class RequireKey:
    """Every endpoint but /health needs `Authorization: Bearer KEY` when the server has a key."""

    def __init__(self, app: ASGIApp, key: str | None) -> None:
        self.app = app
        self.key = key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"")
            given = auth[7:].strip() if auth[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"")
            if not given or not hmac.compare_digest(given, self.key):
                message = "invalid API key" if given else "this server needs an API key: send Authorization: Bearer KEY"
                await APIError(401, message, code="invalid_api_key").response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestLog:
    """One line per request: method, path, status, time, and what the route noted (tokens, tok/s)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            note = scope.get("state", {}).get("note", "")
            seconds = time.perf_counter() - started
            log.info("%s %s %s %.2f s%s", scope["method"], scope["path"], status or "-", seconds, f" {note}" if note else "")


def create_app(options: ServerOptions) -> Starlette:
    state = ServerState(options)

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        threading.Thread(target=state.load, name="load-model", daemon=True).start()
        yield
        state.close()

    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.server = state
    app.add_middleware(RequireKey, key=options.api_key)
    app.add_middleware(RequestLog)
    return app

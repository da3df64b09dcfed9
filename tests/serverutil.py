"""Our OpenAI-compatible server on a free port of 127.0.0.1, in this process (uvicorn on a thread),
for the server's own tests and for the chat's tests against a real endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette

from bonsai_tui.server.app import ServerOptions, create_app


def wait_until(condition, what: str, limit_s: float = 20.0) -> None:
    """Poll `condition` until it holds; fail (not time out silently) after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


@contextmanager
def running_server(options: ServerOptions, wait_ready: bool = True, app: Starlette | None = None) -> Iterator[str]:
    """Serve `options` (or `app`, made from them) and yield the base URL (http://127.0.0.1:PORT)."""
    server = uvicorn.Server(uvicorn.Config(app or create_app(options), host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "the server started")
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    if wait_ready:
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, "the model loaded")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)

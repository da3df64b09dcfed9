"""Errors as OpenAI's API shapes them: `{"error": {"message", "type", "param", "code"}}` with the
right HTTP status. Whatever goes wrong, the body is one of these: never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("bonsai_tui.server")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    500: "server_error",
    503: "unavailable_error",
}


class APIError(Exception):
    """An error the client should see as is (status, one-line message, the field at fault)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def loading() -> APIError:
    return APIError(503, "the model is loading; try again in a moment", code="model_loading",
                    headers={"Retry-After": "1"})


async def api_error_handler(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, APIError)
    return error.response()


async def http_error_handler(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own 404 / 405, in the same shape as ours."""
    assert isinstance(error, HTTPException)
    message = {404: f"no such endpoint: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return APIError(error.status_code, message.get(error.status_code, str(error.detail))).response()


async def unexpected_error_handler(request: Request, error: Exception) -> JSONResponse:
    """Last resort: the details go to the server's log, the client gets one line."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return APIError(500, f"internal error: {type(error).__name__} (details in the server's log)").response()


EXCEPTION_HANDLERS = {
    APIError: api_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}

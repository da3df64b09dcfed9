"""`bonsai-tui serve`: an OpenAI-compatible HTTP API over the engine (Starlette + uvicorn + SSE).

app.py (the application, API key, request log, loading) -> routes.py (endpoints) ->
validation.py (request bodies) -> slots.py (sessions, queue, the engine thread) -> responses.py
(OpenAI's objects); errors.py shapes every error as OpenAI's error object.
"""

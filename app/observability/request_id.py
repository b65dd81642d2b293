"""Every HTTP request's id: the caller's ``X-Request-ID`` when valid, else a new one; always
answered in ``X-Request-ID`` and named in each of the request's log lines."""

from __future__ import annotations

import re
import uuid

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taas.app.observability.request_context import LogContext, bind, start

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept when it is short and plain: it goes into every log line of the request,
# so nothing that could forge a line (newlines, quotes) or bloat it.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when it is valid, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestId:
    """Gives every HTTP request a LogContext with its request id, and answers with the id in
    ``X-Request-ID`` (the 500 handler adds it too, since it answers outside this middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        # Not reset on the way out: uvicorn writes the access line, and Starlette answers an
        # unhandled error, after this returns, in this same task (each request has its own).
        start(LogContext(request_id=request_id))
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


async def bind_path_ids(request: Request) -> None:
    """An app-wide dependency: a route about a job (public or internal) names it in its logs."""
    job_id = request.path_params.get("job_id")
    attempt = request.path_params.get("attempt")
    if job_id is not None:
        bind(job_id=str(job_id)[:64])
    if attempt is not None and str(attempt).isdigit():
        bind(attempt=int(attempt))

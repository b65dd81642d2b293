"""Request body caps, enforced while the body streams in (pure ASGI: nothing is buffered first)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """413 for any request body over ``max_bytes``, or over ``max_upload_bytes`` for a dataset
    upload, as soon as the excess arrives (nothing past the cap is read). Artifact uploads (PUT
    on the internal routes) are exempt here: storage enforces their own cap while hashing."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await self._reject(send, cap)
            return
        await self.app(scope, self._counting(receive, cap), send)

    @staticmethod
    def _exempt(scope: Scope) -> bool:
        return scope["method"] == "PUT" and str(scope["path"]).startswith("/internal/")

    def _cap(self, scope: Scope) -> int:
        if scope["method"] == "POST" and str(scope["path"]).rstrip("/") == "/v1/datasets":
            return self.max_upload_bytes
        return self.max_bytes

    def _counting(self, receive: Receive, cap: int) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > cap:
                raise HTTPException(413, _message(cap))
            return message

        return counted

    async def _reject(self, send: Send, cap: int) -> None:
        body = ('{"detail": "' + _message(cap) + '"}').encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _message(cap: int) -> str:
    return f"request body larger than {cap} bytes"

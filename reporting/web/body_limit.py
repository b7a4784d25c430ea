"""Request bodies larger than the limit are refused with 413 before they are read or parsed.

A 49 MB JSON body to ``/api/login`` used to be read whole and parsed (91 s, 2 GB) before its
422. A body that announces a larger Content-Length is refused at once, unread; one without a
length (chunked) is counted as it arrives and refused at the byte that crosses the limit.
Routes that take large bodies by design (STOW-RS) get their own limit by path prefix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes``."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, by_prefix: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.by_prefix = dict(by_prefix or {})

    def limit_for(self, path: str) -> int:
        """The limit of the longest prefix that ``path`` starts with, else the default."""
        matching = [prefix for prefix in self.by_prefix if path.startswith(prefix)]
        return self.by_prefix[max(matching, key=len)] if matching else self.default_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(str(scope.get("path", "")))
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > max_bytes
            except ValueError:
                too_large = False
            if too_large:
                await self._refuse(send, max_bytes)
                return
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            # Past the limit the 413 goes out at once and the app is told the client left:
            # raising here would be caught by the app's body parsing and become a 400.
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(send, max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's own answer to a refused request is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        body = json.dumps({"detail": f"the request body is larger than {max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

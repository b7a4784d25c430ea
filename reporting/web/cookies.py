"""Mark cookies ``Secure`` whenever the request came over TLS.

Starlette's session middleware takes ``https_only`` once, at start-up; radraft is served both
plainly (the embedded demo on 127.0.0.1) and behind TLS (uvicorn with a certificate, or a proxy
whose X-Forwarded-Proto uvicorn trusts). Deciding per request keeps the cookie Secure whenever
the browser reached us over HTTPS, without a setting that can be forgotten.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecureCookieOverTLS:
    """ASGI middleware adding ``; Secure`` to every Set-Cookie of an HTTPS request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"set-cookie" and b"secure" not in value.lower():
                        value = value + b"; Secure"
                    headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_secure)

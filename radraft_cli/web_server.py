"""The uvicorn server of ``radraft web`` and ``radraft serve``, with radraft's limits at its edge.

No access log: request lines carry study UIDs and worklist searches (which may be a patient's
name), and PHI stays out of logs. A client that stalls is cut off
(``radraft_cli.http_protocol``); connections are capped and TLS handshakes bounded
(``radraft_cli.http_admission``). HTTPS when a certificate is configured; the session cookie is
then marked Secure.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

import uvicorn

from radraft.settings import Settings
from radraft.tls import web_server_context
from radraft_cli.http_admission import admitting_protocol
from radraft_cli.http_protocol import client_timeout_protocol
from radraft_cli.web_app import web_app

uvicorn_logger = logging.getLogger("uvicorn.error")


class WebServer(uvicorn.Server):
    """uvicorn's server, saying which scheme it serves: TLS is ours (``http_admission``), so
    uvicorn, which was given no certificate, would announce https as http."""

    def __init__(self, config: uvicorn.Config, *, scheme: str) -> None:
        super().__init__(config)
        self.scheme = scheme

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        host, port = listeners[0].getsockname()[:2]
        uvicorn_logger.info("Uvicorn running on %s://%s:%d", self.scheme, host, port)


def web_server(settings: Settings) -> WebServer:
    """The web app's server, built from settings (not started)."""
    timeout = settings.http_client_timeout_seconds
    tls = web_server_context(settings)
    config = uvicorn.Config(
        web_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level="info",  # start-up and shutdown lines; requests are not logged
        access_log=False,
        timeout_graceful_shutdown=10,  # browsers hold keep-alive connections open
        http=admitting_protocol(
            client_timeout_protocol(timeout),
            max_connections=settings.http_max_connections,
            tls=tls,
            handshake_timeout_seconds=timeout,
        ),
    )
    return WebServer(config, scheme="http" if tls is None else "https")

"""Web connections at the door: a cap counted from the moment of accept, and HTTPS handshakes
bounded by the client timeout (``radraft_cli.http_admission``), on a live ``radraft web``."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from radraft.settings import Settings
from tests.pki import TestPki
from tests.processes import radraft_process
from tests.support import closed_within, wait_until

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def _everything_sent(connection: socket.socket, seconds: float) -> bytes:
    """What the server sends until it closes the connection (``seconds`` per read at most)."""
    connection.settimeout(seconds)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def _healthy(url: str, **options: object) -> bool:
    try:
        return httpx.get(url, timeout=5, **options).status_code == 200  # type: ignore[arg-type]
    except httpx.HTTPError:
        return False


def test_connections_past_the_limit_get_a_503_and_their_slots_come_back(
    settings: Settings, tmp_path: Path
) -> None:
    """Nothing capped the connections a client could hold open: each held one of the
    process's descriptors (in ``radraft serve`` the gateway's too) for the client timeout,
    however many were opened within it."""
    settings = settings.model_copy(update={"http_max_connections": 4})
    port = settings.http_port
    log = tmp_path / "web.log"
    with radraft_process(settings, ["web"], log, ready_text="Uvicorn running"):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as over:
                refusal = _everything_sent(over, 5)
            assert refusal.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refusal[:200]
            assert b"Retry-After: 5\r\n" in refusal
            assert refusal.endswith(
                b"too many web connections at once (limit 4); try again shortly\n"
            )
        assert log.read_text().count("web.connections_refused limit=4") == 1, "once a burst"

        for connection in held:
            connection.close()
        url = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: _healthy(url), timeout=10, what="the slots to come back")
        # All four of them: four held again, and the fifth still refused.
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        with socket.create_connection(("127.0.0.1", port)) as over:
            assert _everything_sent(over, 5).startswith(b"HTTP/1.1 503")
        for connection in held:
            connection.close()


def test_https_handshakes_take_a_slot_and_end_within_the_client_timeout(
    settings: Settings, pki: TestPki, tmp_path: Path
) -> None:
    """uvicorn counted an HTTPS connection only once its handshake was done, and asyncio gave a
    handshake 60 s: connections that never finished one were not bounded at all."""
    settings = settings.model_copy(
        update={
            "tls_certfile": pki.server.certificate,
            "tls_keyfile": pki.server.key,
            "http_client_timeout_seconds": 2.0,
            "http_max_connections": 3,
        }
    )
    port = settings.http_port
    log = tmp_path / "web.log"
    with radraft_process(settings, ["web"], log, ready_text="Uvicorn running on https://"):
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        half_hello = socket.create_connection(("127.0.0.1", port))
        half_hello.sendall(b"\x16\x03\x01\x02\x00\x01")  # a record header and a byte of hello
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as over:
            assert closed_within(over, 1.5), "a fourth connection is refused as it arrives"
        for connection in (*stalled, half_hello):
            assert closed_within(connection, 10), "a handshake that stalls is cut off"
            connection.close()
        assert time.monotonic() - started < 10

        # Handshakes that fail give their slots back: ten of them through three slots.
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port)) as plain:
                plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert closed_within(plain, 5)
        verified = ssl.create_default_context(cafile=str(pki.ca))
        url = f"https://127.0.0.1:{port}/healthz"
        wait_until(lambda: _healthy(url, verify=verified), timeout=10, what="HTTPS served")
        assert "web.connections_refused limit=3" in log.read_text()

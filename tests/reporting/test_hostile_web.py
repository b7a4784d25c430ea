"""The web app under attack: huge bodies, absurd numbers, stolen cookies, open redirects."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread

from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from reporting.web.app import create_app
from tests.dicom_peers import write_study
from tests.dicomweb_support import dataset_bytes, parts_of, stow_body
from tests.processes import radraft_process
from tests.reporting.web_support import login
from tests.support import closed_within

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
TOKEN = {"Authorization": "Bearer test-service-token"}
MIB = 1 << 20


def http_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[bytes, float]:
    """Send a raw request head and a (partial) body; return the response and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + body)
        response = b""
        while b"\r\n\r\n" not in response or not response.endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            response += chunk
    return response, time.monotonic() - started


def test_a_huge_body_is_refused_before_it_is_read(settings: Settings, tmp_path: Path) -> None:
    with radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"):
        # 49 MB announced, a few bytes sent: the answer comes without the body being read.
        head = (
            b"POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 51380224\r\n\r\n"
        )
        response, elapsed = http_exchange(settings.http_port, head, b'{"username": "')
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b"larger than 1048576 bytes" in response
        assert elapsed < 1.0
        # No length announced (chunked): refused at the byte that crosses the limit.
        chunk = b"x" * 65536
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
        head = (
            b"POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        response, _ = http_exchange(settings.http_port, head, chunked)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_clients_that_stall_are_cut_off_and_slow_ones_are_not(
    settings: Settings, tmp_path: Path
) -> None:
    """uvicorn set no limit on a connection that sends nothing, headers a byte at a time, or
    half a body: each held a connection and its descriptor for good (slowloris)."""
    settings = settings.model_copy(update={"http_client_timeout_seconds": 2.0})
    port = settings.http_port
    with radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"):
        silent = socket.create_connection(("127.0.0.1", port))
        half_head = socket.create_connection(("127.0.0.1", port))
        half_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        half_body = socket.create_connection(("127.0.0.1", port))
        half_body.sendall(
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"username": '
        )
        dribbling = socket.create_connection(("127.0.0.1", port))
        started = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"x" * 40:  # never ends its head
            try:
                dribbling.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.25)
        dribbled_for = time.monotonic() - started
        assert dribbled_for < 8, "a head sent a byte at a time is cut off as a whole"
        for connection in (silent, half_head, half_body, dribbling):
            assert closed_within(connection, 10), "a stalled client is cut off"
            connection.close()

        # A body that keeps coming, in pieces closer together than the timeout, is served.
        body = b'{"username": "nobody", "password": "not-this-one"}'
        head = (
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as patient:
            patient.sendall(head)
            for piece in (body[:10], body[10:20], body[20:30], body[30:]):
                time.sleep(1.0)  # 4 s in all: twice the timeout, never a gap as long
                patient.sendall(piece)
            assert patient.recv(65536).startswith(b"HTTP/1.1 401"), "answered, not cut off"


def _read_response(connection: socket.socket, *, pause_every: int = 0, pause: float = 0) -> bytes:
    """Everything the server sends until it closes; a pause after every ``pause_every`` bytes."""
    connection.settimeout(15)
    received = bytearray()
    since_pause = 0
    while chunk := connection.recv(1 << 18):
        received += chunk
        since_pause += len(chunk)
        if pause_every and since_pause >= pause_every:
            time.sleep(pause)
            since_pause = 0
    return bytes(received)


def test_a_client_that_never_reads_its_response_is_dropped_and_a_slow_reader_is_served(
    settings: Settings, tmp_path: Path
) -> None:
    """A WADO-RS response whose client read nothing waited for the socket to drain for good,
    holding its file and the bytes queued for it."""
    settings = settings.model_copy(update={"http_client_timeout_seconds": 2.0})
    (image,) = write_study(
        make_chest_study(511, views=("PA",), rows=3072, columns=3072), tmp_path / "sent"
    )
    assert image.stat().st_size > 16 * MIB, "more than the sockets' buffers hold"
    header = dcmread(image, stop_before_pixels=True)
    series_uid, sop_uid = header.SeriesInstanceUID, header.SOPInstanceUID
    base = f"/dicomweb/studies/{header.StudyInstanceUID}"
    request = (
        f"GET {base} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {TOKEN['Authorization']}\r\nConnection: close\r\n\r\n"
    ).encode()
    port = settings.http_port
    with radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"):
        body, content_type = stow_body([image])
        stored = httpx.post(
            f"http://127.0.0.1:{port}/dicomweb/studies",
            content=body,
            headers={**TOKEN, "Content-Type": content_type},
            timeout=60,
        )
        assert stored.status_code == 200, stored.text

        # A streamed response (the app waits to write more) and a whole one (the app is done,
        # the bytes wait in the transport, after keep-alive or Connection: close).
        instance = f"{base}/series/{series_uid}/instances/{sop_uid}"
        png = httpx.get(
            f"http://127.0.0.1:{port}{instance}/rendered?viewport=4096,4096",
            headers={**TOKEN, "Accept": "image/png"},
            timeout=60,
        )
        assert png.status_code == 200, png.text
        assert len(png.content) > 6 * MIB, "more than the sockets' buffers hold"
        rendered = f"GET {instance}/rendered?viewport=4096,4096 HTTP/1.1\r\nHost: x\r\n"
        rendered += f"Authorization: {TOKEN['Authorization']}\r\nAccept: image/png\r\n"
        idle_readers = {
            request: image.stat().st_size,
            f"{rendered}\r\n".encode(): len(png.content),
            f"{rendered}Connection: close\r\n\r\n".encode(): len(png.content),
        }
        for asked, size in idle_readers.items():
            idle_reader = socket.socket()
            idle_reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            idle_reader.connect(("127.0.0.1", port))
            idle_reader.sendall(asked)
            # Peeking takes nothing: from the response's first byte (rendering may take
            # seconds), three timeouts without reading a byte.
            idle_reader.settimeout(60)
            assert idle_reader.recv(1, socket.MSG_PEEK) == b"H"
            time.sleep(6)
            cut_short = _read_response(idle_reader)
            idle_reader.close()
            assert cut_short.startswith(b"HTTP/1.1 200"), cut_short[:200]
            assert len(cut_short) < size, f"dropped before the response was whole: {asked!r}"

        # A client that reads in bursts, pausing for half the timeout each time, gets it all.
        with socket.create_connection(("127.0.0.1", port)) as slow_reader:
            slow_reader.sendall(request)
            started = time.monotonic()
            whole = _read_response(slow_reader, pause_every=2 * MIB, pause=1.0)
            assert time.monotonic() - started > 2 * settings.http_client_timeout_seconds
        head, _, payload = whole.partition(b"\r\n\r\n")
        content_type = next(
            line.split(b": ", 1)[1].decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        )
        ((_, part),) = parts_of(_unchunked(payload), content_type)
        assert dataset_bytes(part) == dataset_bytes(image.read_bytes()), "served whole"


def _unchunked(payload: bytes) -> bytes:
    """The body of a response sent with chunked transfer coding."""
    body = bytearray()
    while True:
        size_line, _, payload = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        body += payload[:size]
        payload = payload[size + 2 :]


def test_ids_and_numbers_out_of_range_are_422_never_500(
    app_client: TestClient, world: dict[str, Any]
) -> None:
    csrf = login(app_client, "resident")
    for path in ("/api/reports/9223372036854775808", "/api/reports/0", "/api/reports/-1"):
        assert app_client.get(path).status_code == 422, path
    assert (
        app_client.get(f"/api/reports/{world['report']}/diff?old=1&new=99999999999").status_code
        == 422
    )
    opened = app_client.post(f"/api/reports/{world['report']}/sessions", headers=csrf).json()
    events = [{"type": "opened", "client_ms": 1e300}]
    posted = app_client.post(f"/api/sessions/{opened['id']}/events", json=events, headers=csrf)
    assert posted.status_code == 422
    body = {"expected_version": 2**63, "findings": "a", "impression": "b"}
    submitted = app_client.post(f"/api/reports/{world['report']}/submit", json=body, headers=csrf)
    assert submitted.status_code == 422
    assert app_client.get("/api/worklist?min_priority=99999999999999999999").status_code == 422


def test_a_cookie_copied_before_logout_is_refused_after_it(
    app_client: TestClient, world: dict[str, Any]
) -> None:
    csrf = login(app_client, "resident")
    stolen = dict(app_client.cookies)
    opened = app_client.post(f"/api/reports/{world['report']}/sessions", headers=csrf).json()
    assert app_client.get("/api/me").status_code == 200
    assert app_client.post("/api/logout", headers=csrf).status_code == 200
    app_client.cookies.clear()
    for name, value in stolen.items():
        app_client.cookies.set(name, value)
    assert app_client.get("/api/me").status_code == 401, "read refused"
    autosave = {"base_version": 1, "findings": "x", "impression": "y"}
    written = app_client.put(f"/api/sessions/{opened['id']}/autosave", json=autosave, headers=csrf)
    assert written.status_code == 401, "write refused"


@pytest.mark.parametrize(
    "target",
    [
        "/\\evil.example",
        "//evil.example",
        "https://evil.example/",
        "/\t/evil.example",
        "javascript:x",
    ],
)
def test_login_redirects_only_within_the_site(app_client: TestClient, target: str) -> None:
    page = app_client.get("/login", params={"next": target})
    assert page.status_code == 200
    assert 'data-next="/worklist"' in page.text
    assert "evil" not in page.text


def test_the_api_schema_needs_a_login_unless_opened(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/docs").status_code == 401
        schema = client.get("/openapi.json", headers=TOKEN)
        assert schema.status_code == 200
        assert "/api/reports/{report_id}" in schema.json()["paths"]
    opened = settings.model_copy(update={"http_open_docs": True})
    with TestClient(create_app(opened)) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200

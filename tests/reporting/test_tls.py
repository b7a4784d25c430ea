"""``radraft web`` over HTTPS: the session cookie is Secure, and requests are not logged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import Role
from radraft.settings import Settings
from reporting.users import create_user
from tests.processes import radraft_process
from tests.reporting.web_support import PASSWORD
from tests.support import require_tool, wait_until


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return certificate, key


@pytest.mark.parametrize("backend", ["sqlite"])
def test_web_over_tls_sets_a_secure_cookie_and_logs_no_requests(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    settings = settings.model_copy(update={"tls_certfile": certificate, "tls_keyfile": key})
    with session_scope(session_factory) as session:
        create_user(session, "rita", role=Role.RESIDENT, password=PASSWORD)
    base = f"https://127.0.0.1:{settings.http_port}"
    log = tmp_path / "web.log"
    with radraft_process(settings, ["web"], log, ready_text="web app on"):
        client = httpx.Client(verify=False)  # noqa: S501 - a throw-away self-signed certificate
        request_closing = {"Connection": "close"}
        client.headers.update(request_closing)
        wait_until(lambda: _answers(client, f"{base}/healthz"), what="the HTTPS web app")
        login = client.post(f"{base}/api/login", json={"username": "rita", "password": PASSWORD})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "; secure" in cookie
        assert "httponly" in cookie
        searched = client.get(f"{base}/api/worklist", params={"text": "DOE^JANE"})
        assert searched.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{settings.http_port}/healthz", timeout=5)
        client.close()
    assert "DOE^JANE" not in log.read_text(), "no access log: searches may be patient names"


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

"""``radraft health gateway|web|worker``: is this host's service answering? Exit 0 if so.

Container health checks run these, so every check is a radraft command: the gateway is asked
for a C-ECHO on its own port (an association rejected because the health check's AE title is not
on the allow-list still proves the SCP answers), the web app for ``/healthz``, the worker for a
Celery ping through the broker, addressed to this host's worker only. Libraries are imported
inside each check so that every other ``radraft`` command starts without them.
"""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from radraft.settings import Settings, load_settings

health_app = typer.Typer(help="Health checks of this host's services (exit 0: answering).")
HEALTH_AE_TITLE = "RADRAFT-HEALTH"


def _fail(message: str) -> None:
    typer.echo(f"unhealthy: {message}", err=True)
    raise typer.Exit(1)


def gateway_answers(settings: Settings, timeout: float) -> str | None:
    """None if the DICOM port answers an association request; else why not."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    entity = AE(ae_title=HEALTH_AE_TITLE)
    entity.acse_timeout = entity.dimse_timeout = entity.network_timeout = timeout
    entity.add_requested_context(Verification)
    association = entity.associate("127.0.0.1", settings.dicom_port, ae_title=settings.ae_title)
    if association.is_established:
        status = association.send_c_echo()
        association.release()
        return None if status is not None and status.Status == 0 else "C-ECHO failed"
    if association.is_rejected:
        return None  # the SCP is there and said no (allow-listed AE titles)
    return "no association (port closed, or no answer in time)"


@health_app.command("gateway")
def gateway(timeout: Annotated[float, typer.Option(min=0.1)] = 5.0) -> None:
    """C-ECHO to this host's gateway."""
    problem = gateway_answers(load_settings(), timeout)
    if problem:
        _fail(problem)
    typer.echo("gateway answers")


@health_app.command("web")
def web(timeout: Annotated[float, typer.Option(min=0.1)] = 5.0) -> None:
    """GET /healthz from this host's web app."""
    import httpx

    settings = load_settings()
    scheme = "https" if settings.tls_certfile else "http"
    url = f"{scheme}://127.0.0.1:{settings.http_port}/healthz"
    try:
        # Loopback, no credentials sent: the certificate names the public host, not 127.0.0.1.
        response = httpx.get(url, timeout=timeout, verify=False)  # noqa: S501
    except httpx.HTTPError as error:
        _fail(f"{url}: {type(error).__name__}")
        return
    if response.status_code != 200:
        _fail(f"{url} answered {response.status_code}")
    typer.echo("web app answers")


@health_app.command("worker")
def worker(timeout: Annotated[float, typer.Option(min=0.1)] = 5.0) -> None:
    """Celery ping to this host's worker (``celery@<hostname>``) through the broker."""
    from radraft.broker import make_celery

    settings = load_settings()
    node = f"celery@{socket.gethostname()}"
    try:
        replies = make_celery(settings).control.ping(destination=[node], timeout=timeout)
    except Exception as error:  # the broker's own errors vary by transport
        _fail(f"broker: {type(error).__name__}")
        return
    if not any(node in reply for reply in replies or []):
        _fail(f"{node} did not answer")
    typer.echo(f"{node} answers")

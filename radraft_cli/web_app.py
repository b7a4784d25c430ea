"""The web app as deployed: reporting's pages and API, with the gateway's DICOMweb mounted.

Assembled here because it joins two services: DICOMweb belongs to the gateway (the same intake
as C-STORE, the spool), who may call it to reporting (logins and the service token).
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.dicomweb.routes import dicomweb_router
from radraft.settings import Settings
from reporting.web.app import ExtraRouter, create_app
from reporting.web.deps import get_session
from reporting.web.security import reader, service_caller


def web_app(settings: Settings) -> FastAPI:
    """The FastAPI app ``radraft web`` and ``radraft serve`` run."""
    dicomweb = ExtraRouter(
        dicomweb_router(reader=reader, storer=service_caller, database=get_session),
        max_body_bytes=settings.stow_max_bytes,
    )
    return create_app(settings, extra_routers=[dicomweb])

"""TLS for DICOM (PS3.15 secure transport, BCP 195), MLLP and the web app, from radraft's settings.

One certificate identifies radraft everywhere (``RADRAFT_TLS_CERTFILE``/``KEYFILE``); one CA
file says whom radraft trusts (``RADRAFT_TLS_CA_FILE``, else the system's CAs). BCP 195 asks
for TLS 1.2 or later and current cipher suites: Python's default context already excludes the
weak ones, and the minimum version is set here.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from radraft.errors import ConfigurationError
from radraft.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext:
    """The context of radraft's TLS listeners (DICOM, MLLP), checking clients if asked to."""
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        raise ConfigurationError("a TLS listener needs RADRAFT_TLS_CERTFILE and _KEYFILE")
    context = _listening_context(settings.tls_certfile, settings.tls_keyfile)
    if settings.tls_ca_file is not None:
        context.load_verify_locations(cafile=settings.tls_ca_file)
    context.verify_mode = ssl.CERT_REQUIRED if settings.tls_require_client_cert else ssl.CERT_NONE
    return context


def web_server_context(settings: Settings) -> ssl.SSLContext | None:
    """The web app's HTTPS context, or None for plain HTTP (no certificate configured).

    Browsers log in with a password, so clients are not asked for a certificate; the key may
    sit in the certificate's own file, as uvicorn allowed when it built this context.
    """
    if settings.tls_certfile is None:
        return None
    return _listening_context(settings.tls_certfile, settings.tls_keyfile)


def _listening_context(certfile: Path, keyfile: Path | None) -> ssl.SSLContext:
    """A server-side context presenting radraft's certificate, TLS 1.2 or later."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def client_context(settings: Settings) -> ssl.SSLContext:
    """The context radraft connects to a PACS or RIS with: their certificate verified, radraft's
    own presented when it has one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.tls_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile)
    return context

"""A throw-away PKI for the TLS tests: a CA, certificates it signed, and a rogue one it did not."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import require_tool

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"


@dataclass(frozen=True)
class Identity:
    """A certificate and its key (PEM)."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class TestPki:
    """The CA and the identities of one test."""

    __test__ = False  # a fixture's value, not a test class for pytest to collect

    ca: Path
    server: Identity
    client: Identity
    rogue: Identity
    """Signed by another CA: the test CA does not vouch for it."""


def _openssl(*arguments: str) -> None:
    subprocess.run([require_tool("openssl"), *arguments], check=True, capture_output=True,
                   timeout=60)  # fmt: skip


def _authority(folder: Path, name: str) -> Identity:
    identity = Identity(folder / f"{name}.pem", folder / f"{name}.key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN=radraft test {name}", "-keyout", str(identity.key),
             "-out", str(identity.certificate))  # fmt: skip
    return identity


def _signed(folder: Path, name: str, authority: Identity) -> Identity:
    identity = Identity(folder / f"{name}.pem", folder / f"{name}.key")
    request = folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    extensions.write_text(SAN + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", str(identity.key), "-out", str(request))  # fmt: skip
    _openssl("x509", "-req", "-in", str(request), "-CA", str(authority.certificate),
             "-CAkey", str(authority.key), "-CAcreateserial", "-days", "2",
             "-extfile", str(extensions), "-out", str(identity.certificate))  # fmt: skip
    return identity


def make_pki(folder: Path) -> TestPki:
    """Write a CA, a server and a client certificate it signed, and a rogue client."""
    folder.mkdir(parents=True, exist_ok=True)
    authority = _authority(folder, "ca")
    stranger = _authority(folder, "other-ca")
    return TestPki(
        ca=authority.certificate,
        server=_signed(folder, "server", authority),
        client=_signed(folder, "client", authority),
        rogue=_signed(folder, "rogue", stranger),
    )

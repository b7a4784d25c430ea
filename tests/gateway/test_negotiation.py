"""Presentation context negotiation when every association shares the AE's contexts.

The gateway's server hands one list of supported contexts to every association instead of
pynetdicom's deep copy per association (``gateway.servers.SharedContexts``); these tests show
that what one association negotiated never changes what the next is offered.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import uid
from pynetdicom import AE, build_role
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    DigitalXRayImageStorageForPresentation,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from gateway.scp import build_application_entity
from gateway.servers import SharedContexts
from radraft.settings import Settings
from tests.support import free_port

UNKNOWN_TRANSFER_SYNTAX = "1.2.826.0.1.3680043.9.7433.99.1"
UNKNOWN_ABSTRACT_SYNTAX = "1.2.826.0.1.3680043.9.7433.99.2"

Outcome = tuple[str, tuple[str, ...], int, int]
"""A negotiated context: abstract syntax, transfer syntaxes, result, context ID."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Defaults (AE title RADRAFT, any calling AE); no database is needed to negotiate."""
    return Settings(data_dir=tmp_path)


@pytest.fixture
def scp(settings: Settings) -> Iterator[tuple[ThreadedAssociationServer, int]]:
    """The gateway's AE listening on a free port with its own negotiation and C-ECHO only."""
    port = free_port()
    server = build_application_entity(settings).start_server(("127.0.0.1", port), block=False)
    assert server is not None
    yield server, port
    server.shutdown()


def negotiate(port: int, proposals: list[tuple[Any, list[Any]]]) -> list[Outcome]:
    """Associate with ``proposals`` (and an SCP/SCU role proposal for Verification): each
    context's abstract syntax, transfer syntaxes and result, in context ID order."""
    requestor = AE(ae_title="NEGOTIATE")
    for abstract_syntax, transfer_syntaxes in proposals:
        requestor.add_requested_context(abstract_syntax, transfer_syntaxes)
    roles: list[Any] = [build_role(Verification, scu_role=True, scp_role=True)]
    association = requestor.associate("127.0.0.1", port, ae_title="RADRAFT", ext_neg=roles)
    assert association.is_established
    negotiated = association.accepted_contexts + association.rejected_contexts
    association.release()
    return sorted(
        (
            (str(context.abstract_syntax), tuple(map(str, context.transfer_syntax)),
             int(context.result or 0), context.context_id or 0)
            for context in negotiated
        ),
        key=lambda outcome: outcome[3],
    )  # fmt: skip


def described(contexts: list[PresentationContext]) -> list[tuple[object, ...]]:
    return [
        (context.abstract_syntax, tuple(context.transfer_syntax), context.scu_role,
         context.scp_role)
        for context in contexts
    ]  # fmt: skip


def test_each_association_is_negotiated_afresh_against_unchanged_contexts(
    scp: tuple[ThreadedAssociationServer, int], settings: Settings
) -> None:
    server, port = scp
    refused: list[tuple[Any, list[Any]]] = [
        (Verification, [uid.ImplicitVRLittleEndian]),
        (DigitalXRayImageStorageForPresentation, [UNKNOWN_TRANSFER_SYNTAX]),
        (UNKNOWN_ABSTRACT_SYNTAX, [uid.ExplicitVRLittleEndian]),
    ]
    first = negotiate(port, refused)
    assert [(syntax, result) for syntax, _, result, _ in first] == [
        (Verification, 0x00),
        (DigitalXRayImageStorageForPresentation, 0x04),  # transfer syntaxes not supported
        (UNKNOWN_ABSTRACT_SYNTAX, 0x03),  # abstract syntax not supported
    ]

    # The gateway's own order of preference picks among what is proposed.
    accepted = negotiate(
        port,
        [(DigitalXRayImageStorageForPresentation, [uid.JPEG2000Lossless, uid.RLELossless])],
    )
    assert [(syntax, transfer, result) for syntax, transfer, result, _ in accepted] == [
        (DigitalXRayImageStorageForPresentation, (uid.JPEG2000Lossless,), 0x00)
    ]
    explicit = negotiate(
        port,
        [(DigitalXRayImageStorageForPresentation, [uid.ImplicitVRLittleEndian,
                                                   uid.ExplicitVRLittleEndian])],
    )  # fmt: skip
    assert explicit[0][1:3] == ((uid.ExplicitVRLittleEndian,), 0x00)

    assert negotiate(port, refused) == first
    assert described(server.contexts) == described(
        build_application_entity(settings).supported_contexts
    )


def test_the_server_hands_every_association_the_same_contexts(
    scp: tuple[ThreadedAssociationServer, int],
) -> None:
    server, _ = scp
    assert isinstance(server.contexts, SharedContexts)
    assert copy.deepcopy(server.contexts) is server.contexts

"""The DICOM Upper Layer adapter: pynetdicom's AE, its presentation contexts and its handlers.

Handlers only translate: a pynetdicom event becomes a ``ReceivedInstance`` for the intake, and
the intake's ``StoreStatus`` becomes the C-STORE response.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from pathlib import Path
from typing import cast

from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.intake import InstanceIntake, ReceivedInstance
from gateway.statuses import EchoStatus
from radraft.logs import log_event
from radraft.settings import Settings

logger = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
]
"""Accepted transfer syntaxes, in order of preference when a sender proposes several."""


def receive_into(incoming: Path) -> None:
    """The gateway process's two process-wide settings, made here and nowhere else.

    pynetdicom writes each C-STORE data set to a temporary file as it arrives
    (``STORE_RECV_CHUNKED_DATASET``), so a 15 MB image is never held in memory; it creates that
    file with ``tempfile`` and offers no folder of its own, so ``tempfile.tempdir`` points at the
    spool's ``incoming`` folder, which makes the final move into the spool a rename on one
    filesystem. (pynetdicom's identifier logging is switched off by ``configure_logging``.)
    """
    pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True
    tempfile.tempdir = str(incoming)


def build_application_entity(settings: Settings) -> AE:
    """An AE that accepts C-ECHO and C-STORE of every storage SOP class we can keep."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.require_calling_aet = list(settings.allowed_calling_aes)
    ae.maximum_associations = 64
    ae.network_timeout = 120
    ae.acse_timeout = 60
    ae.dimse_timeout = 120
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:  # pynetdicom's list always names one
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
    return ae


def event_handlers(intake: InstanceIntake) -> list[evt.EventHandlerType]:
    """pynetdicom handlers bound to one intake."""

    def handle_store(event: evt.Event) -> Dataset:
        request = cast(C_STORE, event.request)
        received = ReceivedInstance(
            path=Path(event.dataset_path),
            calling_ae_title=str(event.assoc.requestor.ae_title).strip(),
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
        )
        outcome = intake.accept(received)
        response = Dataset()
        response.Status = int(outcome.status)
        if outcome.comment:
            # Error Comment (0000,0902) is LO: 64 characters, no backslash.
            response.ErrorComment = outcome.comment.replace("\\", "/")[:64]
        return response

    def handle_echo(_event: evt.Event) -> int:
        return int(EchoStatus.SUCCESS)

    def handle_connection_open(event: evt.Event) -> None:
        # Nagle's algorithm stalls each small response behind a delayed ACK (about 40-70 ms per
        # image with dcmtk senders); DICOM is request-response, so it is switched off.
        transport = event.assoc.dul.socket
        connection = transport.socket if transport is not None else None
        if connection is None:
            return
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            log_event(logger, "gateway.nodelay_failed", logging.DEBUG, error=type(error).__name__)

    def handle_rejected(event: evt.Event) -> None:
        log_event(
            logger,
            "gateway.association_rejected",
            logging.WARNING,
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
        )

    return [
        (evt.EVT_C_STORE, handle_store),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_CONN_OPEN, handle_connection_open),
        (evt.EVT_REJECTED, handle_rejected),
    ]

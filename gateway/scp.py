"""The DICOM Upper Layer adapter: pynetdicom's AE, its presentation contexts and its handlers.

Handlers only translate: a pynetdicom event becomes a ``ReceivedInstance`` for the intake, and
the intake's ``StoreStatus`` becomes the C-STORE response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from gateway.answers import answer_stores_directly, error_comment
from gateway.association_slots import is_pushed_out, make_room, marked_storing, storing
from gateway.intake import InstanceIntake, ReceivedInstance, StoreOutcome
from gateway.pdata import receive_data_sets_directly
from gateway.reactor_wakeup import wake_on_work
from gateway.servers import GatewayServer, ReusePortServer
from gateway.state_machine import guard_state_machine
from gateway.statuses import EchoStatus
from gateway.transport import tune_connection
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


AWAITING_ASSOCIATION_REQUEST = "Sta2"
"""PS3.8 9.2 state Sta2: the transport connection is open, no A-ASSOCIATE-RQ has arrived yet."""


class GatewayAE(AE):
    """pynetdicom's AE, except that its association limit counts associations, not sockets.

    pynetdicom counts every accepted connection against ``maximum_associations``, including the
    ones that have not asked for an association yet, so seventy idle sockets kept every real
    sender out (rejected, "local limit exceeded") until they timed out. Here a connection counts
    only once its A-ASSOCIATE-RQ has arrived; idle ones are closed by the ARTIM timer
    (``RADRAFT_DICOM_REQUEST_TIMEOUT_SECONDS``) without ever taking a slot.
    """

    reuse_port = False
    """Bind listening sockets with SO_REUSEPORT (``radraft gateway --processes N``)."""
    max_waiting_connections = 256
    """Accepted connections that may wait for their request at once (``gateway.waiting_room``)."""

    def make_server(self, *args: Any, **kwargs: Any) -> Any:
        """pynetdicom's server factory, with ``gateway.servers``' classes for its threaded one."""
        if kwargs.get("server_class") is ThreadedAssociationServer:
            kwargs["server_class"] = ReusePortServer if self.reuse_port else GatewayServer
        return super().make_server(*args, **kwargs)

    @property
    def active_associations(self) -> list[Association]:
        """Associations past their request (idle pre-association connections left out), less
        those that gave their slot to a new request (``gateway.association_slots``)."""
        return [
            association
            for association in super().active_associations
            if association.dul.state_machine.current_state != AWAITING_ASSOCIATION_REQUEST
            and not is_pushed_out(association)
        ]


def build_application_entity(settings: Settings, *, reuse_port: bool = False) -> AE:
    """An AE that accepts C-ECHO and C-STORE of every storage SOP class we can keep."""
    ae = GatewayAE(ae_title=settings.ae_title)
    ae.reuse_port = reuse_port
    ae.max_waiting_connections = settings.dicom_max_waiting_connections
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.require_calling_aet = list(settings.allowed_calling_aes)
    ae.maximum_associations = settings.dicom_max_associations
    ae.network_timeout = 120
    # The ACSE timeout is also the ARTIM timer: a connection that sends no A-ASSOCIATE-RQ within
    # it is closed, so idle sockets give their thread and slot back quickly.
    ae.acse_timeout = settings.dicom_request_timeout_seconds
    ae.dimse_timeout = 120
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:  # pynetdicom's list always names one
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
    return ae


def use_gateway_receive_path(
    association: Association,
    max_pdu_size: int,
    store: Callable[[ReceivedInstance], StoreOutcome] | None = None,
) -> None:
    """Give one accepted connection the gateway's receive path: the tuned socket, data set PDUs
    read straight into the file, C-STORE answers encoded directly and, with ``store``, stored
    and answered on the connection's own thread, whose association loop turns only when there
    is work for it; and a state machine that a peer's protocol errors cannot kill
    (``gateway.state_machine``; ``bench/ingest.py``'s receive-path ceiling takes the same)."""
    tune_connection(association.dul.socket, max_pdu_size)
    guard_state_machine(association.dul)
    receive_data_sets_directly(
        association.dul, None if store is None else marked_storing(association, store)
    )
    answer_stores_directly(association.dimse)
    wake_on_work(association)


def event_handlers(intake: InstanceIntake, *, max_pdu_size: int) -> list[evt.EventHandlerType]:
    """pynetdicom handlers bound to one intake; ``max_pdu_size`` bounds what a peer may send."""

    def handle_store(event: evt.Event) -> Dataset:
        request = cast(C_STORE, event.request)
        received = ReceivedInstance(
            path=Path(event.dataset_path),
            calling_ae_title=str(event.assoc.requestor.ae_title).strip(),
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
        )
        try:
            with storing(event.assoc):
                outcome = intake.accept(received)
        finally:  # moved into the spool unless refused; pynetdicom skips its removal on a raise
            received.path.unlink(missing_ok=True)
        response = Dataset()
        response.Status = int(outcome.status)
        if outcome.comment:
            response.ErrorComment = error_comment(outcome.comment)
        return response

    def handle_echo(_event: evt.Event) -> int:
        return int(EchoStatus.SUCCESS)

    def handle_connection_open(event: evt.Event) -> None:
        use_gateway_receive_path(event.assoc, max_pdu_size, intake.accept)

    def handle_requested(event: evt.Event) -> None:
        make_room(event.assoc)

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
        (evt.EVT_REQUESTED, handle_requested),
        (evt.EVT_REJECTED, handle_rejected),
    ]

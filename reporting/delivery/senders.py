"""The network edges of delivery: C-STORE to the PACS, MLLP to the RIS.

Destinations arrive parsed (``radraft.settings``); a sender either returns what the peer said
(a success, or a warning worth recording) or raises ``DeliveryError`` with the reason.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from radraft.errors import RadraftError
from radraft.exchange_deadline import WAITS_PER_EXCHANGE, ExchangeDeadline
from radraft.hl7ack import AckCode, read_ack
from radraft.hl7text import python_codec
from radraft.mllp import MllpError, send_message
from radraft.readiness import poll_readiness
from radraft.settings import DicomDestination, MllpDestination

SR_TRANSFER_SYNTAXES = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian]
"""Proposed for the SR; Implicit VR Little Endian is the default every SCP must accept, so a
PACS that takes only that one still stores our SRs (pynetdicom re-encodes as accepted)."""
WARNING_STATUSES = {
    0x0107: "Attribute List Error",
    0x0116: "Attribute Value Out of Range",
    0xB000: "Coercion of Data Elements",
    0xB006: "Elements Discarded",
    0xB007: "Data Set Does Not Match SOP Class",
}
"""C-STORE warning statuses (PS3.4 B.2.3, PS3.7 C): the SR is stored; the warning is recorded."""


class DeliveryError(RadraftError):
    """The peer did not accept the output; ``reason`` is stored on the outbox row."""


@dataclass(frozen=True)
class SentNote:
    """What the peer said about an output it accepted (recorded on the outbox row)."""

    warning: str = ""


def store_sr(
    dataset: Dataset,
    destination: DicomDestination,
    *,
    calling_ae_title: str,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> SentNote:
    """C-STORE the SR (over DICOM TLS with ``ssl_context``); stored on success or a warning
    status (the warning is returned).

    Each wait is bounded by ``timeout``: the connection with its TLS handshake (pynetdicom
    waits for these without a limit unless told), and each read once connected (pynetdicom
    clears the socket's timeout, so a PACS that stopped half way through a PDU held the relay
    for good). The whole exchange is bounded by ``WAITS_PER_EXCHANGE`` times it."""
    with ExchangeDeadline(WAITS_PER_EXCHANGE * timeout) as deadline:

        def bound_reads(event: evt.Event) -> None:
            transport = event.assoc.dul.socket
            poll_readiness(transport)  # readable however many descriptors the process holds
            connection = transport.socket if transport is not None else None
            if connection is not None:  # pynetdicom signals the open after connecting it
                connection.settimeout(timeout)
                deadline.watch(connection)

        ae = AE(ae_title=calling_ae_title)
        ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = timeout
        ae.network_timeout = timeout
        ae.add_requested_context(dataset.SOPClassUID, SR_TRANSFER_SYNTAXES)
        association = ae.associate(
            destination.host,
            destination.port,
            ae_title=destination.ae_title,
            tls_args=(ssl_context, destination.host) if ssl_context else None,
            evt_handlers=[(evt.EVT_CONN_OPEN, bound_reads)],
        )
        if not association.is_established:
            raise DeliveryError(
                _reason(deadline, f"association with {destination.ae_title} refused or failed")
            )
        try:
            response = association.send_c_store(dataset)
        except ValueError as error:
            raise DeliveryError(f"no accepted presentation context: {error}") from error
        finally:
            association.release()
    if "Status" not in response:
        raise DeliveryError(_reason(deadline, "no C-STORE response"))
    status = int(response.Status)
    comment = str(response.get("ErrorComment", "") or "")
    if status == 0x0000:
        return SentNote()
    if status in WARNING_STATUSES or (status & 0xF000) == 0xB000:
        name = WARNING_STATUSES.get(status, "Warning")
        return SentNote(f"stored with warning 0x{status:04X} {name} {comment}".strip())
    raise DeliveryError(f"C-STORE status 0x{status:04X} {comment}".strip())


def _reason(deadline: ExchangeDeadline, otherwise: str) -> str:
    return deadline.reason if deadline.expired else otherwise


def send_oru(
    message: str,
    destination: MllpDestination,
    *,
    control_id: str,
    character_set: str,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Send over MLLP (with TLS given ``ssl_context``) in ``character_set``; delivered only when
    an ACK AA/CA answers our MSH-10."""
    encoded = message.encode(python_codec(character_set))
    try:
        raw_ack = send_message(
            destination.host, destination.port, encoded, timeout=timeout, ssl_context=ssl_context
        )
    except MllpError as error:
        raise DeliveryError(str(error)) from error
    ack = read_ack(raw_ack.decode(python_codec(character_set), "replace"))
    if ack.code not in (AckCode.ACCEPT, AckCode.COMMIT_ACCEPT):
        raise DeliveryError(f"ACK {ack.code or 'missing'}")
    if ack.acknowledged_control_id != control_id:
        raise DeliveryError("ACK answers another message (MSA-2 is not our MSH-10)")

"""The network edges of delivery: C-STORE to the PACS, MLLP to the RIS."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom import AE

from radraft.errors import RadraftError
from radraft.hl7ack import AckCode, ack_code_of
from radraft.mllp import MllpError, send_message


class DeliveryError(RadraftError):
    """The peer did not accept the output; ``reason`` is stored on the outbox row."""


def parse_dicom_destination(destination: str) -> tuple[str, str, int]:
    """``AE@host:port`` into its parts."""
    ae_title, address = destination.split("@", 1)
    host, port = address.rsplit(":", 1)
    return ae_title, host, int(port)


def parse_hl7_destination(destination: str) -> tuple[str, int]:
    """``host:port`` into its parts."""
    host, port = destination.rsplit(":", 1)
    return host, int(port)


def store_sr(dataset: Dataset, destination: str, *, calling_ae_title: str, timeout: float) -> None:
    """C-STORE the SR; success only on status 0x0000 (warnings count as stored too: 0xB...)."""
    ae_title, host, port = parse_dicom_destination(destination)
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate(host, port, ae_title=ae_title)
    if not association.is_established:
        raise DeliveryError(f"association with {ae_title} refused or failed")
    try:
        response = association.send_c_store(dataset)
    finally:
        association.release()
    if "Status" not in response:
        raise DeliveryError("no C-STORE response")
    status = int(response.Status)
    if status != 0 and (status & 0xF000) != 0xB000:
        raise DeliveryError(f"C-STORE status 0x{status:04X}")


def send_oru(message: str, destination: str, *, timeout: float) -> None:
    """Send over MLLP; delivered only when the ACK says AA."""
    host, port = parse_hl7_destination(destination)
    try:
        ack = send_message(host, port, message, timeout=timeout)
    except MllpError as error:
        raise DeliveryError(str(error)) from error
    code = ack_code_of(ack)
    if code not in (AckCode.ACCEPT, "CA"):
        raise DeliveryError(f"ACK {code or 'missing'}")

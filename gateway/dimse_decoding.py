"""pynetdicom's DIMSE message decoding, guarded against what a broken or hostile peer sends.

pynetdicom decodes each P-DATA into the message being received on the connection's DUL
thread. Two things went wrong there, both found by a wire-level fuzz of the gateway:

- A command fragment that arrives while a data set is still being received (the data set was
  cut off) makes pynetdicom start the message afresh, creating a new reception file, or none
  if the command has no data set, and dropping its reference to the old one, which it created
  to be kept (``delete=False``). The old file stayed in ``incoming`` with its reserved blocks
  until the janitor's hour, so a peer could fill the spool. It is now removed first.
- A command set that lacks what its command needs (no Affected SOP Instance UID, no Command
  Data Set Type, an unknown Command Field) raised inside the state machine's action, which
  stopped the DUL and re-raised: the connection's thread died without telling the peer. Such a
  message is now what PS3.8 calls an invalid PDU (Evt19): the DUL sends an A-ABORT and closes
  the connection (AA-8), and the association ends as for any other protocol error. So is a
  C-STORE request whose data set arrived but whose command lacks a Message ID, a UID or the
  Priority: pynetdicom dropped it unanswered, and its file stayed in ``incoming``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from pynetdicom import dimse_messages

from radraft.logs import log_event

logger = logging.getLogger(__name__)

COMMAND_FRAGMENT = 0x01
"""Bit 0 of a PDV's message control header: the fragment is of a command, not a data set."""

STORE_REQUEST_KEYWORDS = ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority")
"""What pynetdicom's C-STORE request primitive must have to be served (``REQUEST_KEYWORDS``,
but for the data set, which is the file)."""

INVALID_PDU = "Evt19"
"""PS3.8 9.2: an unrecognised or invalid PDU was received; answered A-ABORT (AA-8)."""

_original_decode_msg = dimse_messages.DIMSEMessage.decode_msg


def _discard_reception(reception: Any) -> None:
    """Close and remove a reception file whose data set will never be finished; the gateway's
    own (``gateway.receiving.ReceptionFile``) also forgets its early fsync and failure."""
    abandon = getattr(reception, "abandon", None)
    if abandon is not None:
        abandon()
        return
    with contextlib.suppress(OSError):
        reception.close()
    with contextlib.suppress(OSError):
        os.unlink(reception.name)


def discard_message_reception(message: Any) -> None:
    """Take a DIMSE message's reception file, if it has one, off it and discard it."""
    reception = getattr(message, "_data_set_file", None)
    if reception is None:
        return
    message._data_set_file = None
    message._data_set_path = None
    _discard_reception(reception)


def _decode_guarded(message: Any, primitive: Any, assoc: Any = None) -> bool:
    """pynetdicom's ``DIMSEMessage.decode_msg`` with the guards above."""
    if any(
        len(data) > 0 and data[0] & COMMAND_FRAGMENT
        for _, data in primitive.presentation_data_value_list
    ):
        discard_message_reception(message)  # a data set still arriving was cut off
    try:
        complete = bool(_original_decode_msg(message, primitive, assoc))
    except Exception as error:  # whatever pynetdicom trips on in what the peer sent
        _abort_on_invalid(message, assoc, type(error).__name__)
        return False
    if complete and _is_incomplete_store_request(message):
        _abort_on_invalid(message, assoc, "IncompleteRequest")
        return False
    return complete


def _is_incomplete_store_request(message: Any) -> bool:
    """A C-STORE-RQ received into a file whose command set lacks what pynetdicom needs to
    serve it: it would drop the request ("unexpected C-STORE service message") and the file
    with it, unanswered and left in ``incoming``."""
    if not isinstance(message, dimse_messages.C_STORE_RQ):
        return False
    if getattr(message, "_data_set_file", None) is None:
        return False
    command = message.command_set
    return any(command.get(keyword) in (None, "") for keyword in STORE_REQUEST_KEYWORDS)


def _abort_on_invalid(message: Any, assoc: Any, why: str) -> None:
    """Drop the message's reception file, if any, and treat the message as an invalid PDU."""
    discard_message_reception(message)
    requestor = getattr(assoc, "requestor", None)
    log_event(logger, "gateway.invalid_dimse_message", logging.WARNING,
              calling_ae=str(getattr(requestor, "ae_title", "")).strip(), error=why)  # fmt: skip
    dul = getattr(assoc, "dul", None)
    if dul is None:
        raise ValueError(f"invalid DIMSE message: {why}")
    dul.event_queue.put(INVALID_PDU)


def guard_message_decoding() -> None:
    """Install the guarded decoding for every message of this process (idempotent)."""
    if dimse_messages.DIMSEMessage.decode_msg is _original_decode_msg:
        setattr(dimse_messages.DIMSEMessage, "decode_msg", _decode_guarded)  # noqa: B010

"""HL7 order intake (ORM^O01, OMI^O23 over MLLP): acknowledged, stored, matched by accession.

Reading is tolerant (plain ER7 splitting, any 2.x version); a message we cannot use gets an AE
or AR acknowledgement with the reason, and the listener keeps serving.
"""

from __future__ import annotations

import logging
import socketserver
import threading
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.hl7ack import AckCode, build_ack
from radraft.logs import log_event
from radraft.mllp import MllpError, frame, read_frame
from radraft.models import Order
from radraft.timeutil import utcnow

logger = logging.getLogger(__name__)

SUPPORTED_TYPES = {("ORM", "O01"), ("OMI", "O23")}


@dataclass(frozen=True)
class OrderFacts:
    """What radraft keeps of an order."""

    control_id: str
    message_type: str
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    reason_for_exam: str


class OrderRejectedError(ValueError):
    """The message cannot be used; ``code`` is AE (content) or AR (not ours / not HL7)."""

    def __init__(self, code: AckCode, reason: str, control_id: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.control_id = control_id


def _segments(message: str) -> dict[str, list[list[str]]]:
    segments: dict[str, list[list[str]]] = {}
    for line in message.replace("\n", "\r").split("\r"):
        if len(line) >= 3:
            segments.setdefault(line[:3], []).append(line.split("|"))
    return segments


def _field(segment: list[str] | None, index: int, component: int = 0) -> str:
    """Field ``index`` (1-based, HL7 numbering) of a non-MSH segment, one component."""
    if segment is None or index >= len(segment):
        return ""
    parts = segment[index].split("^")
    return parts[component].strip() if component < len(parts) else ""


def parse_order(message: str) -> OrderFacts:
    """Read an ORM^O01 or OMI^O23; raise ``OrderRejectedError`` with the reason otherwise."""
    if not message.startswith("MSH|"):
        raise OrderRejectedError(AckCode.REJECT, "not an HL7 v2 message (no MSH segment)")
    segments = _segments(message)
    msh = segments["MSH"][0]
    # MSH-1 is the field separator itself, so MSH-n is at list index n - 1.
    control_id = msh[9] if len(msh) > 9 else ""
    type_field = (msh[8] if len(msh) > 8 else "").split("^")
    kind = (type_field[0], type_field[1] if len(type_field) > 1 else "")
    if kind not in SUPPORTED_TYPES:
        raise OrderRejectedError(
            AckCode.REJECT, f"unsupported message type {'^'.join(kind)}", control_id
        )
    orc = segments.get("ORC", [None])[0]
    obr = segments.get("OBR", [None])[0]
    ipc = segments.get("IPC", [None])[0]
    accession = _field(ipc, 1) or _field(obr, 18) or _field(obr, 20)
    if not accession:
        raise OrderRejectedError(AckCode.ERROR, "no accession number (IPC-1 or OBR-18)", control_id)
    reason = (
        _field(obr, 31, 1)
        or _field(obr, 31)
        or _field(orc, 16, 1)
        or _field(orc, 16)
        or _field(obr, 13)
    )
    return OrderFacts(
        control_id=control_id,
        message_type="^".join(kind),
        accession_number=accession[:64],
        placer_order_number=(_field(orc, 2) or _field(obr, 2))[:64],
        filler_order_number=(_field(orc, 3) or _field(obr, 3))[:64],
        reason_for_exam=reason,
    )


def handle_order_message(session_factory: sessionmaker[Session], message: str) -> str:
    """Store one order and return the ACK to send back (AA, AE or AR)."""
    now = utcnow()
    try:
        facts = parse_order(message)
    except OrderRejectedError as error:
        log_event(logger, "gateway.order_refused", logging.WARNING, code=error.code.value)
        return build_ack(
            error.control_id, error.code, text=error.reason, sent_at=now, control_id=_new_id()
        )
    try:
        with session_scope(session_factory) as session:
            session.add(
                Order(
                    accession_number=facts.accession_number,
                    placer_order_number=facts.placer_order_number or None,
                    filler_order_number=facts.filler_order_number or None,
                    message_type=facts.message_type,
                    reason_for_exam=facts.reason_for_exam or None,
                    raw_message=message,
                )
            )
    except SQLAlchemyError as error:
        log_event(logger, "gateway.order_not_stored", logging.ERROR, error=type(error).__name__)
        return build_ack(
            facts.control_id, AckCode.ERROR, text="cannot store the order now; send it again",
            sent_at=now, control_id=_new_id(),
        )  # fmt: skip
    log_event(logger, "gateway.order_stored", message_type=facts.message_type)
    return build_ack(facts.control_id, AckCode.ACCEPT, sent_at=now, control_id=_new_id())


def _new_id() -> str:
    return uuid.uuid4().hex[:20]


class OrderListener:
    """A threaded MLLP server answering each framed message with its ACK."""

    def __init__(self, session_factory: sessionmaker[Session], host: str, port: int) -> None:
        factory = session_factory

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(300)
                while True:
                    try:
                        message = read_frame(self.request)
                    except (MllpError, OSError):
                        return
                    self.request.sendall(frame(handle_order_message(factory, message)))

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((host, port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="radraft-hl7-intake", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()
        log_event(logger, "gateway.hl7_listening", port=self.port)

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

"""pynetdicom's upper layer state machine, guarded where a peer could end the thread running it.

Two ways out of pynetdicom's ``StateMachine.do_action`` ended an accepted connection's DUL
thread with a traceback, as a wire-level fuzz of the gateway found:

- **Our answer after the abort.** pynetdicom answers an A-ASSOCIATE-RQ or A-RELEASE-RQ on the
  association's thread while the DUL thread goes on reading. A peer that sends what the
  protocol does not allow before it has that answer (P-DATA before the A-ASSOCIATE-AC, a
  malformed PDU) makes the DUL send an A-ABORT and wait for the connection to close (Sta13,
  PS3.8 9.2). Our answer then meets a state for which the standard's table defines no action,
  and pynetdicom raised ``InvalidEventError`` (about three connections in four of those).
  The peer is going away, so the answer has nobody to go to: it is taken off the DUL's queue
  and dropped, and the DUL goes on waiting for the close (or its ARTIM timer) as the
  standard says.
- **A PDU pynetdicom cannot act on.** An A-ABORT whose Source is not one PS3.8 defines (a
  peer's, for which pynetdicom's own decoding has no check) raised while the state machine made
  it a primitive; pynetdicom stops the DUL and re-raises. The thread now ends without the
  trace: the error is logged in one line, the peer gets an A-ABORT unless it sent one, and the
  connection is closed.

Any other event the table does not allow is still raised: that would be a fault of ours or
pynetdicom's, not of the peer.
"""

from __future__ import annotations

import contextlib
import logging
import queue

from pynetdicom.dul import DULServiceProvider
from pynetdicom.fsm import TRANSITION_TABLE, StateMachine
from pynetdicom.pdu import A_ABORT_RQ

from radraft.logs import log_event

logger = logging.getLogger(__name__)

LOCAL_USER_EVENTS = frozenset({"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})
"""PS3.8's events that are primitives from the local user (requests and responses)."""

PEER_PDU_EVENTS = frozenset(
    {"Evt3", "Evt4", "Evt5", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt19"}
)
"""PS3.8's events that are PDUs received from the peer (Evt16: an A-ABORT)."""

PEER_ABORT = "Evt16"

CLOSING_STATES = frozenset({"Sta1", "Sta13"})
"""Idle, and awaiting the transport's close after an abort: the peer gets nothing more."""

SERVICE_PROVIDER_SOURCE = 0x02
"""A-ABORT source: the DICOM UL service provider (PS3.8 9.3.8)."""


class GuardedStateMachine(StateMachine):
    """pynetdicom's state machine with the two guards above."""

    def do_action(self, event: str) -> None:
        """Run ``event``'s action; drop our late answer; end quietly on a PDU that broke it."""
        state = self.current_state
        if (
            (event, state) not in TRANSITION_TABLE
            and event in LOCAL_USER_EVENTS
            and state in CLOSING_STATES
        ):
            self._drop_late_answer(event, state)
            return
        try:
            super().do_action(event)
        except Exception as error:
            if event not in PEER_PDU_EVENTS or (event, state) not in TRANSITION_TABLE:
                raise
            self._end_after_unusable_pdu(event, state, error)

    def _calling_ae(self) -> str:
        requestor = getattr(self.dul.assoc, "requestor", None)
        return str(getattr(requestor, "ae_title", "")).strip()

    def _drop_late_answer(self, event: str, state: str) -> None:
        # The primitive is still at the head of the DUL's queue (the action would have taken
        # it); left there, the reactor would turn it into this event again at once. The
        # reactor peeks at that queue on every loop, so while another event waited it may
        # have queued this event twice for the one answer: the second finds the queue empty
        # and has nothing to drop or report.
        try:
            self.dul.to_provider_queue.get(block=False)
        except queue.Empty:
            return
        log_event(logger, "gateway.answer_after_abort", logging.WARNING,
                  calling_ae=self._calling_ae(), primitive=event, state=state)  # fmt: skip

    def _end_after_unusable_pdu(self, event: str, state: str, error: Exception) -> None:
        """pynetdicom has stopped the DUL (``kill_dul``); tell the peer and close."""
        log_event(logger, "gateway.unusable_pdu", logging.WARNING, calling_ae=self._calling_ae(),
                  pdu_event=event, state=state, error=type(error).__name__)  # fmt: skip
        transport = self.dul.socket
        if transport is None:
            return
        if event != PEER_ABORT:
            abort = A_ABORT_RQ()
            abort.source = SERVICE_PROVIDER_SOURCE
            abort.reason_diagnostic = 0x00
            with contextlib.suppress(OSError):
                transport.send(abort.encode())
        with contextlib.suppress(OSError):
            transport.close()
        self.transition("Sta1")


def guard_state_machine(dul: DULServiceProvider) -> None:
    """Give one accepted connection's DUL the state machine above (its state is kept)."""
    dul.state_machine.__class__ = GuardedStateMachine

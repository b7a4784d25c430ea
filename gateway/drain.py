"""Stopping without cutting a sender off: the associations under way are let finish.

A gateway stopped for an upgrade or a host's restart (SIGTERM from systemd, Docker or the
supervisor of ``--processes N``) used to end every association at once: a modality half way
through a study saw "peer aborted" for the rest, and many modalities mark such a job failed
until a technologist sends it again. Nothing was lost (an instance is answered only once
stored), but the stop was visible at the scanner.

So the gateway first closes its listening sockets (new connections are refused; the sender
retries, or another gateway process takes it), then waits up to ``RADRAFT_DICOM_DRAIN_SECONDS``
for the associations under way to end, as a sender ends them, with its release after the last
image. An association that has waited for its peer ``DRAIN_IDLE_SECONDS`` meanwhile (a sender
that keeps associations open between studies) is aborted at once rather than waited for; any
still open at the deadline is aborted (A-ABORT; a connection whose thread waits inside a PDU
for a sender that stalled half way is shut down instead, as it would not send one in time).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pynetdicom.association import Association

from gateway.association_slots import ESTABLISHED, idle_seconds
from radraft.exchange_deadline import shut_down_under_reader
from radraft.logs import log_event

logger = logging.getLogger(__name__)

DRAIN_IDLE_SECONDS = 5.0
"""An association waiting this long for its peer while the gateway stops is aborted: a sender
sending a study sends its next image (or its release) within milliseconds of an answer, and
one that holds its association open between studies delays the stop by this much at most."""

POLL_SECONDS = 0.1
ABORT_SENT_WAIT_SECONDS = 1.0
"""How long the aborted associations' threads get to send their A-ABORT before the stop goes
on (each is queued to its connection's own thread)."""


def drain_associations(open_associations: Callable[[], list[Association]], seconds: float) -> None:
    """Wait until every association ``open_associations`` lists has ended, for ``seconds`` at
    most; abort idle ones at once and the rest at the deadline."""
    started = time.monotonic()
    waited_for = list(open_associations())
    if not waited_for:
        return
    log_event(logger, "gateway.draining", associations=len(waited_for), seconds=seconds)
    idle_aborted: list[Association] = []
    cut_at_deadline: list[Association] = []
    while True:
        aborted = idle_aborted + cut_at_deadline
        under_way = [
            association for association in open_associations() if association not in aborted
        ]
        if not under_way:
            break
        if time.monotonic() - started >= seconds:
            cut_at_deadline = under_way
            for association in under_way:
                association.abort(block=False)
            break
        for association in under_way:
            idle = idle_seconds(association)
            if idle is not None and idle >= DRAIN_IDLE_SECONDS:
                association.abort(block=False)
                idle_aborted.append(association)
        time.sleep(POLL_SECONDS)
    _wait_for_aborts_sent(idle_aborted + cut_at_deadline)
    log_event(
        logger,
        "gateway.drained" if not cut_at_deadline else "gateway.drain_deadline",
        logging.INFO if not cut_at_deadline else logging.WARNING,
        associations=len(waited_for),
        idle_aborted=len(idle_aborted),
        aborted_at_deadline=len(cut_at_deadline),
        seconds=round(time.monotonic() - started, 1),
    )


def _wait_for_aborts_sent(aborted: list[Association]) -> None:
    """Give each aborted association's thread a moment to put its A-ABORT on the wire, then
    shut down the connections of those that did not: a thread waiting inside a PDU for the rest
    of it (a sender stalled half way) looks at its queue only when bytes come or after the 120 s
    network timeout, and pynetdicom's connection threads keep the process from exiting."""
    ends = time.monotonic() + ABORT_SENT_WAIT_SECONDS
    while time.monotonic() < ends and any(_still_established(each) for each in aborted):
        time.sleep(0.01)
    for association in aborted:
        if _still_established(association):
            _shut_down(association)


def _still_established(association: Association) -> bool:
    return association.dul.is_alive() and association.dul.state_machine.current_state == ESTABLISHED


def _shut_down(association: Association) -> None:
    """End the connection under its reading thread."""
    transport = association.dul.socket
    connection = transport.socket if transport is not None else None
    if connection is not None:
        shut_down_under_reader(connection)

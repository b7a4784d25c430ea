"""At the association limit, the association idle longest gives its slot to a new request.

pynetdicom rejects an association past ``maximum_associations`` (A-ASSOCIATE-RJ, transient,
local limit exceeded: ``RADRAFT_DICOM_MAX_ASSOCIATIONS``). A peer allowed to associate (anyone,
when ``RADRAFT_ALLOWED_CALLING_AES`` is empty) could take every slot and leave each association
idle for the network timeout (120 s), then do it again; a sender that forgets to release its
associations does the same by accident. Either way every modality is kept out.

So when a request arrives at the limit, the association that has waited longest for its peer
(at least ``PUSH_OUT_MIN_IDLE_SECONDS``: established, no message arriving, no instance being
stored, nothing unread on its socket) is aborted (A-ABORT) and stops counting, and the request
is accepted. Nothing acknowledged is lost (an instance is stored before it is answered), and a
sender that finds its idle association aborted opens another, as it would after our network
timeout. Only when every association is busy or recently active is the request rejected, as
before. A request that pynetdicom will reject anyway (a calling AE title not on the allow-list)
pushes nobody out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pynetdicom.association import Association

from radraft.logs import log_event
from radraft.readiness import PolledAssociationSocket

logger = logging.getLogger(__name__)

PUSH_OUT_MIN_IDLE_SECONDS = 10.0
"""An association waiting for its peer for less than this is not pushed out: a sender between
two images of a burst, or just past its negotiation, keeps its slot."""

ESTABLISHED = "Sta6"
"""PS3.8 9.2 state Sta6: association established, ready for data transfer."""

_lock = threading.Lock()
_pushed_out: weakref.WeakSet[Association] = weakref.WeakSet()
_storing: weakref.WeakSet[Association] = weakref.WeakSet()

ResultT = TypeVar("ResultT")


def is_pushed_out(association: Association) -> bool:
    """Whether the association gave its slot away (it no longer counts against the limit)."""
    return association in _pushed_out


@contextlib.contextmanager
def storing(association: Association) -> Iterator[None]:
    """Mark ``association`` busy while one of its instances is stored and answered: its peer is
    waiting for us then, however long the intake takes (a database that does not answer)."""
    _storing.add(association)
    try:
        yield
    finally:
        _storing.discard(association)


def marked_storing(
    association: Association, store: Callable[[Any], ResultT]
) -> Callable[[Any], ResultT]:
    """``store`` for ``association``, marking it busy while it runs (the direct receive path)."""

    def store_marked(received: Any) -> ResultT:
        with storing(association):
            return store(received)

    return store_marked


def idle_seconds(association: Association) -> float | None:
    """How long an established association has been waiting for its peer; None while anything
    is under way on it (a message arriving, an instance being stored, bytes unread) or it is not
    in the data transfer state."""
    dul = association.dul
    if dul.state_machine.current_state != ESTABLISHED or association in _storing:
        return None
    if getattr(association.dimse, "message", None) is not None:
        return None
    transport = dul.socket
    # pynetdicom's network-timeout timer, restarted by every PDU the peer sends (on the direct
    # receive path too); it has no public reading of when that was.
    started_at: float | None = getattr(getattr(dul, "_idle_timer", None), "_start_time", None)
    if not isinstance(transport, PolledAssociationSocket) or started_at is None:
        return None
    try:
        if transport.has_unread():
            return None  # its next PDU (or its close) is here, or already read ahead
    except (OSError, ValueError):
        return None  # closing already: its own thread ends it
    return max(0.0, time.time() - started_at)


def make_room(requested: Association) -> None:
    """Called when ``requested``'s A-ASSOCIATE-RQ has arrived (``EVT_REQUESTED``): if it is one
    past the limit, push out the association idle longest, if one has been idle long enough."""
    ae = requested.ae
    allowed = [title.strip() for title in ae.require_calling_aet]
    request = requested.requestor.primitive
    calling = str(request.calling_ae_title).strip() if request is not None else ""
    if allowed and calling not in allowed:
        return
    with _lock:
        active = [association for association in ae.active_associations if association.is_acceptor]
        if len(active) <= ae.maximum_associations:
            return
        waiting = [
            (idle, association)
            for association in active
            if association is not requested
            and (idle := idle_seconds(association)) is not None
            and idle >= PUSH_OUT_MIN_IDLE_SECONDS
        ]
        if not waiting:
            return
        idle, victim = max(waiting, key=lambda pair: pair[0])
        _pushed_out.add(victim)
    victim.abort(block=False)  # the A-ABORT goes out on its own connection's thread
    log_event(
        logger,
        "gateway.association_pushed_out",
        logging.WARNING,
        calling_ae=str(victim.requestor.ae_title).strip(),
        idle_seconds=round(idle),
        limit=ae.maximum_associations,
    )

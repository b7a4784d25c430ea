"""Whether a socket has something to read, for descriptors of any number.

``select.select`` takes only descriptors below 1024 (FD_SETSIZE) and raises ``ValueError`` for
a higher one. A process that holds many connections (the embedded server with a thousand web
clients, or a thousand DICOM connections waiting for their request) hands out higher numbers,
and pynetdicom's ``AssociationSocket.ready`` treats that ``ValueError`` as the peer closing
(Evt17): every new association was aborted at once, with no log line anywhere (tested: a
C-STORE with 1100 descriptors open). ``poll`` has no such bound.
"""

from __future__ import annotations

import errno
import select
import ssl
from typing import Protocol

from pynetdicom.transport import AssociationSocket

READABLE = select.POLLIN | select.POLLPRI


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def wait_readable(descriptor: int | HasFileno, timeout: float | None) -> bool:
    """Whether ``descriptor`` can be read within ``timeout`` seconds (None: wait until it can).

    As with ``select``, a closed or failed connection counts as readable: the read then says
    so. A closed socket object (descriptor -1) raises ``ValueError`` as ``select`` does, and a
    number that is not open ``OSError`` (EBADF).
    """
    poller = select.poll()
    poller.register(descriptor, READABLE)
    events = poller.poll(None if timeout is None else max(timeout, 0.0) * 1000)
    if any(mask & select.POLLNVAL for _, mask in events):
        raise OSError(errno.EBADF, "the descriptor is not open")
    return bool(events)


class PolledAssociationSocket(AssociationSocket):
    """pynetdicom's socket, asked whether it is ready with ``poll`` instead of ``select``.

    Connections are given this class after pynetdicom has built them (it constructs the socket
    itself): the gateway's accepted ones through its own subclass, our requests through
    ``poll_readiness`` when the connection opens.
    """

    def has_unread(self) -> bool:
        """Whether bytes wait to be read: on the connection (or its close), or decrypted inside
        its TLS layer, where poll does not see them. Raises ``OSError`` or ``ValueError`` when
        the connection is gone.

        Unlike ``ready`` it changes nothing, so another thread may ask (the association limit's
        check for an idle association) without touching this association's state machine.
        """
        connection = self.socket
        if connection is None:
            return False
        if wait_readable(connection, 0):
            return True
        return isinstance(connection, ssl.SSLSocket) and bool(connection.pending())

    @property
    def ready(self) -> bool:
        if self.socket is None or self._is_connected is False:
            return False
        try:
            return self.has_unread()
        except (OSError, ValueError):
            self.event_queue.put("Evt17")  # closed meanwhile, as pynetdicom decides it
            return False


def poll_readiness(transport: AssociationSocket | None) -> None:
    """Give a connection pynetdicom built (an association we requested) the polled readiness."""
    if transport is not None and not isinstance(transport, PolledAssociationSocket):
        transport.__class__ = PolledAssociationSocket

"""The Redis broker: kombu's Redis transport, made to fail like a lost connection when closed.

When Redis goes away while a task is running, Celery closes the broken connection and kombu's
channel tries to put the unacknowledged message back. By then the transport has been detached
from the connection, and kombu fails with ``AttributeError`` (no connection parameters), which
Celery does not count as a connection error: the worker logged "Unrecoverable error" and exited
instead of reconnecting (seen with celery and kombu 5.7 in the fault test). Here a channel whose
connection is gone raises Redis's ``ConnectionError``, so Celery ignores it while closing and
reconnects. Nothing is lost: the message stays among Redis's unacknowledged ones, and the
database decides what is redrafted (``gateway.redelivery``).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis
from redis import exceptions

TRANSPORT = "radraft.redisbroker:Transport"
"""What Celery's ``broker_transport`` names to use this transport (with ``redis://``)."""


class Channel(redis.Channel):
    """A Redis channel that reports a detached connection as a lost one."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # not in stubs


class Transport(redis.Transport):
    """kombu's Redis transport with radraft's channel."""

    Channel = Channel

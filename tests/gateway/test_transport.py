"""The connection's read-ahead buffer: whole PDUs out of a byte stream, and nothing lost."""

from __future__ import annotations

import os
import queue
import socket
import struct
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from gateway.transport import BulkReceiveSocket, ReadAhead


def p_data(body: bytes) -> bytes:
    """A PDU of type 0x04 with ``body`` (its content does not matter here)."""
    return struct.pack(">BBL", 0x04, 0, len(body)) + body


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, int]]:
    """A connected pair: the peer's end, and our end's non-blocking descriptor."""
    peer, ours = socket.socketpair()
    ours.setblocking(False)
    yield peer, ours.fileno()
    peer.close()
    ours.close()


def test_whole_pdus_come_out_of_one_read_in_order(connection: tuple[socket.socket, int]) -> None:
    peer, descriptor = connection
    first, second = p_data(b"one"), p_data(b"second pdu")
    peer.sendall(first + second[:4])
    ahead = ReadAhead(64)
    assert ahead.fill(descriptor, 5) == len(first) + 4
    pdu = ahead.whole_pdu()
    assert pdu is not None
    assert bytes(pdu) == first
    ahead.consume(len(first))
    assert ahead.whole_pdu() is None, "the second PDU's header is not all in"
    peer.sendall(second[4:])
    assert ahead.fill(descriptor, 5)
    assert ahead.pending_pdu_length() == len(second)
    assert ahead.first_byte() == 0x04
    pdu = ahead.whole_pdu()
    assert pdu is not None
    assert bytes(pdu) == second
    ahead.consume(len(second))
    assert ahead.buffered == 0


def test_a_pdu_longer_than_the_buffer_grows_it_and_keeps_what_was_read(
    connection: tuple[socket.socket, int],
) -> None:
    peer, descriptor = connection
    long_pdu = p_data(bytes(range(256)) * 40)  # 10 KiB against a 1 KiB buffer
    peer.sendall(long_pdu)
    ahead = ReadAhead(1024)
    while ahead.whole_pdu() is None:
        assert ahead.fill(descriptor, 5, room_for=ahead.pending_pdu_length() or 0)
    pdu = ahead.whole_pdu()
    assert pdu is not None
    assert bytes(pdu) == long_pdu


def test_bytes_move_to_the_front_without_damage(connection: tuple[socket.socket, int]) -> None:
    """Many PDUs through a small buffer: every one comes out whole, none is reordered."""
    peer, descriptor = connection
    pdus = [p_data(bytes([n]) * (50 + n)) for n in range(40)]
    peer.sendall(b"".join(pdus))
    ahead = ReadAhead(256)
    out: list[bytes] = []
    while len(out) < len(pdus):
        pdu = ahead.whole_pdu()
        if pdu is None:
            assert ahead.fill(descriptor, 5, room_for=ahead.pending_pdu_length() or 0)
            continue
        out.append(bytes(pdu))
        ahead.consume(len(pdu))
    assert out == pdus


def test_take_returns_what_was_read_ahead_first(connection: tuple[socket.socket, int]) -> None:
    peer, descriptor = connection
    peer.sendall(b"abcdefgh")
    ahead = ReadAhead(64)
    ahead.fill(descriptor, 5)
    assert bytes(ahead.take(3)) == b"abc"
    assert bytes(ahead.take(100)) == b"defgh"
    assert ahead.buffered == 0
    assert bytes(ahead.take(4)) == b""


def test_fill_tells_a_quiet_connection_from_a_closed_one(
    connection: tuple[socket.socket, int],
) -> None:
    peer, descriptor = connection
    ahead = ReadAhead(64)
    assert ahead.fill(descriptor, 0.05) is None, "nothing came in time"
    peer.shutdown(socket.SHUT_WR)
    assert ahead.fill(descriptor, 0.05) == 0, "the peer closed"
    assert ahead.pending_pdu_length() is None


def test_bytes_read_ahead_make_the_socket_ready_only_while_it_is_open(
    connection: tuple[socket.socket, int],
) -> None:
    """pynetdicom asks ``ready`` before it reads; once it closed the socket, bytes left in the
    buffer must not keep it reading a connection that is gone."""
    peer, descriptor = connection
    transport = object.__new__(BulkReceiveSocket)  # pynetdicom builds these; only state here
    transport.socket = socket.socket(fileno=os.dup(descriptor))
    transport._is_connected = True
    peer.sendall(p_data(b"x"))
    transport.read_ahead.fill(descriptor, 5)
    assert transport.ready
    assert bytes(transport.recv(7)) == p_data(b"x")
    assert not transport.ready, "nothing left, nothing waiting"
    peer.sendall(p_data(b"y"))
    transport.read_ahead.fill(descriptor, 5)
    transport.socket.close()
    transport.socket = None
    assert not transport.ready


def test_asking_another_thread_s_socket_for_unread_bytes_changes_nothing(
    connection: tuple[socket.socket, int],
) -> None:
    """The association limit asks every association whether it is idle from the requesting
    association's thread. ``has_unread`` counts bytes read ahead (the socket itself is empty
    then) and, on a connection that is gone, raises instead of queueing Evt17 into that
    association's state machine as ``ready`` must for its own thread."""
    peer, descriptor = connection
    transport = object.__new__(BulkReceiveSocket)  # pynetdicom builds these; only state here
    transport.socket = socket.socket(fileno=os.dup(descriptor))
    transport._is_connected = True
    events: queue.Queue[str] = queue.Queue()
    transport._assoc = SimpleNamespace(dul=SimpleNamespace(event_queue=events))  # type: ignore[assignment]
    peer.sendall(p_data(b"x"))
    transport.read_ahead.fill(descriptor, 5)
    assert transport.has_unread(), "a whole PDU waits in the read-ahead buffer"
    assert bytes(transport.recv(7)) == p_data(b"x")
    assert not transport.has_unread()
    transport.socket.close()
    with pytest.raises(ValueError, match="negative"):
        transport.has_unread()
    assert events.empty(), "asking changed nothing"
    assert not transport.ready
    assert events.get_nowait() == "Evt17", "its own thread learns it is closed"

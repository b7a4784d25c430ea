"""``wait_readable`` answers as ``select`` did, for descriptors of any number."""

from __future__ import annotations

import socket

import pytest

from radraft.readiness import wait_readable


def test_readable_means_data_or_the_peer_gone_and_a_timeout_means_nothing_came() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not wait_readable(ours, 0)
        assert not wait_readable(ours.fileno(), 0.05), "nothing came within the wait"
        theirs.sendall(b"x")
        assert wait_readable(ours, None)
        assert ours.recv(1) == b"x"
        theirs.close()
        assert wait_readable(ours, 1), "the peer closing is readable: the read says so"
        assert ours.recv(1) == b""


def test_a_closed_socket_is_refused_as_select_refuses_it() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    ours.close()
    with pytest.raises(ValueError, match="negative"):
        wait_readable(ours, 0)

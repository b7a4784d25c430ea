"""A real association's bytes, mutated at PDU level, against a live gateway.

Whatever arrives, the gateway must keep its promises to the next sender: no connection thread
dies, nothing of a reception is left in ``incoming`` once the connection is gone, and it still
answers C-ECHO. The fuzzer this is distilled from (docs/decisions.md, "A wire-level fuzz of the
gateway") found partial receptions left behind, threads killed by a late answer, an
undecodable command set and an odd A-ABORT, and a log flood; the seeds here are fixed, so a
failure replays. The same cases run over DICOM TLS, whose data sets take the reader's path for
TLS (no splice) and whose peers end without a close_notify.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pynetdicom.pdu import A_RELEASE_RQ

from gateway.service import Gateway
from tests import raw_pdus
from tests.dicom_peers import echoscu, synthetic_study_files
from tests.pki import TestPki
from tests.support import wait_until

CONTEXT_ID = 1
PDU_BYTES = 16384
A_ASSOCIATE_AC = 0x02


def association_pdus(path: Path) -> list[bytes]:
    """A-ASSOCIATE-RQ, one C-STORE of ``path`` in 16 KiB PDUs, A-RELEASE-RQ."""
    dataset = dcmread(path, stop_before_pixels=True)
    associate = raw_pdus.association_request(
        "FUZZER", dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID, max_pdu=PDU_BYTES
    )
    store = raw_pdus.store_request_pdus(path, CONTEXT_ID, PDU_BYTES, message_id=1)
    return [associate, *store, bytes(A_RELEASE_RQ().encode())]


def pdv_offsets(pdu: bytes) -> list[int]:
    offsets, offset = [], 6
    while offset + 6 <= len(pdu):
        offsets.append(offset)
        offset += 4 + struct.unpack_from(">L", pdu, offset)[0]
    return offsets


def mutated(pdus: list[bytes], rng: random.Random) -> list[bytes]:
    """``pdus`` with one PDU-level mutation: bytes, lengths, control headers, order, cuts."""
    pdus = list(pdus)
    index = rng.randrange(len(pdus))
    pdu = bytearray(pdus[index])
    operation = rng.randrange(9)
    if operation == 0:  # bytes near the start: PDU type, lengths, PDV headers
        for _ in range(rng.randint(1, 4)):
            pdu[rng.randrange(min(len(pdu), 40))] ^= 1 << rng.randrange(8)
    elif operation == 1:
        lengths = [0, 1, 5, len(pdu) - 7, len(pdu) + 100, 0xFFFFFFFF]
        struct.pack_into(">L", pdu, 2, rng.choice(lengths))
    elif operation == 2 and (offsets := pdv_offsets(bytes(pdu))):
        offset = rng.choice(offsets)
        item = struct.unpack_from(">L", pdu, offset)[0]
        struct.pack_into(">L", pdu, offset, rng.choice([0, 1, 2, item - 1, item + 1]) & 0xFFFFFFFF)
    elif operation == 3 and (offsets := pdv_offsets(bytes(pdu))):
        offset = rng.choice(offsets)
        pdu[offset + rng.choice([4, 5])] = rng.randrange(256)  # context ID or control header
    elif operation == 4:
        return [*pdus[:index], bytes(pdu[: rng.randrange(len(pdu))])]
    elif operation == 5:
        pdus.insert(index, pdus[index])
        return pdus
    elif operation == 6:
        del pdus[index]
        return pdus
    elif operation == 7:
        other = rng.randrange(len(pdus))
        pdus[index], pdus[other] = pdus[other], pdus[index]
        return pdus
    else:
        for _ in range(rng.randint(1, 8)):
            pdu[rng.randrange(len(pdu))] = rng.randrange(256)
    pdus[index] = bytes(pdu)
    return pdus


def play(
    connect: Callable[[], socket.socket],
    pdus: list[bytes],
    intact_request: bytes,
    *,
    pipelined: bool,
) -> None:
    """Send ``pdus`` as a peer would (after the A-ASSOCIATE-AC, if the request is intact and
    not ``pipelined``), then close the sending side and read until the gateway closes.

    The sending side is closed at the TCP level, under TLS too (no close_notify): a peer that
    just stops is the case to survive."""
    with connect() as peer:
        rest = pdus
        if pdus and pdus[0] == intact_request and not pipelined:
            peer.sendall(pdus[0])
            rest = pdus[1:]
            with contextlib.suppress(OSError):
                if peer.recv(1) != bytes([A_ASSOCIATE_AC]):
                    return
        with contextlib.suppress(OSError):
            peer.sendall(b"".join(rest))
            socket.socket.shutdown(peer, socket.SHUT_WR)
            while peer.recv(65536):
                pass


FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz(gateway: Gateway, connect: Callable[[], socket.socket], examples: int,
         folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Play ``examples`` mutated associations over ``connect``, checking after each."""
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: died.append(hook.exc_type.__name__))
    pdus = association_pdus(synthetic_study_files(9, folder, size=160)[0])
    assert len(pdus) > 5, "the data set needs several PDUs"
    incoming = gateway.spool.incoming

    @settings(FUZZ, max_examples=examples)
    @given(seed=st.integers(0, 2**32 - 1), pipelined=st.booleans())
    def check(seed: int, pipelined: bool) -> None:
        play(connect, mutated(pdus, random.Random(seed)), pdus[0], pipelined=pipelined)
        wait_until(lambda: gateway.open_associations == 0 and not any(incoming.iterdir()),
                   timeout=30, what="the association and its files to go")  # fmt: skip
        assert died == [], f"threads died: {died}"

    check()
    assert echoscu(port=gateway.port).returncode == 0, "still serving"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_mutated_associations_leave_no_reception_and_kill_no_thread(
    running_gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = partial(socket.create_connection, ("127.0.0.1", running_gateway.port), timeout=10)
    fuzz(running_gateway, connect, 60, tmp_path, monkeypatch)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_mutated_associations_over_tls_leave_no_reception_and_kill_no_thread(
    tls_gateway: Gateway, pki: TestPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data sets over TLS take the reader's path without splice, and a peer that stops sends
    no close_notify. Fewer cases than in plain TCP keep the cost down."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.client.certificate, pki.client.key)
    assert tls_gateway.tls_port is not None
    address = ("127.0.0.1", tls_gateway.tls_port)

    def connect() -> socket.socket:
        connection = socket.create_connection(address, timeout=10)
        return context.wrap_socket(connection, server_hostname="localhost")

    fuzz(tls_gateway, connect, 30, tmp_path, monkeypatch)

"""Data set PDUs read straight into the reception file: byte for byte, and safe when malformed."""

from __future__ import annotations

import errno
import logging
import os
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import gateway.pdata as pdata
from gateway import splice_pipe
from gateway.pdata import LAST_FRAGMENT, data_set_fragments
from gateway.service import Gateway
from gateway.transport import READ_AHEAD_BYTES, ReadAhead
from radraft.db import session_scope
from radraft.models import Instance
from tests.dicom_peers import dataset_bytes, echoscu, storescu, synthetic_study_files
from tests.raw_pdus import echo_request_pdus, store_request_pdus
from tests.support import (
    assert_no_reception_left,
    partial_receptions,
    recorded_results,
    require_tool,
    wait_until,
)

CONTEXT = 1


def pdu(*values: tuple[int, int, bytes]) -> memoryview:
    """A P-DATA-TF PDU of (presentation context, control header, data) values."""
    items = b"".join(
        struct.pack(">LBB", len(data) + 2, context, header) + data
        for context, header, data in values
    )
    return memoryview(struct.pack(">BBL", 0x04, 0, len(items)) + items)


def test_data_set_fragments_are_found_in_place() -> None:
    raw = pdu((CONTEXT, 0x00, b"abc"), (CONTEXT, LAST_FRAGMENT, b"defg"))
    fragments = data_set_fragments(raw, CONTEXT)
    assert fragments is not None
    assert [bytes(raw[start:end]) for start, end, _ in fragments] == [b"abc", b"defg"]
    assert [header for _, _, header in fragments] == [0x00, LAST_FRAGMENT]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (pdu((CONTEXT, 0x01, b"command")), "a command fragment"),
        (pdu((CONTEXT, 0x00, b"a"), (CONTEXT, 0x03, b"c")), "a command fragment after data"),
        (pdu((3, 0x00, b"other context")), "another presentation context"),
        (pdu((CONTEXT, LAST_FRAGMENT, b"end"), (CONTEXT, 0x00, b"more")), "data after the last"),
        (memoryview(bytes(pdu((CONTEXT, 0x00, b"abcdef")))[:-2]), "an item past the PDU's end"),
        (memoryview(struct.pack(">BBLLBB", 4, 0, 6, 1, CONTEXT, 0)), "an item shorter than 2"),
        (memoryview(struct.pack(">BBLH", 4, 0, 2, 0)), "a PDU shorter than an item header"),
        (pdu(), "no item at all"),
    ],
)
def test_anything_but_data_set_fragments_of_the_message_goes_to_pynetdicom(
    raw: memoryview, why: str
) -> None:
    assert data_set_fragments(raw, CONTEXT) is None, why


def headers(pdu_length: int, item_length: int, context: int = CONTEXT, control: int = 0) -> bytes:
    return struct.pack(pdata.PDATA_HEADERS, 0x04, 0, pdu_length, item_length, context, control)


def test_a_pdu_of_one_data_set_fragment_is_spliced_by_its_headers() -> None:
    assert pdata.single_fragment(headers(1004, 1000), CONTEXT, 4096) == (998, 0)
    last = headers(1004, 1000, control=LAST_FRAGMENT)
    assert pdata.single_fragment(last, CONTEXT, 4096) == (998, LAST_FRAGMENT)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x07" + headers(1004, 1000)[1:], "not a P-DATA-TF PDU"),
        (headers(2008, 1000), "a second PDV follows the first"),
        (headers(1004, 1000, control=0x01), "a command fragment"),
        (headers(1004, 1000, context=CONTEXT + 2), "another presentation context"),
        (headers(6, 2), "a fragment without data"),
        (headers(8192, 8188), "longer than the PDUs accepted"),
    ],
)
def test_anything_else_is_left_to_the_copying_path(raw: bytes, why: str) -> None:
    assert pdata.single_fragment(raw, CONTEXT, 4096) is None, why


@pytest.mark.parametrize(
    ("buffered", "expected", "why"),
    [
        (b"", 12, "a PDU's headers, and no more"),
        (headers(1004, 1000)[:5], 7, "the rest of its headers"),
        (struct.pack(">BBL", 0x05, 0, 4), 4, "a release request is 10 bytes long"),
        (headers(1004, 1000), 1010 - 12, "a PDU taken the copying way: all of it"),
    ],
)
def test_reads_never_go_past_the_pdu_being_read(buffered: bytes, expected: int, why: str) -> None:
    ahead = ReadAhead()
    ahead.put(buffered)
    assert pdata.next_read_size(ahead) == expected, why


@pytest.fixture(params=["spliced", "copied"])
def payloads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the direct path writes data set payloads: spliced from the socket to the file
    (where Linux can), or copied through the read-ahead buffer (elsewhere, and for PDUs of
    several fragments)."""
    if request.param == "copied":
        monkeypatch.setattr(pdata, "open_pipe", lambda: None)
    return str(request.param)


@pytest.fixture
def counted_fast_pdus(payloads: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many PDUs the direct path took (one entry per PDU, its fragment count)."""
    counted = recorded_results(
        monkeypatch, pdata, "data_set_fragments", keep=lambda fragments: len(fragments or ())
    )
    single_fragment = pdata.single_fragment

    def counting_single_fragment(*args: Any) -> tuple[int, int] | None:
        fragment = single_fragment(*args)
        if fragment is not None:
            counted.append(1)  # spliced; any other PDU is counted by the copying path
        return fragment

    monkeypatch.setattr(pdata, "single_fragment", counting_single_fragment)
    return counted


def stored_data_sets(gateway: Gateway) -> list[bytes]:
    """The data sets of every file in the gateway's spool, sorted (to compare with those sent)."""
    return sorted(map(dataset_bytes, gateway.spool.root.rglob("*.dcm")))


def instance_count(session_factory: sessionmaker[Session]) -> int:
    with session_scope(session_factory) as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_data_set_in_4_kib_pdus_is_stored_byte_for_byte(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    counted_fast_pdus: list[int],
    tmp_path: Path,
) -> None:
    sent = synthetic_study_files(71, tmp_path / "sent", size=512)
    completed = subprocess.run(
        [require_tool("storescu"), "--max-send-pdu", "4096", "-aet", "SMALLPDU", "-aec",
         "RADRAFT", "127.0.0.1", str(running_gateway.port), *map(str, sent)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert instance_count(session_factory) == len(sent)
    assert stored_data_sets(running_gateway) == sorted(map(dataset_bytes, sent))
    least_pdus = sum(len(dataset_bytes(path)) for path in sent) // 4096
    assert len(counted_fast_pdus) >= least_pdus, "the data sets did not take the direct path"


@pytest.fixture
def raw_association(running_gateway: Gateway, tmp_path: Path) -> Iterator[
    tuple[Association, list[bytes], Callable[[bytes], None]]
]:  # fmt: skip
    """An association, the PDUs of one C-STORE on it, and a way to send bytes as they are."""
    path = synthetic_study_files(72, tmp_path / "raw", size=512)[0]
    dataset = dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="RAWSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", running_gateway.port, ae_title="RADRAFT")
    assert association.is_established
    context_id = association.accepted_contexts[0].context_id
    assert context_id is not None
    pdus = store_request_pdus(path, context_id, 16384)
    assert len(pdus) > 4, "the data set needs several PDUs"
    connection = association.dul.socket.socket  # type: ignore[union-attr]
    assert connection is not None
    yield association, pdus, connection.sendall
    if association.is_established:
        association.abort()


def gateway_ends(association: Association) -> None:
    wait_until(lambda: not association.is_established, timeout=30,
               what="the gateway to end the association")  # fmt: skip


def merged(*pdus: bytes) -> bytes:
    """One P-DATA-TF PDU carrying the PDVs of all of ``pdus``."""
    items = b"".join(raw[6:] for raw in pdus)
    return struct.pack(">BBL", 0x04, 0, len(items)) + items


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_pdu_of_two_fragments_between_spliced_ones_keeps_the_data_set_in_order(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    raw_association: tuple[Association, list[bytes], Callable[[bytes], None]],
    counted_fast_pdus: list[int],
    tmp_path: Path,
) -> None:
    """Splicing, the fragments before it wait in the pipe while it is copied: they must reach
    the file first."""
    _, pdus, send = raw_association
    command, data = pdus[0], pdus[1:]
    assert len(data) >= 5
    for raw in (command, data[0], data[1], merged(data[2], data[3]), *data[4:]):
        send(raw)
    wait_until(lambda: instance_count(session_factory) == 1, timeout=30,
               what="the gateway to store the instance")  # fmt: skip
    assert counted_fast_pdus == [1, 1, 2] + [1] * (len(data) - 4)
    (stored,) = running_gateway.spool.root.rglob("*.dcm")
    uid = dcmread(stored, stop_before_pixels=True).SOPInstanceUID
    (sent,) = [
        path
        for path in (tmp_path / "raw").glob("*.dcm")  # the fixture's study
        if dcmread(path, stop_before_pixels=True).SOPInstanceUID == uid
    ]
    assert dataset_bytes(stored) == dataset_bytes(sent)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_pipe_of_one_page_still_splices_every_byte(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Past the user's pipe quota the kernel keeps pipes small: a 4 KiB pipe is drained many
    times within each 16 KiB PDU, and the data sets still arrive whole."""
    monkeypatch.setattr(splice_pipe, "PIPE_BYTES", 4096)
    full = recorded_results(monkeypatch, splice_pipe.SplicePipe, "fill")
    sent = synthetic_study_files(79, tmp_path / "sent", size=512)
    assert storescu(sent, port=running_gateway.port).returncode == 0
    assert instance_count(session_factory) == len(sent)
    assert stored_data_sets(running_gateway) == sorted(map(dataset_bytes, sent))
    assert splice_pipe.PIPE_FULL in full, "the pipe never filled up"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_connection_that_cannot_be_spliced_is_copied(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Where splice(2) refuses the socket (EINVAL: a sandbox, an odd socket), the PDU whose
    payload it refused and every later one are read the copying way, byte for byte."""
    refusals: list[int] = []

    def refusing_splice(*args: Any, **kwargs: Any) -> int:
        refusals.append(1)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "splice", refusing_splice)
    copied = recorded_results(
        monkeypatch, pdata, "data_set_fragments", keep=lambda fragments: len(fragments or ())
    )
    sent = synthetic_study_files(78, tmp_path / "sent", size=512)
    assert storescu(sent, port=running_gateway.port).returncode == 0
    assert instance_count(session_factory) == len(sent)
    assert stored_data_sets(running_gateway) == sorted(map(dataset_bytes, sent))
    assert refusals == [1], "splicing was tried again on a connection that refused it"
    assert len(copied) >= len(sent), "the data sets did not take the direct path"
    assert 0 not in copied, "a data set PDU went to pynetdicom"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_malformed_data_set_pdu_aborts_the_association_and_stores_nothing(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    raw_association: tuple[Association, list[bytes], Callable[[bytes], None]],
    counted_fast_pdus: list[int],
) -> None:
    association, pdus, send = raw_association
    command, first_data, second_data = pdus[0], pdus[1], bytearray(pdus[2])
    struct.pack_into(">L", second_data, 6, len(second_data))  # its item runs past the PDU
    for raw in (command, first_data, bytes(second_data)):
        send(raw)
    gateway_ends(association)
    assert association.is_aborted
    assert counted_fast_pdus[:2] == [1, 0], "the good PDU went direct, the bad one to pynetdicom"
    assert instance_count(session_factory) == 0
    assert not list(running_gateway.spool.root.rglob("*.dcm"))
    assert_no_reception_left(running_gateway.spool.incoming, abandoned=True)
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_command_inside_a_data_set_is_refused_and_nothing_is_stored(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    raw_association: tuple[Association, list[bytes], Callable[[bytes], None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pynetdicom takes the stray command and starts the data set afresh, so the file lacks
    the part sent before it: the intake's check refuses it (Cannot Understand)."""
    _, pdus, send = raw_association
    with caplog.at_level(logging.WARNING, logger="gateway.intake"):
        for raw in (pdus[0], pdus[1], pdus[0], *pdus[2:]):
            send(raw)
        wait_until(
            lambda: any(
                "gateway.instance_refused" in record.getMessage()
                and "status=CANNOT_UNDERSTAND" in record.getMessage()
                for record in caplog.records
            ),
            timeout=30,
            what="the gateway to refuse the broken data set",
        )
    assert instance_count(session_factory) == 0
    assert partial_receptions(running_gateway.spool.incoming) == [], "the cut data set's file"
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_connection_lost_inside_a_data_set_pdu_stores_nothing(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    raw_association: tuple[Association, list[bytes], Callable[[bytes], None]],
) -> None:
    association, pdus, send = raw_association
    send(pdus[0])
    send(pdus[1])
    send(pdus[2][: len(pdus[2]) // 2])
    association.dul.socket.close()  # type: ignore[union-attr]
    wait_until(lambda: not running_gateway.open_associations, timeout=30,
               what="the gateway to drop the association")  # fmt: skip
    assert instance_count(session_factory) == 0
    assert not list(running_gateway.spool.root.rglob("*.dcm"))
    assert_no_reception_left(running_gateway.spool.incoming, abandoned=True)
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("data_pdus_first", [1, 0])
@pytest.mark.parametrize(
    ("what", "interruption"),
    [
        ("an A-ABORT", struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0, 0)),
        ("an unknown PDU type", struct.pack(">BBL", 0x09, 0, 4) + bytes(4)),
        ("a PDU over the limit", struct.pack(">BBL", 0x04, 0, 1 << 30) + bytes(64)),
    ],
    ids=["abort", "unknown-type", "over-limit"],
)
def test_a_data_set_cut_by_another_pdu_ends_the_association_and_stores_nothing(
    what: str,
    interruption: bytes,
    data_pdus_first: int,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    raw_association: tuple[Association, list[bytes], Callable[[bytes], None]],
    counted_fast_pdus: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Also as the first PDU after the command, when the connection's buffer grows for it."""
    _, pdus, send = raw_association
    with caplog.at_level(logging.WARNING, logger="gateway.pdata"):
        for raw in pdus[: 1 + data_pdus_first]:
            send(raw)
        send(interruption)
        wait_until(lambda: running_gateway.open_associations == 0, timeout=30,
                   what=f"the gateway to end the association after {what}")  # fmt: skip
    assert counted_fast_pdus == [1] * data_pdus_first, "data set PDUs take the direct path"
    assert not [r for r in caplog.records if "Unable to decode" in r.getMessage()], (
        "a PDU handed to pynetdicom arrived damaged"
    )
    assert instance_count(session_factory) == 0
    assert not list(running_gateway.spool.root.rglob("*.dcm"))
    assert_no_reception_left(running_gateway.spool.incoming, abandoned=True)
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_pdu_read_with_the_end_of_a_data_set_reaches_pynetdicom_whole(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    payloads: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A C-ECHO request sent in the same write as a data set's last PDU: copying, it is read
    ahead with it, and pynetdicom then reads it from the read-ahead buffer; splicing, nothing
    past the data set is read (headers are read a PDU at a time). Both requests are answered."""
    served_from_read_ahead = recorded_results(monkeypatch, ReadAhead, "take", keep=bytes)
    path = synthetic_study_files(73, tmp_path / "raw", size=64)[0]
    dataset = dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="RAWSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", running_gateway.port, ae_title="RADRAFT")
    assert association.is_established
    # Pause the requestor's reactor, as pynetdicom's own send methods do, so that the answers
    # wait in its DIMSE queue for this test instead of being taken as unexpected.
    association._reactor_checkpoint.clear()
    wait_until(lambda: association._is_paused, timeout=10, what="the requestor to pause")
    try:
        contexts = {
            c.abstract_syntax: int(c.context_id or 0) for c in association.accepted_contexts
        }
        store = store_request_pdus(path, contexts[dataset.SOPClassUID], 16384)
        echo_pdus = echo_request_pdus(contexts[Verification], 16384, message_id=8)
        connection = association.dul.socket.socket  # type: ignore[union-attr]
        assert connection is not None
        connection.sendall(store[0])
        wait_until(lambda: running_gateway.spool.incoming.exists() and any(
            running_gateway.spool.incoming.iterdir()), timeout=30,
            what="the gateway to begin the data set")  # fmt: skip
        connection.sendall(b"".join(store[1:] + echo_pdus))
        answers = {}
        for _ in range(2):
            _, answer = association.dimse.get_msg(block=True)
            assert answer is not None, "an answer did not come"
            answers[type(answer).__name__] = int(getattr(answer, "Status", -1))
        assert answers == {"C_STORE": 0x0000, "C_ECHO": 0x0000}
    finally:
        association._reactor_checkpoint.set()
        association.abort()
    assert instance_count(session_factory) == 1
    read_ahead = b"".join(echo_pdus) if payloads == "copied" else b""
    assert b"".join(served_from_read_ahead) == read_ahead


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_pdu_longer_than_the_read_ahead_buffer_is_stored_byte_for_byte(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    counted_fast_pdus: list[int],
    tmp_path: Path,
) -> None:
    """pynetdicom sends PDUs as long as the gateway's 4 MiB maximum: a 2 MB data set is one
    PDU, twice the buffer's first size."""
    sent = synthetic_study_files(74, tmp_path / "sent", size=1024)
    assert len(dataset_bytes(sent[0])) > 2 * READ_AHEAD_BYTES
    ae = AE(ae_title="BIGPDU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    first = dcmread(sent[0], stop_before_pixels=True)
    ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", running_gateway.port, ae_title="RADRAFT",
                               max_pdu=0)  # fmt: skip
    assert association.is_established
    try:
        for path in sent:
            assert association.send_c_store(path).Status == 0x0000
    finally:
        association.release()
    assert counted_fast_pdus.count(1) >= len(sent), "each data set took the direct path"
    assert stored_data_sets(running_gateway) == sorted(map(dataset_bytes, sent))
    assert instance_count(session_factory) == len(sent)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_pdu_after_an_answer_is_read_without_a_turn_of_the_reactor(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """storescu sends its next command, and at the end its release request, as soon as it has
    an answer: each is read right after the answer, and every instance is stored."""
    read_after_answer = recorded_results(monkeypatch, pdata.DataSetReceiver, "_read_next_pdu")
    sent = synthetic_study_files(76, tmp_path / "a", size=512)
    sent += synthetic_study_files(77, tmp_path / "b", size=512)
    assert storescu(sent, port=running_gateway.port).returncode == 0
    assert instance_count(session_factory) == len(sent)
    assert len(read_after_answer) == len(sent), "each answer was followed by a wait"
    assert read_after_answer.count(True) == len(sent), "the next command or release was read"

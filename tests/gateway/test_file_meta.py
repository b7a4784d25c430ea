"""A reception file's File Meta Information: pydicom's bytes, without pydicom where it can."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless
from pynetdicom.dsutils import create_file_meta

import gateway.file_meta as file_meta
from gateway.file_meta import encode_reception_file_meta, write_reception_file_meta
from gateway.service import Gateway
from tests.dicom_peers import storescu, synthetic_study_files
from tests.support import recorded_results

DX = UID("1.2.840.10008.5.1.4.1.1.1.1")


def pydicom_bytes(meta: object) -> bytes:
    stream = BytesIO()
    write_file_meta_info(stream, meta)  # type: ignore[arg-type]
    return stream.getvalue()


@pytest.mark.parametrize(
    "sop_instance",
    ["1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.12", "1." + "2" * 70],
    ids=["odd", "even", "72 characters"],
)
@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless]
)
def test_the_group_is_pydicoms_byte_for_byte(sop_instance: str, transfer_syntax: UID) -> None:
    meta = create_file_meta(
        sop_class_uid=DX, sop_instance_uid=UID(sop_instance), transfer_syntax=transfer_syntax
    )
    assert encode_reception_file_meta(meta) == pydicom_bytes(meta)


def test_another_group_goes_to_pydicoms_writer() -> None:
    meta = create_file_meta(
        sop_class_uid=DX, sop_instance_uid=UID("1.2.3"), transfer_syntax=ExplicitVRLittleEndian
    )
    meta.SourceApplicationEntityTitle = "MODALITY"
    assert encode_reception_file_meta(meta) is None
    written = BytesIO()
    write_reception_file_meta(written, meta)
    assert written.getvalue() == pydicom_bytes(meta)
    assert b"MODALITY" in written.getvalue()


def test_an_empty_uid_fails_as_pydicom_fails() -> None:
    meta = create_file_meta(
        sop_class_uid=DX, sop_instance_uid=UID(""), transfer_syntax=ExplicitVRLittleEndian
    )
    assert encode_reception_file_meta(meta) is None
    with pytest.raises(AttributeError) as pydicoms:
        pydicom_bytes(meta)
    with pytest.raises(AttributeError) as ours:
        write_reception_file_meta(BytesIO(), meta)
    assert str(ours.value) == str(pydicoms.value)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_stored_file_starts_with_the_group_pydicom_would_write(
    running_gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = recorded_results(monkeypatch, file_meta, "encode_reception_file_meta")
    sent = synthetic_study_files(43, tmp_path / "sent", size=256)
    assert storescu(sent, port=running_gateway.port).returncode == 0
    stored = sorted(running_gateway.spool.root.rglob("*.dcm"))
    assert len(stored) == len(sent)
    for path in stored:
        meta = dcmread(path, stop_before_pixels=True).file_meta
        expected = pydicom_bytes(meta)
        assert path.read_bytes()[128 : 132 + len(expected)] == b"DICM" + expected
    assert len(encoded) == len(sent)
    assert None not in encoded, "pydicom's writer wrote a reception's file meta"

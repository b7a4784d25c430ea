"""Identity at the door: a re-used UID never changes whose images a study holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.header import MissingIdentifierError, check_request_uids, parse_instance_header
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import AuditAction
from radraft.models import AuditEntry, Instance, Study
from radraft.synthetic import make_chest_study
from tests.conftest import RecordingPublisher
from tests.dicom_peers import dataset_bytes, store_statuses, storescu, write_study
from tests.support import assert_no_reception_left, wait_until


def count(session_factory: sessionmaker[Session], statement: object) -> int:
    with session_scope(session_factory) as session:
        return int(session.scalar(statement) or 0)  # type: ignore[call-overload]


def test_same_sop_instance_uid_for_another_patient_is_refused_and_the_first_copy_kept(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    first = make_chest_study(11, rows=64, columns=64)
    first_files = write_study(first, tmp_path / "first")
    assert storescu(first_files, port=running_gateway.port, debug=True).returncode == 0

    # Another patient's study whose PA image re-uses the first study's SOP Instance UID.
    (other,) = make_chest_study(12, rows=64, columns=64, views=("PA",))
    other.SOPInstanceUID = first[0].SOPInstanceUID
    other.file_meta.MediaStorageSOPInstanceUID = first[0].SOPInstanceUID
    other_files = write_study([other], tmp_path / "other")
    result = storescu(other_files, port=running_gateway.port, debug=True)
    assert store_statuses(result.output) == [0x0111], result.output
    assert "SOP Instance UID known with other Patient ID, Study, Series" in result.output

    # A new image of the first study under another patient id is refused the same way.
    (intruder,) = make_chest_study(13, rows=64, columns=64, views=("LL",))
    intruder.StudyInstanceUID = first[0].StudyInstanceUID
    result = storescu(
        write_study([intruder], tmp_path / "intruder"), port=running_gateway.port, debug=True
    )
    assert store_statuses(result.output) == [0x0111], result.output

    # An identical re-send is still a success.
    again = storescu(first_files[:1], port=running_gateway.port, debug=True)
    assert store_statuses(again.output) == [0x0000], again.output

    with session_scope(session_factory) as session:
        studies = session.scalars(select(Study)).all()
        instance = session.scalar(
            select(Instance).where(Instance.sop_instance_uid == str(first[0].SOPInstanceUID))
        )
        assert instance is not None
        spooled = running_gateway.spool.path_of(instance.spool_path)
        conflicts = session.scalars(
            select(AuditEntry).where(AuditEntry.action == AuditAction.IDENTITY_CONFLICT)
        ).all()
        assert [study.study_instance_uid for study in studies] == [str(first[0].StudyInstanceUID)]
        assert studies[0].patient_id == first[0].PatientID
        assert instance.receive_count == 2
    assert dataset_bytes(spooled) == dataset_bytes(first_files[0]), "the first copy is kept"
    assert [(c.object_type, c.details) for c in conflicts] == [
        ("instance", {"differs": ["PatientID", "StudyInstanceUID", "SeriesInstanceUID"]}),
        ("study", {"differs": ["PatientID"]}),
    ]
    assert all(str(other.PatientID) not in str(c.details) for c in conflicts), "no values"

    wait_until(lambda: publisher.published, what="the first study to be queued")
    assert len(publisher.published) == 1, "nothing is queued for the refused instances"


def test_sop_class_of_the_data_set_must_match_the_request(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (image,) = make_chest_study(21, rows=64, columns=64, views=("PA",))
    # The request announces Digital Mammography (pynetdicom takes the request's class from the
    # file meta) while the data set says DX: patch the meta's UID, same length, in the bytes.
    path = write_study([image], tmp_path / "s")[0]
    raw = path.read_bytes()
    dx, mammography = b"1.2.840.10008.5.1.4.1.1.1.1\x00", b"1.2.840.10008.5.1.4.1.1.1.2\x00"
    path.write_bytes(raw.replace(dx, mammography, 1))
    written = dcmread(path, stop_before_pixels=True)
    assert written.file_meta.MediaStorageSOPClassUID == mammography.rstrip(b"\x00").decode()
    assert written.SOPClassUID == dx.rstrip(b"\x00").decode()
    meta = written.file_meta

    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", running_gateway.port, ae_title="RADRAFT")
    assert association.is_established
    response = association.send_c_store(path)
    association.release()
    assert int(response.Status) == 0xA900
    assert "SOP Class UID differs" in str(response.ErrorComment)
    assert count(session_factory, select(func.count()).select_from(Instance)) == 0


def test_short_native_pixel_data_is_refused_and_nothing_is_stored(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    (image,) = make_chest_study(31, rows=96, columns=96, views=("PA",))
    image.PixelData = image.PixelData[: len(image.PixelData) // 3]
    result = storescu(
        write_study([image], tmp_path / "short"), port=running_gateway.port, debug=True
    )
    assert store_statuses(result.output) == [0xA900], result.output
    assert "Pixel Data is" in result.output
    assert count(session_factory, select(func.count()).select_from(Instance)) == 0
    assert list(running_gateway.spool.root.rglob("*.dcm")) == []
    assert_no_reception_left(running_gateway.spool.incoming)
    whole = storescu(
        write_study(make_chest_study(32, rows=96, columns=96), tmp_path / "whole"),
        port=running_gateway.port,
        debug=True,
    )
    assert store_statuses(whole.output) == [0, 0], "the gateway keeps serving"


@pytest.mark.parametrize(
    ("keyword", "value", "comment"),
    [
        ("StudyInstanceUID", "1.2.826.0.1.3680043.2.1125." + "1" * 40, "longer than 64"),
        ("SeriesInstanceUID", "1.2.826.0.1.3680043.2.1125." + "2" * 40, "longer than 64"),
        ("StudyInstanceUID", "1.2.3.four", "is not a UID"),
    ],
)
def test_uids_that_are_too_long_or_not_uids_are_refused_never_truncated(
    keyword: str,
    value: str,
    comment: str,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    (image,) = make_chest_study(41, rows=64, columns=64, views=("PA",))
    setattr(image, keyword, value)
    result = storescu(write_study([image], tmp_path / "s"), port=running_gateway.port, debug=True)
    assert store_statuses(result.output) == [0xA900], result.output
    assert comment in result.output
    assert count(session_factory, select(func.count()).select_from(Study)) == 0


def test_invalid_dates_and_times_are_stored_as_missing(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    (image,) = make_chest_study(51, rows=64, columns=64, views=("PA",))
    image.StudyDate = "20241345"
    image.PatientBirthDate = "19xx0101"
    image.StudyTime = "256100"
    image.TimezoneOffsetFromUTC = "+2500"
    assert (
        storescu(
            write_study([image], tmp_path / "s"), port=running_gateway.port, debug=True
        ).returncode
        == 0
    )
    with session_scope(session_factory) as session:
        study = session.scalar(select(Study))
        assert study is not None
        values = (study.study_date, study.patient_birth_date, study.study_time)
        assert values == (None, None, None)
        assert study.timezone_offset is None


def test_the_data_set_must_carry_the_requests_sop_instance_and_class(tmp_path: Path) -> None:
    (image,) = make_chest_study(33, rows=16, columns=16, views=("PA",))
    header = parse_instance_header(write_study([image], tmp_path)[0])
    own = {"expected_sop_instance_uid": image.SOPInstanceUID}
    check_request_uids(header, **own, expected_sop_class_uid=image.SOPClassUID)
    check_request_uids(header, **own, expected_sop_class_uid=None)  # no class to compare
    with pytest.raises(MissingIdentifierError, match="SOP Instance UID differs"):
        check_request_uids(
            header,
            expected_sop_instance_uid=image.SOPInstanceUID + "1",
            expected_sop_class_uid=None,
        )
    with pytest.raises(MissingIdentifierError, match="SOP Class UID differs"):
        check_request_uids(header, **own, expected_sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2")

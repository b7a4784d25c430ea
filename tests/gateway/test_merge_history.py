"""What arrives after an ADT merge under the prior identifier follows the merge.

A modality that read its worklist before the merge sends the remaining views under the prior
Patient ID; a study of a patient registered under a temporary number may arrive after that
number was merged away. Without the merge kept, the late view contradicted its study's patient
(0x0111 and an identity dispute holding the report) and the late study was filed, drafted and
reported under a number the RIS no longer files by. The merge goes over a real MLLP socket to
the running gateway; the images come from a real storescu.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.patient_files import ADT_PATIENT_ACTION
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.merge_history import merged_into, surviving_patients
from radraft.models import AuditEntry, Instance, Order, PatientMergeRecord, Study
from radraft.orders import indication_for, order_for_study
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from tests.dicom_peers import store_statuses, storescu, write_study
from tests.gateway.test_orders import exchange, framed, msa
from tests.gateway.test_patient_merges import MERGE, OTHER, TEMPORARY, UPDATE

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])

SURVIVING = ("MRN-42", "Müller^Jürgen^^Dr", "19610203", "M")


def _merge(gateway: Gateway, message: str = MERGE) -> str:
    assert gateway.order_listener is not None
    code, _, text = msa(exchange(gateway.order_listener.port, framed(message, "utf-8")))
    assert code == "AA", text
    return text


def _statuses(gateway: Gateway, files: list[Path]) -> set[int]:
    return set(store_statuses(storescu(files, port=gateway.port, debug=True, halt=False).output))


def _study(factory: sessionmaker[Session]) -> tuple[tuple[str | None, ...], object, int]:
    """(the study's patient, when it was disputed, how many instances it has)."""
    with session_scope(factory) as session:
        study = session.scalars(select(Study)).one()
        count = len(session.scalars(select(Instance).where(Instance.study_id == study.id)).all())
        return (
            (study.patient_id, study.patient_name, study.patient_birth_date, study.patient_sex),
            study.identity_disputed_at,
            count,
        )


def _file_patients(factory: sessionmaker[Session], settings: Settings) -> list[str]:
    with session_scope(factory) as session:
        paths = session.scalars(select(Instance.spool_path).order_by(Instance.id)).all()
    headers = [dcmread(settings.spool_dir / path, stop_before_pixels=True) for path in paths]
    return [f"{header.PatientID}|{header.PatientName}|{header.PatientSex}" for header in headers]


def test_a_view_sent_late_under_the_prior_identifier_joins_its_merged_study(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    pa, lateral = write_study(make_chest_study(80, rows=64, columns=64, patient=TEMPORARY),
                              tmp_path / "study")  # fmt: skip
    assert _statuses(merging_gateway, [pa]) == {0x0000}
    assert _merge(merging_gateway) == "merged 1 studies"

    assert _statuses(merging_gateway, [lateral]) == {0x0000}, "the modality's late view is stored"
    assert _statuses(merging_gateway, [pa]) == {0x0000}, "and its retry of the first view"
    patient, disputed, instances = _study(session_factory)
    assert (patient, disputed, instances) == (SURVIVING, None, 2), (
        "filed under the surviving patient, its demographics kept, no dispute"
    )
    expected = "MRN-42|Müller^Jürgen^^Dr|M"
    assert _file_patients(session_factory, settings) == [expected, expected]
    assert len(list(settings.spool_dir.rglob("*.dcm"))) == 2, "one file per instance"
    with session_scope(session_factory) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == ADT_PATIENT_ACTION)
        ).all()
        assert [entry.actor for entry in entries] == ["dicom:STORESCU"] * 2
        assert all("TEMP-9" not in str(entry.details) for entry in entries), "no identifier"


def test_a_study_that_arrives_after_its_patient_was_merged_is_filed_under_the_survivor(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """The RIS ordered it under the temporary number, the merge came, then the images: the
    study goes under the surviving patient and the order still stands for it."""
    datasets = make_chest_study(81, rows=64, columns=64, patient=TEMPORARY)
    with session_scope(session_factory) as session:
        session.add(
            Order(accession_number=str(datasets[0].AccessionNumber), placer_order_number="PLC-6",
                  filler_order_number="FIL-6", message_type="ORM^O01", order_control="NW",
                  reason_for_exam="Fall, rib pain", patient_ids=["TEMP-9"], raw_message="MSH|")
        )  # fmt: skip
    assert _merge(merging_gateway) == "merged 0 studies", "nothing held yet, the merge is kept"

    assert _statuses(merging_gateway, write_study(datasets, tmp_path / "study")) == {0x0000}
    patient, disputed, instances = _study(session_factory)
    assert (patient, disputed, instances) == (SURVIVING, None, 2)
    assert _file_patients(session_factory, settings) == ["MRN-42|Müller^Jürgen^^Dr|M"] * 2
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        stood = order_for_study(session, study).order
        assert stood is not None, "the order placed under the temporary number"
        assert stood.placer_order_number == "PLC-6"
        assert indication_for(session, study).text == "Fall, rib pain"


def test_a_later_study_of_the_same_number_from_another_authority_stays_its_own(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """MRG-1 is TEMP-9 of HOSP; TEMP-9 issued by CLINIC is another patient."""
    _merge(merging_gateway)
    datasets = make_chest_study(82, rows=64, columns=64, patient=TEMPORARY)
    for dataset in datasets:
        dataset.IssuerOfPatientID = "CLINIC"
    assert _statuses(merging_gateway, write_study(datasets, tmp_path / "study")) == {0x0000}
    patient, _, _ = _study(session_factory)
    assert patient == ("TEMP-9", "UNKNOWN^TRAUMA", "19000101", "O")
    assert _file_patients(session_factory, settings) == ["TEMP-9|UNKNOWN^TRAUMA|O"] * 2


def test_a_late_view_with_the_names_registration_corrected_keeps_the_correction(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """An A08 corrected the patient's name, birth date and sex; the modality's next view still
    carries its worklist's values. Without the ADT having spoken, the newest header wins."""
    pa, lateral = write_study(make_chest_study(83, rows=64, columns=64, patient=OTHER),
                              tmp_path / "study")  # fmt: skip
    assert _statuses(merging_gateway, [pa]) == {0x0000}
    assert _merge(merging_gateway, UPDATE) == "updated 1 studies"
    assert _statuses(merging_gateway, [lateral]) == {0x0000}
    corrected = ("PAT-5", "Østergaard^Åsa", "19500506", "F")
    patient, disputed, instances = _study(session_factory)
    assert (patient, disputed, instances) == (corrected, None, 2), "not taken back"
    assert _file_patients(session_factory, settings) == ["PAT-5|Østergaard^Åsa|F"] * 2
    with session_scope(session_factory) as session:
        (entry,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == ADT_PATIENT_ACTION)
        )
        assert entry.actor == "dicom:STORESCU"


def test_without_the_adt_a_later_header_still_updates_the_study(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    pa, lateral = write_study(make_chest_study(84, rows=64, columns=64, patient=OTHER),
                              tmp_path / "study")  # fmt: skip
    assert _statuses(merging_gateway, [pa]) == {0x0000}
    renamed = dcmread(lateral)
    renamed.PatientName = "OTHER^PATIENT^MARIA"
    renamed.save_as(lateral)
    assert _statuses(merging_gateway, [lateral]) == {0x0000}
    patient, _, _ = _study(session_factory)
    assert patient[1] == "OTHER^PATIENT^MARIA"
    with session_scope(session_factory) as session:
        assert (
            session.scalars(select(AuditEntry).where(AuditEntry.action == ADT_PATIENT_ACTION)).all()
            == []
        )


def _merged(session: Session, prior: str, surviving: str, issuer: str = "") -> None:
    session.add(
        PatientMergeRecord(prior_patient_id=prior, prior_issuer=issuer, event="A40",
                           patient={"patient_id": surviving, "issuer_of_patient_id": "",
                                    "patient_name": f"{surviving}^NAME"})
    )  # fmt: skip
    session.flush()


def test_merges_are_followed_in_order_and_a_merge_back_ends_the_chain(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        _merged(session, "A", "B")
        _merged(session, "B", "C")
        assert [p["patient_id"] for p in surviving_patients(session, "A")] == ["B", "C"]
        assert merged_into(session, "A", "", "C")
        assert merged_into(session, "B", "HOSP", "C"), "a merge naming no authority"
        assert not merged_into(session, "C", "", "A"), "merges go one way"
        assert not merged_into(session, "", "", "C")
        _merged(session, "C", "A")  # merged back
        assert [p["patient_id"] for p in surviving_patients(session, "A")] == ["B", "C", "A"]
        assert [p["patient_id"] for p in surviving_patients(session, "C")] == ["A"], (
            "only merges after the one followed: C -> A, and A -> B came before"
        )
        _merged(session, "X", "Y", issuer="ER")
        assert merged_into(session, "X", "ER", "Y")
        assert merged_into(session, "X", "", "Y"), "an identifier without authority"
        assert not merged_into(session, "X", "CLINIC", "Y"), "another authority's X"

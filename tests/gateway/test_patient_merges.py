"""ADT patient merges (A40, A47) and updates (A08) over MLLP: the studies follow the ADT feed.

Studies arrive from a real storescu; the merge is sent over a real MLLP socket to the running
gateway's order port, in UTF-8 with a name DICOM's default character set cannot hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import AuditEntry, Instance, Order, Study
from radraft.orders import indication_for, order_for_study
from radraft.patient_merge import MERGED_ACTION, UPDATED_ACTION
from radraft.settings import Settings
from radraft.synthetic import SyntheticPatient, make_chest_study
from tests.conftest import RecordingPublisher
from tests.dicom_peers import store_statuses, storescu, write_study
from tests.gateway.conftest import order_port_gateway
from tests.gateway.test_orders import exchange, framed, msa
from tests.support import wait_until

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])

TEMPORARY = SyntheticPatient(name="UNKNOWN^TRAUMA", patient_id="TEMP-9", birth_date="19000101",
                             sex="O")  # fmt: skip
OTHER = SyntheticPatient(name="OTHER^PATIENT", patient_id="PAT-5", birth_date="19500505")
MERGE = (
    "MSH|^~\\&|ADT|HOSP|RADRAFT|HOSP|20261202120000||ADT^A40^ADT_A39|MRG0001|P|2.5|||||"
    "|UNICODE UTF-8\r"
    "EVN|A40|20261202120000\r"
    "PID|1||MRN-42^^^HOSP^MR||Müller^Jürgen^^^Dr||19610203|M\r"
    "MRG|TEMP-9^^^HOSP^MR\r"
)

UPDATE = (
    "MSH|^~\\&|ADT|HOSP|RADRAFT|HOSP|20261202130000||ADT^A08^ADT_A01|UPD0001|P|2.5|||||"
    "|UNICODE UTF-8\r"
    "EVN|A08|20261202130000\r"
    "PID|1||PAT-5^^^HOSP^MR~998877^^^SSA^SS||Østergaard^Åsa||19500506|F\r"
    "PV1|1|O\r"
)


def _order_port(gateway: Gateway) -> int:
    assert gateway.order_listener is not None
    return gateway.order_listener.port


def _send_study(
    gateway: Gateway, seed: int, patient: SyntheticPatient, folder: Path, issuer: str = ""
) -> tuple[str, list[Path]]:
    """A study of ``patient`` (with Issuer of Patient ID ``issuer``) stored by storescu."""
    datasets = make_chest_study(seed, rows=64, columns=64, patient=patient)
    for dataset in datasets:
        if issuer:
            dataset.IssuerOfPatientID = issuer
    files = write_study(datasets, folder)
    assert storescu(files, port=gateway.port)
    return str(datasets[0].StudyInstanceUID), files


def _patients(factory: sessionmaker[Session]) -> dict[str, tuple[str | None, ...]]:
    with session_scope(factory) as session:
        return {
            study.study_instance_uid: (study.patient_id, study.patient_name,
                                       study.patient_birth_date, study.patient_sex)
            for study in session.scalars(select(Study))
        }  # fmt: skip


def _file_patients(factory: sessionmaker[Session], settings: Settings, uid: str) -> set[str]:
    with session_scope(factory) as session:
        paths = session.scalars(
            select(Instance.spool_path).join(Study).where(Study.study_instance_uid == uid)
        ).all()
    return {
        f"{header.PatientID}|{header.PatientName}"
        for header in (dcmread(settings.spool_dir / p, stop_before_pixels=True) for p in paths)
    }


def test_a_merge_moves_the_studies_of_the_prior_identifier_and_their_files(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    first, _ = _send_study(merging_gateway, 51, TEMPORARY, tmp_path / "a", issuer="HOSP")
    second, second_files = _send_study(merging_gateway, 52, TEMPORARY, tmp_path / "b")
    elsewhere, _ = _send_study(merging_gateway, 53, TEMPORARY, tmp_path / "c", issuer="CLINIC")
    other, _ = _send_study(merging_gateway, 54, OTHER, tmp_path / "d")
    before = _patients(session_factory)

    port = _order_port(merging_gateway)
    code, _, text = msa(exchange(port, framed(MERGE, "utf-8")))
    assert (code, text) == ("AA", "merged 2 studies")

    after = _patients(session_factory)
    merged = ("MRN-42", "Müller^Jürgen^^Dr", "19610203", "M")
    assert after[first] == after[second] == merged
    assert after[elsewhere] == before[elsewhere], "the same number from another authority"
    assert after[other] == before[other]
    for uid in (first, second):
        assert _file_patients(session_factory, settings, uid) == {"MRN-42|Müller^Jürgen^^Dr"}
    assert _file_patients(session_factory, settings, elsewhere) == {"TEMP-9|UNKNOWN^TRAUMA"}
    with session_scope(session_factory) as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == MERGED_ACTION))
        rows = [(entry.actor, entry.details) for entry in entries]
    assert len(rows) == 2
    assert {actor for actor, _ in rows} == {"hl7:ADT"}
    assert all("MRN-42" not in str(details) for _, details in rows), "names, never values"

    again = [dcmread(path) for path in second_files]
    for dataset, path in zip(again, second_files, strict=True):
        dataset.PatientID, dataset.PatientName = "MRN-42", "MULLER^JURGEN"
        dataset.save_as(path)
    resent = storescu(second_files, port=merging_gateway.port, debug=True, halt=False)
    assert set(store_statuses(resent.output)) == {0x0000}, "the merged PACS's copy is accepted"
    assert len(list(settings.spool_dir.rglob("*.dcm"))) == 8, "one file per instance"

    code, _, text = msa(exchange(port, framed(MERGE, "utf-8")))
    assert (code, text) == ("AA", "merged 0 studies"), "a repeated merge finds nothing to move"


def test_a_merge_settles_the_dispute_of_a_study_the_merged_pacs_sent_first(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    uid, files = _send_study(merging_gateway, 55, TEMPORARY, tmp_path / "a")
    for path in files:
        dataset = dcmread(path)
        dataset.PatientID = "MRN-42"
        dataset.save_as(path)
    refused = storescu(files, port=merging_gateway.port, debug=True, halt=False)
    assert set(store_statuses(refused.output)) == {0x0111}
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        assert study.identity_disputed_at is not None

    code, _, _ = msa(exchange(_order_port(merging_gateway), framed(MERGE, "utf-8")))
    assert code == "AA"
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        assert (study.patient_id, study.identity_disputed_at, study.claimed_patient) == (
            "MRN-42", None, None,
        )  # fmt: skip
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == MERGED_ACTION))
        assert entry.details is not None
        assert entry.details["dispute_settled"] is True
    assert uid


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        (MERGE.replace("MRG|TEMP-9^^^HOSP^MR\r", ""), "AE", "no prior patient identifier (MRG-1)"),
        (MERGE.replace("MRN-42^^^HOSP^MR", ""), "AE", "no surviving patient identifier (PID-3)"),
        (MERGE.replace("TEMP-9", "T" * 65), "AE", "over 64 characters"),
        (MERGE.replace("|ADT|", "|" + "A" * 5000 + "|", 1), "AA", "merged 1 studies"),
    ],
)
def test_bad_merges_are_answered_ae_and_move_nothing_and_a_long_sender_is_cut_short(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    message: str,
    code: str,
    reason: str,
) -> None:
    uid, _ = _send_study(merging_gateway, 56, TEMPORARY, tmp_path / "a")
    answer = msa(exchange(_order_port(merging_gateway), framed(message, "utf-8")))
    assert answer[0] == code
    assert reason in answer[2]
    assert _patients(session_factory)[uid][0] == ("MRN-42" if code == "AA" else "TEMP-9")


def test_an_update_gives_the_studies_of_the_identifier_the_registered_demographics(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    first, _ = _send_study(merging_gateway, 61, OTHER, tmp_path / "a")
    second, _ = _send_study(merging_gateway, 62, OTHER, tmp_path / "b", issuer="HOSP")
    elsewhere, _ = _send_study(merging_gateway, 63, OTHER, tmp_path / "c", issuer="CLINIC")
    unrelated, _ = _send_study(merging_gateway, 64, TEMPORARY, tmp_path / "d")
    before = _patients(session_factory)

    port = _order_port(merging_gateway)
    code, _, text = msa(exchange(port, framed(UPDATE, "utf-8")))
    assert (code, text) == ("AA", "updated 2 studies")

    after = _patients(session_factory)
    registered = ("PAT-5", "Østergaard^Åsa", "19500506", "F")
    assert after[first] == after[second] == registered
    assert after[elsewhere] == before[elsewhere], "the same number from another authority"
    assert after[unrelated] == before[unrelated]
    for uid in (first, second):
        assert _file_patients(session_factory, settings, uid) == {"PAT-5|Østergaard^Åsa"}
    assert _file_patients(session_factory, settings, elsewhere) == {"PAT-5|OTHER^PATIENT"}
    assert len(list(settings.spool_dir.rglob("*.dcm"))) == 8, "rewritten in place, none left"
    with session_scope(session_factory) as session:
        details = [
            entry.details
            for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.action == UPDATED_ACTION)
            )
        ]
    assert len(details) == 2
    assert all(d is not None and d["event"] == "A08" for d in details)
    assert all(
        d is not None and set(d["moved"]) >= {"patient_name", "patient_birth_date"} for d in details
    )
    assert "Åsa" not in str(details), "names, never values"

    code, _, text = msa(exchange(port, framed(UPDATE, "utf-8")))
    assert (code, text) == ("AA", "updated 0 studies"), "an update with nothing new"
    with session_scope(session_factory) as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == UPDATED_ACTION))
        assert len(entries.all()) == 2, "no audit row for a study left as it was"

    without_id = UPDATE.replace("PAT-5^^^HOSP^MR~998877^^^SSA^SS", "")
    code, _, text = msa(exchange(port, framed(without_id, "utf-8")))
    assert (code, text) == ("AE", "no patient identifier (PID-3)")


def test_an_update_that_cannot_rewrite_every_file_puts_the_first_back(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """An update keeps the spool names, so the first file is replaced under its own name
    before the second fails: it must get its old content back, like the rows."""
    uid, _ = _send_study(merging_gateway, 66, OTHER, tmp_path / "a")
    with session_scope(session_factory) as session:
        first, second = session.scalars(select(Instance.spool_path).order_by(Instance.id)).all()
    original = settings.spool_dir.joinpath(first).read_bytes()
    settings.spool_dir.joinpath(second).write_bytes(b"not DICOM any more")

    code, _, text = msa(exchange(_order_port(merging_gateway), framed(UPDATE, "utf-8")))
    assert (code, "cannot be rewritten" in text) == ("AE", True)
    assert settings.spool_dir.joinpath(first).read_bytes() == original, "the first file restored"
    assert _patients(session_factory)[uid][1] == "OTHER^PATIENT"
    assert sorted(p.name for p in settings.spool_dir.rglob("*") if p.is_file()) == sorted(
        Path(relative).name for relative in (first, second)
    ), "no copy or scratch file left in the spool"


def test_a_change_of_identifier_moves_the_studies_like_a_merge(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    uid, _ = _send_study(merging_gateway, 65, TEMPORARY, tmp_path / "a")
    change = MERGE.replace("ADT^A40^ADT_A39", "ADT^A47^ADT_A30").replace("EVN|A40", "EVN|A47")
    code, _, text = msa(exchange(_order_port(merging_gateway), framed(change, "utf-8")))
    assert (code, text) == ("AA", "merged 1 studies")
    assert _patients(session_factory)[uid][0] == "MRN-42"
    with session_scope(session_factory) as session:
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == MERGED_ACTION))
        assert entry.details is not None
        assert entry.details["event"] == "A47"


def test_without_the_setting_a_merge_is_refused_as_before(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        uid, _ = _send_study(gateway, 57, TEMPORARY, tmp_path / "a")
        code, _, text = msa(exchange(_order_port(gateway), framed(MERGE, "utf-8")))
        assert code == "AR"
        assert "unsupported message type ADT^A40" in text
        code, _, text = msa(exchange(_order_port(gateway), framed(UPDATE, "utf-8")))
        assert (code, "unsupported message type ADT^A08" in text) == ("AR", True)
        wait_until(lambda: _patients(session_factory)[uid][0] == "TEMP-9", what="unchanged")


def test_the_identifiers_of_the_configured_authority_are_followed_whatever_their_order(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    """An ADT system lists the enterprise number first: the studies follow the hospital's."""
    with order_port_gateway(
        settings, session_factory, publisher, hl7_patient_merges=True,
        hl7_assigning_authority="HOSP",
    ) as gateway:  # fmt: skip
        uid, _ = _send_study(gateway, 67, TEMPORARY, tmp_path / "a", issuer="HOSP")
        merge = MERGE.replace("MRN-42^^^HOSP^MR", "E-77^^^ENT^MR~MRN-42^^^HOSP^PI").replace(
            "MRG|TEMP-9^^^HOSP^MR", "MRG|E-12^^^ENT^MR~TEMP-9^^^HOSP^PI"
        )
        port = _order_port(gateway)
        assert msa(exchange(port, framed(merge, "utf-8")))[::2] == ("AA", "merged 1 studies")
        assert _patients(session_factory)[uid][0] == "MRN-42"
        assert _file_patients(session_factory, settings, uid) == {"MRN-42|Müller^Jürgen^^Dr"}

        elsewhere = UPDATE.replace("PAT-5^^^HOSP^MR~998877^^^SSA^SS", "MRN-42^^^CLINIC^MR")
        code, _, text = msa(exchange(port, framed(elsewhere, "utf-8")))
        assert (code, text) == ("AA", "updated 0 studies: no identifier of HOSP in PID-3")
        assert _patients(session_factory)[uid][1] == "Müller^Jürgen^^Dr", "another's MRN-42"


def test_a_merge_message_with_several_patient_groups_applies_each_in_order(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """ADT_A39 repeats PID/MRG: TEMP-9 merged into TEMP-8, then TEMP-8 into MRN-43."""
    second_temporary = SyntheticPatient(name="UNKNOWN^TWO", patient_id="TEMP-8",
                                        birth_date="19000101")  # fmt: skip
    first, _ = _send_study(merging_gateway, 68, TEMPORARY, tmp_path / "a")
    second, _ = _send_study(merging_gateway, 69, second_temporary, tmp_path / "b")
    chained = MERGE.replace(
        "PID|1||MRN-42^^^HOSP^MR||Müller^Jürgen^^^Dr||19610203|M\rMRG|TEMP-9^^^HOSP^MR\r",
        "PID|1||TEMP-8^^^HOSP^MR\rMRG|TEMP-9^^^HOSP^MR\r"
        "PID|2||MRN-43^^^HOSP^MR||Roe^Rita||19590101|F\rMRG|TEMP-8^^^HOSP^MR\r",
    )
    code, _, text = msa(exchange(_order_port(merging_gateway), framed(chained, "utf-8")))
    assert (code, text) == ("AA", "merged 2 studies")
    after = _patients(session_factory)
    assert after[first][:2] == after[second][:2] == ("MRN-43", "Roe^Rita")
    for uid in (first, second):
        assert _file_patients(session_factory, settings, uid) == {"MRN-43|Roe^Rita"}
    assert len(list(settings.spool_dir.rglob("*.dcm"))) == 4, "each file rewritten, none left"
    with session_scope(session_factory) as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == MERGED_ACTION))
        assert len(entries.all()) == 3, "one row per study each merge moved"


def test_the_orders_of_a_merged_study_still_stand_for_it(
    merging_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """The order names the prior number; after the merge it must still give the study its
    indication and the order numbers the RIS files the next result under."""
    uid, _ = _send_study(merging_gateway, 70, TEMPORARY, tmp_path / "a")
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        assert study.accession_number
        session.add(
            Order(accession_number=study.accession_number, placer_order_number="PLC-5",
                  filler_order_number="FIL-5", message_type="ORM^O01", order_control="NW",
                  reason_for_exam="Trauma, chest pain", patient_ids=["TEMP-9"],
                  raw_message="MSH|")
        )  # fmt: skip
    code, _, _ = msa(exchange(_order_port(merging_gateway), framed(MERGE, "utf-8")))
    assert code == "AA"
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()
        assert study.patient_id == "MRN-42"
        stood = order_for_study(session, study).order
        assert stood is not None, "the order still stands for the study"
        assert (stood.placer_order_number, stood.patient_ids) == ("PLC-5", ["TEMP-9"]), (
            "the order as the RIS sent it: the kept merge makes it stand for the survivor"
        )
        assert indication_for(session, study).text == "Trauma, chest pain"

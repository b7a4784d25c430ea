"""A correction replaces the result the RIS filed, so it names the order that result went under.

The RIS files each result under its placer and filler order numbers and finds a corrected
result (OBR-25 C) by them. When the RIS has re-ordered the study since the final went out (the
order cancelled and placed again under new numbers), the standing order is the new one; a
correction under it would be filed beside the final it corrects, and the wrong text would stay
on the record. A final after a preliminary is a new result, and goes under the order standing.
A real MLLP peer is the RIS.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import OutboxStatus, ReportState, Role
from radraft.models import Order, Study, User
from radraft.settings import MllpDestination, Settings
from radraft.timeutil import utcnow
from reporting.delivery.relay import OutputDeliveryRelay, retry_failed
from tests.hl7_peer import RisPeer
from tests.reporting.factories import add_revision, make_user
from tests.reporting.test_delivery import SteppingClock, output_rows
from tests.support import free_port

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


def _order(study: Study, control: str, number: str, patient_class: str) -> Order:
    return Order(
        accession_number=study.accession_number, placer_order_number=f"PLC-{number}",
        filler_order_number=f"FIL-{number}", message_type="ORM^O01", order_control=control,
        patient_class=patient_class, patient_ids=[study.patient_id], raw_message="MSH|",
    )  # fmt: skip


def _place(
    session_factory: sessionmaker[Session], study_id: int, *messages: tuple[str, str, str]
) -> None:
    """Order messages (control, number, patient class) for the study's accession number."""
    with session_scope(session_factory) as session:
        study = session.get(Study, study_id)
        assert study is not None
        assert study.accession_number
        for control, number, patient_class in messages:
            session.add(_order(study, control, number, patient_class))


def _reorder(session_factory: sessionmaker[Session], study_id: int) -> None:
    """The RIS cancels order 7 and orders the study again as order 8 (another class)."""
    _place(session_factory, study_id, ("CA", "7", "I"), ("NW", "8", "O"))


def _add(session_factory: sessionmaker[Session], study_id: int, state: ReportState) -> None:
    """A revision by the resident (preliminary) or the attending (final, amended)."""
    role = Role.RESIDENT if state == ReportState.PRELIMINARY else Role.ATTENDING
    with session_scope(session_factory) as session:
        study = session.get(Study, study_id)
        assert study is not None
        author = session.scalar(select(User).where(User.username == role.value))
        author = author or make_user(session, role.value, role, f"{role.value} reader")
        add_revision(session, study, state, author=author,
                     findings=f"{state} findings.", impression="Clear.")  # fmt: skip


def _deliver_all(session_factory: sessionmaker[Session], settings: Settings) -> None:
    """Relay passes until one sends nothing (a pass sends a study's next row per channel)."""
    relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
    for _ in range(10):
        if relay.run_once() == 0:
            return
    raise AssertionError("the relay still had rows to send after ten passes")


def _obr_and_class(ris: RisPeer) -> list[tuple[str, str, str, str]]:
    """(OBR-25, OBR-2, OBR-3, PV1-2) of every ORU the RIS received, in order."""
    return [
        (
            str(message.segment("OBR")[25]),
            str(message.segment("OBR")[2]),
            str(message.segment("OBR")[3]),
            str(message.segment("PV1")[2]),
        )
        for message in ris.messages
    ]


@pytest.fixture
def ris_linked(settings: Settings) -> Iterator[tuple[RisPeer, Settings]]:
    ris = RisPeer(free_port())
    ris.start()
    yield (
        ris,
        settings.model_copy(update={"hl7_destinations": [MllpDestination("127.0.0.1", ris.port)]}),
    )
    ris.stop()


def test_a_correction_after_the_ris_reordered_the_study_names_the_order_of_the_final(
    received_study: Study,
    session_factory: sessionmaker[Session],
    ris_linked: tuple[RisPeer, Settings],
) -> None:
    ris, linked = ris_linked
    _place(session_factory, received_study.id, ("NW", "7", "I"))
    _add(session_factory, received_study.id, ReportState.FINAL)
    _deliver_all(session_factory, linked)
    _reorder(session_factory, received_study.id)
    _add(session_factory, received_study.id, ReportState.AMENDED)
    _add(session_factory, received_study.id, ReportState.AMENDED)
    _deliver_all(session_factory, linked)

    assert _obr_and_class(ris) == [
        ("F", "PLC-7", "FIL-7", "I"),
        ("C", "PLC-7", "FIL-7", "I"),
        ("C", "PLC-7", "FIL-7", "I"),
    ]


def test_a_final_after_a_preliminary_goes_under_the_order_standing_now(
    received_study: Study,
    session_factory: sessionmaker[Session],
    ris_linked: tuple[RisPeer, Settings],
) -> None:
    """A final is a new result, not a replacement: the re-ordered study is filed under its new
    order (and a correction of that final under the same)."""
    ris, linked = ris_linked
    _place(session_factory, received_study.id, ("NW", "7", "I"))
    _add(session_factory, received_study.id, ReportState.PRELIMINARY)
    _deliver_all(session_factory, linked)
    _reorder(session_factory, received_study.id)
    _add(session_factory, received_study.id, ReportState.FINAL)
    _add(session_factory, received_study.id, ReportState.AMENDED)
    _deliver_all(session_factory, linked)

    assert _obr_and_class(ris) == [
        ("P", "PLC-7", "FIL-7", "I"),
        ("F", "PLC-8", "FIL-8", "O"),
        ("C", "PLC-8", "FIL-8", "O"),
    ]


def test_a_final_first_delivered_after_the_reorder_is_corrected_under_the_new_order(
    received_study: Study,
    session_factory: sessionmaker[Session],
    ris_linked: tuple[RisPeer, Settings],
) -> None:
    """The RIS refused the final until it failed; re-queued after the re-order, it goes under
    the new order (nothing was filed under the old one), and its correction follows it there,
    not back to the order the final was first tried under."""
    ris, linked = ris_linked
    _place(session_factory, received_study.id, ("NW", "7", "I"))
    _add(session_factory, received_study.id, ReportState.FINAL)
    ris.ack_code = "AE"
    _deliver_all(session_factory, linked.model_copy(update={"delivery_max_attempts": 1}))
    ris.ack_code = "AA"
    _reorder(session_factory, received_study.id)
    with session_scope(session_factory) as session:
        (final_row,) = [row for row in output_rows(session_factory) if row.channel == "hl7"]
        assert final_row.status == OutboxStatus.FAILED
        assert retry_failed(session, final_row.id, now=utcnow())
    _add(session_factory, received_study.id, ReportState.AMENDED)
    _deliver_all(session_factory, linked)

    assert _obr_and_class(ris) == [
        ("F", "PLC-7", "FIL-7", "I"),
        ("F", "PLC-8", "FIL-8", "O"),
        ("C", "PLC-8", "FIL-8", "O"),
    ]

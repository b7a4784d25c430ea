"""Delivers SR and HL7 outbox rows in order per study, with retries, never hiding a failure.

A row is claimed in a short transaction (its next attempt is pushed past the send timeout, so
another relay leaves it alone), built and sent with no transaction open, and its outcome
recorded in a second transaction. A row is done only after the peer accepted it (C-STORE
success or warning, ACK AA answering our control id). Whatever goes wrong while building or
sending it, whether a refusal by the peer or an exception in our own code, is an attempt with
its reason, and the pass goes on with the other rows; after ``delivery_max_attempts`` the row
is failed, visible in the API, ``/metrics`` and ``radraft outbox``, and can be re-queued. Rows of
the same study and channel go out in the order they were written.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus, ReportState
from radraft.errors import ConflictError
from radraft.exchange_deadline import WAITS_PER_EXCHANGE
from radraft.identity_dispute import HELD_REASON, hold_if_disputed
from radraft.logs import log_event
from radraft.models import OutboxMessage, ReportRevision
from radraft.orders import order_numbers
from radraft.outbox import backoff_seconds
from radraft.patient_correction import stop_if_superseded
from radraft.report_outputs import channels_without_destination
from radraft.restore_epochs import outbox_epoch
from radraft.settings import DicomDestination, MllpDestination, Settings
from radraft.timeutil import Clock, utcnow
from radraft.tls import client_context
from radraft.withdrawal import ORU_WITHDRAWAL, SR_REJECTION, stop_if_withdrawn
from reporting.delivery.outputs import (
    MissingRevisionError,
    RevisionBundle,
    build_oru_message,
    build_sr_dataset,
    load_bundle,
)
from reporting.delivery.result_history import SENT_ORDER, order_of_corrected_result
from reporting.delivery.senders import DeliveryError, SentNote, send_oru, store_sr
from reporting.delivery.withdrawals import (
    NO_ORU_DELIVERED,
    NO_SR_STORED,
    OruWithdrawal,
    load_oru_withdrawal,
    load_rejection_note,
)
from reporting.rejection_note import RejectionNote

logger = logging.getLogger(__name__)

StoreSR = Callable[[Dataset, DicomDestination], SentNote]
SendORU = Callable[[str, MllpDestination, str], None]
MAX_REASON_CHARACTERS = 2000
RECORD_RETRY_SECONDS = 60.0
"""How long a delivered output's record is retried while the database is away."""


def oru_control_id(row_id: int, destination: MllpDestination, restores: int = 0) -> str:
    """MSH-10 of one output to one RIS: the same on every retry, so the RIS can de-duplicate.

    Twenty characters at most (ST 20): the outbox row, the restores below it (a row numbered
    again after a restore is another message than the lost row of that number,
    ``radraft.restore_epochs``), and a digest of the destination.
    """
    digest = hashlib.sha256(str(destination).encode()).hexdigest()[:6]
    row = f"{row_id}.{restores}" if restores else str(row_id)
    return f"R{row}-{digest}"[:20]


class OutputDeliveryRelay:
    """Sends due ``dicom`` and ``hl7`` outbox rows to the configured destinations."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        clock: Clock = utcnow,
        store: StoreSR | None = None,
        send: SendORU | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._settings = settings
        self._clock = clock
        timeout = settings.delivery_timeout_seconds
        sr_tls = client_context(settings) if settings.sr_tls else None
        hl7_tls = client_context(settings) if settings.hl7_tls else None
        self._store = store or (
            lambda dataset, destination: store_sr(
                dataset,
                destination,
                calling_ae_title=settings.ae_title,
                timeout=timeout,
                ssl_context=sr_tls,
            )
        )
        self._send = send or (
            lambda message, destination, control_id: send_oru(
                message,
                destination,
                control_id=control_id,
                character_set=settings.hl7_character_set,
                timeout=timeout,
                ssl_context=hl7_tls,
            )
        )

    def _configured(self) -> list[OutboxChannel]:
        waiting = channels_without_destination(self._settings)
        return [c for c in (OutboxChannel.DICOM, OutboxChannel.HL7) if c not in waiting]

    def _claim(self) -> list[int]:
        """Due rows, heads of their (study, channel) queues only; pushed out while in flight."""
        channels = self._configured()
        if not channels:
            return []
        with session_scope(self._session_factory) as session:
            now = self._clock()
            rows = session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.channel.in_(channels),
                    OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.FAILED]),
                )
                .order_by(OutboxMessage.id)
                .with_for_update(skip_locked=True)
            ).all()
            blocked: set[tuple[int | None, str]] = set()
            claimed = []
            for row in rows:
                key = (row.study_id, row.channel)
                if key in blocked:
                    continue
                blocked.add(key)  # later rows of this study and channel wait for this one
                waiting = row.status == OutboxStatus.PENDING and row.next_attempt_at > now
                if not waiting and stop_if_withdrawn(session, row, now):
                    blocked.discard(key)  # settled unsent: the next row of the queue may go
                    continue
                if row.status != OutboxStatus.PENDING or waiting:
                    continue
                if hold_if_disputed(session, row):
                    continue
                row.next_attempt_at = now + timedelta(
                    seconds=WAITS_PER_EXCHANGE * self._settings.delivery_timeout_seconds + 5
                )
                claimed.append(row.id)
            return claimed

    def run_once(self) -> int:
        """Attempt every claimable row once; returns how many were delivered."""
        delivered = 0
        for row_id in self._claim():
            if self._deliver(row_id):
                delivered += 1
        return delivered

    def _deliver(self, row_id: int) -> bool:
        """One attempt at one row; every failure, ours or the peer's, is recorded on it."""
        try:
            with session_scope(self._session_factory) as session:
                row = session.get(OutboxMessage, row_id)
                if row is None or row.status != OutboxStatus.PENDING:
                    return False
                # Claimed before a patient correction: settled unsent. The study is read here,
                # once, so an output that goes is built from the same study row this checked.
                if stop_if_superseded(session, row, self._clock()):
                    return False
                channel = OutboxChannel(row.channel)
                payload = dict(row.payload)
                send = self._prepare(session, row, channel, payload)
                session.expunge_all()
            note = send()
        except MissingRevisionError as error:
            self._record_failure(row_id, str(error), final=True)
            return False
        except DeliveryError as error:
            self._record_failure(row_id, str(error))
            return False
        except Exception as error:
            self._record_failure(row_id, f"cannot build or send: {_describe(error)}")
            log_event(
                logger,
                "delivery.output_error",
                logging.ERROR,
                outbox_id=row_id,
                error=type(error).__name__,
            )
            return False
        if not self._record_delivery(row_id, note, payload):
            return False
        log_event(logger, "delivery.delivered", outbox_id=row_id, channel=channel.value)
        return True

    def _prepare(
        self,
        session: Session,
        row: OutboxMessage,
        channel: OutboxChannel,
        payload: dict[str, Any],
    ) -> Callable[[], str | None]:
        """Read what the row's output is built from (in the open transaction); returns what
        builds and sends it (after the transaction, with nothing locked while the peer answers)."""
        output, row_id, study_id = payload.get("output"), row.id, row.study_id
        spool_dir = self._settings.spool_dir
        # An ORU's control ID carries the restores below its row; read with the row it names.
        restores = outbox_epoch(session, row_id) if channel == OutboxChannel.HL7 else 0
        if output == ORU_WITHDRAWAL and study_id is not None:
            withdrawal = load_oru_withdrawal(session, row, spool_dir=spool_dir)
            return lambda: self._send_oru_withdrawal(withdrawal, payload, row_id, restores)
        if output == SR_REJECTION and study_id is not None:
            note = load_rejection_note(session, row, self._settings, self._clock())
            return lambda: self._send_rejection_note(note)
        bundle = load_bundle(session, int(payload["report_revision_id"]), spool_dir=spool_dir)
        corrected_order = None
        if channel == OutboxChannel.HL7 and bundle.revision.state == ReportState.AMENDED:
            corrected_order = order_of_corrected_result(session, bundle.study, row)
        return lambda: self._send_output(
            channel, payload, bundle, row_id, restores, corrected_order
        )

    def _record_delivery(self, row_id: int, note: str | None, payload: dict[str, Any]) -> bool:
        """Mark the row done; while the database is down, keep trying instead of re-sending.

        The peer has the output now. Were the row left pending, the next pass would send it
        again; so the record is retried (with backoff, up to ``RECORD_RETRY_SECONDS``), and
        only an outage longer than that leads to a second delivery (at least once, never zero).
        """
        deadline = time.monotonic() + RECORD_RETRY_SECONDS
        pause = 0.1
        while True:
            try:
                with session_scope(self._session_factory) as session:
                    row = session.get(OutboxMessage, row_id)
                    if row is None:
                        return False
                    row.attempts += 1
                    row.status = OutboxStatus.DONE
                    row.delivered_at = self._clock()
                    row.last_error = note
                    row.payload = payload
                return True
            except OperationalError as error:
                if time.monotonic() > deadline:
                    log_event(logger, "delivery.unrecorded", logging.ERROR, outbox_id=row_id,
                              error=type(error).__name__)  # fmt: skip
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _send_output(
        self,
        channel: OutboxChannel,
        payload: dict[str, Any],
        bundle: RevisionBundle,
        row_id: int,
        restores: int,
        corrected_order: dict[str, str] | None = None,
    ) -> str | None:
        """Build and send; returns a note for the row (a warning, or why nothing was sent).
        ``restores``: the restores below the row (``oru_control_id``). ``corrected_order``: for
        a correction, the order numbers the result it replaces went out with (it goes under
        them, not under the order standing now)."""
        is_draft = bundle.revision.state == ReportState.DRAFTED
        if channel == OutboxChannel.DICOM:
            if is_draft and not self._settings.sr_send_drafts:
                return "not sent: RADRAFT_SR_SEND_DRAFTS is false"
            dataset = build_sr_dataset(bundle, self._settings)
            sent = self._store_at_pacs(dataset)
            self._remember_sr_uid(bundle.revision.id, str(dataset.SOPInstanceUID))
            return sent.warning or None
        if is_draft and not self._settings.hl7_send_drafts:
            return "not sent: RADRAFT_HL7_SEND_DRAFTS is false"
        if not payload.get("delivered_to") or SENT_ORDER not in payload:
            payload[SENT_ORDER] = (
                corrected_order if corrected_order is not None else order_numbers(bundle.order)
            )
        sent_order = dict(payload[SENT_ORDER])
        self._send_to_each_ris(
            self._settings.hl7_destinations,
            payload,
            row_id,
            restores,
            lambda control_id: build_oru_message(
                bundle, self._settings, control_id=control_id, now=self._clock(),
                sent_order=sent_order,
            ),
        )  # fmt: skip
        return None

    def _send_oru_withdrawal(
        self, withdrawal: OruWithdrawal, payload: dict[str, Any], row_id: int, restores: int
    ) -> str | None:
        """The newest acknowledged result again, as W, to every RIS that acknowledged one."""
        bundle = withdrawal.bundle
        if bundle is None:
            return NO_ORU_DELIVERED
        configured = [
            d for d in self._settings.hl7_destinations if str(d) in withdrawal.destinations
        ]
        self._send_to_each_ris(
            configured,
            payload,
            row_id,
            restores,
            lambda control_id: build_oru_message(
                bundle,
                self._settings,
                control_id=control_id,
                now=self._clock(),
                withdrawn=True,
                delivered_as=withdrawal.delivered_as,
                sent_order=withdrawal.sent_order,
            ),
        )
        gone = [name for name in withdrawal.destinations if name not in map(str, configured)]
        if gone:
            self._save_payload(row_id, payload)  # who has it already, so a retry skips them
            raise DeliveryError(
                "a RIS that acknowledged this study's result is no longer configured, so its"
                f" withdrawal cannot reach it: {', '.join(gone)}"
            )
        return None

    def _send_to_each_ris(
        self,
        destinations: list[MllpDestination],
        payload: dict[str, Any],
        row_id: int,
        restores: int,
        build: Callable[[str], str],
    ) -> None:
        """Send to each destination that has not acknowledged this row yet, remembering which
        have (in ``payload["delivered_to"]``, saved even when a later one fails). ``restores``:
        the restores below the row, read in the transaction that read it (``oru_control_id``)."""
        delivered_to: list[str] = list(payload.get("delivered_to", []))
        for destination in destinations:
            if str(destination) in delivered_to:
                continue  # a retry never sends twice to a destination that acknowledged
            control_id = oru_control_id(row_id, destination, restores)
            try:
                self._send(build(control_id), destination, control_id)
            except DeliveryError:
                payload["delivered_to"] = delivered_to
                self._save_payload(row_id, payload)
                raise
            delivered_to.append(str(destination))
        payload["delivered_to"] = delivered_to

    def _send_rejection_note(self, note: RejectionNote | None) -> str | None:
        """The IOCM rejection note to the PACS; nothing when no SR of the study reached it."""
        if note is None:
            return NO_SR_STORED
        return self._store_at_pacs(note).warning or None

    def _store_at_pacs(self, dataset: Dataset) -> SentNote:
        """C-STORE to ``RADRAFT_SR_DESTINATION``."""
        pacs = self._settings.sr_destination
        if pacs is None:
            raise DeliveryError("no SR destination configured")
        return self._store(dataset, pacs)

    def _save_payload(self, row_id: int, payload: dict[str, Any]) -> None:
        with session_scope(self._session_factory) as session:
            row = session.get(OutboxMessage, row_id)
            if row is not None:
                row.payload = dict(payload)

    def _remember_sr_uid(self, revision_id: int, sop_instance_uid: str) -> None:
        with session_scope(self._session_factory) as session:
            revision = session.get(ReportRevision, revision_id)
            if revision is not None:
                revision.sr_sop_instance_uid = sop_instance_uid

    def _record_failure(self, row_id: int, reason: str, *, final: bool = False) -> None:
        """Count the attempt and keep its reason; the last allowed attempt fails the row."""
        with session_scope(self._session_factory) as session:
            row = session.get(OutboxMessage, row_id)
            if row is None:
                return
            row.attempts += 1
            row.last_error = reason[:MAX_REASON_CHARACTERS]
            if final or row.attempts >= self._settings.delivery_max_attempts:
                row.status = OutboxStatus.FAILED
                log_event(logger, "delivery.failed", logging.ERROR, outbox_id=row_id)
            else:
                row.next_attempt_at = self._clock() + timedelta(
                    seconds=backoff_seconds(
                        row.attempts, maximum=self._settings.outbox_max_backoff_seconds
                    )
                )
                log_event(logger, "delivery.retry", logging.WARNING, outbox_id=row_id)

    def run_until(self, stop: threading.Event, poll_seconds: float) -> None:
        """Deliver until ``stop``; a database outage is logged and retried."""
        log_event(logger, "delivery.started", channels=",".join(self._configured()) or "none")
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as error:
                log_event(logger, "delivery.relay_error", logging.ERROR, error=type(error).__name__)
            stop.wait(poll_seconds)


def _describe(error: Exception) -> str:
    """The error's type and its message, cut short (stored on the row, never logged)."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:500] if text else type(error).__name__


def retry_failed(session: Session, outbox_id: int, *, now: Any) -> bool:
    """Re-queue a failed row (``radraft outbox retry``); False if it is not failed.

    Raises
    ------
    ConflictError
        If the row is held because its study's patient identity is disputed: it would only be
        held again; ``radraft study confirm-identity`` re-queues it once the patient is checked.
    """
    row = session.get(OutboxMessage, outbox_id)
    if row is None or row.status != OutboxStatus.FAILED:
        return False
    if row.last_error == HELD_REASON:
        raise ConflictError(
            "held while the study's patient identity is disputed: check it with the PACS, then"
            " run radraft study confirm-identity, which re-queues it"
        )
    row.status = OutboxStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = now
    return True

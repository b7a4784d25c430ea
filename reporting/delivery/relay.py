"""Delivers SR and HL7 outbox rows in order per study, with retries, never dropping one.

A row is claimed in a short transaction (its next attempt is pushed past the send timeout, so
another relay leaves it alone), sent with no transaction open, and its outcome recorded in a
second transaction. A row is done only after the peer accepted it (C-STORE success, ACK AA);
after ``delivery_max_attempts`` it is failed, visible in the API and ``radraft outbox``, and can
be re-queued. Rows of the same study and channel go out in the order they were written.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus, ReportState
from radraft.logs import log_event
from radraft.models import OutboxMessage, ReportRevision
from radraft.outbox import backoff_seconds
from radraft.settings import Settings
from radraft.timeutil import Clock, utcnow
from reporting.delivery.outputs import (
    MissingRevisionError,
    build_oru_message,
    build_sr_dataset,
    load_bundle,
)
from reporting.delivery.senders import DeliveryError, send_oru, store_sr

logger = logging.getLogger(__name__)

StoreSR = Callable[[Dataset, str], None]
SendORU = Callable[[str, str], None]


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
        self._store = store or (
            lambda dataset, destination: store_sr(
                dataset, destination, calling_ae_title=settings.ae_title, timeout=timeout
            )
        )
        self._send = send or (
            lambda message, destination: send_oru(message, destination, timeout=timeout)
        )

    def _configured(self) -> list[OutboxChannel]:
        channels = []
        if self._settings.sr_destination:
            channels.append(OutboxChannel.DICOM)
        if self._settings.hl7_destinations:
            channels.append(OutboxChannel.HL7)
        return channels

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
                if row.status != OutboxStatus.PENDING or row.next_attempt_at > now:
                    continue
                row.next_attempt_at = now + timedelta(
                    seconds=2 * self._settings.delivery_timeout_seconds + 5
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
        with session_scope(self._session_factory) as session:
            row = session.get(OutboxMessage, row_id)
            if row is None or row.status != OutboxStatus.PENDING:
                return False
            channel = OutboxChannel(row.channel)
            payload = dict(row.payload)
            try:
                bundle = load_bundle(
                    session, int(payload["report_revision_id"]), spool_dir=self._settings.spool_dir
                )
            except MissingRevisionError as error:
                row.status = OutboxStatus.FAILED
                row.last_error = str(error)
                return False
            session.expunge_all()
        try:
            done_for = self._send_output(channel, payload, bundle, row_id)
        except DeliveryError as error:
            self._record_failure(row_id, str(error))
            return False
        with session_scope(self._session_factory) as session:
            row = session.get(OutboxMessage, row_id)
            assert row is not None
            row.attempts += 1
            row.status = OutboxStatus.DONE
            row.delivered_at = self._clock()
            row.last_error = done_for
            row.payload = payload
        log_event(logger, "delivery.delivered", outbox_id=row_id, channel=channel.value)
        return True

    def _send_output(
        self, channel: OutboxChannel, payload: dict[str, Any], bundle: Any, row_id: int
    ) -> str | None:
        """Send; returns a note for the row (e.g. why nothing was sent), raises on failure."""
        if channel == OutboxChannel.DICOM:
            dataset = build_sr_dataset(bundle, self._settings)
            assert self._settings.sr_destination is not None
            self._store(dataset, self._settings.sr_destination)
            self._remember_sr_uid(bundle.revision.id, str(dataset.SOPInstanceUID))
            return None
        if bundle.revision.state == ReportState.DRAFTED and not self._settings.hl7_send_drafts:
            return "not sent: RADRAFT_HL7_SEND_DRAFTS is false"
        delivered_to: list[str] = list(payload.get("delivered_to", []))
        for destination in self._settings.hl7_destinations:
            if destination in delivered_to:
                continue  # a retry never sends twice to a destination that acknowledged
            message = build_oru_message(
                bundle, self._settings, control_id=uuid.uuid4().hex[:20], now=self._clock()
            )
            try:
                self._send(message, destination)
            except DeliveryError:
                payload["delivered_to"] = delivered_to
                self._save_payload(row_id, payload)
                raise
            delivered_to.append(destination)
        payload["delivered_to"] = delivered_to
        return None

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

    def _record_failure(self, row_id: int, reason: str) -> None:
        with session_scope(self._session_factory) as session:
            row = session.get(OutboxMessage, row_id)
            if row is None:
                return
            row.attempts += 1
            row.last_error = reason[:2000]
            if row.attempts >= self._settings.delivery_max_attempts:
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
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as error:
                log_event(logger, "delivery.relay_error", logging.ERROR, error=type(error).__name__)
            stop.wait(poll_seconds)


def retry_failed(session: Session, outbox_id: int, *, now: Any) -> bool:
    """Re-queue a failed row (``radraft outbox retry``); False if it is not failed."""
    row = session.get(OutboxMessage, outbox_id)
    if row is None or row.status != OutboxStatus.FAILED:
        return False
    row.status = OutboxStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = now
    return True

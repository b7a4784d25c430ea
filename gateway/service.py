"""The gateway process: the SCP, the completion check and the outbox relay, started and stopped
together (``radraft gateway``, and inside ``radraft serve``)."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.completion import run_completion_until
from gateway.drain import drain_associations
from gateway.intake import intake_for
from gateway.janitor import INCOMING_MAX_AGE_SECONDS, Janitor
from gateway.janitor_doorbell import Doorbell, doorbell_address, ring
from gateway.order_listener import OrderListener
from gateway.patient_merges import PatientMerges
from gateway.receiving import ReceptionLimits, receive_into
from gateway.redelivery import QueueDepth
from gateway.scp import build_application_entity, event_handlers
from gateway.spool import Spool
from radraft.logs import log_event
from radraft.outbox import CeleryOutboxRelay, Publisher
from radraft.settings import Settings
from radraft.tls import server_context

logger = logging.getLogger(__name__)

COMPLETION_POLL_SECONDS = 0.25


class Gateway:
    """Runs the DICOM SCP plus its background loops until ``stop``.

    ``ingest_only`` gateways (the extra processes of ``radraft gateway --processes N``) run the
    SCP alone, on a port they share with ``reuse_port``; one full gateway runs the completion
    check, the outbox relay, the clean-up and HL7 order intake for all of them.
    """

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        publish: Publisher,
        *,
        ingest_only: bool = False,
        reuse_port: bool = False,
        queue_depth: QueueDepth | None = None,
    ) -> None:
        self._settings = settings
        self._queue_depth = queue_depth
        self._reuse_port = reuse_port
        self._session_factory = session_factory
        self.spool = Spool(settings.spool_dir, settings.data_dir / "incoming")
        self._stop = threading.Event()
        self._janitor = (
            None if ingest_only else Janitor(settings, session_factory, self.spool, self._stop)
        )
        self._bell_address = doorbell_address(settings.data_dir)
        self._doorbell: Doorbell | None = None
        self._intake = intake_for(
            settings,
            session_factory,
            self.spool,
            on_short_of_space=(
                self._janitor.wake
                if self._janitor is not None
                else functools.partial(ring, self._bell_address)
            ),
        )
        self._relay = CeleryOutboxRelay(
            session_factory, publish, max_backoff_seconds=settings.outbox_max_backoff_seconds
        )
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._tls_server: Any = None
        self.order_listener: OrderListener | None = None
        self.tls_order_listener: OrderListener | None = None

    @property
    def port(self) -> int:
        """The bound DICOM port (useful when the setting is 0 = any free port)."""
        return int(self._server.server_address[1])

    @property
    def tls_port(self) -> int | None:
        """The bound DICOM TLS port, or None when the gateway has none."""
        return int(self._tls_server.server_address[1]) if self._tls_server is not None else None

    @property
    def open_associations(self) -> int:
        """Associations being served now (past their request), on either DICOM port."""
        servers = (self._server, self._tls_server)
        return sum(len(server.active_associations) for server in servers if server is not None)

    def start(self) -> None:
        """Bind the SCP and start the loops; returns at once."""
        receive_into(
            self.spool.incoming,
            ReceptionLimits(
                max_file_bytes=self._settings.dicom_max_instance_bytes,
                min_free_bytes=self._settings.spool_min_free_bytes,
            ),
        )
        removed = self.spool.clean_incoming(older_than_seconds=INCOMING_MAX_AGE_SECONDS)
        if removed:
            log_event(logger, "gateway.incoming_cleaned", files=removed)
        ae = build_application_entity(self._settings, reuse_port=self._reuse_port)
        self._server = ae.start_server(
            (self._settings.dicom_host, self._settings.dicom_port),
            block=False,
            evt_handlers=event_handlers(self._intake, max_pdu_size=self._settings.max_pdu_size),
        )
        if self._settings.dicom_tls_port is not None:
            # The same AE and handlers behind TLS (PS3.15 BCP 195); the plain port stays.
            self._tls_server = ae.start_server(
                (self._settings.dicom_host, self._settings.dicom_tls_port),
                block=False,
                evt_handlers=event_handlers(self._intake, max_pdu_size=self._settings.max_pdu_size),
                ssl_context=server_context(self._settings),
            )
        if self._janitor is None:  # an ingest-only process
            log_event(logger, "gateway.started", ae_title=self._settings.ae_title,
                      port=self.port, role="ingest")  # fmt: skip
            return
        self._threads = [
            threading.Thread(
                target=run_completion_until,
                args=(self._stop, self._session_factory),
                kwargs={
                    "stable_seconds": self._settings.stable_seconds,
                    "poll_seconds": COMPLETION_POLL_SECONDS,
                    "job_lease_seconds": self._settings.job_lease_seconds,
                    "queue_depth": self._queue_depth,
                },
                name="radraft-completion",
                daemon=True,
            ),
            threading.Thread(
                target=self._relay.run_until,
                args=(self._stop, self._settings.outbox_poll_seconds),
                name="radraft-outbox-relay",
                daemon=True,
            ),
            threading.Thread(target=self._janitor.run, name="radraft-janitor", daemon=True),
        ]
        if self._settings.spool_target_free_bytes is not None:  # ingest-only processes ring
            self._doorbell = Doorbell(self._bell_address, self._janitor.wake)
        for thread in self._threads:
            thread.start()
        for port, tls in (
            (self._settings.hl7_listen_port, None),
            (self._settings.hl7_tls_listen_port, self._settings),
        ):
            if port is None:
                continue
            listener = OrderListener(
                self._session_factory,
                self._settings.hl7_listen_host,
                port,
                max_message_bytes=self._settings.hl7_max_message_bytes,
                frame_timeout=self._settings.hl7_frame_timeout_seconds,
                max_connections=self._settings.hl7_max_connections,
                ssl_context=server_context(tls) if tls is not None else None,
                allowed_senders=self._settings.hl7_allowed_senders,
                merges=(
                    PatientMerges(
                        self._session_factory,
                        self.spool,
                        self._settings.hl7_assigning_authority,
                    )
                    if self._settings.hl7_patient_merges
                    else None
                ),
            )
            listener.start()
            if tls is None:
                self.order_listener = listener
            else:
                self.tls_order_listener = listener
        log_event(logger, "gateway.started", ae_title=self._settings.ae_title, port=self.port,
                  role="full")  # fmt: skip

    def stop(self) -> None:
        """Stop accepting associations, let those under way finish (``gateway.drain``), finish
        the loops and release the ports."""
        for listener in (self.order_listener, self.tls_order_listener):
            if listener is not None:
                listener.stop()
        servers = [server for server in (self._server, self._tls_server) if server is not None]
        for server in servers:
            server.shutdown()
        drain_associations(
            lambda: [
                association for server in servers for association in server.active_associations
            ],
            self._settings.dicom_drain_seconds,
        )
        self._stop.set()
        if self._doorbell is not None:
            self._doorbell.close()
        if self._janitor is not None:
            self._janitor.wake()
        for thread in self._threads:
            thread.join(timeout=10)
        log_event(logger, "gateway.stopped")

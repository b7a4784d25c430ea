"""SQLAlchemy 2 models of the whole workflow, shared by gateway, worker and reporting.

Timestamps are timezone-aware UTC (SQLite stores them naive; ``UTCDateTime`` restores the zone).
Enumerations are stored as their string values so that migrations stay portable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import coalesce
from sqlalchemy.types import TypeDecorator

from radraft.enums import (
    Arm,
    JobStatus,
    OrderControl,
    OutboxChannel,
    OutboxStatus,
    ReadStatus,
    ReportState,
    Role,
    StudyStatus,
    TimingEventType,
)
from radraft.timeutil import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)


def closed_set(enum: type[StrEnum], length: int) -> Enum:
    """A closed set stored as its values in a VARCHAR (no database enum type, so migrations
    stay portable and adding a member needs no DDL); rows come back as members, and writing a
    value outside the set fails before it reaches the database."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime that comes back aware (and UTC) on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use radraft.timeutil.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention Alembic's batch mode needs on SQLite."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        dict[str, str]: JSON,
        list[str]: JSON,
    }


class Study(Base):
    """One DICOM study (Study Instance UID) and where it stands in radraft."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str | None] = mapped_column(String(324))
    patient_birth_date: Mapped[str | None] = mapped_column(String(8))
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(16))
    study_description: Mapped[str | None] = mapped_column(String(64))
    referring_physician_name: Mapped[str | None] = mapped_column(String(324))
    reason_for_requested_procedure: Mapped[str | None] = mapped_column(Text)
    requested_procedure_description: Mapped[str | None] = mapped_column(String(64))
    admitting_diagnoses: Mapped[str | None] = mapped_column(Text)
    issuer_of_patient_id: Mapped[str | None] = mapped_column(String(64))
    """Issuer of Patient ID (0010,0021): the assigning authority of ``patient_id`` if sent."""
    requested_procedure_id: Mapped[str | None] = mapped_column(String(16))
    dicom_study_id: Mapped[str | None] = mapped_column(String(16))
    """Study ID (0020,0010), copied into the SR."""
    procedure_code: Mapped[dict[str, str] | None]
    """The study's procedure as a code (``code``, ``scheme``, ``meaning``) from Procedure Code
    Sequence or Requested Procedure Code Sequence; OBR-4 and the SR's Procedure reported."""
    timezone_offset: Mapped[str | None] = mapped_column(String(5))
    """Timezone Offset From UTC (0008,0201) of the source's dates and times (``+HHMM``)."""
    status: Mapped[StudyStatus] = mapped_column(
        closed_set(StudyStatus, 32), default=StudyStatus.RECEIVING, index=True
    )
    eligible: Mapped[bool | None] = mapped_column(Boolean)
    eligibility_reason: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    content_version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped whenever an instance with a new SOP Instance UID arrives."""
    completed_version: Mapped[int] = mapped_column(Integer, default=0)
    """The content version the completion check last acted on (queued a job or refused)."""
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]
    identity_disputed_at: Mapped[datetime | None]
    """Since when the sender has contradicted this study's Patient ID (an instance of it refused
    under another one): no signing, no delivery until confirmed (``radraft.identity_dispute``)."""
    withdrawn_at: Mapped[datetime | None]
    """When an administrator found radraft's copy to be the wrong patient's and withdrew its
    reports: nothing more is written or sent for it but the withdrawals (``radraft.withdrawal``)."""
    claimed_patient: Mapped[dict[str, str] | None]
    """The patient module (``PATIENT_FIELDS``) of the latest instance refused because it named
    another Patient ID: what a correction at the sender says, adopted only by an administrator
    (``radraft.patient_correction``)."""
    patient_corrections: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many times an administrator moved the study to the patient its sender named; part of
    each SR's SOP Instance UID, so an SR issued again under the corrected patient is new."""
    corrected_through_outbox_id: Mapped[int | None]
    """SRs and ORUs queued up to this outbox row were built for the patient before the latest
    correction: never sent (one already on its way arrives, and the correction's withdrawal,
    queued behind it, takes it back)."""
    awaited_rejections: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many instances rejection notes named before they arrived (``AwaitedRejection``):
    only while this is not 0 does the recording of a new instance look for one."""
    patient_from_adt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The Patient module was set by the ADT feed (a merge or an update, ``radraft.patient_merge``):
    an instance that arrives later with the modality's older values files under these, not
    over them (``gateway.recording``)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[list[Series]] = relationship(back_populates="study", order_by="Series.id")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="study", order_by="Instance.id", viewonly=True
    )
    jobs: Mapped[list[DraftingJob]] = relationship(
        back_populates="study", order_by="DraftingJob.id"
    )
    reports: Mapped[list[Report]] = relationship(back_populates="study", order_by="Report.id")


class Series(Base):
    """One series of a study."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[str | None] = mapped_column(String(12))
    series_description: Mapped[str | None] = mapped_column(String(64))
    body_part_examined: Mapped[str | None] = mapped_column(String(64))

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="series", order_by="Instance.id"
    )


class Instance(Base):
    """One received SOP instance: where its bytes are and what the classifier read from it."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    spool_path: Mapped[str] = mapped_column(String(1024))
    """Path relative to the spool folder."""
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part_examined: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(16))
    """Classified view: PA, AP, LATERAL or None when no tag told."""
    view_source: Mapped[str | None] = mapped_column(String(64))
    is_chest: Mapped[bool] = mapped_column(Boolean, default=False)
    classification_reason: Mapped[str] = mapped_column(Text, default="")
    photometric_interpretation: Mapped[str | None] = mapped_column(String(16))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    instance_number: Mapped[str | None] = mapped_column(String(12))
    calling_ae_title: Mapped[str | None] = mapped_column(String(16))
    """The sender's AE title, or ``STOW-RS`` for an instance stored over DICOMweb."""
    origin: Mapped[str | None] = mapped_column(String(1024))
    """The DICOMweb root that holds the file (``RADRAFT_DICOMWEB_BASE_URL`` of the installation
    that received it); None: only the spool of the receiving host has it."""
    receive_count: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    purged_at: Mapped[datetime | None]
    """When spool retention deleted the file (``gateway.retention``); the row stays, so the study,
    its SR evidence and its history still name the instance. A re-send brings the file back."""
    rejected_at: Mapped[datetime | None]
    """When an IHE IOCM rejection note from the PACS or the modality rejected the instance
    (``radraft.image_rejection``): never drafted from or served again, even if re-sent."""
    rejection_code: Mapped[str | None] = mapped_column(String(16))
    """The note's title (DCM code: 113001 quality, 113037 patient safety, 113038 worklist
    entry, 113039 retention)."""

    study: Mapped[Study] = relationship(back_populates="instances", viewonly=True)
    series: Mapped[Series] = relationship(back_populates="instances")


class AwaitedRejection(Base):
    """An instance a rejection note named before radraft received it: it is rejected as it
    arrives (``radraft.image_rejection``), as a forwarding PACS may send the note first."""

    __tablename__ = "awaited_rejections"
    __table_args__ = (UniqueConstraint("study_id", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    rejection_code: Mapped[str] = mapped_column(String(16))
    noted_at: Mapped[datetime] = mapped_column(default=utcnow)


class PatientMergeRecord(Base):
    """A patient merge radraft was told of (ADT^A40 or A47), kept whether or not it held a study
    of the prior identifier then: images a modality sends later under that identifier, and
    orders that name it, follow the merge (``radraft.merge_history``)."""

    __tablename__ = "patient_merges"

    id: Mapped[int] = mapped_column(primary_key=True)
    prior_patient_id: Mapped[str] = mapped_column(String(64), index=True)
    prior_issuer: Mapped[str] = mapped_column(String(64), default="")
    """MRG-1's assigning authority (empty: not given)."""
    patient: Mapped[dict[str, str]]
    """The surviving patient's Patient module as the ADT said it (an empty value: not said)."""
    event: Mapped[str] = mapped_column(String(8))
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)


class RestoreRecord(Base):
    """A backup restored into this database (``radraft backup restore``), with the highest
    report revision and outbox row it held.

    Identifiers radraft sends out are derived from row numbers: an SR's SOP Instance UID from
    its study and revision, an ORU's MSH-10 from its outbox row. A restore forgets the rows made
    after the backup and issues their numbers again, so without this record a new revision would
    go out under the UID of a lost one the PACS already holds (and files once), and a new ORU
    under a control ID the RIS has seen. Rows numbered past a restore's boundary carry how many
    restores lie below them (``radraft.restore_epochs``); rows at or below keep their
    identifiers."""

    __tablename__ = "restores"

    id: Mapped[int] = mapped_column(primary_key=True)
    restored_at: Mapped[datetime] = mapped_column(default=utcnow)
    backup_created_at: Mapped[str] = mapped_column(String(64))
    revision_boundary: Mapped[int] = mapped_column(BigInteger)
    outbox_boundary: Mapped[int] = mapped_column(BigInteger)


class DraftingJob(Base):
    """One request to draft a study at a given content version; its key makes queuing idempotent."""

    __tablename__ = "drafting_jobs"
    __table_args__ = (UniqueConstraint("study_id", "content_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    content_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[JobStatus] = mapped_column(
        closed_set(JobStatus, 32), default=JobStatus.QUEUED, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Deliveries to a worker, counted in the database so a poison study cannot loop forever."""
    worker: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    """Renewed by the worker while it drafts; a stale heartbeat means the worker is gone."""
    finished_at: Mapped[datetime | None]

    study: Mapped[Study] = relationship(back_populates="jobs")

    def _heard_from_since(self, cutoff: datetime) -> bool:
        last = self.heartbeat_at if self.heartbeat_at is not None else self.started_at
        return last is not None and last >= cutoff

    def _heard_from_since_in_sql(cls, cutoff: datetime) -> ColumnElement[bool]:
        return coalesce(cls.heartbeat_at, cls.started_at) >= cutoff

    heard_from_since = hybrid_method(_heard_from_since, _heard_from_since_in_sql)
    """Whether the job's worker showed it was alive at or after a cutoff: its heartbeat, else its
    claim.

    The lease rule lives here once, for the gateway (in SQL: a running job not heard from since a
    lease ago has lost its worker and is published again) and for the worker (in Python: a second
    copy of a message leaves a job heard from within the lease alone).
    """


class User(Base):
    """A person who logs in to the web app."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[Role] = mapped_column(closed_set(Role, 16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginSession(Base):
    """A web login, so that logging out ends it on the server too.

    The signed session cookie only names the login (a random token, stored here as its digest);
    a cookie copied before logout names an ended login and is refused.
    """

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class Report(Base):
    """The report of a study; ``version`` is the optimistic-concurrency counter."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True, unique=True
    )
    """One report per study, whoever writes first (a unique index, and the study row lock)."""
    state: Mapped[ReportState] = mapped_column(closed_set(ReportState, 16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship(back_populates="reports")
    revisions: Mapped[list[ReportRevision]] = relationship(
        back_populates="report", order_by="ReportRevision.number"
    )


class ReportRevision(Base):
    """Full text of a report at one point of its life, who wrote it and, for drafts, how."""

    __tablename__ = "report_revisions"
    __table_args__ = (UniqueConstraint("report_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[ReportState] = mapped_column(closed_set(ReportState, 16))
    findings: Mapped[str] = mapped_column(Text, default="")
    impression: Mapped[str] = mapped_column(Text, default="")
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    author_role: Mapped[Role | None] = mapped_column(closed_set(Role, 16))
    drafting_job_id: Mapped[int | None] = mapped_column(ForeignKey("drafting_jobs.id"), unique=True)
    """The job that wrote a model draft; unique, so a job that runs twice stores one draft."""
    model_name: Mapped[str | None] = mapped_column(String(255))
    model_revision: Mapped[str | None] = mapped_column(String(255))
    model_weights_hash: Mapped[str | None] = mapped_column(String(128))
    demo_model: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt: Mapped[str | None] = mapped_column(Text)
    generation: Mapped[dict[str, Any] | None]
    """Decoding parameters, token counts and timings of a model draft."""
    sr_sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    report: Mapped[Report] = relationship(back_populates="revisions")


class EditSession(Base):
    """One reader's continuous work on one report (a reload resumes it)."""

    __tablename__ = "edit_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[Role] = mapped_column(closed_set(Role, 16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    study_read_id: Mapped[int | None] = mapped_column(
        ForeignKey("study_reads.id", ondelete="CASCADE"), index=True
    )
    """Set for a read of a timing study (then ``report_id`` is the case's clinical report)."""
    autosave_findings: Mapped[str | None] = mapped_column(Text)
    """Work in progress, saved by the page as the reader types; not a revision."""
    autosave_impression: Mapped[str | None] = mapped_column(Text)
    autosave_base_version: Mapped[int | None] = mapped_column(Integer)
    """The report version the work in progress started from (stale once another edit lands)."""
    autosaved_at: Mapped[datetime | None]


class TimingEvent(Base):
    """An append-only timing event posted by the browser, stamped by both clocks."""

    __tablename__ = "timing_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    edit_session_id: Mapped[int] = mapped_column(
        ForeignKey("edit_sessions.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[TimingEventType] = mapped_column(closed_set(TimingEventType, 32))
    client_monotonic_ms: Mapped[float] = mapped_column(Float)
    server_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any] | None]


class Order(Base):
    """An HL7 order (ORM^O01 / OMI^O23), matched to a study by accession number and patient."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    accession_number: Mapped[str] = mapped_column(String(64), index=True)
    placer_order_number: Mapped[str | None] = mapped_column(String(64))
    filler_order_number: Mapped[str | None] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(16))
    order_control: Mapped[OrderControl] = mapped_column(
        closed_set(OrderControl, 2), default=OrderControl.NEW, server_default="NW"
    )
    """ORC-1: NW, XO, XX give details; CA, OC, CR, DC, OD withdraw the order (radraft.orders)."""
    reason_for_exam: Mapped[str | None] = mapped_column(Text)
    procedure: Mapped[dict[str, str] | None]
    """OBR-4 Universal Service Identifier as ``code``, ``meaning`` and ``scheme``."""
    patient_class: Mapped[str | None] = mapped_column(String(8))
    """PV1-2 Patient Class (E, I, O, P, R, B, U...), echoed in the ORU's PV1-2."""
    patient_ids: Mapped[list[str] | None]
    """The ID (CX.1) of each PID-3 repetition: the order stands for a study only if one of them
    is the study's Patient ID (``radraft.orders.names_patient``)."""
    raw_message: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Base):
    """Work for a relay, written in the same transaction as the state change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "channel", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[OutboxChannel] = mapped_column(closed_set(OutboxChannel, 16))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("studies.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict[str, Any]]
    status: Mapped[OutboxStatus] = mapped_column(
        closed_set(OutboxStatus, 16), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who viewed or changed what; a table, not a log, so it holds ids and never report text."""

    __tablename__ = "audit_log"
    # Every report view and DICOMweb request adds a row, so the table grows without end: the
    # metrics count by action, and an auditor asks "who saw this study or report".
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None]


class ReaderStudy(Base):
    """A timing study: its protocol (as given), seed and status."""

    __tablename__ = "reader_studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    protocol: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StudyReader(Base):
    """A reader of a timing study, with the role they read as."""

    __tablename__ = "study_readers"
    __table_args__ = (UniqueConstraint("reader_study_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_study_id: Mapped[int] = mapped_column(
        ForeignKey("reader_studies.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role: Mapped[Role] = mapped_column(closed_set(Role, 16))


class StudyCase(Base):
    """A radraft study in a timing study's case pool; practice cases are never analysed."""

    __tablename__ = "study_cases"
    __table_args__ = (UniqueConstraint("reader_study_id", "study_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_study_id: Mapped[int] = mapped_column(
        ForeignKey("reader_studies.id", ondelete="CASCADE"), index=True
    )
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    practice: Mapped[bool] = mapped_column(Boolean, default=False)
    model_findings: Mapped[str] = mapped_column(Text, default="")
    """The model draft at enrolment, kept so the shown draft cannot change during the study."""
    model_impression: Mapped[str] = mapped_column(Text, default="")
    model_revision_id: Mapped[int | None] = mapped_column(ForeignKey("report_revisions.id"))


class StudyRead(Base):
    """One assigned read: a reader, a case, an arm, a position; its text and feedback.

    ``draft_*`` is what the reader is shown (normalised, source hidden); a chained arm waits
    for ``source_read_id`` (the resident's read of the same case) to be submitted.
    """

    __tablename__ = "study_reads"
    __table_args__ = (UniqueConstraint("reader_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_study_id: Mapped[int] = mapped_column(
        ForeignKey("reader_studies.id", ondelete="CASCADE"), index=True
    )
    reader_id: Mapped[int] = mapped_column(ForeignKey("study_readers.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_cases.id"))
    arm: Mapped[Arm] = mapped_column(closed_set(Arm, 32))
    position: Mapped[int] = mapped_column(Integer)
    practice: Mapped[bool] = mapped_column(Boolean, default=False)
    source_read_id: Mapped[int | None] = mapped_column(ForeignKey("study_reads.id"))
    status: Mapped[ReadStatus] = mapped_column(closed_set(ReadStatus, 16))
    draft_findings: Mapped[str | None] = mapped_column(Text)
    draft_impression: Mapped[str | None] = mapped_column(Text)
    final_findings: Mapped[str | None] = mapped_column(Text)
    final_impression: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime | None]
    feedback: Mapped[dict[str, Any] | None]

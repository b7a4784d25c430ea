"""Closed sets shared by the services: stored as their string values in the database."""

from enum import StrEnum


class StudyStatus(StrEnum):
    """Where a study stands in radraft's workflow (shown by ``/api/studies`` and the worklist)."""

    RECEIVING = "receiving"
    """Instances are arriving; the study is not yet stable for ``stable_seconds``."""
    NOT_ELIGIBLE = "not_eligible"
    """Stored but not drafted (not a chest radiograph); ``eligibility_reason`` says why."""
    QUEUED = "queued"
    """A drafting job is in the outbox or the broker, waiting for a worker."""
    DRAFTING = "drafting"
    """A worker has taken the drafting job."""
    DRAFTED = "drafted"
    """A model draft exists."""
    PRELIMINARY = "preliminary"
    """A resident submitted the report."""
    FINAL = "final"
    """An attending signed the report."""
    AMENDED = "amended"
    """The signed report was amended."""
    FAILED = "failed"
    """Drafting failed permanently (dead letter); ``last_error`` on the job says why."""


class JobStatus(StrEnum):
    """State of one drafting job (one per study content version)."""

    QUEUED = "queued"
    """Written with its outbox row; not yet taken by a worker."""
    RUNNING = "running"
    """A worker took it; ``attempts`` counts deliveries so a poison study cannot loop forever."""
    SUCCEEDED = "succeeded"
    """The draft is stored."""
    FAILED = "failed"
    """Gave up after the retry budget or on a permanent error; ``last_error`` says why."""
    SUPERSEDED = "superseded"
    """Not needed any more: newer instances arrived before it ran (a newer job replaces it), or
    the study's reports were withdrawn (``last_error`` says so)."""


class ReportState(StrEnum):
    """Report lifecycle (DESIGN.md): each transition stores a revision."""

    DRAFTED = "DRAFTED"
    """Written by the model, not reviewed by a person."""
    PRELIMINARY = "PRELIMINARY"
    """Submitted by a resident."""
    FINAL = "FINAL"
    """Signed by an attending."""
    AMENDED = "AMENDED"
    """Changed after signing."""

    @property
    def is_signed(self) -> bool:
        """Signed by an attending (final or amended): verified in the SR, F or C in HL7."""
        return self in (ReportState.FINAL, ReportState.AMENDED)


class Role(StrEnum):
    """Web app roles."""

    RESIDENT = "resident"
    ATTENDING = "attending"
    ADMIN = "admin"
    RESEARCHER = "researcher"


class OutboxChannel(StrEnum):
    """Which relay delivers an outbox row."""

    CELERY = "celery"
    """A Celery task published by name (payload: task name, args, queue)."""
    DICOM = "dicom"
    """An SR sent with C-STORE to the configured PACS."""
    HL7 = "hl7"
    """An HL7 v2 message sent over MLLP."""


class OutboxStatus(StrEnum):
    """Delivery state of an outbox row."""

    PENDING = "pending"
    """Waiting for its first or next attempt (``next_attempt_at``)."""
    DONE = "done"
    """The peer (broker, PACS, RIS) accepted it."""
    FAILED = "failed"
    """The retry budget is spent; an operator can re-queue it."""


class OrderControl(StrEnum):
    """ORC-1 Order Control codes radraft acts on (HL7 v2.5.1 table 0119)."""

    NEW = "NW"
    """New order."""
    CHANGE = "XO"
    """Change order/service request: the newest details replace the old ones."""
    CHANGED = "XX"
    """Order/service changed, unsolicited (from the filler)."""
    STATUS_CHANGED = "SC"
    """Status changed: informational; details stay as they were."""
    CANCEL = "CA"
    """Cancel order/service request."""
    CANCELED = "OC"
    """Order/service canceled (by the filler)."""
    CANCELED_AS_REQUESTED = "CR"
    """Canceled as requested."""
    DISCONTINUE = "DC"
    """Discontinue order/service request."""
    DISCONTINUED = "OD"
    """Order/service discontinued."""

    @property
    def withdraws(self) -> bool:
        """The order no longer stands: it is never an indication or an OBR-4 again."""
        return self in (
            OrderControl.CANCEL,
            OrderControl.CANCELED,
            OrderControl.CANCELED_AS_REQUESTED,
            OrderControl.DISCONTINUE,
            OrderControl.DISCONTINUED,
        )

    @property
    def gives_details(self) -> bool:
        """The message carries the order's current details (reason, procedure, class)."""
        return self in (OrderControl.NEW, OrderControl.CHANGE, OrderControl.CHANGED)


class TimingEventType(StrEnum):
    """What the editing page reports about a reader's work (stored raw, derived later)."""

    OPENED = "opened"
    IMAGES_RENDERED = "images_rendered"
    DRAFT_SHOWN = "draft_shown"
    FOCUS = "focus"
    BLUR = "blur"
    VISIBILITY = "visibility"
    FIRST_INPUT = "first_input"
    INPUT = "input"
    IDLE_START = "idle_start"
    IDLE_END = "idle_end"
    SUBMIT = "submit"


class Arm(StrEnum):
    """A timing study's arm: who reads, starting from what."""

    RESIDENT_SCRATCH = "resident_scratch"
    """A resident writes the report from a blank editor (or the site's template)."""
    RESIDENT_MODEL = "resident_model"
    """A resident edits the model draft."""
    ATTENDING_RESIDENT_SCRATCH = "attending_resident_scratch"
    """An attending edits a resident's from-scratch report of the case."""
    ATTENDING_MODEL = "attending_model"
    """An attending edits the raw model draft."""
    ATTENDING_RESIDENT_MODEL = "attending_resident_model"
    """An attending edits a resident's edit of the model draft (the real pipeline)."""


class ReadStatus(StrEnum):
    """Where one assigned read of a timing study stands."""

    WAITING = "waiting"
    """A chained read waiting for the resident's read it starts from."""
    READY = "ready"
    """The reader can open and edit it."""
    DONE = "done"
    """Submitted (feedback may still be due)."""


class BackupKind(StrEnum):
    """What a backup holds, as its audit row (``backup.created``) and ``/metrics`` say."""

    FULL = "full"
    """The database and the spooled files its rows name."""
    FILES_ONLY = "files_only"
    """The files only (``--files-only``): the database is backed up by the department's tool."""


class AuditAction(StrEnum):
    """Audit actions written by more than one service (the web app's own are named in place)."""

    IDENTITY_CONFLICT = "instance.identity_conflict"
    """The gateway refused an instance whose UIDs are known with another patient, study,
    series or SOP class; ``details.differs`` names the attributes, never their values."""
    ORDER_OF_OTHER_PATIENT = "order.other_patient"
    """Drafting found a standing order with the study's accession number that names another
    patient (or none) in PID-3, and used nothing of it; the study is the object."""
    DICOMWEB_QUERY = "dicomweb.query"
    """A QIDO-RS search; ``details`` names the matching keys (never their values) and counts
    the results."""
    DICOMWEB_RETRIEVE = "dicomweb.retrieve"
    """A WADO-RS retrieval of a study, series or instance (files, metadata, frames, rendered)."""
    DICOMWEB_STORE = "dicomweb.store"
    """A STOW-RS request; ``details`` counts the instances stored and failed."""
    BACKUP_CREATED = "backup.created"
    """``radraft backup create`` copied the database and the spool out (every patient's data,
    so who and when is kept); ``details``: its ``kind`` (``BackupKind``), database and counts;
    ``/metrics`` shows the newest of each kind."""
    BACKUP_RESTORED = "backup.restored"
    """``radraft backup restore`` put a backup back; ``details``: when that backup was made."""

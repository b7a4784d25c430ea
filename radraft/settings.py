"""Settings of every radraft service, read from ``RADRAFT_*`` environment variables or a .env file.

The names are a public contract (README, compose.yaml, other issues), so they are flat
(``RADRAFT_DICOM_PORT``) rather than nested. Settings are built once in each entry point and
passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from radraft.errors import ConfigurationError
from radraft.model_options import Device, Isolation, ModelKind, Switch

ENV_PREFIX = "RADRAFT_"
DICOM_DESTINATION = re.compile(r"^(?P<ae>[^@\\]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")
MLLP_DESTINATION = re.compile(r"^(?P<host>[^:@]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class ModelChoice:
    """``RADRAFT_MODEL`` parsed: the kind and, for ``hf``, the checkpoint."""

    kind: ModelKind
    source: str = ""

    @classmethod
    def parse(cls, text: str) -> ModelChoice:
        """Read ``demo``, ``chexagent`` or ``hf:<path or hub id>``; a ValueError says what to do."""
        if text.startswith("hf:"):
            source = text.removeprefix("hf:").strip()
            if not source:
                raise ValueError("hf: needs a checkpoint, e.g. hf:/models/medgemma")
            return cls(ModelKind.HF, source)
        try:
            return cls(ModelKind(text.strip()))
        except ValueError:
            raise ValueError(
                f"unknown model {text!r}: use demo, chexagent or hf:<path or hub id>"
            ) from None

    def __str__(self) -> str:
        return f"hf:{self.source}" if self.kind == ModelKind.HF else self.kind.value


@dataclass(frozen=True)
class DicomDestination:
    """A DICOM peer for C-STORE: called AE title, host, port (``AE@host:port`` in settings)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> DicomDestination:
        """Read ``AE@host:port``; a ValueError names what is wrong."""
        match = DICOM_DESTINATION.match(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"{text!r} is not AE@host:port (AE title up to 16 characters)")
        return cls(match["ae"].strip(), match["host"], int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class MllpDestination:
    """An MLLP peer (a RIS or EHR interface engine): host and port (``host:port``)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> MllpDestination:
        """Read ``host:port``; a ValueError names what is wrong."""
        match = MLLP_DESTINATION.match(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"{text!r} is not host:port")
        return cls(match["host"], int(match["port"]))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Settings(BaseSettings):
    """All of radraft's settings; each field documents its default and its effect."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="forbid",
        frozen=True,
    )

    # --- storage -------------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("radraft-data"),
        description="Holds the SQLite database, the DICOM spool and the embedded broker's files.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/radraft.db (embedded mode).",
    )
    database_answer_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        le=86400,
        description="A Postgres server that has not answered a statement, commit or ping "
        "within this long is given up (its connection is closed and the caller sees the "
        "database as down), as when its process or storage froze while its host still answers "
        "TCP; 0 waits without limit.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker URL (e.g. redis://127.0.0.1:6379/0); default: kombu's "
        "filesystem transport under <data_dir>/broker, which needs no server.",
    )

    # --- DICOM gateway -------------------------------------------------------------------------
    ae_title: str = Field(default="RADRAFT", max_length=16, description="Our AE title.")
    dicom_host: str = Field(default="0.0.0.0", description="Address the DICOM SCP binds.")  # noqa: S104 - a DICOM node listens for modalities on the network
    dicom_port: int = Field(default=11112, ge=0, le=65535, description="DICOM SCP port.")
    allowed_calling_aes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of calling AE titles accepted; empty accepts any.",
    )
    stable_seconds: float = Field(
        default=10.0,
        ge=0,
        description="A study is complete when no new instance arrived for this long (StableAge).",
    )
    strict_body_part: bool = Field(
        default=False,
        description="If true, only images with an explicit chest Body Part Examined are drafted.",
    )
    max_pdu_size: int = Field(
        default=4 << 20,
        ge=16384,
        le=64 << 20,
        description="Longest P-DATA PDU we announce and accept, in bytes; a peer that sends a "
        "longer one is disconnected before it is read.",
    )
    dicom_drain_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="On stop (SIGTERM), associations under way get this long to finish while "
        "new connections are refused; one idle for 5 s meanwhile is aborted, and any left at "
        "the end.",
    )
    dicom_max_associations: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="Associations served at once; connections that have not yet asked for an "
        "association (A-ASSOCIATE-RQ) never count against it.",
    )
    dicom_max_waiting_connections: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Accepted DICOM connections that may wait at once, without a thread, for "
        "their A-ASSOCIATE-RQ (or TLS ClientHello); one more pushes out the one waiting longest.",
    )
    dicom_request_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="A new connection that has not sent its A-ASSOCIATE-RQ within this long is "
        "closed (the ARTIM timer), so idle sockets cannot hold the port; on the DICOM TLS port "
        "its handshake gets this long as well.",
    )
    dicom_max_inflated_bytes: int = Field(
        default=256 << 20,
        ge=1 << 20,
        description="A deflated data set that inflates past this is refused (0xC000) while it "
        "is inflated, never held in memory (a 1 MB bomb can inflate to 1 GB).",
    )
    dicom_max_elements: int = Field(
        default=250_000,
        ge=1_000,
        description="A data set with more elements and sequence items than this is refused "
        "(0xC000) before its header is parsed: pydicom keeps every element of a header in memory "
        "(about 300 bytes each), so a file of millions of tiny elements is a memory bomb.",
    )
    spool_min_free_bytes: int = Field(
        default=1 << 30,
        ge=0,
        description="C-STORE is refused with 0xA700 (Out of Resources) while the spool's "
        "filesystem has less free space than this, so a full disk never corrupts anything; a "
        "reception that would take it below stops being written (checked every 4 MiB).",
    )
    spool_retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Delete a study's spooled files once it is settled (signed, amended, not "
        "eligible, or withdrawn; never while disputed, unsigned, with an SR to send, or a "
        "timing-study case with reads to do) and "
        "nothing happened to it for this many days: no instance received or re-sent, no report "
        "revision. Rows stay; a re-sent instance brings its file back. Unset: keep every file.",
    )
    spool_target_free_bytes: int | None = Field(
        default=None,
        ge=1,
        description="When the spool's disk has less free space than this (checked every 30 s "
        "and whenever an instance arrives below it), "
        "the gateway purges settled studies before their retention period, by the same rule "
        "but idle only an hour, the longest idle first, until it has this much again; above "
        "RADRAFT_SPOOL_MIN_FREE_BYTES, so that receiving never stops while anything could go. "
        "Unset: no purging for space.",
    )
    dicom_max_instance_bytes: int = Field(
        default=2 << 30,
        ge=1 << 20,
        description="Largest instance file (header and data set) taken by C-STORE or STOW-RS: "
        "a larger one stops being written as it arrives and is refused with 0xA700 (Out of "
        "Resources), so a sender may retry it after an administrator raised this. A chest "
        "radiograph is 5-50 MB; a breast tomosynthesis or long multi-frame can pass 1 GB.",
    )

    # --- web -----------------------------------------------------------------------------------
    dicomweb_base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+[^/\s]$",
        description="This installation's DICOMweb root as workers on other hosts reach it (e.g. "
        "http://radraft-web:8000/dicomweb); recorded with every instance received here as its "
        "origin, where such a worker fetches it over WADO-RS. Unset: workers read the spool.",
    )
    stow_max_bytes: int = Field(
        default=2 << 30,
        ge=1 << 20,
        description="Largest STOW-RS request body (413 past it); also the largest part, which "
        "dicom_max_instance_bytes bounds too.",
    )
    stow_max_parts: int = Field(
        default=1000, ge=1, le=100_000, description="Most instances in one STOW-RS request."
    )
    dicomweb_fetch_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="A worker's WADO-RS fetch of one instance gives up after this long without "
        "data, and the job is retried later.",
    )
    dicomweb_fetch_min_bytes_per_second: int = Field(
        default=256 << 10,
        ge=1024,
        description="A worker's WADO-RS fetch of one instance must be whole within "
        "RADRAFT_DICOMWEB_FETCH_TIMEOUT_SECONDS plus the instance's recorded size at this "
        "rate; an origin sending slower (a byte now and then) is given up, and the job is "
        "retried later.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address the web app binds.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="Web app port.")
    tls_certfile: Path | None = Field(
        default=None,
        description="PEM certificate of radraft: the web app serves HTTPS with it, the DICOM and "
        "MLLP TLS listeners present it, and it is the client certificate radraft shows to a "
        "PACS or RIS over TLS.",
    )
    tls_keyfile: Path | None = Field(
        default=None, description="PEM private key of the certificate."
    )
    tls_ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificates that peers' certificates must chain to (the PACS and "
        "RIS radraft connects to, and clients of its TLS listeners); unset: the system's CAs.",
    )
    tls_require_client_cert: bool = Field(
        default=False,
        description="The DICOM and MLLP TLS listeners refuse clients without a certificate "
        "that chains to RADRAFT_TLS_CA_FILE.",
    )
    dicom_tls_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="DICOM over TLS (PS3.15 BCP 195 profile, TLS 1.2 or later) on this port, "
        "beside the plain port; unset = off.",
    )
    api_token: str | None = Field(
        default=None,
        description="Service token (Authorization: Bearer): the read API and DICOMweb reads, "
        "STOW-RS, and the WADO-RS fetches of workers on other hosts.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Signs session cookies; default: a random key kept in <data_dir>/secret_key.",
    )
    session_max_age_seconds: int = Field(
        default=12 * 3600, gt=0, description="Lifetime of a login session."
    )
    idle_threshold_seconds: float = Field(
        default=30.0, gt=0, description="Gaps longer than this are idle, not active reading time."
    )
    viewer_url_template: str | None = Field(
        default=None,
        description=(
            "Deep link to the site's viewer on the case page, with {study_instance_uid} and"
            " {accession_number}, e.g. https://pacs/ohif/viewer?StudyInstanceUIDs={study_instance_uid}."
        ),
    )
    http_max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="Request bodies larger than this are refused with 413 before they are "
        "read or parsed.",
    )
    http_client_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A web client that is being waited for (a TLS handshake, a request's "
        "headers, the next piece of its body, reading the response queued for it) must make "
        "progress within this long, or its connection is dropped.",
    )
    http_max_connections: int = Field(
        default=512,
        ge=1,
        le=65536,
        description="Web connections open at once, HTTPS handshakes included; more are refused "
        "as they arrive (a 503 over HTTP, closed over HTTPS).",
    )
    http_open_docs: bool = Field(
        default=False,
        description="Serve /docs and /openapi.json without a login (they describe every route).",
    )
    worklist_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often an open worklist page refreshes itself."
    )

    # --- worker and outbox ---------------------------------------------------------------------
    outbox_poll_seconds: float = Field(
        default=0.2, gt=0, description="How often the outbox relay looks for due rows."
    )
    outbox_max_backoff_seconds: float = Field(
        default=30.0, gt=0, description="Longest wait between two publish attempts of one row."
    )
    log_level: str = Field(default="INFO", description="Python logging level of the services.")
    broker_visibility_timeout: float = Field(
        default=7200.0,
        gt=0,
        description="Redis: seconds before an unacknowledged message is redelivered; keep it "
        "above the longest task and retry delay.",
    )
    job_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A running drafting job whose worker has not renewed its heartbeat (every "
        "quarter of this) for this long is presumed lost with its worker and published again "
        "(bounded by the delivery counter).",
    )

    # --- outputs (SR and HL7) -------------------------------------------------------------------
    sr_destination: Annotated[DicomDestination | None, NoDecode] = Field(
        default=None,
        description="PACS for report SRs as AE@host:port (C-STORE SCU); unset = none.",
    )
    hl7_destinations: Annotated[list[MllpDestination], NoDecode] = Field(
        default_factory=list,
        description="Comma list of host:port MLLP endpoints for ORU^R01; empty = none.",
    )
    hl7_max_message_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="Largest HL7 message (MLLP frame) accepted by order intake; a larger one "
        "closes the connection.",
    )
    hl7_frame_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="An HL7 message, once its MLLP frame has begun, must be whole within this "
        "long, or the connection is closed.",
    )
    hl7_allowed_senders: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of sending applications (MSH-3) whose orders are accepted; "
        "empty accepts any.",
    )
    hl7_patient_merges: bool = Field(
        default=False,
        description="Follow ADT patient merges (A40, A47) and updates (A08, A31) sent to the "
        "order port (studies under the prior identifier move to the surviving patient; an "
        "update's name, birth date and sex are taken); off: an ADT is refused (AR).",
    )
    hl7_max_connections: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="MLLP connections served at once on each order-intake port; past it a new "
        "one pushes out the oldest that has sent no message but ones answered AR, or is closed "
        "if all have.",
    )
    hl7_listen_port: int | None = Field(
        default=None, ge=0, le=65535, description="MLLP port of HL7 order intake; unset = off."
    )
    hl7_listen_host: str = Field(default="0.0.0.0", description="Address of HL7 order intake.")  # noqa: S104 - RIS connects over the network
    hl7_tls_listen_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="MLLP over TLS order intake on this port, beside the plain one; unset = off.",
    )
    sr_tls: bool = Field(
        default=False, description="Send SRs to RADRAFT_SR_DESTINATION over DICOM TLS."
    )
    hl7_tls: bool = Field(
        default=False, description="Send ORUs to RADRAFT_HL7_DESTINATIONS over MLLP with TLS."
    )
    hl7_send_drafts: bool = Field(
        default=True, description="Send unverified model drafts as ORU (OBR-25 R) too."
    )
    hl7_sending_application: str = Field(default="RADRAFT", description="MSH-3.")
    hl7_sending_facility: str = Field(default="", description="MSH-4.")
    hl7_receiving_application: str = Field(default="", description="MSH-5.")
    hl7_receiving_facility: str = Field(default="", description="MSH-6.")
    hl7_character_set: str = Field(
        default="UNICODE UTF-8",
        description="MSH-18 of outgoing ORUs and the encoding of their bytes (HL7 table 0211: "
        "UNICODE UTF-8, 8859/1 ... 8859/15, ASCII, GB 18030-2000, ISO IR87, KS X 1001, BIG-5).",
    )
    hl7_assigning_authority: str = Field(
        default="",
        max_length=64,
        description="PID-3.4 Assigning Authority of the patient id in ORUs (empty: the source's "
        "Issuer of Patient ID if it sent one); in ADT merges and updates, the authority whose "
        "PID-3 and MRG-1 identifier the studies are filed under (empty: the only one, or the "
        "only one typed MR).",
    )
    sr_send_drafts: bool = Field(
        default=True,
        description="Send unverified model drafts to the PACS as SRs too (signed and "
        "preliminary reports always go).",
    )
    site_timezone: str = Field(
        default="UTC",
        description="IANA timezone of the site (e.g. Europe/Berlin): the UTC offset written "
        "with SR dates (Timezone Offset From UTC) and HL7 times when the source gave none.",
    )
    institution_name: str = Field(
        default="radraft", description="Institution and verifying organization in SRs."
    )
    delivery_max_attempts: int = Field(
        default=8, ge=1, description="Delivery attempts before an output is marked failed."
    )
    delivery_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds for each wait on a PACS or RIS (the connection, its TLS "
        "handshake, each read); a whole exchange gets twice this.",
    )

    # --- model ---------------------------------------------------------------------------------
    model: Annotated[ModelChoice, NoDecode] = Field(
        default=ModelChoice(ModelKind.DEMO),
        description="Drafting backend: `demo`, `chexagent` or `hf:<local path or hub id>`.",
    )
    model_path: Path | None = Field(
        default=None,
        description="Checkpoint folder: for `demo` default <data_dir>/models/demo; for "
        "`chexagent` default the hub id StanfordAIMI/CheXagent-2-3b.",
    )
    model_isolation: Isolation = Field(
        default=Isolation.AUTO,
        description="`child` runs the model in a supervised child process (always for "
        "chexagent, whose code needs transformers 4.40.0); `auto` = child for chexagent only.",
    )
    model_python: Path | None = Field(
        default=None,
        description="Python of the child runtime's virtual environment (chexagent: "
        "<data_dir>/venvs/chexagent/bin/python, made by `radraft model setup chexagent`).",
    )
    device: Device = Field(default=Device.AUTO, description="Where the model runs.")
    static_cache: Switch = Field(
        default=Switch.AUTO,
        description=(
            "Static KV cache for generation (auto: on CUDA); with it transformers compiles the"
            " decoder's forward pass on CUDA. Identical greedy drafts either way."
        ),
    )
    compile_decoder: Switch = Field(
        default=Switch.AUTO,
        description=(
            "Compile the decoder's forward pass (torch.compile through transformers; needs the"
            " static KV cache and turns it on). auto: on CUDA; on: on any device. The worker"
            " compiles at start-up (a batch of one and one of RADRAFT_MAX_BATCH); identical"
            " greedy drafts either way. `hf` and `demo` backends only."
        ),
    )
    max_new_tokens: int = Field(
        default=200, ge=1, le=1024, description="Greedy decoding budget per section."
    )
    max_batch: int = Field(default=8, ge=1, le=256, description="Studies per forward pass.")
    generation_deadline_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A batch still generating after this long fails its studies with the "
        "reason, and the model runtime is restarted (a child is killed; an in-process model "
        "ends its worker process, which its supervisor restarts).",
    )
    batch_wait_ms: float = Field(
        default=10.0, ge=0, description="How long the batcher gathers requests for a batch."
    )
    image_size: int = Field(
        default=512, ge=32, le=4096, description="Longest side of images given to the model."
    )

    @model_validator(mode="after")
    def _space_target_above_the_floor(self) -> Settings:
        target = self.spool_target_free_bytes
        if target is not None and target <= self.spool_min_free_bytes:
            raise ValueError(
                "RADRAFT_SPOOL_TARGET_FREE_BYTES must be above RADRAFT_SPOOL_MIN_FREE_BYTES "
                "(purging starts before receiving stops)"
            )
        return self

    @model_validator(mode="after")
    def _tls_is_complete(self) -> Settings:
        listening = self.dicom_tls_port is not None or self.hl7_tls_listen_port is not None
        if listening and not (self.tls_certfile and self.tls_keyfile):
            raise ValueError("a TLS port needs RADRAFT_TLS_CERTFILE and RADRAFT_TLS_KEYFILE")
        if self.tls_require_client_cert and self.tls_ca_file is None:
            raise ValueError("RADRAFT_TLS_REQUIRE_CLIENT_CERT needs RADRAFT_TLS_CA_FILE")
        return self

    @field_validator("site_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"unknown timezone {value!r} (an IANA name such as Europe/Berlin)"
            ) from error
        return value

    @field_validator("hl7_character_set")
    @classmethod
    def _known_hl7_character_set(cls, value: str) -> str:
        from radraft.hl7text import python_codec

        python_codec(value)  # raises ValueError for a name outside HL7 table 0211
        return value

    @field_validator("allowed_calling_aes", "hl7_allowed_senders", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sr_destination", mode="before")
    @classmethod
    def _parse_dicom_destination(cls, value: object) -> object:
        return DicomDestination.parse(value) if isinstance(value, str) and value else value or None

    @field_validator("hl7_destinations", mode="before")
    @classmethod
    def _parse_mllp_destinations(cls, value: object) -> object:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        return [
            MllpDestination.parse(item) if isinstance(item, str) else item
            for item in items
            if not isinstance(item, str) or item.strip()
        ]

    @field_validator("model", mode="before")
    @classmethod
    def _parse_model(cls, value: object) -> object:
        return ModelChoice.parse(value) if isinstance(value, str) else value

    @field_serializer("model")
    def _model_text(self, value: ModelChoice) -> str:
        return str(value)

    @field_serializer("sr_destination")
    def _dicom_destination_text(self, value: DicomDestination | None) -> str | None:
        return str(value) if value is not None else None

    @field_serializer("hl7_destinations")
    def _mllp_destination_texts(self, value: list[MllpDestination]) -> list[str]:
        return [str(item) for item in value]

    @property
    def effective_database_url(self) -> str:
        """The database URL in force: the setting, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'radraft.db').resolve()}"

    @property
    def site_zone(self) -> ZoneInfo:
        """The site's timezone (``site_timezone``)."""
        return ZoneInfo(self.site_timezone)

    @property
    def secret_key_file(self) -> Path:
        """Where the web app keeps its generated session key when none is configured."""
        return self.data_dir / "secret_key"

    @property
    def spool_dir(self) -> Path:
        """Where received instances are kept, one file per SOP instance."""
        return self.data_dir / "spool"

    @property
    def broker_dir(self) -> Path:
        """Folder of the embedded filesystem broker (used when no broker_url is set)."""
        return self.data_dir / "broker"

    @property
    def embedded_broker(self) -> bool:
        """True when Celery runs over files in the data dir instead of a broker server."""
        return not self.broker_url


def refuse_unknown_environment(environ: Mapping[str, str] | None = None) -> None:
    """Fail on any ``RADRAFT_*`` variable that no setting claims.

    pydantic-settings ignores unknown environment variables (``extra="forbid"`` only covers .env
    files), so a misspelt ``RADRAFT_STABLE_SECOND`` would otherwise be silently ignored.
    """
    environ = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(key for key in environ if key.startswith(ENV_PREFIX) and key not in known)
    if unknown:
        raise ConfigurationError(
            "unknown radraft settings in the environment: " + ", ".join(unknown)
        )


def load_settings(**overrides: object) -> Settings:
    """Build the settings of one process: environment, .env file, then explicit overrides."""
    refuse_unknown_environment()
    return Settings(**overrides)  # type: ignore[arg-type]


def settings_to_environment(settings: Settings) -> dict[str, str]:
    """The ``RADRAFT_*`` variables that recreate ``settings`` in a child process."""
    environment: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            text = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        environment[ENV_PREFIX + name.upper()] = text
    return environment

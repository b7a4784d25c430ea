"""DIMSE statuses the C-STORE SCP answers (PS3.4 Annex B.2.3 and PS3.7 Annex C)."""

from enum import IntEnum


class EchoStatus(IntEnum):
    """C-ECHO response statuses (PS3.7 9.3.5)."""

    SUCCESS = 0x0000
    """The verification succeeded: the gateway is up and answers."""


class StoreStatus(IntEnum):
    """C-STORE response statuses; senders keep their copy on every failure below."""

    SUCCESS = 0x0000
    """The instance is on disk (fsync'd) and in the database."""
    DUPLICATE_SOP_INSTANCE = 0x0111
    """Failure: Duplicate SOP Instance (PS3.7 C.4). The SOP Instance UID, or the Study Instance
    UID, is already registered with another patient, study, series or SOP class; the first copy
    is kept and the conflict audited. Retrying cannot help: a person must resolve it."""
    OUT_OF_RESOURCES = 0xA700
    """Refused: Out of Resources. The spool or the database could not persist it, or it is
    larger than the instance limit (which an administrator may raise); retry later."""
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    """Error: Data Set does not match SOP Class. Identifying attributes are missing, malformed,
    contradict the request, or native Pixel Data does not fit the Image Pixel module."""
    CANNOT_UNDERSTAND = 0xC000
    """Error: Cannot Understand. The data set is truncated, not DICOM, or nested too deeply."""

"""DIMSE statuses the C-STORE SCP answers (PS3.4 Annex B.2.3 and PS3.7 Annex C)."""

from enum import IntEnum


class StoreStatus(IntEnum):
    """C-STORE response statuses; the sender retries on every failure below."""

    SUCCESS = 0x0000
    """The instance is on disk (fsync'd) and in the database."""
    OUT_OF_RESOURCES = 0xA700
    """Refused: Out of Resources. The spool or the database could not persist it; retry later."""
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    """Error: identifying attributes are missing or contradict the request's UIDs."""
    CANNOT_UNDERSTAND = 0xC000
    """Error: Cannot Understand. The data set is truncated or not DICOM."""

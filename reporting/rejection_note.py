"""The rejection note that takes a withdrawn study's SRs back from the PACS (IHE IOCM).

C-STORE cannot delete. What archives understand instead is IHE Imaging Object Change
Management's Rejection Note: a Key Object Selection document in the same study, under the same
patient, whose title gives the reason and whose evidence lists the instances to hide. dcm4chee
and most vendor neutral archives act on it (hide the instances, tell their viewers). radraft
sends one when an administrator withdraws a study whose copy here is another patient's
(``radraft study withdraw``), naming every SR of it that reached the PACS, with the title
"Rejected for Patient Safety Reasons" (DCM 113037): a report filed under the wrong patient is
that, whatever the cause upstream ("Incorrect Modality Worklist Entry", 113038, would claim one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import highdicom as hd
from pydicom import uid
from pydicom.sr.coding import Code
from pydicom.valuerep import DA, TM

from reporting.sr import (
    MANUFACTURER,
    RADRAFT_UID_PREFIX,
    EvidenceReference,
    PatientAndStudy,
    character_set_of,
    identity_header,
    reference_item,
)

REJECTED_FOR_PATIENT_SAFETY = Code("113037", "DCM", "Rejected for Patient Safety Reasons")
REJECTION_SERIES_NUMBER = 9902
REJECTION_DESCRIPTION = (
    "radraft withdrew these reports: this study's copy at radraft belonged to another patient"
)


def rejection_note_uid(study_instance_uid: str) -> str:
    """The note's SOP Instance UID: one per study, the same on every retry (the PACS keeps one)."""
    return uid.generate_uid(
        prefix=RADRAFT_UID_PREFIX, entropy_srcs=[study_instance_uid, "rejection-note"]
    )


class RejectionNote(hd.ko.KeyObjectSelectionDocument):
    """A KOS rejecting ``rejected`` (radraft's SRs of one study) for patient safety reasons."""

    def __init__(
        self,
        identity: PatientAndStudy,
        rejected: Sequence[EvidenceReference],
        *,
        moment: datetime,
        institution_name: str | None,
    ) -> None:
        if not rejected:
            raise ValueError("a rejection note names at least one instance")
        evidence = [
            identity_header(identity, rejected[0]),
            *(reference_item(reference) for reference in rejected[1:]),
        ]
        content = hd.ko.KeyObjectSelection(
            document_title=REJECTED_FOR_PATIENT_SAFETY,
            referenced_objects=evidence,
            description=REJECTION_DESCRIPTION,
        )
        study_uid = identity.study_instance_uid
        super().__init__(
            evidence=evidence,
            content=content,
            series_instance_uid=uid.generate_uid(
                prefix=RADRAFT_UID_PREFIX, entropy_srcs=[study_uid, "rejection-series"]
            ),
            series_number=REJECTION_SERIES_NUMBER,
            sop_instance_uid=rejection_note_uid(study_uid),
            instance_number=1,
            manufacturer=MANUFACTURER,
            institution_name=institution_name,
            specific_character_set=character_set_of(
                (*identity.__dict__.values(), institution_name or "", REJECTION_DESCRIPTION)
            ),
        )
        self.TimezoneOffsetFromUTC = moment.strftime("%z")
        self.ContentDate = DA(moment.strftime("%Y%m%d"))
        self.ContentTime = TM(moment.strftime("%H%M%S"))
        self.InstanceCreationDate = self.ContentDate
        self.InstanceCreationTime = self.ContentTime

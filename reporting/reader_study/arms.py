"""The arms of a timing study and what each one shows the reader."""

from __future__ import annotations

from radraft.enums import Arm, Role

ARMS_BY_ROLE: dict[Role, tuple[Arm, ...]] = {
    Role.RESIDENT: (Arm.RESIDENT_SCRATCH, Arm.RESIDENT_MODEL),
    Role.ATTENDING: (
        Arm.ATTENDING_RESIDENT_SCRATCH,
        Arm.ATTENDING_MODEL,
        Arm.ATTENDING_RESIDENT_MODEL,
    ),
}
CHAINED_SOURCE: dict[Arm, Arm] = {
    Arm.ATTENDING_RESIDENT_SCRATCH: Arm.RESIDENT_SCRATCH,
    Arm.ATTENDING_RESIDENT_MODEL: Arm.RESIDENT_MODEL,
}
"""An attending arm that edits a resident's read, and the resident arm it waits for."""
MODEL_DRAFT_ARMS = frozenset({Arm.RESIDENT_MODEL, Arm.ATTENDING_MODEL})
REFERENCE_ARM: dict[Role, Arm] = {
    Role.RESIDENT: Arm.RESIDENT_SCRATCH,
    Role.ATTENDING: Arm.ATTENDING_RESIDENT_SCRATCH,
}
"""The comparator of each role in the analysis (time ratios are arm / reference)."""
SHORT_NAMES = {
    Role.RESIDENT: {"scratch": Arm.RESIDENT_SCRATCH, "model": Arm.RESIDENT_MODEL},
    Role.ATTENDING: {
        "resident_scratch": Arm.ATTENDING_RESIDENT_SCRATCH,
        "model": Arm.ATTENDING_MODEL,
        "resident_model": Arm.ATTENDING_RESIDENT_MODEL,
    },
}
"""The arm names a protocol file uses under each role."""


def draft_source(arm: Arm) -> str:
    """What wrote the draft a read starts from: ``model``, ``resident`` or ``none``."""
    if arm in MODEL_DRAFT_ARMS:
        return "model"
    if arm in CHAINED_SOURCE and CHAINED_SOURCE[arm] == Arm.RESIDENT_MODEL:
        return "resident_edited_model"
    if arm in CHAINED_SOURCE:
        return "resident"
    return "none"

"""The drafting prompts, as CheXagent's model card and public repository phrase them."""

from __future__ import annotations

from collections.abc import Iterable

NEUTRAL_INDICATION = "chest radiograph"
"""Used when neither the order nor the DICOM header gives a reason for the exam."""


def indication_from(parts: Iterable[str | None]) -> str:
    """The first non-empty text among the candidate sources, normalised to one line."""
    for part in parts:
        if part and part.strip():
            return " ".join(part.split())
    return NEUTRAL_INDICATION


def findings_instruction(indication: str) -> str:
    """CheXagent's findings-generation instruction."""
    return f"Given the indication: {indication}, write a structured findings section for the CXR."


def impression_instruction(findings: str) -> str:
    """CheXagent's impression step: summarise the findings it just wrote."""
    return f"Summarize the following Findings: {findings}"

"""The drafting prompts, as CheXagent's model card and public repository phrase them.

The indication itself comes from ``radraft.orders.indication_for``, so the case page shows the
same one.
"""

from __future__ import annotations


def findings_instruction(indication: str) -> str:
    """CheXagent's findings-generation instruction."""
    return f"Given the indication: {indication}, write a structured findings section for the CXR."


def impression_instruction(findings: str) -> str:
    """CheXagent's impression step: summarise the findings it just wrote."""
    return f"Summarize the following Findings: {findings}"

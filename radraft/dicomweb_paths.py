"""The DICOMweb resource paths (PS3.18 10.4.1): one definition for the origin that serves them
(gateway/dicomweb) and the workers that fetch from it."""

from __future__ import annotations


def study_url(root: str, study: str) -> str:
    """``{root}/studies/{study}``."""
    return f"{root}/studies/{study}"


def series_url(root: str, study: str, series: str) -> str:
    """``{root}/studies/{study}/series/{series}``."""
    return f"{study_url(root, study)}/series/{series}"


def instance_url(root: str, study: str, series: str, instance: str) -> str:
    """``{root}/studies/{study}/series/{series}/instances/{instance}``."""
    return f"{series_url(root, study, series)}/instances/{instance}"

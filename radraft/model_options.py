"""The closed sets of the model settings, in a module with no dependencies.

The model child process runs in an environment of its own (CheXagent's has transformers
4.40.0 and little else), so the runtime code imports these from here, not from the settings.
"""

from __future__ import annotations

from enum import StrEnum


class ModelKind(StrEnum):
    """Which runtime drafts (``RADRAFT_MODEL``)."""

    DEMO = "demo"
    """The project's random-weight demo checkpoint; every draft says so."""
    CHEXAGENT = "chexagent"
    """CheXagent-2-3b through its remote code, in its own environment."""
    HF = "hf"
    """Any transformers image-text-to-text checkpoint (``hf:<path or hub id>``)."""


class Device(StrEnum):
    """Where the model runs (``RADRAFT_DEVICE``)."""

    AUTO = "auto"
    """CUDA when a device is visible, else the CPU."""
    CPU = "cpu"
    CUDA = "cuda"
    """A start-up error when no CUDA device is visible."""


class Switch(StrEnum):
    """An optimisation that is on, off, or on where it pays (``auto``: on CUDA)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class Isolation(StrEnum):
    """Where the model runs relative to the worker (``RADRAFT_MODEL_ISOLATION``)."""

    AUTO = "auto"
    """A child process for chexagent (its code needs transformers 4.40.0), else in-process."""
    IN_PROCESS = "in-process"
    CHILD = "child"
    """A supervised child process, restarted when it dies or hangs."""

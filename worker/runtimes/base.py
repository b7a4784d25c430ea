"""The batch interface every model runtime implements, and its value types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from radraft.errors import RadraftError
from radraft.model_options import Device

CHECKPOINT_MARKER = "radraft-demo.json"
"""A checkpoint folder radraft built names itself here (name, revision, label)."""
DEMO_LABEL = "demo model, random weights, not for clinical use"


class ModelLoadError(RadraftError):
    """The configured model cannot be loaded; the message says what to do."""


class GenerationFailedError(RadraftError):
    """The runtime failed on a batch (e.g. its child process died twice)."""


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: images (H, W uint8; frontal first) and the instruction text."""

    images: tuple[np.ndarray, ...]
    instruction: str
    max_new_tokens: int
    min_new_tokens: int = 0
    """Benchmarks force a fixed length with it; drafting leaves it at 0."""


@dataclass(frozen=True)
class GenerationResult:
    """Generated text with its token counts and the batch's timing."""

    text: str
    prompt_tokens: int
    generated_tokens: int
    seconds: float
    batch_size: int
    prompt: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What is recorded with every draft about the model that wrote it."""

    name: str
    revision: str
    weights_hash: str
    backend: str
    demo: bool = False
    decoding: dict[str, object] = field(default_factory=lambda: {"do_sample": False})


class ModelRuntime(Protocol):
    """A loaded model that generates for a batch of requests (greedy, deterministic)."""

    @property
    def info(self) -> ModelInfo:
        """The model's identity."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; batching is the runtime's business."""
        ...

    def close(self) -> None:
        """Release the model (and its process, if any)."""
        ...


def pick_device(setting: Device) -> str:
    """The torch device for a setting: ``auto`` is CUDA when present; asking for CUDA without
    it is a start-up error (torch is imported here, in the process that runs the model)."""
    import torch

    if setting == Device.CUDA and not torch.cuda.is_available():
        raise ModelLoadError("RADRAFT_DEVICE=cuda but no CUDA device is visible")
    if setting == Device.AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting.value

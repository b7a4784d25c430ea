"""Model runtimes behind one batch interface (``ModelRuntime``)."""

from worker.runtimes.base import (
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelLoadError,
    ModelRuntime,
)

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "ModelInfo",
    "ModelLoadError",
    "ModelRuntime",
]

"""Choose and load the model runtime named by ``RADRAFT_MODEL``, once per worker process."""

from __future__ import annotations

import sys
from pathlib import Path

from radraft.model_options import Isolation, ModelKind
from radraft.settings import Settings
from worker.runtimes.base import ModelLoadError, ModelRuntime
from worker.runtimes.chexagent import CHEXAGENT_HUB_ID
from worker.runtimes.child import hf_arguments
from worker.runtimes.demo import is_demo_checkpoint
from worker.runtimes.hf import HFRuntime
from worker.runtimes.supervised import SupervisedRuntime


def demo_model_path(settings: Settings) -> Path:
    """Where the demo checkpoint lives (``radraft model build-demo`` writes it there)."""
    return settings.model_path or settings.data_dir / "models" / "demo"


def chexagent_python(settings: Settings) -> Path:
    """Python of CheXagent's isolated environment."""
    return settings.model_python or settings.data_dir / "venvs" / "chexagent" / "bin" / "python"


def load_runtime(settings: Settings) -> ModelRuntime:
    """Load the configured model; a missing or broken one is an error saying what to do.

    Raises
    ------
    ModelLoadError
        Never falls back to another model silently.
    """
    model = settings.model
    if model.kind == ModelKind.DEMO:
        path = demo_model_path(settings)
        if not is_demo_checkpoint(path):
            raise ModelLoadError(
                f"RADRAFT_MODEL=demo but there is no demo checkpoint in {path}; "
                "run `radraft model build-demo` (or set RADRAFT_MODEL_PATH)"
            )
        return _hf_or_child(settings, str(path), demo=True)
    if model.kind == ModelKind.HF:
        return _hf_or_child(settings, model.source, demo=False)
    if model.kind == ModelKind.CHEXAGENT:
        python = chexagent_python(settings)
        if not python.exists():
            raise ModelLoadError(
                f"RADRAFT_MODEL=chexagent needs its own environment at {python.parent.parent}; "
                "run `radraft model setup chexagent` (or set RADRAFT_MODEL_PYTHON)"
            )
        return SupervisedRuntime(
            python=python,
            backend="chexagent",
            source=str(settings.model_path or CHEXAGENT_HUB_ID),
            device=settings.device,
        )
    raise ModelLoadError(
        f"unknown RADRAFT_MODEL {model!r}: use demo, chexagent or hf:<path or hub id>"
    )


def _hf_or_child(settings: Settings, source: str, *, demo: bool) -> ModelRuntime:
    if settings.model_isolation == Isolation.CHILD:
        return SupervisedRuntime(
            python=settings.model_python or Path(sys.executable),
            backend="hf",
            source=source,
            device=settings.device,
            demo=demo,
            hf_options=hf_arguments(
                settings.static_cache,
                settings.compile_decoder,
                (settings.max_batch, settings.image_size, settings.max_new_tokens),
            ),
        )
    runtime = HFRuntime(
        source,
        device=settings.device,
        demo=demo,
        static_cache=settings.static_cache,
        compile_decoder=settings.compile_decoder,
    )
    runtime.warm_up(settings.max_batch, settings.image_size, settings.max_new_tokens)
    return runtime

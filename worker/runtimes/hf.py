"""Any transformers image-text-to-text checkpoint: AutoProcessor, chat template, greedy, batched.

Used for local checkpoints and hub ids (MedGemma- or MAIRA-2-style models) and for radraft's
demo model, which is such a checkpoint with random weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from radraft.model_options import Device, Switch
from worker.runtimes.base import (
    CHECKPOINT_MARKER,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelLoadError,
    pick_device,
)

logger = logging.getLogger(__name__)
FULL_HASH_LIMIT_BYTES = 1 << 30
SMALL_MODEL_PARAMETERS = 100_000_000
"""Below this, CPU generation runs on one thread: for a tiny model, synchronising intra-op
threads costs more than the arithmetic (demo model, 2 cores: 0.27 s vs 0.75 s per 200 tokens)."""


def model_identity(source: str, config: Any) -> tuple[str, str]:
    """The model's name and version, as an SR or ORU should name it (never a filesystem path).

    A checkpoint folder written by radraft says who it is (``radraft-demo.json``); a folder
    copied from a hub keeps the hub id in its config (``_name_or_path``); otherwise the folder's
    own name. A hub id is its own name; the version is the hub commit, else "local".
    """
    revision = str(getattr(config, "_commit_hash", None) or "local")
    folder = Path(source)
    if not folder.is_dir():
        return source, revision
    marker = folder / CHECKPOINT_MARKER
    if marker.is_file():
        written = json.loads(marker.read_text())
        return str(written["name"]), str(written["revision"])
    original = str(getattr(config, "_name_or_path", "") or "")
    if original and not Path(original).is_absolute() and not original.startswith("."):
        return original, revision
    return folder.name, revision


def weights_fingerprint(folder: Path) -> str:
    """sha256 over the weight files; files over 1 GiB are sampled (size, first and last MiB)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin", ".pt"))
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as stream:
            if size <= FULL_HASH_LIMIT_BYTES:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            else:
                digest.update(stream.read(1 << 20))
                stream.seek(-(1 << 20), 2)
                digest.update(stream.read())
    return "sha256:" + digest.hexdigest()


def compile_on_any_device() -> Any:
    """transformers' compile settings with its CUDA-only guard lifted (CPU, tests)."""
    from transformers import CompileConfig

    config = CompileConfig()
    config._compile_all_devices = True  # type: ignore[assignment]  # annotated None, read as a flag
    return config


class HFRuntime:
    """A transformers image-text-to-text model loaded once, generating greedy batches."""

    def __init__(
        self,
        source: str,
        *,
        device: Device = Device.AUTO,
        name: str | None = None,
        demo: bool = False,
        static_cache: Switch = Switch.AUTO,
        compile_decoder: Switch = Switch.AUTO,
    ) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        torch_device = pick_device(device)
        dtype = torch.bfloat16 if torch_device == "cuda" else torch.float32
        try:
            processor = AutoProcessor.from_pretrained(source)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"cannot load image-text-to-text model {source!r} ({type(error).__name__}); "
                "give a local checkpoint folder or a hub id reachable from this host"
            ) from error
        folder = Path(source)
        known_name, revision = model_identity(source, model.config)
        info = ModelInfo(
            name=name or known_name,
            revision=revision,
            weights_hash=weights_fingerprint(folder) if folder.is_dir() else "hub:" + revision,
            backend="hf",
            demo=demo,
        )
        self._setup(processor, model, torch_device, info, static_cache, compile_decoder)

    @classmethod
    def from_components(
        cls,
        processor: Any,
        model: Any,
        *,
        device: str,
        info: ModelInfo,
        static_cache: Switch = Switch.AUTO,
        compile_decoder: Switch = Switch.AUTO,
    ) -> HFRuntime:
        """Wrap a processor and a model already in memory (the inference benchmark does)."""
        runtime = cls.__new__(cls)
        runtime._setup(processor, model, device, info, static_cache, compile_decoder)
        return runtime

    def _setup(
        self,
        processor: Any,
        model: Any,
        device: str,
        info: ModelInfo,
        static_cache: Switch,
        compile_decoder: Switch,
    ) -> None:
        if compile_decoder == Switch.ON and static_cache == Switch.OFF:
            raise ModelLoadError(
                "RADRAFT_COMPILE_DECODER=on needs the static KV cache (RADRAFT_STATIC_CACHE=off)"
            )
        on_cuda = device == "cuda"
        self._static_cache = (
            static_cache == Switch.ON
            or (static_cache == Switch.AUTO and on_cuda)
            or compile_decoder == Switch.ON
        )
        self._compiled = self._static_cache and (
            compile_decoder == Switch.ON or (compile_decoder == Switch.AUTO and on_cuda)
        )
        self._cache_options = self._generation_cache_options(on_cuda)
        self._processor = processor
        self._model = model.to(device).eval()
        self._device = device
        parameters = sum(parameter.numel() for parameter in self._model.parameters())
        if device == "cpu" and parameters < SMALL_MODEL_PARAMETERS:
            torch.set_num_threads(1)
        self._processor.tokenizer.padding_side = "left"
        self._info = replace(
            info,
            decoding={
                "do_sample": False,
                "num_beams": 1,
                "kv_cache": "static" if self._static_cache else "dynamic",
                "compiled": self.compiled,
                "dtype": str(self._model.dtype).removeprefix("torch."),
                "device": device,
            },
        )

    @property
    def info(self) -> ModelInfo:
        """The model's identity."""
        return self._info

    def prompt_for(self, request: GenerationRequest) -> str:
        """The chat-formatted prompt: the images, then the instruction, as one user turn."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.instruction})
        messages = [{"role": "user", "content": content}]
        return str(self._processor.apply_chat_template(messages, add_generation_prompt=True))

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation for a batch, left-padded so a batched draft equals an unbatched one."""
        if not requests:
            return []
        prompts = [self.prompt_for(request) for request in requests]
        images = [
            Image.fromarray(np.stack([image] * 3, axis=-1))
            for request in requests
            for image in request.images
        ]
        inputs = self._processor(
            text=prompts, images=images or None, return_tensors="pt", padding=True
        ).to(self._device)
        max_new_tokens = max(request.max_new_tokens for request in requests)
        min_new_tokens = max(request.min_new_tokens for request in requests)
        start = time.perf_counter()
        output = self._model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens or None,
            do_sample=False,
            num_beams=1,
            **self._cache_options,
        )
        seconds = time.perf_counter() - start
        prompt_length = inputs["input_ids"].shape[1]
        results = []
        eos = self._processor.tokenizer.eos_token_id
        pad = self._processor.tokenizer.pad_token_id
        for row, request in enumerate(requests):
            generated = output[row, prompt_length:][: request.max_new_tokens]
            kept = [int(t) for t in generated if int(t) not in (pad,)]
            if eos in kept:
                kept = kept[: kept.index(eos)]
            results.append(
                GenerationResult(
                    text=self._processor.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                    prompt_tokens=int(inputs["attention_mask"][row].sum()),
                    generated_tokens=len(kept),
                    seconds=seconds,
                    batch_size=len(requests),
                    prompt=prompts[row],
                )
            )
        return results

    @property
    def compiled(self) -> bool:
        """Whether generation runs the compiled decoder (each new batch shape compiles once)."""
        return self._compiled

    def cache_options(self) -> dict[str, Any]:
        """The generate() options for the KV cache and compilation, chosen at load time."""
        return dict(self._cache_options)

    def _generation_cache_options(self, on_cuda: bool) -> dict[str, Any]:
        """Options for the static KV cache and compilation.

        A static cache has fixed shapes, so transformers can compile the decoder's forward pass
        (on CUDA it does so by default). Off CUDA compilation is opt-in: for a small model it
        pays back only after many studies, and its first batch of each shape waits for it.
        """
        if not self._static_cache:
            return {}
        options: dict[str, Any] = {"cache_implementation": "static"}
        if not self._compiled:
            options["disable_compile"] = True
        elif not on_cuda:
            options["compile_config"] = compile_on_any_device()
        return options

    def warm_up(self, max_batch: int, image_size: int, max_new_tokens: int) -> None:
        """Compile before the first study: a batch of one, then the largest batch.

        The second shape makes torch.compile switch to shape-generic code, so later batch
        sizes and prompt lengths mostly reuse it instead of stalling a study's drafting.
        """
        if not self.compiled:
            return
        start = time.perf_counter()
        image = np.zeros((image_size, image_size), dtype=np.uint8)
        sizes = sorted({1, max_batch})
        for size in sizes:
            request = GenerationRequest((image, image), "Warm-up.", max_new_tokens)
            self.generate([request] * size)
        # radraft.logs' key=value shape, without importing it (a child runtime's venv lacks it)
        logger.info(
            "worker.compiled seconds=%.1f batch_sizes=%s",
            time.perf_counter() - start,
            ",".join(map(str, sizes)),
        )

    def close(self) -> None:
        """Drop the model."""
        del self._model

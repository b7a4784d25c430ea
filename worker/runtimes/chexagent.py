"""StanfordAIMI/CheXagent-2-3b through its own remote code, as its model card runs it.

Its code asserts transformers==4.40.0, so this module runs only inside the model child process
started from the virtual environment made by ``radraft model setup chexagent``. It follows the
model card: images passed by path through the tokenizer's ``from_list_format`` (frontal first,
lateral second), a conversation with the system turn "You are a helpful assistant.", the
tokenizer's chat template, greedy decoding, and the reply decoded without its final token.
The real weights were not run in radraft's CI (no model hub is reachable there); the prompt and
format handling is tested with a stand-in that has the same tokenizer API.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from radraft.model_options import Device
from worker.runtimes.base import (
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelLoadError,
    pick_device,
)

CHEXAGENT_HUB_ID = "StanfordAIMI/CheXagent-2-3b"
SYSTEM_PROMPT = "You are a helpful assistant."


class CheXagentRuntime:
    """CheXagent-2 with its tokenizer's list format and chat template; greedy, one study a pass.

    Its remote code embeds images by file path inside the token stream and does not pad batches,
    so requests of a batch are generated one after another.
    """

    def __init__(self, source: str = CHEXAGENT_HUB_ID, *, device: Device = Device.AUTO) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_device = pick_device(device)
        dtype = torch.bfloat16 if torch_device == "cuda" else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
            model: Any = AutoModelForCausalLM.from_pretrained(
                source, trust_remote_code=True, torch_dtype=dtype
            )
        except (OSError, ValueError, AssertionError) as error:
            raise ModelLoadError(
                f"cannot load CheXagent from {source!r} ({type(error).__name__}): give a local "
                "copy of StanfordAIMI/CheXagent-2-3b in RADRAFT_MODEL_PATH and run this in the "
                "environment made by `radraft model setup chexagent` (transformers 4.40.0)"
            ) from error
        model = model.to(torch_device).eval()
        revision = str(getattr(model.config, "_commit_hash", None) or "local")
        info = ModelInfo(
            name=CHEXAGENT_HUB_ID, revision=revision, weights_hash="hub:" + revision,
            backend="chexagent",
        )  # fmt: skip
        self._setup(tokenizer, model, torch_device, info)

    @classmethod
    def from_components(
        cls, tokenizer: Any, model: Any, *, device: str = "cpu"
    ) -> CheXagentRuntime:
        """Build around an already loaded tokenizer and model (the stand-in test uses this)."""
        runtime = cls.__new__(cls)
        runtime._setup(tokenizer, model, device, ModelInfo("stand-in", "test", "none", "chexagent"))
        return runtime

    def _setup(self, tokenizer: Any, model: Any, device: str, info: ModelInfo) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self._device = device
        self._info = info

    @property
    def info(self) -> ModelInfo:
        """The model's identity."""
        return self._info

    def conversation(self, image_paths: Sequence[str], instruction: str) -> list[dict[str, str]]:
        """The model card's conversation: system turn, then images and text as one human turn."""
        query = self._tokenizer.from_list_format(
            [*({"image": path} for path in image_paths), {"text": instruction}]
        )
        return [{"from": "system", "value": SYSTEM_PROMPT}, {"from": "human", "value": query}]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate each request greedily; images go to the tokenizer as PNG files."""
        import torch

        results = []
        with tempfile.TemporaryDirectory(prefix="radraft-chexagent-") as folder:
            for index, request in enumerate(requests):
                paths = []
                for number, image in enumerate(request.images):
                    path = Path(folder) / f"request{index}_image{number}.png"
                    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
                    paths.append(str(path))
                conversation = self.conversation(paths, request.instruction)
                input_ids = self._tokenizer.apply_chat_template(
                    conversation, add_generation_prompt=True, return_tensors="pt"
                )
                start = time.perf_counter()
                with torch.inference_mode():
                    output = self._model.generate(
                        input_ids.to(self._device),
                        do_sample=False,
                        num_beams=1,
                        temperature=1.0,
                        top_p=1.0,
                        use_cache=True,
                        max_new_tokens=request.max_new_tokens,
                    )[0]
                seconds = time.perf_counter() - start
                generated = output[input_ids.size(1) : -1]
                results.append(
                    GenerationResult(
                        text=str(self._tokenizer.decode(generated)).strip(),
                        prompt_tokens=int(input_ids.size(1)),
                        generated_tokens=int(generated.numel()),
                        seconds=seconds,
                        batch_size=1,
                        prompt=str(conversation[1]["value"]),
                    )
                )
        return results

    def close(self) -> None:
        """Drop the model."""
        del self._model

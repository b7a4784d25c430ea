"""CheXagent's prompt, image order and chat format, checked with a stand-in tokenizer and model.

The real weights cannot be downloaded here. The stand-in implements the API CheXagent-2's
remote code gives its Qwen-style tokenizer: ``from_list_format`` (numbered ``<img>`` tags) and a
ChatML chat template over ``{"from": ..., "value": ...}`` turns with a system turn.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from worker.prompts import findings_instruction, impression_instruction
from worker.runtimes.base import GenerationRequest
from worker.runtimes.chexagent import SYSTEM_PROMPT, CheXagentRuntime

ROLE_NAMES = {"system": "system", "human": "user", "gpt": "assistant"}


class StandInTokenizer:
    """Same calls as CheXagent's tokenizer; records what it was given."""

    def __init__(self) -> None:
        self.chat_texts: list[str] = []
        self.image_pixels: list[np.ndarray] = []

    def from_list_format(self, items: list[dict[str, str]]) -> str:
        text = ""
        picture = 0
        for item in items:
            if "image" in item:
                picture += 1
                self.image_pixels.append(np.asarray(Image.open(item["image"])))
                text += f"Picture {picture}: <img>{item['image']}</img>\n"
            elif "text" in item:
                text += item["text"]
        return text

    def apply_chat_template(
        self,
        conversation: list[dict[str, str]],
        *,
        add_generation_prompt: bool,
        return_tensors: str,
    ) -> torch.Tensor:
        text = "".join(
            f"<|im_start|>{ROLE_NAMES[turn['from']]}\n{turn['value']}<|im_end|>\n"
            for turn in conversation
        )
        if add_generation_prompt:
            text += "<|im_start|>assistant\n"
        self.chat_texts.append(text)
        assert return_tensors == "pt"
        return torch.tensor([[ord(c) % 250 for c in text]])

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(chr(int(i)) for i in ids)


class StandInModel:
    """Answers a fixed reply and records the generation arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls.append(kwargs)
        reply = torch.tensor([[ord(c) for c in "No acute disease."] + [0]])  # last = end token
        return torch.cat([input_ids, reply], dim=1)


def test_prompt_image_order_and_chat_format() -> None:
    tokenizer, model = StandInTokenizer(), StandInModel()
    runtime = CheXagentRuntime.from_components(tokenizer, model)
    frontal = np.full((40, 30), 10, dtype=np.uint8)
    lateral = np.full((40, 30), 200, dtype=np.uint8)
    instruction = findings_instruction("cough and fever")
    (result,) = runtime.generate([GenerationRequest((frontal, lateral), instruction, 300)])

    (chat,) = tokenizer.chat_texts
    assert chat.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    assert chat.endswith("<|im_end|>\n<|im_start|>assistant\n")
    pictures = re.findall(r"Picture (\d): <img>([^<]+)</img>", chat)
    assert [number for number, _ in pictures] == ["1", "2"]
    assert chat.index("Picture 2") < chat.index(
        "Given the indication: cough and fever, write a structured findings section for the CXR."
    )
    # frontal first, lateral second, pixels unchanged
    assert [int(p.mean()) for p in tokenizer.image_pixels] == [10, 200]
    assert all(not Path(path).exists() for _, path in pictures), "temporary images are removed"
    (call,) = model.calls
    assert call["do_sample"] is False
    assert call["num_beams"] == 1
    assert call["max_new_tokens"] == 300
    assert result.text == "No acute disease."
    assert result.generated_tokens == len("No acute disease.")


def test_impression_prompt_summarises_the_findings() -> None:
    assert impression_instruction("Lungs are clear.") == (
        "Summarize the following Findings: Lungs are clear."
    )

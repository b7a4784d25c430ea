"""Inference benchmark: radraft's runtime against a plain eager ``model.generate``, same run.

Builds a random-weight LLaVA-style model (a SigLIP-like vision tower and a Phi-like decoder)
in memory and measures, for two images and a forced number of new tokens per study:

* plain eager ``model.generate`` at batch 1 (the reference),
* radraft's ``HFRuntime`` at batch 1, and its studies/s at each batch size,

then prints the ratios. ``--shape chexagent`` is CheXagent-2-3b's size (about 3.2 B
parameters: SigLIP-so400m-like tower, Phi-2-sized decoder) and wants a GPU; ``--shape small``
runs anywhere. Also prints the demo model's CPU seconds per study (findings + impression).

    .venv/bin/python bench/inference.py --shape small --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radraft.model_options import Device, Switch
from worker.runtimes.base import GenerationRequest, ModelInfo
from worker.runtimes.demo import build_demo_checkpoint
from worker.runtimes.hf import HFRuntime

SHAPES: dict[str, dict[str, int]] = {
    "chexagent": {
        "vision_hidden": 1152, "vision_layers": 27, "vision_heads": 16, "vision_mlp": 4304,
        "image": 384, "patch": 14,
        "text_hidden": 2560, "text_layers": 32, "text_heads": 32, "text_mlp": 10240,
        "vocab": 51200,
    },
    "small": {
        "vision_hidden": 256, "vision_layers": 4, "vision_heads": 4, "vision_mlp": 1024,
        "image": 224, "patch": 16,
        "text_hidden": 512, "text_layers": 4, "text_heads": 8, "text_mlp": 2048,
        "vocab": 8192,
    },
}  # fmt: skip


def build_model(shape: dict[str, int], device: str) -> tuple[Any, Any]:
    """A random-weight model of ``shape`` and a processor (the demo tokenizer, SigLIP images)."""
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PhiConfig,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    with tempfile.TemporaryDirectory() as folder:
        demo = LlavaProcessor.from_pretrained(build_demo_checkpoint(Path(folder)))
    tokenizer = demo.tokenizer
    vision = SiglipVisionConfig(
        hidden_size=shape["vision_hidden"], num_hidden_layers=shape["vision_layers"],
        num_attention_heads=shape["vision_heads"], intermediate_size=shape["vision_mlp"],
        image_size=shape["image"], patch_size=shape["patch"],
    )  # fmt: skip
    text = PhiConfig(
        hidden_size=shape["text_hidden"], num_hidden_layers=shape["text_layers"],
        num_attention_heads=shape["text_heads"], intermediate_size=shape["text_mlp"],
        vocab_size=shape["vocab"], max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id,
        vision_feature_layer=-1, vision_feature_select_strategy="full",
    )  # fmt: skip
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(dtype).eval()
    image_processor = SiglipImageProcessor(size={"height": shape["image"], "width": shape["image"]})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=shape["patch"],
        vision_feature_select_strategy="full", num_additional_image_tokens=0,
        chat_template=demo.chat_template,
    )  # fmt: skip
    return model, processor


def study_request(tokens: int, seed: int) -> GenerationRequest:
    rng = np.random.default_rng(seed)
    images = tuple(rng.integers(0, 255, size=(512, 512), dtype=np.uint8) for _ in range(2))
    return GenerationRequest(
        images,
        "Given the indication: cough, write a structured findings section for the CXR.",
        max_new_tokens=tokens,
        min_new_tokens=tokens,
    )


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def plain_generate_seconds(
    model: Any, processor: Any, runtime: HFRuntime, tokens: int, device: str
) -> float:
    """The reference: one study through ``model.generate`` with no radraft code in the loop."""
    from PIL import Image

    request = study_request(tokens, 1)
    prompt = runtime.prompt_for(request)
    images = [Image.fromarray(np.stack([i] * 3, axis=-1)) for i in request.images]
    inputs = processor(text=[prompt], images=images, return_tensors="pt").to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    synchronize(device)
    start = time.perf_counter()
    model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    synchronize(device)
    return time.perf_counter() - start


def runtime_seconds(runtime: HFRuntime, batch: int, tokens: int, device: str) -> float:
    requests = [study_request(tokens, seed) for seed in range(batch)]
    synchronize(device)
    start = time.perf_counter()
    results = runtime.generate(requests)
    synchronize(device)
    if not all(r.generated_tokens == tokens for r in results):
        raise SystemExit("the forced length was not reached: the timing would be unfair")
    return time.perf_counter() - start


def demo_cpu_seconds_per_study(repeats: int) -> float:
    """The demo model on CPU: findings then impression, 200 tokens budget each, as drafted."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = build_demo_checkpoint(Path(folder))
        runtime = HFRuntime(str(checkpoint), device=Device.CPU, demo=True)
        request = study_request(200, 3)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            findings = runtime.generate(
                [GenerationRequest(request.images, request.instruction, 200)]
            )
            runtime.generate(
                [
                    GenerationRequest(
                        request.images, "Summarize the following Findings: " + findings[0].text, 200
                    )
                ]
            )
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--static-cache", type=Switch, choices=list(Switch), default=Switch.AUTO,
        help="radraft's static KV cache (auto: on CUDA, where transformers then compiles)",
    )  # fmt: skip
    parser.add_argument(
        "--compile-decoder", type=Switch, choices=list(Switch), default=Switch.AUTO,
        help="torch.compile of the decoder (auto: on CUDA; on: also on CPU)",
    )  # fmt: skip
    arguments = parser.parse_args()
    device = arguments.device
    model, processor = build_model(SHAPES[arguments.shape], device)
    parameters = sum(p.numel() for p in model.parameters()) / 1e9
    info = ModelInfo("bench-random", "0", "none", "hf")
    runtime = HFRuntime.from_components(
        processor, model, device=device, info=info, static_cache=arguments.static_cache,
        compile_decoder=arguments.compile_decoder,
    )  # fmt: skip
    print(f"shape {arguments.shape}: {parameters:.2f} B parameters on {device}, "
          f"2 images, {arguments.tokens} forced new tokens per study; "
          f"decoding {runtime.info.decoding}")  # fmt: skip
    runtime_seconds(runtime, 1, 8, device)  # warm-up (and the first compilation)
    plain = statistics.median(
        plain_generate_seconds(model, processor, runtime, arguments.tokens, device)
        for _ in range(arguments.repeats)
    )
    ours = statistics.median(
        runtime_seconds(runtime, 1, arguments.tokens, device) for _ in range(arguments.repeats)
    )
    print(f"plain eager generate, batch 1: {plain:.3f} s/study (reference)")
    print(f"radraft runtime, batch 1:      {ours:.3f} s/study "
          f"(ratio to reference {ours / plain:.2f}, speed-up {plain / ours:.2f}x)")  # fmt: skip
    best = 0.0
    for batch in (int(b) for b in arguments.batches.split(",")):
        if runtime.compiled:  # a new batch shape compiles: measure the second call
            runtime_seconds(runtime, batch, arguments.tokens, device)
        seconds = runtime_seconds(runtime, batch, arguments.tokens, device)
        throughput = batch / seconds
        best = max(best, throughput)
        print(f"radraft runtime, batch {batch:3d}:    {throughput:.2f} studies/s "
              f"({throughput * plain:.2f}x the reference's throughput)")  # fmt: skip
    print(f"best throughput: {best:.2f} studies/s; reference {1 / plain:.2f} studies/s")
    if device == "cpu":
        demo = demo_cpu_seconds_per_study(arguments.repeats)
        print(f"demo model on CPU ({torch.get_num_threads()} intra-op thread(s)): {demo:.2f} s "
              "per study (findings + impression; goal <= 2 s)")  # fmt: skip


if __name__ == "__main__":
    main()

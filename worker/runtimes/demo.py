"""radraft's demo model: a tiny random-weight LLaVA-style checkpoint, built offline.

No model hub is reachable where radraft is developed and tested, so the whole pipeline runs on
this transformers-native checkpoint (CLIP vision tower, Llama decoder, a word-level tokenizer
trained here with ``tokenizers``). Its output is gibberish made of radiology words and is
labelled everywhere as coming from a demo model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from worker.runtimes.base import CHECKPOINT_MARKER, DEMO_LABEL

DEMO_MODEL_NAME = "radraft-demo-llava-tiny"
DEMO_MODEL_REVISION = "1"
MARKER_FILE = CHECKPOINT_MARKER
IMAGE_SIZE = 64
PATCH_SIZE = 16

VOCABULARY_TEXT = """
given the indication write a structured findings section for cxr summarize following
findings impression lungs lung are is clear no focal consolidation pleural effusion
pneumothorax heart size normal mediastinal contour cardiomediastinal silhouette within
limits there small moderate large right left bilateral base bases apex upper lower middle
lobe opacity opacities airspace disease atelectasis edema pulmonary vascular congestion
osseous structures intact fracture acute process cardiopulmonary abnormality stable
unchanged compared prior study interval increase decrease nodule nodules mass hilar
enlarged enlargement mild severe degenerative changes spine thoracic tube line catheter
tip projects over svc endotracheal nasogastric sternotomy wires pacemaker leads chest
frontal lateral view views pa ap portable evidence of suggest suggests may represent
pneumonia infection aspiration cough fever shortness breath pain evaluate for rule out
and or with without in on at to from of by as be this that which seen noted again
likely possible probable small-volume low volumes hyperinflated emphysema
. , : ; ( ) -
"""
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_demo_checkpoint(folder: Path) -> Path:
    """Write the demo checkpoint to ``folder`` (deterministic: same files on every build)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    words = sorted(set(VOCABULARY_TEXT.split()))
    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(vocabulary),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=vocabulary["<s>"],
        eos_token_id=vocabulary["</s>"],
        pad_token_id=vocabulary["<pad>"],
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocabulary["<image>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(20261122)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = vocabulary["<pad>"]
    model.generation_config.eos_token_id = vocabulary["</s>"]
    image_processor = _image_processor_class()(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    folder.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    marker = {
        "name": DEMO_MODEL_NAME,
        "revision": DEMO_MODEL_REVISION,
        "label": DEMO_LABEL,
        "built_by": "radraft model build-demo",
    }
    (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return folder


def _image_processor_class() -> type:
    """CLIP's PIL image processor (the default one would want torchvision, which we skip)."""
    try:
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


def is_demo_checkpoint(folder: Path) -> bool:
    """True for a folder written by ``build_demo_checkpoint``."""
    return (folder / MARKER_FILE).is_file()

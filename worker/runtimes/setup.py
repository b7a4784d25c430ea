"""``radraft model setup chexagent``: CheXagent's own virtual environment.

CheXagent-2's remote code asserts transformers==4.40.0, which cannot share an environment with
current models (Stanford-AIMI/CheXagent issue 14), so it gets a virtual environment of its own
and runs there as radraft's model child process.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

from radraft.settings import Settings
from worker.runtimes.loader import chexagent_python

CHEXAGENT_REQUIREMENTS = [
    "torch>=2.1",
    "transformers==4.40.0",
    "accelerate",
    "einops",
    "sentencepiece",
    "tiktoken",
    "numpy<2",
    "pillow",
    "albumentations",
    "opencv-python-headless",
]
"""What its remote code imports; torch is the host's build when pip finds one already."""


def setup_chexagent_environment(settings: Settings) -> Path:
    """Create (or update) the environment and return its Python."""
    python = chexagent_python(settings)
    root = python.parent.parent
    if not python.exists():
        venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *CHEXAGENT_REQUIREMENTS], check=True
    )
    subprocess.run([str(python), "-c", "import transformers, torch"], check=True)
    return python

"""Shared fixtures: small, fast, offline objects every stage's tests can use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The test models are tiny: one thread is faster than two (no synchronisation), and child processes
# (accelerate launch, the CLI) inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)

TINY_TEXTS = [
    "Small left pleural effusion.",
    "Large right pleural effusion with adjacent atelectasis.",
    "Bilateral pleural effusions, moderate.",
    "No pneumothorax.",
    "Small right apical pneumothorax.",
    "Moderate cardiomegaly with mild pulmonary edema.",
    "Right lower lobe consolidation concerning for pneumonia.",
    "Patchy left basilar opacity, likely atelectasis.",
    "No acute cardiopulmonary process.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A BPE tokenizer trained on a few report sentences (medical words split into sub-words)."""
    from cxr_fgbg.models.tokenizer import train_tokenizer

    return train_tokenizer(TINY_TEXTS * 20, vocab_size=150, max_length=32)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_tokenizer):
    """A randomly initialised tiny StableDiffusionPipeline: 1-channel 64x64 images, 16x16 latents."""
    from cxr_fgbg.models.settings import TinyBundleSettings
    from cxr_fgbg.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tiny_tokenizer, TinyBundleSettings(), seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pipeline, tmp_path_factory) -> Path:
    """The tiny pipeline saved as a diffusers folder (read-only for tests: copy before modifying)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_pipeline.save_pretrained(folder)
    return folder

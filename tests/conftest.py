"""Shared fixtures: the real carphone clip, tiny checkpoints (untrained and a marked-trained fixture)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def carphone() -> Path:
    from videogen import carphone_path

    path = carphone_path()
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny random checkpoint, marked untrained (as `stylefusion init --preset tiny` writes it)."""
    from stylefusion.detector import init_checkpoint

    out = tmp_path_factory.mktemp("tiny")
    init_checkpoint("tiny", out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_trained_ckpt(tmp_path_factory) -> Path:
    """The tiny checkpoint with its config marked trained: a fixture to exercise verdict logic only."""
    from stylefusion.config import StyleFusionConfig
    from stylefusion.detector import init_checkpoint

    out = tmp_path_factory.mktemp("tiny_trained")
    model = init_checkpoint("tiny", out, seed=0)
    # through the config's own parser, as a checkpoint written by training would be read
    model.config = StyleFusionConfig.from_dict({
        **model.config.to_dict(), "trained": True,
        "training": {"dataset": "test fixture (random weights)", "data_summary": "none"}})
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_detector(tiny_ckpt):
    from stylefusion import StyleFusionDetector

    return StyleFusionDetector.from_pretrained(tiny_ckpt, precision="fp32")  # the golden numbers are fp32


@pytest.fixture(scope="session")
def carphone_result(tiny_detector, carphone):
    return tiny_detector.detect(carphone, return_crops=True)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): on
    shared 2-core machines, OpenMP threads waiting for a busy core make small ops many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

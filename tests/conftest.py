"""Shared fixtures: tiny generated datasets, offscreen Qt, fresh settings."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image


def make_image(kind: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A small, clearly separable image: class 0 dark-left, 1 dark-top, 2 bright centre, 3 stripes."""
    arr = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
    h = size // 2
    if kind == "left":
        arr[:, :h] = rng.integers(0, 40)
    elif kind == "top":
        arr[:h, :] = rng.integers(0, 40)
    elif kind == "centre":
        arr[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 250
    else:
        arr[::4] = 250
    return Image.fromarray(arr)


def write_dataset(root, classes=("left", "top", "centre"), per_class=20, size=32, fmt="png", seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(c, rng, size).save(d / f"{c}_{i:02d}.{fmt}")
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    """3 classes x 20 PNG images at 32x32, easy to learn."""
    return write_dataset(tmp_path / "tiny")

"""The built-in sample dataset: coloured shapes, generated deterministically.

Four classes (circle, square, triangle, cross) drawn with random colour,
size, position and rotation on a noisy background. A small CNN learns it
well above chance in a couple of epochs. Nothing is downloaded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .. import fsutil

SAMPLE_CLASSES = ("circle", "square", "triangle", "cross")
MARKER = ".cnndesk-sample"


def _shape_points(kind: str, cx: float, cy: float, r: float, angle: float):
    def rot(points):
        ca, sa = math.cos(angle), math.sin(angle)
        return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in points]

    if kind == "square":
        return rot([(-r, -r), (r, -r), (r, r), (-r, r)])
    if kind == "triangle":
        return rot([(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)])
    if kind == "cross":
        t = r * 0.33
        return rot([(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t),
                    (-r, -t), (-t, -t)])
    raise ValueError(kind)


def draw_sample(kind: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One image of ``kind`` with random colours, size, position, rotation and noise."""
    # a light shape on a darker background, colours varying freely within that
    bg = rng.integers(0, 110, 3)
    fg = rng.integers(120, 256, 3)
    fg[rng.integers(0, 3)] = rng.integers(200, 256)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in bg))
    draw = ImageDraw.Draw(img)
    r = size * rng.uniform(0.26, 0.38)
    cx = rng.uniform(r + 2, size - r - 2)
    cy = rng.uniform(r + 2, size - r - 2)
    colour = tuple(int(v) for v in fg)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon(_shape_points(kind, cx, cy, r, rng.uniform(-0.35, 0.35)), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 8, (size, size, 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_sample_dataset(out_dir: str | os.PathLike, per_class: int = 400, size: int = 64, seed: int = 7) -> Path:
    """Write the sample dataset as PNGs into ``out_dir/<class>/``; the same every time.

    The marker that says the sample is complete is written last, once the images are on disk: a sample
    cut short (a kill, a full disk) is written again the next time.
    """
    out = Path(out_dir).expanduser()
    for ci, kind in enumerate(SAMPLE_CLASSES):
        d = out / kind
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, ci])
        for i in range(per_class):
            draw_sample(kind, rng, size).save(d / f"{kind}_{i:03d}.png", optimize=False)
        fsutil.fsync_tree(d)
    fsutil.write_text(out / MARKER, f"cnndesk sample dataset, {per_class} per class, {size}px, seed {seed}\n")
    return out


def ensure_sample_dataset(out_dir: str | os.PathLike) -> Path:
    """Write the sample into ``out_dir`` unless a complete one is already there."""
    out = Path(out_dir).expanduser()
    if not (out / MARKER).exists():
        write_sample_dataset(out)
    return out

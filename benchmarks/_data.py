"""A deterministic benchmark dataset: 10 classes of coloured shapes and patterns as JPEGs.

Each class is a shape or a pattern (circle, square, triangle, cross, ring,
horizontal stripes, vertical stripes, checkerboard, diagonal stripes, dots)
drawn with random colours, size and position on a noisy background, so the
classes are learnable but not trivial. The same arguments always give the same
files; a folder holding a complete set for the same arguments is reused.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross", "ring",
           "hstripes", "vstripes", "checker", "diagonal", "dots")
MARKER = ".cnndesk-benchmark-complete"
VERSION = 1


def default_folder(per_class: int, size: int) -> Path:
    return Path(tempfile.gettempdir()) / f"cnndesk-bench-{len(CLASSES)}x{per_class}-{size}px"


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        pts = [(-r, -r), (r, -r), (r, r), (-r, r)]
    elif kind == "triangle":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    else:  # cross
        t = r * 0.33
        pts = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t),
               (-r, -t), (-t, -t)]
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def draw(kind: str, rng: np.random.Generator, size: int) -> Image.Image:
    """One image of ``kind``: a light figure on a darker, noisy background."""
    bg = tuple(int(v) for v in rng.integers(0, 110, 3))
    fg_arr = rng.integers(120, 256, 3)
    fg_arr[rng.integers(0, 3)] = rng.integers(200, 256)
    fg = tuple(int(v) for v in fg_arr)
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    r = size * rng.uniform(0.22, 0.36)
    cx, cy = rng.uniform(r + 2, size - r - 2), rng.uniform(r + 2, size - r - 2)
    period = max(4, int(size * rng.uniform(0.07, 0.12)))
    width = max(2, period // 2)
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=max(3, int(r * 0.3)))
    elif kind in ("square", "triangle", "cross"):
        d.polygon(_polygon(kind, cx, cy, r, rng.uniform(-0.35, 0.35)), fill=fg)
    elif kind == "hstripes":
        for y in range(int(rng.integers(0, period)), size, period):
            d.rectangle([0, y, size, y + width - 1], fill=fg)
    elif kind == "vstripes":
        for x in range(int(rng.integers(0, period)), size, period):
            d.rectangle([x, 0, x + width - 1, size], fill=fg)
    elif kind == "checker":
        cell = period
        for y in range(0, size, cell):
            for x in range((y // cell) % 2 * cell, size, 2 * cell):
                d.rectangle([x, y, x + cell - 1, y + cell - 1], fill=fg)
    elif kind == "diagonal":
        for k in range(-size, 2 * size, period):
            d.line([(k, 0), (k + size, size)], fill=fg, width=width)
    elif kind == "dots":
        dot = max(2, period // 3)
        for y in range(period // 2, size, period):
            for x in range(period // 2, size, period):
                d.ellipse([x - dot, y - dot, x + dot, y + dot], fill=fg)
    else:
        raise ValueError(kind)
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 10, (size, size, 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def ensure_dataset(folder: str | Path | None, per_class: int, size: int = 224, seed: int = 2026,
                   quiet: bool = False) -> Path:
    """Write ``per_class`` JPEGs per class into ``folder/<class>/``, unless already complete there."""
    folder = Path(folder) if folder else default_folder(per_class, size)
    spec = {"version": VERSION, "classes": list(CLASSES), "per_class": per_class, "size": size, "seed": seed}
    marker = folder / MARKER
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == spec:
                return folder
        except ValueError:
            pass
        marker.unlink()
    if folder.exists() and any(p for p in folder.iterdir() if p.name != MARKER and p.name not in CLASSES):
        raise SystemExit(f"{folder} holds other files; give an empty or new folder with --data")
    if not quiet:
        print(f"writing {len(CLASSES)} x {per_class} JPEGs at {size}x{size} into {folder} ...", flush=True)
    for ci, kind in enumerate(CLASSES):
        d = folder / kind
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*.jpg"):
            old.unlink()
        rng = np.random.default_rng([seed, ci])
        for i in range(per_class):
            draw(kind, rng, size).save(d / f"{kind}_{i:04d}.jpg", quality=90)
    marker.write_text(json.dumps(spec))
    return folder

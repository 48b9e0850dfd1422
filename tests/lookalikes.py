"""Pictures that look alike without being copies, and copies made the way they arise in real folders.

- :func:`stroke_digits`: handwritten-like digits, each drawn anew from the strokes of its digit
  with a random slant, size, position, stroke width and wobble (28 px, white on black, like MNIST).
  Two 1s look alike; none is a copy of another.
- :func:`texture_tiles`: photo-like pictures (smooth random textures over a gradient) cut into
  non-overlapping tiles: neighbouring tiles of one picture look alike but are not copies.
- :func:`edited_copy`: a copy of a tile with one of :data:`EDITS`, as files get copied in real
  folders (re-saved as a JPEG, resized, brightened, cropped a little, blurred, re-saved as PNG).

The tests of :mod:`cnndesk.core.data.copies` and ``benchmarks/copies_real.py`` share them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

#: the strokes of each digit: polylines in a unit box (x right, y down)
_STROKES = {
    0: [[(0.5, 0.05), (0.2, 0.2), (0.12, 0.5), (0.2, 0.8), (0.5, 0.95), (0.8, 0.8), (0.88, 0.5), (0.8, 0.2),
         (0.5, 0.05)]],
    1: [[(0.35, 0.2), (0.55, 0.05), (0.55, 0.95)]],
    2: [[(0.15, 0.25), (0.35, 0.06), (0.65, 0.06), (0.82, 0.25), (0.75, 0.5), (0.15, 0.95), (0.88, 0.95)]],
    3: [[(0.15, 0.1), (0.75, 0.08), (0.45, 0.45), (0.8, 0.6), (0.75, 0.88), (0.45, 0.96), (0.12, 0.85)]],
    4: [[(0.65, 0.95), (0.65, 0.05), (0.1, 0.65), (0.9, 0.65)]],
    5: [[(0.82, 0.06), (0.25, 0.06), (0.2, 0.45), (0.6, 0.4), (0.85, 0.62), (0.7, 0.9), (0.4, 0.96), (0.15, 0.85)]],
    6: [[(0.75, 0.06), (0.4, 0.25), (0.18, 0.6), (0.3, 0.92), (0.65, 0.92), (0.8, 0.68), (0.6, 0.5), (0.25, 0.58)]],
    7: [[(0.12, 0.06), (0.88, 0.06), (0.4, 0.95)]],
    8: [[(0.5, 0.48), (0.2, 0.28), (0.5, 0.05), (0.8, 0.28), (0.5, 0.48), (0.15, 0.72), (0.5, 0.95), (0.85, 0.72),
         (0.5, 0.48)]],
    9: [[(0.78, 0.35), (0.5, 0.5), (0.22, 0.32), (0.5, 0.06), (0.78, 0.3), (0.72, 0.95)]],
}


def stroke_digit(digit: int, rng: np.random.Generator, side: int = 28) -> np.ndarray:
    """One handwritten-like ``digit``: (side, side) uint8, drawn at 4x and shrunk (smooth edges)."""
    big = 4 * side
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    angle = rng.uniform(-0.3, 0.3)  # slant
    scale = big * rng.uniform(0.55, 0.75)
    aspect = rng.uniform(0.7, 1.1)
    centre = big / 2 + rng.uniform(-0.06, 0.06, 2) * big
    ca, sa = np.cos(angle), np.sin(angle)
    width = int(big * rng.uniform(0.07, 0.12))
    for stroke in _STROKES[digit]:
        p = np.array(stroke) - 0.5 + rng.normal(0, 0.05, (len(stroke), 2))  # the hand wobbles
        p[:, 0] *= aspect
        x = (p[:, 0] * ca - p[:, 1] * sa) * scale + centre[0]
        y = (p[:, 0] * sa + p[:, 1] * ca) * scale + centre[1]
        draw.line(list(zip(x.tolist(), y.tolist())), fill=255, width=width, joint="curve")
    return np.asarray(img.resize((side, side), Image.BILINEAR))


def stroke_digits(per_class: int, seed: int = 0, side: int = 28, digits=range(10)) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` stroke digits of each of ``digits``: (N, side, side) uint8 images and (N,) labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(list(digits)), per_class)
    return np.stack([stroke_digit(int(d), rng, side) for d in labels]), labels


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photo-like RGB picture: smooth random blobs at a few scales (mostly of lightness) over a colour gradient."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = rng.uniform(50, 170, 3) + rng.uniform(-60, 60, 3) * x[..., None] + rng.uniform(-60, 60, 3) * y[..., None]
    picture = base.copy()
    for cells, amplitude in ((4, 45.0), (12, 30.0), (40, 14.0)):
        for c, share in ((0, 1.0), (1, 0.3), (2, 0.3), (3, 0.3)):  # mostly light and dark, some colour
            small = rng.normal(0, 1, (cells, cells)).astype(np.float32)
            blobs = share * amplitude * np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
            if c:
                picture[..., c - 1] += blobs
            else:
                picture += blobs[..., None]
    return np.clip(picture, 0, 255).astype(np.uint8)


def texture_tiles(pictures: int, tiles_per_side: int, tile: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``pictures`` textures cut into non-overlapping ``tile`` px tiles: (N, tile, tile, 3) uint8 and the
    picture each tile is from (its class)."""
    rng = np.random.default_rng(seed)
    tiles, labels = [], []
    side = tiles_per_side * tile
    for p in range(pictures):
        picture = texture(rng, side, side)
        for r in range(tiles_per_side):
            for c in range(tiles_per_side):
                tiles.append(picture[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile])
                labels.append(p)
    return np.stack(tiles), np.array(labels)


EDITS = ("jpeg55", "resize77", "bright12", "crop3", "blur08", "png")
#: more edits, to measure with (``benchmarks/copies_real.py --scores``): cut 3 % off the left only, darken by 12 %,
#: brighten by 30 % (the highlights clip)
MORE_EDITS = ("crop3left", "dark12", "bright30")


def edited_copy(tile: np.ndarray, edit: str) -> Image.Image:
    """A copy of the uint8 RGB ``tile`` with one of :data:`EDITS` (or :data:`MORE_EDITS`), as a person would save it."""
    image = Image.fromarray(tile)
    side = image.width
    if edit == "jpeg55":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=55)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if edit == "resize77":
        return image.resize((77 * side // 96, 77 * side // 96), Image.BICUBIC)
    if edit == "bright12":
        return ImageEnhance.Brightness(image).enhance(1.12)
    if edit == "crop3":
        cut = round(0.03 * side)
        return image.crop((cut, cut, side, side)).resize((side, side), Image.BICUBIC)
    if edit == "crop3left":
        return image.crop((round(0.03 * side), 0, side, side)).resize((side, side), Image.BICUBIC)
    if edit in ("dark12", "bright30"):
        return ImageEnhance.Brightness(image).enhance(0.88 if edit == "dark12" else 1.3)
    if edit == "blur08":
        return image.filter(ImageFilter.GaussianBlur(0.8))
    if edit == "png":
        return image.copy()
    raise ValueError(edit)

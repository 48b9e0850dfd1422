"""Pictures of what a network sees, in pure NumPy/Pillow (no TensorFlow).

Colour maps, per-channel normalisation, activation grids and Grad-CAM
overlays, shared by the CLI's PNGs and the GUI (which must not import
TensorFlow outside the engine thread).
"""

from __future__ import annotations

import numpy as np

_VIRIDIS = np.array([
    [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]], dtype=np.float64)
_JET = np.array([[0, 0, 131], [0, 60, 255], [0, 200, 255], [90, 255, 165], [255, 255, 0],
                 [255, 130, 0], [220, 0, 0], [128, 0, 0]], dtype=np.float64)


def _lut(anchors: np.ndarray) -> np.ndarray:
    xs = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, xs, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


COLORMAPS = {"viridis": _lut(_VIRIDIS), "jet": _lut(_JET)}


def normalize(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own range (constant arrays give zeros)."""
    a = np.asarray(a, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def colorize(a: np.ndarray, colormap: str = "viridis", already_normalized: bool = False) -> np.ndarray:
    """A 2-D array -> uint8 RGB image through a colour map."""
    n = a if already_normalized else normalize(a)
    return COLORMAPS[colormap][np.clip((np.asarray(n) * 255).round(), 0, 255).astype(np.uint8)]


def resize_map(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to (height, width)."""
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(np.asarray(a, np.float32), "F").resize((w, h), Image.Resampling.BILINEAR))


def gradcam_overlay(image_uint8: np.ndarray, cam: np.ndarray, opacity: float = 0.5,
                    size: tuple[int, int] | None = None) -> np.ndarray:
    """Blend a Grad-CAM map (any size, [0, 1]) over an image (H, W, 1 or 3).

    The map is resized bilinearly, so a coarse map (a few cells per side) reads as smooth regions rather
    than blocks. ``size`` (height, width): make the overlay at that size (the image is resized smoothly too),
    for showing a small model input large; None keeps the image's own size.
    """
    from PIL import Image

    img = np.asarray(image_uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if size is not None and tuple(size) != img.shape[:2]:
        h, w = size
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).resize(
            (w, h), Image.Resampling.BILINEAR))
    img = img.astype(np.float32)
    heat = colorize(np.clip(resize_map(cam, img.shape[:2]), 0, 1), "jet", already_normalized=True).astype(np.float32)
    return np.clip((1 - opacity) * img + opacity * heat, 0, 255).astype(np.uint8)


def channel_grid(maps: np.ndarray, columns: int | None = None, cell: int = 64, gap: int = 2,
                 colormap: str = "viridis") -> np.ndarray:
    """All channels of one layer's maps (H, W, C) as one RGB image, each scaled to its own range."""
    from PIL import Image

    h, w, c = maps.shape
    columns = columns or int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / columns))
    scale = max(1, cell // max(h, w))
    ch, cw = h * scale, w * scale
    out = np.full((rows * (ch + gap) + gap, columns * (cw + gap) + gap, 3), 255, np.uint8)
    for i in range(c):
        r, col = divmod(i, columns)
        tile = Image.fromarray(colorize(maps[..., i], colormap)).resize((cw, ch), Image.Resampling.NEAREST)
        y, x = gap + r * (ch + gap), gap + col * (cw + gap)
        out[y:y + ch, x:x + cw] = np.asarray(tile)
    return out

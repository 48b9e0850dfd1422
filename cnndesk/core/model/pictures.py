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


def colorize_channels(maps: np.ndarray, colormap: str = "viridis", count: int | None = None) -> np.ndarray:
    """The channels of one layer's maps (H, W, C) -> uint8 RGB pictures (C, H, W, 3), in one NumPy pass.

    Each channel is scaled to its own range exactly as ``colorize`` scales one map (constant channels give the
    colour map's low end), so a channel looks the same whichever function drew it; doing all channels at once
    saves a Python round per channel, which dominates for layers of hundreds of small maps. ``count``: colour
    only the first ``count`` channels (what is shown), None: all.
    """
    a = np.asarray(maps, dtype=np.float32)
    if count is not None:
        a = a[..., :max(0, count)]
    if a.shape[-1] == 0 or a.size == 0:
        return np.zeros((a.shape[-1],) + a.shape[:2] + (3,), np.uint8)
    lo = a.min(axis=(0, 1))
    hi = a.max(axis=(0, 1))
    # the same float32 arithmetic as normalize(): the range is taken in float64, then applied in float32
    span = (hi.astype(np.float64) - lo.astype(np.float64)).astype(np.float32)
    flat = span <= 0
    n = a - lo  # a new array: the in-place steps below never touch the caller's maps
    n /= np.where(flat, np.float32(1), span)
    n *= np.float32(255)
    n[..., flat] = 0
    np.round(n, out=n)
    np.clip(n, 0, 255, out=n)
    index = np.ascontiguousarray(np.moveaxis(n.astype(np.uint8), -1, 0))  # (C, H, W)
    return COLORMAPS[colormap][index]


def resize_map(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to (height, width)."""
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(np.asarray(a, np.float32), "F").resize((w, h), Image.Resampling.BILINEAR))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A 1-D Gaussian kernel summing to 1, reaching out three sigmas each side."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur_rows(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each row of ``a`` with ``kernel``, mirroring the edges (so a border is not pulled towards 0)."""
    r = len(kernel) // 2
    padded = np.pad(a, ((0, 0), (r, r)), mode="symmetric")
    out = np.zeros_like(a)
    for i, weight in enumerate(kernel):  # a sum of shifted copies: a few dozen cheap array additions
        out += weight * padded[:, i:i + a.shape[1]]
    return out


#: how far the heat map is blurred for showing, in map cells (why this much: docs/inspection.md)
CAM_SMOOTH_SIGMA = 1.5


def smooth_map(cam: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """A heat map blurred by a Gaussian of ``sigma`` map cells, its peak kept at the map's own maximum.

    A fine map (a late convolution's 26×26 at 64 px) is spotty: neighbouring cells differ a lot, and bilinear
    upsampling alone shows the spots as speckles. The blur (separable: rows, then columns) gathers them into
    regions a person can read. It is a weighted average with weights summing to 1, so the result stays within
    the map's range; it is then scaled so its maximum is the map's maximum, so that "red = raised the score
    most" still holds after a lone peak has been spread out. A constant map is left as it is; ``sigma`` <= 0
    returns the map unchanged.
    """
    a = np.asarray(cam, dtype=np.float64)
    if sigma <= 0 or a.ndim != 2 or a.size == 0:
        return np.asarray(cam, dtype=np.float32)
    kernel = gaussian_kernel(sigma)
    blurred = _blur_rows(_blur_rows(a, kernel).T, kernel).T
    top, blurred_top = float(a.max()), float(blurred.max())
    if blurred_top > 0 and top > 0:
        blurred *= top / blurred_top
    return np.clip(blurred, float(a.min()), top).astype(np.float32)


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

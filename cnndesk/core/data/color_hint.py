"""Are a dataset's images grayscale? A cheap look at a sample of them, to suggest the colour mode.

Reading a grayscale dataset as RGB works, but gives the model three identical
input channels: three times the input memory and first-layer weights for
nothing. Pillow reads an image's mode from the file header without decoding
the pixels, so a few dozen files spread over the dataset tell what it holds
in a few milliseconds on a local disk. Images stored as RGB whose channels are
all equal (a grayscale scan saved as RGB) also count as grayscale, judged from
the pixels already decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: how many files' headers are read at most
SAMPLE_SIZE = 48

#: Pillow modes without colour: bilevel, 8-bit grey (with alpha), 16/32-bit integer and float grey
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

#: decoded RGB channels this close (out of 255) still count as equal: lossy formats round a little
CHANNEL_TOLERANCE = 2


@dataclass(frozen=True)
class ColorSample:
    """What a sample of a dataset's images showed about their colour.

    Attributes:
        sampled: images looked at (files that could not be opened are left out).
        grayscale: of them, the ones without colour.
    """

    sampled: int
    grayscale: int

    @property
    def all_grayscale(self) -> bool:
        return self.sampled > 0 and self.grayscale == self.sampled

    def suggestion(self, color_mode: str) -> str | None:
        """The colour mode to suggest instead of ``color_mode``, or None.

        Only grayscale is ever suggested: colour images read as grayscale lose
        information the user may want, so that choice stays theirs.
        """
        return "grayscale" if color_mode == "rgb" and self.all_grayscale else None


def spread(items: Sequence, k: int) -> list:
    """Up to ``k`` items evenly spaced over ``items``, first and last included.

    A dataset's paths are listed class by class, so this reaches every class
    rather than the first class's first files.
    """
    n = len(items)
    if n <= k:
        return list(items)
    if k <= 1:
        return list(items[:k])
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


def is_gray_header(img: Image.Image) -> bool:
    """Whether an opened (not decoded) image holds no colour, from its mode and palette."""
    if img.mode in GRAY_MODES:
        return True
    if img.mode in ("P", "PA") and img.palette is not None and img.palette.mode == "RGB":
        raw = bytes(img.palette.palette)
        if img.palette.rawmode not in (None, "RGB") or not raw or len(raw) % 3:
            return False
        rgb = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        return bool((rgb == rgb[:, :1]).all())
    return False


def file_is_gray(path) -> bool | None:
    """Whether the image file ``path`` is stored without colour; None if it cannot be opened."""
    try:
        with Image.open(path) as img:
            return is_gray_header(img)
    except Exception:  # a damaged or vanished file says nothing about the others
        return None


def pixels_are_gray(image: np.ndarray, tolerance: int = CHANNEL_TOLERANCE) -> bool:
    """Whether a decoded (H, W, C) uint8 image has equal channels (one channel: trivially)."""
    if image.ndim < 3 or image.shape[-1] == 1:
        return True
    wide = image.astype(np.int16)
    return int(np.abs(wide - wide[..., :1]).max()) <= tolerance


def sample_colors(paths: Sequence, images: np.ndarray | None = None, size: int = SAMPLE_SIZE) -> ColorSample:
    """Look at up to ``size`` of ``paths`` (spread over the list) and count the grayscale ones.

    Args:
        paths: image files, e.g. ``LoadedDataset.paths``.
        images: their decoded pixels, row for row with ``paths``, e.g.
            ``LoadedDataset.images``; an image stored in colour whose pixels
            are all grey counts as grayscale. Optional.
        size: at most this many files are opened.
    """
    rows = spread(range(len(paths)), size)
    sampled = gray = 0
    for row in rows:
        stored_gray = file_is_gray(paths[row])
        if stored_gray is None:
            continue
        sampled += 1
        if stored_gray or (images is not None and images.shape[-1] == 3 and pixels_are_gray(images[row])):
            gray += 1
    return ColorSample(sampled, gray)

"""Pictures of a probe recording: the pieces the probe view shows, and the exported animation or strip.

Every picture is uint8 RGB (H, W, 3) made with NumPy and Pillow, so the GUI,
the CLI and the tests draw the same thing. ``frame_sheet`` lays out one frame
(per probe: the image, its heat map, the maps of one layer and the top
predictions; then the first-layer filters); ``save_animation`` writes the
sheets of all frames as an animated GIF or WebP, ``save_strip`` as one PNG.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import fsutil
from ..errors import UserError
from ..model.calibration import temper
from ..model.pictures import COLORMAPS, gradcam_overlay
from .probes import ProbeFrame, ProbeRecording

#: the side of a probe image, its heat map and each map tile in a sheet, in pixels
CELL = 72
MAP_TILE = 40
GAP = 4
BARS_WIDTH = 190
#: frames a PNG strip puts side by side before it starts a new row
STRIP_COLUMNS = 8
ANIMATION_SUFFIXES = (".gif", ".webp")


def _resize(img: np.ndarray, width: int, height: int, smooth: bool = True) -> np.ndarray:
    from PIL import Image

    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    out = np.asarray(Image.fromarray(img).resize((width, height), resample).convert("RGB"))
    return out


def probe_picture(recording: ProbeRecording, probe: int, size: int = CELL) -> np.ndarray:
    return _resize(recording.probes[probe].image, size, size)


def heat_picture(recording: ProbeRecording, frame: ProbeFrame, probe: int, size: int = CELL) -> np.ndarray:
    """The probe with its heat map over it (the probe alone when the frame has no heat maps)."""
    image = recording.probes[probe].image
    if frame.cams is None:
        return _resize(image, size, size)
    return gradcam_overlay(image, frame.cams[probe].astype(np.float32) / 255.0, size=(size, size))


def maps_picture(frame: ProbeFrame, layer: str | None, probe: int, tile: int = MAP_TILE) -> np.ndarray:
    """The kept channels of ``layer`` for one probe, side by side (viridis, each channel on its own range)."""
    maps = frame.maps.get(layer) if layer else None
    if maps is None:
        return np.full((tile, tile, 3), 255, np.uint8)
    tiles = [_resize(COLORMAPS["viridis"][m], tile, tile, smooth=False) for m in maps[probe]]
    return _row(tiles, GAP)


def filters_picture(frame: ProbeFrame, tile: int = 24) -> np.ndarray | None:
    """The first-layer filters side by side (grey = 0; RGB filters in colour), or None without them."""
    if frame.filters is None or not len(frame.filters):
        return None
    tiles = [_resize(f if f.shape[-1] in (1, 3) else f[..., :1], tile, tile, smooth=False) for f in frame.filters]
    return _row(tiles, 2)


def top_predictions(recording: ProbeRecording, frame: ProbeFrame, probe: int, k: int = 3,
                    temperature: float = 1.0) -> list[tuple[str, float]]:
    """The ``k`` most likely classes of ``probe`` in ``frame``, their probabilities calibrated with ``temperature``
    (``core.model.calibration.temper``; a frame keeps the top ``TOP_K`` classes, so with more classes the others
    are tempered as one share: exact up to ``TOP_K`` classes, close beyond)."""
    names = recording.class_names
    top, top_p = frame.top[probe], np.asarray(frame.top_p[probe], np.float64)
    if temperature != 1.0:
        # the classes outside the frame, as one share (none when it holds every class: 1 - sum is then rounding)
        rest = [max(1.0 - float(top_p.sum()), 0.0)] if len(top_p) < len(names) else []
        top_p = temper(np.append(top_p, rest)[None], temperature)[0, :len(top_p)]
    return [(names[int(i)], float(p)) for i, p in zip(top[:k], top_p[:k])]


def _row(tiles: list[np.ndarray], gap: int) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = np.full((h, w, 3), 255, np.uint8)
    x = 0
    for t in tiles:
        out[:t.shape[0], x:x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out


def _bars(items: list[tuple[str, float]], height: int, true_name: str | None) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (BARS_WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    row = max(14, height // max(3, len(items)))
    for i, (name, p) in enumerate(items):
        y = i * row
        mark = "*" if name == true_name else ""
        draw.text((2, y), f"{mark}{name[:14]} {p:.0%}", fill=(33, 33, 33))
        draw.rectangle([2, y + 11, 2 + int((BARS_WIDTH - 6) * p), y + 13],
                       fill=(25, 118, 210) if i == 0 else (144, 202, 249))
    return np.asarray(img)


def frame_sheet(recording: ProbeRecording, index: int, layer: str | None = None) -> np.ndarray:
    """One frame as a picture: a title, a row per probe, and the first-layer filters below."""
    from PIL import Image, ImageDraw

    frame = recording.frames[index]
    layer = layer if layer in recording.layers else (recording.layers[-1] if recording.layers else None)
    rows = []
    for p, probe in enumerate(recording.probes):
        true_name = recording.class_names[probe.true_class] if probe.true_class is not None else None
        rows.append(_row([probe_picture(recording, p), heat_picture(recording, frame, p),
                          maps_picture(frame, layer, p), _bars(top_predictions(recording, frame, p), CELL, true_name)],
                         GAP * 2))
    filters = filters_picture(frame)
    if filters is not None:
        rows.append(filters)
    width = max(r.shape[1] for r in rows) + 2 * GAP
    title = Image.new("RGB", (width, 16), "white")
    ImageDraw.Draw(title).text((GAP, 2), f"{frame.label.capitalize()}   maps: {layer or '-'}", fill=(33, 33, 33))
    parts = [np.asarray(title)]
    for r in rows:
        padded = np.full((r.shape[0] + GAP, width, 3), 255, np.uint8)
        padded[:r.shape[0], GAP:GAP + r.shape[1]] = r
        parts.append(padded)
    return np.concatenate(parts)


def _check_frames(recording: ProbeRecording) -> None:
    if not recording.frames:
        raise UserError("The recording has no frames yet: train with probe images first.")


def save_animation(recording: ProbeRecording, path: str | os.PathLike, layer: str | None = None,
                   ms_per_frame: int = 500) -> Path:
    """Write every frame's sheet as an animated GIF or WebP (by ``path``'s suffix), looping.

    Raises:
        UserError: another suffix, no frames, or a file that cannot be written.
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in ANIMATION_SUFFIXES:
        raise UserError(f"An animation is saved as .gif or .webp, not {path.suffix or 'a file without suffix'}.")
    _check_frames(recording)
    sheets = [Image.fromarray(frame_sheet(recording, i, layer)) for i in range(len(recording.frames))]
    extra = {"optimize": False} if path.suffix.lower() == ".gif" else {"lossless": True}
    try:
        with fsutil.replacing(path) as tmp:
            sheets[0].save(tmp, save_all=True, append_images=sheets[1:], duration=ms_per_frame, loop=0, **extra)
    except OSError as e:
        raise UserError(f"Could not write {path}: {e.strerror or e}.") from None
    return path


def save_strip(recording: ProbeRecording, path: str | os.PathLike, layer: str | None = None) -> Path:
    """Write the frames' sheets side by side as one PNG (``STRIP_COLUMNS`` to a row).

    Raises:
        UserError: no frames, or a file that cannot be written.
    """
    from PIL import Image

    _check_frames(recording)
    sheets = [frame_sheet(recording, i, layer) for i in range(len(recording.frames))]
    h, w = max(s.shape[0] for s in sheets), max(s.shape[1] for s in sheets)
    cols = min(STRIP_COLUMNS, len(sheets))
    rows = -(-len(sheets) // cols)
    out = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, s in enumerate(sheets):
        r, c = divmod(i, cols)
        out[r * h:r * h + s.shape[0], c * w:c * w + s.shape[1]] = s
    try:
        with fsutil.replacing(path) as tmp:
            Image.fromarray(out).save(tmp, format="PNG")
    except OSError as e:
        raise UserError(f"Could not write {path}: {e.strerror or e}.") from None
    return Path(path)

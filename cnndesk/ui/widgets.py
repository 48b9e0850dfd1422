"""Small Qt pieces shared by the panels: image conversion, size parsing."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap

from ..core.images import parse_image_size
from ..core.errors import UserError


def array_to_qimage(arr: np.ndarray) -> QImage:
    """A uint8 array (H, W), (H, W, 1) or (H, W, 3) -> a QImage that owns its pixels."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    if a.ndim == 2:
        img = QImage(a.data, w, h, a.strides[0], QImage.Format_Grayscale8)
    elif a.shape[-1] == 4:
        img = QImage(a.data, w, h, a.strides[0], QImage.Format_RGBA8888)
    else:
        img = QImage(a.data, w, h, a.strides[0], QImage.Format_RGB888)
    return img.copy()  # detach from the NumPy buffer


def array_to_pixmap(arr: np.ndarray, width: int | None = None, height: int | None = None, smooth: bool = False) -> QPixmap:
    from PySide6.QtCore import Qt

    pm = QPixmap.fromImage(array_to_qimage(arr))
    if width and height:
        pm = pm.scaled(width, height, Qt.KeepAspectRatio,
                       Qt.SmoothTransformation if smooth else Qt.FastTransformation)
    return pm


def parse_size(text: str) -> tuple[int, int] | None:
    """"64" -> (64, 64); "96x128" -> (96, 128); None when not a size the core accepts (``parse_image_size``)."""
    try:
        return parse_image_size(text)
    except UserError:
        return None


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

"""Small Qt pieces shared by the panels: image conversion, size parsing, and the viewer's tiles,
grids, probability bars and colour bars."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGridLayout, QHBoxLayout, QLabel, QLayout, QProgressBar, QPushButton, QSizePolicy, QVBoxLayout, QWidget,
)

from ..core.data.images import parse_image_size
from ..core.errors import UserError
from ..core.model.pictures import colorize, colorize_channels, COLORMAPS


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


# -- tiles and grids shared by the viewer's tabs ------------------------------------------------

MAX_CHANNEL_TILES = 256


def colorbar_pixmap(width: int = 14, height: int = 160, colormap: str = "viridis") -> QPixmap:
    """A vertical strip of a colour map, high values at the top."""
    lut = COLORMAPS[colormap][::-1]
    col = np.repeat(lut[np.linspace(0, 255, height).astype(int)][:, None, :], width, axis=1)
    return array_to_pixmap(col)


def channel_pixmap(m: np.ndarray, size: int) -> QPixmap:
    """One channel's map, scaled to its own range, through viridis, as a size×size pixmap (nearest)."""
    return array_to_pixmap(colorize(m), size, size)


def clear_layout(layout: QLayout) -> None:
    """Remove and delete every item of a layout (the layout itself stays)."""
    while layout.count():
        item = layout.takeAt(0)
        if item.widget():
            item.widget().deleteLater()


class JobRow(QWidget):
    """A view's button that starts its job, the job's progress bar and Cancel (shown while it runs), in a row that
    the view may extend (``layout()``). The view drives it from what ``ui.engine.ShownJob`` tells it.

    Args:
        start_text: the start button's words.
        names: the object names of the start button, the progress bar and Cancel.
        stretch_progress: the bar takes the room left in the row (else it keeps its own width).
    """

    def __init__(self, start_text: str, names: tuple[str, str, str], stretch_progress: bool = False,
                 parent: QWidget | None = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.start_button = QPushButton(start_text, objectName=names[0])
        self.progress = QProgressBar(objectName=names[1], visible=False)
        self.cancel_button = QPushButton("Cancel", objectName=names[2], visible=False)
        row.addWidget(self.start_button)
        row.addWidget(self.progress, 1 if stretch_progress else 0)
        row.addWidget(self.cancel_button)
        self._can_start = True

    @property
    def running(self) -> bool:
        return self.cancel_button.isVisibleTo(self)

    def set_can_start(self, can: bool) -> None:
        """Whether the job can start now (while one runs, the button waits for it to end)."""
        self._can_start = can
        self.start_button.setEnabled(can and not self.running)

    def set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.start_button.setEnabled(self._can_start and not running)
        if running:
            self.progress.setValue(0)

    def set_progress(self, percent: float) -> None:
        self.progress.setValue(int(percent))


class ColorBar(QWidget):
    """A colour map's scale with "high" at the top and "low" at the bottom, at a fixed height.

    The height is fixed so that a squeezed layout cannot squash the gradient into a few pixels.
    """

    def __init__(self, colormap: str, height: int = 160, parent: QWidget | None = None):
        super().__init__(parent)
        self.bar = QLabel(objectName="colorBar")
        self.bar.setPixmap(colorbar_pixmap(14, height, colormap))
        self.bar.setFixedSize(14, height)
        labels = QVBoxLayout()
        labels.setContentsMargins(0, 0, 0, 0)
        self.high = QLabel("high")
        self.low = QLabel("low")
        labels.addWidget(self.high, 0, Qt.AlignTop)
        labels.addStretch(1)
        labels.addWidget(self.low, 0, Qt.AlignBottom)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(self.bar)
        row.addLayout(labels)
        self.setFixedHeight(height)
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)


class ProbabilityBars(QWidget):
    """Horizontal bars of the top-k classes with their probabilities."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("probabilityBars")
        self.items: list[tuple[str, float]] = []
        self.setMinimumSize(260, 120)

    def set_items(self, items: list[tuple[str, float]]) -> None:
        self.items = list(items)
        self.setMinimumHeight(max(120, 28 * len(self.items) + 8))
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fm = p.fontMetrics()
        label_w = min(max((fm.horizontalAdvance(c) for c, _ in self.items), default=40) + 10, self.width() // 2)
        row_h = 26
        for i, (name, prob) in enumerate(self.items):
            y = 4 + i * row_h
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(0, y, label_w - 6, row_h - 4), Qt.AlignRight | Qt.AlignVCenter,
                       fm.elidedText(name, Qt.ElideRight, label_w - 6))
            bar_w = self.width() - label_w - 60
            p.setPen(Qt.NoPen)
            p.setBrush(QColor("#e8eef3"))
            p.drawRoundedRect(QRectF(label_w, y + 3, bar_w, row_h - 10), 3, 3)
            p.setBrush(QColor("#1976d2" if i == 0 else "#90caf9"))
            p.drawRoundedRect(QRectF(label_w, y + 3, max(2.0, bar_w * prob), row_h - 10), 3, 3)
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(label_w + bar_w + 4, y, 56, row_h - 4), Qt.AlignLeft | Qt.AlignVCenter, f"{prob:.1%}")
        p.end()


class ImageTile(QLabel):
    """A pixmap with a caption that reports clicks."""

    clicked = Signal(int)

    def __init__(self, index: int, pixmap: QPixmap, caption: str, tooltip: str = ""):
        super().__init__()
        self.index = index
        self.caption = caption
        self.setPixmap(pixmap)
        self.setToolTip(tooltip or caption)
        self.setCursor(Qt.PointingHandCursor)
        self.setAlignment(Qt.AlignCenter)

    def mousePressEvent(self, event) -> None:
        self.clicked.emit(self.index)


class ActivationGrid(QWidget):
    """The channels of one layer as a grid; click a channel to enlarge it.

    The channel boxes are kept between layers and images and only given new pictures and captions: making
    hundreds of widgets again for every image would cost more than drawing the maps.
    """

    channel_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("activationGrid")
        self.grid = QGridLayout(self)
        self.grid.setSpacing(6)
        self.tiles: list[ImageTile] = []  # the tiles shown, in channel order
        self._boxes: list[tuple[QWidget, ImageTile, QLabel]] = []  # every box made so far, shown or hidden
        self._placed: tuple[int, int] = (0, 0)  # (boxes, columns) laid out in the grid

    def show_maps(self, maps: np.ndarray, tile: int = 96, pictures: np.ndarray | None = None) -> None:
        """Show the first MAX_CHANNEL_TILES channels of maps (H, W, C), about 1.6 times as wide as tall.

        ``pictures``: those channels already coloured (``colorize_channels``, (C, H, W, 3)), e.g. by the engine
        thread with its answer; None or too few: coloured here, in one pass.
        """
        c = min(maps.shape[-1], MAX_CHANNEL_TILES)
        if pictures is None or len(pictures) < c:
            pictures = colorize_channels(maps, count=c)
        shown = np.asarray(maps[..., :c], dtype=np.float32)
        stats = (shown.min(axis=(0, 1)), shown.max(axis=(0, 1)), shown.mean(axis=(0, 1))) if c else ((), (), ())
        while len(self._boxes) < c:
            self._boxes.append(self._channel_box(len(self._boxes)))
        self._place(c, max(1, min(8, math.ceil(math.sqrt(c * 1.6)))))
        for i, (lo, hi, mean) in enumerate(zip(*stats)):
            _, t, cap = self._boxes[i]
            t.caption = f"ch {i} · mean {mean:.3g}"
            t.setPixmap(array_to_pixmap(pictures[i], tile, tile))
            t.setToolTip(f"Channel {i}: min {lo:.3g}, max {hi:.3g}, mean {mean:.3g}. Click to enlarge.")
            cap.setText(t.caption)
        self.tiles = [t for _, t, _ in self._boxes[:c]]

    def _place(self, count: int, columns: int) -> None:
        """Lay the first ``count`` boxes out in ``columns`` columns and hide the others (only when that changes)."""
        if self._placed == (count, columns):
            return
        while self.grid.count():
            self.grid.takeAt(0)  # the boxes stay, for the next layer
        for i, (box, _, _) in enumerate(self._boxes):
            if i < count:
                r, col = divmod(i, columns)
                self.grid.addWidget(box, r, col)
            box.setVisible(i < count)
        self._placed = (count, columns)

    def _channel_box(self, i: int) -> tuple[QWidget, ImageTile, QLabel]:
        box = QWidget(self)
        v = QVBoxLayout(box)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(1)
        t = ImageTile(i, QPixmap(), "")
        t.clicked.connect(self.channel_clicked)
        cap = QLabel(alignment=Qt.AlignCenter)
        cap.setStyleSheet("font-size: 9pt; color: #455a64")
        v.addWidget(t)
        v.addWidget(cap)
        box.hide()
        return box, t, cap

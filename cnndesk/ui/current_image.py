"""The current image of the viewer: as opened and as the model sees it, its verdict and probability bars."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ..core.data.scanning import printable
from ..core.project.session import Classified
from .widgets import ProbabilityBars, array_to_pixmap


class CurrentImageView(QWidget):
    """The image shown: the original beside what the model sees, "It looks like …", where it came from, the bars."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        tl = QHBoxLayout(self)
        tl.setContentsMargins(0, 0, 0, 0)
        self.original_view = self._image_box("Original", "originalImage")
        self.model_view = self._image_box("As the model sees it", "modelInputImage")
        tl.addWidget(self.original_view[0])
        tl.addWidget(self.model_view[0])
        right = QVBoxLayout()
        self.verdict = QLabel(objectName="verdict", wordWrap=True)
        self.verdict.setStyleSheet("font-size: 15pt; font-weight: bold")
        right.addWidget(self.verdict)
        self.image_info = QLabel(objectName="imageInfo", wordWrap=True)
        self.image_info.setStyleSheet("color: #455a64")
        right.addWidget(self.image_info)
        self.bars = ProbabilityBars()
        right.addWidget(self.bars, 1)
        tl.addLayout(right, 1)

    @staticmethod
    def _image_box(title: str, name: str):
        box = QFrame()
        v = QVBoxLayout(box)
        v.setContentsMargins(0, 0, 0, 0)
        cap = QLabel(title, alignment=Qt.AlignCenter)
        cap.setStyleSheet("color: #455a64")
        img = QLabel(objectName=name, alignment=Qt.AlignCenter)
        img.setFixedSize(200, 200)
        img.setStyleSheet("background: #f5f7f9; border: 1px solid #cfd8dc")
        v.addWidget(cap)
        v.addWidget(img)
        return box, img

    def show_image(self, im: Classified | None, original: QPixmap | None = None) -> None:
        """The image as opened (``original``) and as the model sees it, the verdict, where it came from, the bars."""
        self.original_view[1].clear()
        self.model_view[1].clear()
        self.image_info.setText(self._image_source(im) if im is not None and not im.error else "")
        if im is None:
            self.verdict.setText("")
            self.bars.set_items([])
        elif im.error:
            self.verdict.setText(f"{im.label}: {im.error}")
            self.verdict.setStyleSheet("font-size: 12pt; font-weight: bold; color: #b71c1c")
            self.bars.set_items([])
        else:
            name, prob = im.top[0]
            self.verdict.setStyleSheet("font-size: 15pt; font-weight: bold")
            self.verdict.setText(f"It looks like “{printable(name)}” ({prob:.1%} sure).")
            self.bars.set_items([(printable(c), p) for c, p in im.top])
            self.original_view[1].setPixmap(original.scaled(196, 196, Qt.KeepAspectRatio, Qt.SmoothTransformation))
            self.model_view[1].setPixmap(array_to_pixmap(im.prepared, 196, 196))

    @staticmethod
    def _image_source(im: Classified) -> str:
        """"true class: cat · cat_017.png" for an image from the evaluation, else the file's name."""
        name = printable(im.label)
        return f"true class: {printable(im.true_class)} · {name}" if im.true_class else name


def qimage_to_array(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format_RGB888)
    w, h = img.width(), img.height()
    ptr = img.constBits()
    arr = np.frombuffer(ptr, np.uint8, count=img.bytesPerLine() * h).reshape(h, img.bytesPerLine())
    return arr[:, : w * 3].reshape(h, w, 3).copy()

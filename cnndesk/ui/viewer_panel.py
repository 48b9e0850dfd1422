"""Viewer: drop images, see the top classes, the activation maps, Grad-CAM and evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QImageReader, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QApplication, QComboBox, QFileDialog, QFrame, QGridLayout, QHBoxLayout, QHeaderView,
    QInputDialog, QLabel, QListWidget, QListWidgetItem, QPushButton, QScrollArea, QSlider, QSplitter,
    QStackedWidget, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget,
)

from ..core.images import IMAGE_EXTENSIONS, Preprocessing
from ..core.scanning import printable
from ..core.pictures import COLORMAPS, colorize, gradcam_overlay
from .engine import EngineWorker
from .widgets import array_to_pixmap, array_to_qimage

MAX_CHANNEL_TILES = 256
INPUT_LAYER = "input (the image's channels)"
OVERVIEW_CHANNELS = 8
IMAGE_FILTER = "Images (" + " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + ")"


@dataclass
class ViewedImage:
    """One image in the strip: where it came from, what the model sees and says."""

    label: str
    path: str | None
    original: QPixmap | None = None
    prepared: np.ndarray | None = None
    top: list = field(default_factory=list)
    probabilities: np.ndarray | None = None
    error: str | None = None


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


def colorbar_pixmap(width: int = 14, height: int = 160, colormap: str = "viridis") -> QPixmap:
    lut = COLORMAPS[colormap][::-1]
    col = np.repeat(lut[np.linspace(0, 255, height).astype(int)][:, None, :], width, axis=1)
    return array_to_pixmap(col)


def _channel_pixmap(m: np.ndarray, size: int) -> QPixmap:
    return array_to_pixmap(colorize(m), size, size)


class ActivationGrid(QWidget):
    """The channels of one layer as a grid; click a channel to enlarge it."""

    channel_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("activationGrid")
        self.grid = QGridLayout(self)
        self.grid.setSpacing(6)
        self.tiles: list[ImageTile] = []

    def show_maps(self, maps: np.ndarray, tile: int = 96) -> None:
        for t in self.tiles:
            t.deleteLater()
        self.tiles = []
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        c = min(maps.shape[-1], MAX_CHANNEL_TILES)
        cols = max(1, min(8, math.ceil(math.sqrt(c * 1.6))))
        for i in range(c):
            m = maps[..., i]
            mean = float(m.mean())
            box = QWidget()
            v = QVBoxLayout(box)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(1)
            t = ImageTile(i, _channel_pixmap(m, tile), f"ch {i} · mean {mean:.3g}",
                          f"Channel {i}: min {float(m.min()):.3g}, max {float(m.max()):.3g}, mean {mean:.3g}. "
                          "Click to enlarge.")
            t.clicked.connect(self.channel_clicked)
            cap = QLabel(t.caption)
            cap.setAlignment(Qt.AlignCenter)
            cap.setStyleSheet("font-size: 9pt; color: #455a64")
            v.addWidget(t)
            v.addWidget(cap)
            r, col = divmod(i, cols)
            self.grid.addWidget(box, r, col)
            self.tiles.append(t)


class ViewerPanel(QWidget):
    """Classify dropped images and look inside the network.

    Signals:
        status(str): a short message for the status bar.
        class_names_changed(): the user renamed the classes of an opened model.
    """

    status = Signal(str)
    class_names_changed = Signal()
    paths_dropped = Signal(list)  # local files or folders dropped here; the window decides what each is

    def __init__(self, engine, parent: QWidget | None = None):
        super().__init__(parent)
        self.engine = engine
        self.setAcceptDrops(True)
        self.images: list[ViewedImage] = []
        self.current: ViewedImage | None = None
        self.class_names: list[str] = []
        self.preprocessing: Preprocessing | None = None
        self.source = ""
        self.editable_names = False
        self.data = None
        self.evaluation = None
        self.inspection: dict | None = None
        self.cam: np.ndarray | None = None
        self._has_model = False
        self._training = False
        self._build()
        self.set_enabled_state(False, False)

    # -- layout ------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.open_button = QPushButton("Open images…", objectName="openImages")
        self.open_button.clicked.connect(self.open_images_dialog)
        self.paste_button = QPushButton("Paste", objectName="pasteButton")
        self.paste_button.clicked.connect(self.paste_image)
        self.save_view_button = QPushButton("Save view as PNG…", objectName="saveView")
        self.save_view_button.clicked.connect(self.save_view_dialog)
        self.names_button = QPushButton("Class names…", objectName="classNamesButton", visible=False)
        self.names_button.clicked.connect(self.edit_class_names)
        self.model_label = QLabel(objectName="modelLabel")
        self.model_label.setStyleSheet("color: #455a64")
        for w in (self.open_button, self.paste_button, self.save_view_button, self.names_button):
            bar.addWidget(w)
        bar.addWidget(self.model_label, 1)
        outer.addLayout(bar)

        self.placeholder = QLabel(objectName="viewerPlaceholder", alignment=Qt.AlignCenter, wordWrap=True)
        self.placeholder.setStyleSheet("font-size: 14pt; color: #78909c; border: 2px dashed #b0bec5; "
                                       "border-radius: 12px; padding: 30px")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        content = QWidget()
        self.stack.addWidget(content)
        outer.addWidget(self.stack, 1)

        cl = QVBoxLayout(content)
        cl.setContentsMargins(0, 0, 0, 0)
        self.strip = QListWidget(objectName="thumbnailStrip")
        self.strip.setViewMode(QListWidget.IconMode)
        self.strip.setFlow(QListWidget.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setIconSize(QSize(64, 64))
        self.strip.setFixedHeight(112)
        self.strip.setMovement(QListWidget.Static)
        self.strip.setSpacing(4)
        self.strip.currentRowChanged.connect(self._on_strip_row)
        cl.addWidget(self.strip)

        split = QSplitter(Qt.Vertical)
        cl.addWidget(split, 1)
        top = QWidget()
        tl = QHBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        self.original_view = self._image_box("Original", "originalImage")
        self.model_view = self._image_box("As the model sees it", "modelInputImage")
        tl.addWidget(self.original_view[0])
        tl.addWidget(self.model_view[0])
        right = QVBoxLayout()
        self.verdict = QLabel(objectName="verdict", wordWrap=True)
        self.verdict.setStyleSheet("font-size: 15pt; font-weight: bold")
        right.addWidget(self.verdict)
        self.bars = ProbabilityBars()
        right.addWidget(self.bars, 1)
        tl.addLayout(right, 1)
        split.addWidget(top)

        self.tabs = QTabWidget(objectName="viewerTabs")
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 2)
        self._build_activation_tab()
        self._build_overview_tab()
        self._build_gradcam_tab()
        self._build_kernels_tab()
        self._build_evaluation_tab()

    def _image_box(self, title: str, name: str):
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

    def _build_activation_tab(self) -> None:
        w = QWidget()
        v = QVBoxLayout(w)
        row = QHBoxLayout()
        row.addWidget(QLabel("Layer:"))
        self.layer_combo = QComboBox(objectName="layerCombo")
        self.layer_combo.currentIndexChanged.connect(self._show_layer)
        row.addWidget(self.layer_combo, 1)
        self.layer_info = QLabel(objectName="layerInfo")
        row.addWidget(self.layer_info, 2)
        v.addLayout(row)
        body = QHBoxLayout()
        self.grid = ActivationGrid()
        self.grid.channel_clicked.connect(self._enlarge_channel)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.grid)
        body.addWidget(scroll, 3)
        side = QVBoxLayout()
        cb_row = QHBoxLayout()
        cb = QLabel(objectName="colorBar")
        cb.setPixmap(colorbar_pixmap())
        cb_labels = QVBoxLayout()
        cb_labels.addWidget(QLabel("high"))
        cb_labels.addStretch(1)
        cb_labels.addWidget(QLabel("low"))
        cb_row.addWidget(cb)
        cb_row.addLayout(cb_labels)
        note = QLabel("Each map is scaled to its own range: bright = where this channel responds most.", wordWrap=True)
        note.setStyleSheet("color: #546e7a; font-size: 9pt")
        side.addLayout(cb_row)
        side.addWidget(note)
        self.enlarged = QLabel(objectName="enlargedChannel", alignment=Qt.AlignCenter)
        self.enlarged.setFixedSize(220, 220)
        self.enlarged.setStyleSheet("border: 1px solid #cfd8dc")
        self.enlarged_caption = QLabel(objectName="enlargedCaption", wordWrap=True)
        side.addWidget(self.enlarged)
        side.addWidget(self.enlarged_caption)
        side.addStretch(1)
        body.addLayout(side, 1)
        v.addLayout(body, 1)
        self.tabs.addTab(w, "Activation maps")

    def _build_overview_tab(self) -> None:
        self.overview = QWidget(objectName="layerOverview")
        self.overview_layout = QVBoxLayout(self.overview)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.overview)
        self.tabs.addTab(scroll, "All layers")

    def _build_gradcam_tab(self) -> None:
        w = QWidget()
        h = QHBoxLayout(w)
        controls = QVBoxLayout()
        controls.addWidget(QLabel("Explain the class:"))
        self.cam_class = QComboBox(objectName="camClass")
        self.cam_class.currentIndexChanged.connect(self._request_gradcam)
        controls.addWidget(self.cam_class)
        controls.addWidget(QLabel("At the layer:"))
        self.cam_layer = QComboBox(objectName="camLayer")
        self.cam_layer.currentIndexChanged.connect(self._request_gradcam)
        controls.addWidget(self.cam_layer)
        controls.addWidget(QLabel("Heat-map opacity:"))
        self.opacity = QSlider(Qt.Horizontal, objectName="camOpacity", minimum=0, maximum=100, value=50)
        self.opacity.valueChanged.connect(self._show_cam)
        controls.addWidget(self.opacity)
        expl = QLabel("Grad-CAM colours the regions that raised the chosen class's score most (red = most). "
                      "cnndesk uses its HiResCAM form (gradient × activation), which stays faithful for "
                      "Flatten + Dense heads such as the seed model's.", wordWrap=True)
        expl.setStyleSheet("color: #546e7a")
        controls.addWidget(expl)
        controls.addStretch(1)
        h.addLayout(controls, 1)
        right = QVBoxLayout()
        self.cam_view = QLabel(objectName="gradcamOverlay", alignment=Qt.AlignCenter)
        self.cam_view.setMinimumSize(320, 320)
        right.addWidget(self.cam_view, 1)
        self.cam_note = QLabel(objectName="camNote", wordWrap=True, alignment=Qt.AlignCenter)
        self.cam_note.setStyleSheet("color: #8a5300")
        right.addWidget(self.cam_note)
        h.addLayout(right, 3)
        self.tabs.addTab(w, "Grad-CAM")

    def _build_kernels_tab(self) -> None:
        w = QWidget()
        v = QVBoxLayout(w)
        self.kernel_info = QLabel(wordWrap=True)
        v.addWidget(self.kernel_info)
        self.kernel_grid_widget = QWidget(objectName="kernelGrid")
        self.kernel_grid = QGridLayout(self.kernel_grid_widget)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.kernel_grid_widget)
        v.addWidget(scroll, 1)
        self.tabs.addTab(w, "First-layer filters")

    def _build_evaluation_tab(self) -> None:
        w = QWidget()
        v = QVBoxLayout(w)
        row = QHBoxLayout()
        self.evaluate_button = QPushButton("Evaluate on the validation set", objectName="evaluateButton")
        self.evaluate_button.clicked.connect(self.evaluate)
        self.accuracy_label = QLabel(objectName="evalAccuracy")
        self.accuracy_label.setStyleSheet("font-size: 13pt; font-weight: bold")
        row.addWidget(self.evaluate_button)
        row.addWidget(self.accuracy_label, 1)
        v.addLayout(row)
        split = QSplitter(Qt.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(QLabel("Confusion matrix (rows: true class, columns: predicted). Click a cell to list its images."))
        self.confusion = QTableWidget(objectName="confusionMatrix")
        self.confusion.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.confusion.cellClicked.connect(self._on_confusion_cell)
        lv.addWidget(self.confusion, 2)
        self.metrics = QTableWidget(0, 5, objectName="classMetrics")
        self.metrics.setHorizontalHeaderLabels(["Class", "Precision", "Recall", "F1", "Images"])
        self.metrics.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.metrics.verticalHeader().setVisible(False)
        self.metrics.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        lv.addWidget(self.metrics, 1)
        split.addWidget(left)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        self.cell_label = QLabel("Misclassified images, most confident first (click to open)",
                                 objectName="cellLabel", wordWrap=True)
        rv.addWidget(self.cell_label)
        self.eval_list = QListWidget(objectName="evalImages")
        self.eval_list.setViewMode(QListWidget.IconMode)
        self.eval_list.setIconSize(QSize(64, 64))
        self.eval_list.setResizeMode(QListWidget.Adjust)
        self.eval_list.setMovement(QListWidget.Static)
        self.eval_list.setWordWrap(True)
        self.eval_list.setGridSize(QSize(120, 110))
        self.eval_list.itemClicked.connect(self._open_eval_item)
        rv.addWidget(self.eval_list, 1)
        split.addWidget(right)
        v.addWidget(split, 1)
        self.eval_tab = w
        self.tabs.addTab(w, "Evaluation")

    # -- model state ---------------------------------------------------------------
    def set_enabled_state(self, has_model: bool, training: bool) -> None:
        self._has_model, self._training = has_model, training
        usable = has_model and not training
        for w in (self.open_button, self.paste_button, self.evaluate_button):
            w.setEnabled(usable)
        self.evaluate_button.setEnabled(usable and self.data is not None)
        if training:
            self.placeholder.setText("Training in progress…\nThe viewer is available when training ends.")
        elif not has_model:
            self.placeholder.setText("Train a model (Train tab) or open a .keras model (File → Open Model),\n"
                                     "then drop images here to see what the network predicts and why.")
        else:
            self.placeholder.setText("Drop images here, or use Open images… / Paste (Ctrl+V).")
        self.stack.setCurrentIndex(1 if (usable and self.images) else 0)

    def set_dataset(self, data) -> None:
        self.data = data
        self.evaluate_button.setEnabled(self._has_model and not self._training)

    def model_changed(self, class_names: list[str], preprocessing: Preprocessing, editable_names: bool = False,
                      source: str = "") -> None:
        """A new model is in the engine: forget what the old one showed, re-classify the strip."""
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.source = source or "trained in this session"
        self.editable_names = editable_names
        self._has_model = True
        self._training = False
        self.names_button.setVisible(editable_names)
        h, w = preprocessing.image_size
        self.model_label.setText(f"Model: {self.source} · {len(class_names)} classes · "
                                 f"input {h}×{w} {preprocessing.color_mode}")
        self._reset_views()
        paths = [im.path for im in self.images if im.path]
        self.images = []
        self.strip.clear()
        if paths:
            self.classify_paths(paths)

    def _reset_views(self) -> None:
        """Clear everything computed by a previous model (layers, maps, heat map, evaluation)."""
        self.evaluation = None
        self._clear_evaluation()
        self.inspection = None
        self.current = None
        self.cam = None
        for combo in (self.layer_combo, self.cam_layer, self.cam_class):
            combo.blockSignals(True)
            combo.clear()
        self.cam_class.addItems([printable(n) for n in self.class_names])
        for combo in (self.layer_combo, self.cam_layer, self.cam_class):
            combo.blockSignals(False)
        self.grid.show_maps(np.zeros((1, 1, 0), np.float32))
        self.cam_view.clear()
        self.cam_note.setText("")
        self.enlarged.clear()
        self.enlarged_caption.setText("")
        self.layer_info.setText("")
        self.verdict.setText("")
        self.bars.set_items([])
        self.original_view[1].clear()
        self.model_view[1].clear()

    def clear_model(self) -> None:
        self._has_model = False
        self.images = []
        self.strip.clear()
        self.model_label.setText("")
        self._reset_views()
        self.set_enabled_state(False, False)

    def edit_class_names(self) -> None:
        shown = [printable(n) for n in self.class_names]
        text, ok = QInputDialog.getMultiLineText(self, "Class names", "One name per line, in the model's output order:",
                                                 "\n".join(shown))
        if not ok:
            return
        names = [n.strip() for n in text.splitlines() if n.strip()]
        # a name left as shown keeps its original (a name with a newline or undecodable bytes is shown escaped)
        names = [old if i < len(shown) and n == shown[i] else n for i, (n, old) in
                 enumerate(zip(names, self.class_names + [""] * len(names)))]
        self.rename_classes(names)

    def rename_classes(self, names: list[str]) -> None:
        if len(names) != len(self.class_names):
            self.status.emit(f"Give exactly {len(self.class_names)} names, one per line.")
            return
        self.engine.submit(EngineWorker.set_class_names, on_done=lambda n: self._on_renamed(n), on_error=lambda m: self.status.emit(m), names=names)

    def _on_renamed(self, names: list[str]) -> None:
        self.model_changed(names, self.preprocessing, editable_names=True, source=self.source)
        self.class_names_changed.emit()

    # -- classify ------------------------------------------------------------------
    def open_images_dialog(self) -> None:
        if not self.open_button.isEnabled():
            return
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images to classify", str(Path.home()),
                                                f"{IMAGE_FILTER};;All files (*)")
        if paths:
            self.classify_paths(paths)

    def classify_paths(self, paths: list[str]) -> None:
        """Classify image files in the engine thread; unreadable files get a message."""
        if not self._has_model or self._training:
            self.status.emit("Train or open a model first." if not self._has_model else "Wait until training ends.")
            return
        if not paths:
            return
        self.engine.submit(EngineWorker.predict_files, on_done=self._on_predicted, on_error=lambda m: self.status.emit(m), paths=list(paths), k=min(5, len(self.class_names)))

    def paste_image(self) -> None:
        """Classify an image (or image files) from the clipboard."""
        if not self._has_model or self._training:
            return
        md = QApplication.clipboard().mimeData()
        if md is not None and md.hasUrls():
            paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if paths:
                self.classify_paths(paths)
                return
        img = QApplication.clipboard().image()
        if img.isNull():
            self.status.emit("The clipboard holds no image.")
            return
        self._classify_image(img, "pasted image")

    def _classify_image(self, img: QImage, label: str) -> None:
        """Classify an in-memory image (pasted or dropped as image data)."""
        self.engine.submit(EngineWorker.predict_arrays, on_done=self._on_predicted, on_error=lambda m: self.status.emit(m), images=[_qimage_to_array(img)], labels=[label], k=min(5, len(self.class_names)))

    def _on_predicted(self, results: list[dict]) -> None:
        first_new = len(self.images)
        for r in results:
            label = Path(r["path"]).name if r.get("path") and Path(r["path"]).exists() else (r.get("path") or "image")
            im = ViewedImage(label=label, path=r.get("path") if r.get("path") and Path(r["path"]).exists() else None)
            if "error" in r:
                im.error = r["error"]
            else:
                im.top = list(r["top"])
                im.probabilities = r["probabilities"]
                im.prepared = r["image"]
                im.original = _load_original(im.path) if im.path else array_to_pixmap(im.prepared)
            self.images.append(im)
            self._add_strip_item(im)
        self.stack.setCurrentIndex(1)
        errors = [im for im in self.images[first_new:] if im.error]
        if errors:
            self.status.emit("; ".join(f"{e.label}: {e.error}" for e in errors))
        good = [i for i in range(first_new, len(self.images)) if not self.images[i].error]
        self.strip.setCurrentRow(good[0] if good else len(self.images) - 1)

    def _add_strip_item(self, im: ViewedImage) -> None:
        if im.error:
            icon = self.style().standardIcon(self.style().StandardPixmap.SP_MessageBoxWarning)
            text = f"{im.label}\nnot readable"
        else:
            icon = QIcon(im.original.scaled(64, 64, Qt.KeepAspectRatio, Qt.SmoothTransformation))
            name, prob = im.top[0]
            text = f"{printable(name)} {prob:.0%}"
        item = QListWidgetItem(icon, text)
        item.setToolTip(im.error or f"{im.label}: " + ", ".join(f"{printable(c)} {p:.1%}" for c, p in im.top))
        self.strip.addItem(item)

    def strip_labels(self) -> list[str]:
        return [self.strip.item(i).text() for i in range(self.strip.count())]

    def _on_strip_row(self, row: int) -> None:
        if not (0 <= row < len(self.images)):
            return
        im = self.images[row]
        self.current = im
        if im.error:
            self.verdict.setText(f"{im.label}: {im.error}")
            self.verdict.setStyleSheet("font-size: 12pt; font-weight: bold; color: #b71c1c")
            self.bars.set_items([])
            self.original_view[1].clear()
            self.model_view[1].clear()
            return
        name, prob = im.top[0]
        self.verdict.setStyleSheet("font-size: 15pt; font-weight: bold")
        self.verdict.setText(f"It looks like “{printable(name)}” ({prob:.1%} sure).")
        self.bars.set_items([(printable(c), p) for c, p in im.top])
        self.original_view[1].setPixmap(im.original.scaled(196, 196, Qt.KeepAspectRatio, Qt.SmoothTransformation))
        self.model_view[1].setPixmap(array_to_pixmap(im.prepared, 196, 196))
        self.cam_class.blockSignals(True)
        self.cam_class.setCurrentIndex(int(np.argmax(im.probabilities)))
        self.cam_class.blockSignals(False)
        self.engine.submit(EngineWorker.inspect, on_done=self._on_inspected, on_error=lambda m: self.status.emit(m), latest_only=True, image=im.prepared, class_index=self.cam_class.currentIndex(), layer=self.cam_layer.currentData())

    # -- inside the network ------------------------------------------------------------
    def _on_inspected(self, result: dict) -> None:
        self.inspection = result
        names = [n for n, _ in result["maps"]]
        current = self.layer_combo.currentText()
        self.layer_combo.blockSignals(True)
        if [self.layer_combo.itemText(i) for i in range(1, self.layer_combo.count())] != names:
            self.layer_combo.clear()
            self.layer_combo.addItem(INPUT_LAYER)  # the image's own channels come first
            self.layer_combo.addItems(names)
            conv = result["conv_layers"]
            self.cam_layer.blockSignals(True)
            self.cam_layer.clear()
            for n in names:
                self.cam_layer.addItem(n, n)
            self.cam_layer.setCurrentIndex(names.index(result["cam_layer"]))
            self.cam_layer.blockSignals(False)
            if current in names or current == INPUT_LAYER:
                self.layer_combo.setCurrentText(current)
            elif conv:
                self.layer_combo.setCurrentText(conv[0])
        self.layer_combo.blockSignals(False)
        self._show_layer()
        self._show_overview()
        self.cam = result["cam"]
        self._show_cam()
        self._show_kernels(result.get("kernels"))

    def layer_maps(self) -> tuple[str, np.ndarray] | None:
        if not self.inspection:
            return None
        i = self.layer_combo.currentIndex()
        if i == 0 and self.current is not None and self.current.prepared is not None:
            return INPUT_LAYER, self.current.prepared.astype(np.float32)
        maps = self.inspection["maps"]
        return maps[i - 1] if 1 <= i <= len(maps) else None

    def _show_layer(self) -> None:
        lm = self.layer_maps()
        if lm is None:
            return
        name, m = lm
        h, w, c = m.shape
        shown = min(c, MAX_CHANNEL_TILES)
        more = f" (first {shown} shown)" if shown < c else ""
        self.layer_info.setText(f"{name}: {c} channels of {h}×{w}{more}")
        self.grid.show_maps(m, tile=96 if c <= 32 else 64)
        self._enlarge_channel(0)

    def _enlarge_channel(self, index: int) -> None:
        lm = self.layer_maps()
        if lm is None or index >= lm[1].shape[-1]:
            return
        name, m = lm
        ch = m[..., index]
        self.enlarged.setPixmap(_channel_pixmap(ch, 216))
        self.enlarged_caption.setText(f"{name}, channel {index}\nmin {float(ch.min()):.3g} · max {float(ch.max()):.3g}"
                                      f" · mean {float(ch.mean()):.3g}")

    def _show_overview(self) -> None:
        lay = self.overview_layout
        while lay.count():
            item = lay.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        if self.current is None or self.inspection is None:
            return
        row = QHBoxLayout()
        holder = QWidget()
        holder.setLayout(row)
        lab = QLabel("input")
        lab.setFixedWidth(130)
        row.addWidget(lab)
        row.addWidget(QLabel(pixmap=array_to_pixmap(self.current.prepared, 64, 64)))
        row.addStretch(1)
        lay.addWidget(holder)
        for name, m in self.inspection["maps"]:
            holder = QWidget()
            row = QHBoxLayout(holder)
            row.setContentsMargins(0, 0, 0, 0)
            lab = QLabel(f"{name}\n{m.shape[0]}×{m.shape[1]}×{m.shape[2]}")
            lab.setFixedWidth(130)
            row.addWidget(lab)
            for ci in range(min(OVERVIEW_CHANNELS, m.shape[-1])):
                tile = QLabel()
                tile.setPixmap(_channel_pixmap(m[..., ci], 64))
                tile.setToolTip(f"{name} channel {ci}")
                row.addWidget(tile)
            row.addStretch(1)
            lay.addWidget(holder)
        lay.addStretch(1)

    def _request_gradcam(self) -> None:
        if self.current is None or self.current.prepared is None or self.cam_class.currentIndex() < 0:
            return
        self.engine.submit(EngineWorker.gradcam, on_done=self._on_gradcam, on_error=lambda m: self.status.emit(m), latest_only=True, image=self.current.prepared, class_index=self.cam_class.currentIndex(), layer=self.cam_layer.currentData())

    def _on_gradcam(self, result: dict) -> None:
        self.cam = result["cam"]
        self._show_cam()

    def overlay_image(self) -> np.ndarray | None:
        """The Grad-CAM overlay shown, as an RGB array (for tests and saving)."""
        if self.cam is None or self.current is None or self.current.prepared is None:
            return None
        return gradcam_overlay(self.current.prepared, self.cam, self.opacity.value() / 100.0)

    def _show_cam(self) -> None:
        over = self.overlay_image()
        if over is None:
            return
        self.cam_view.setPixmap(array_to_pixmap(over, 320, 320, smooth=True))
        empty = not np.any(self.cam)
        self.cam_note.setText("Nothing in this image raises this class's score at this layer, so the heat map is "
                              "empty. Try another layer or class." if empty else "")

    def _show_kernels(self, kernels) -> None:
        lay = self.kernel_grid
        while lay.count():
            item = lay.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        if kernels is None:
            self.kernel_info.setText("The model has no Conv2D layer.")
            return
        k, _, cin, f = kernels.shape
        self.kernel_info.setText(f"The {f} filters of the first convolution, each {k}×{k}×{cin}: the patterns it "
                                 "looks for in the image (scaled to the filter's own range).")
        for i in range(f):
            w = kernels[..., i]
            w = (w - w.min()) / (w.max() - w.min() + 1e-12) * 255
            img = w.astype(np.uint8) if cin in (1, 3) else w.mean(axis=-1).astype(np.uint8)
            tile = QLabel()
            tile.setPixmap(array_to_pixmap(img, 48, 48))
            tile.setToolTip(f"filter {i}")
            r, c = divmod(i, 12)
            lay.addWidget(tile, r, c)

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> None:
        if self.data is None or not self._has_model or self._training:
            self.status.emit("Evaluation needs a trained model and the dataset it was trained on.")
            return
        if self.data.preprocessing.input_shape != self.preprocessing.input_shape:
            h, w = self.preprocessing.image_size
            message = (f"The model takes {h}×{w} {self.preprocessing.color_mode} images; set the dataset's image "
                       "size and colour back to that to evaluate it.")
            self.accuracy_label.setText(message)
            self.status.emit(message)
            return
        self.tabs.setCurrentWidget(self.eval_tab)
        if self.stack.currentIndex() == 0:
            self.stack.setCurrentIndex(1)
        self.accuracy_label.setText("Evaluating…")
        data = self.data
        self.engine.submit(EngineWorker.evaluate, on_done=lambda ev: self._on_evaluated(ev, data), on_error=self._on_evaluate_failed, latest_only=True, data=data)

    def _on_evaluate_failed(self, message: str) -> None:
        self.accuracy_label.setText(message)

    def _clear_evaluation(self) -> None:
        self.accuracy_label.setText("")
        self.confusion.clear()
        self.confusion.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.metrics.setRowCount(0)
        self.eval_list.clear()

    def _on_evaluated(self, ev, data) -> None:
        self.evaluation = ev
        self._eval_data = data
        n = len(ev.labels)
        self.accuracy_label.setText(f"Accuracy {ev.accuracy:.1%} on {n} validation images "
                                    f"({len(ev.misclassified)} misclassified)")
        k = len(ev.class_names)
        self.confusion.clear()
        self.confusion.setRowCount(k)
        self.confusion.setColumnCount(k)
        self.confusion.setHorizontalHeaderLabels([f"→ {printable(c)}" for c in ev.class_names])
        self.confusion.setVerticalHeaderLabels([printable(c) for c in ev.class_names])
        top = max(int(ev.confusion.max()), 1)
        for r in range(k):
            for c in range(k):
                v = int(ev.confusion[r, c])
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignCenter)
                t = v / top
                base = (25, 118, 210) if r == c else (211, 47, 47)
                bg = QColor(*[int(255 - (255 - b) * t * 0.85) for b in base])
                item.setBackground(bg)
                item.setForeground(QColor("white" if t > 0.55 else "black"))
                item.setToolTip(f"true {printable(ev.class_names[r])}, predicted {printable(ev.class_names[c])}: "
                                f"{v} image(s)")
                self.confusion.setItem(r, c, item)
        self.confusion.resizeColumnsToContents()
        self.metrics.setRowCount(k)
        for r, m in enumerate(ev.per_class):
            for c, text in enumerate([printable(m.name), f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support)]):
                self.metrics.setItem(r, c, QTableWidgetItem(text))
        self.cell_label.setText("Misclassified images, most confident first (click to open)")
        self._fill_eval_list([m.index for m in ev.misclassified])

    def _fill_eval_list(self, indices: list[int]) -> None:
        ev, data = self.evaluation, self._eval_data
        self.eval_list.clear()
        for i in indices:
            img = data.images[data.val_index[i]]
            true, pred = printable(ev.class_names[ev.labels[i]]), printable(ev.class_names[ev.predicted[i]])
            text = f"{true} → {pred}\n{ev.confidence[i]:.0%}" if true != pred else f"{pred} {ev.confidence[i]:.0%}"
            item = QListWidgetItem(QIcon(array_to_pixmap(img, 64, 64)), text)
            path = data.paths[data.val_index[i]]
            item.setData(Qt.UserRole, path)
            item.setToolTip(printable(path))
            self.eval_list.addItem(item)

    def eval_list_paths(self) -> list[str]:
        return [self.eval_list.item(i).data(Qt.UserRole) for i in range(self.eval_list.count())]

    def _on_confusion_cell(self, row: int, col: int) -> None:
        ev = self.evaluation
        if ev is None:
            return
        idx = ev.cell(row, col)
        self.cell_label.setText(f"True {printable(ev.class_names[row])}, predicted {printable(ev.class_names[col])}: {len(idx)} image(s)"
                                " (click to open)")
        conf = ev.confidence
        self._fill_eval_list(sorted(idx, key=lambda i: -conf[i]))

    def _open_eval_item(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.UserRole)
        if path:
            self.classify_paths([path])

    # -- saving ----------------------------------------------------------------------------
    def save_view_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the current view", str(Path.home() / "cnndesk-view.png"),
                                              "PNG images (*.png)")
        if path:
            self.save_view(path)

    def save_view(self, path: str) -> bool:
        """Save what the current tab shows (activation grid, Grad-CAM overlay, …) as PNG."""
        tab = self.tabs.currentWidget()
        if self.tabs.currentIndex() == 2 and self.overlay_image() is not None:
            ok = array_to_qimage(self.overlay_image()).save(path, "PNG")
        else:
            ok = tab.grab().save(path, "PNG")
        self.status.emit(f"Saved {path}" if ok else f"Could not write {path}")
        return ok

    # -- drops -------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        md = event.mimeData()
        paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.paths_dropped.emit(paths)
        elif md.hasImage():
            event.acceptProposedAction()
            self._classify_image(QImage(md.imageData()), "dropped image")


def _qimage_to_array(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format_RGB888)
    w, h = img.width(), img.height()
    ptr = img.constBits()
    arr = np.frombuffer(ptr, np.uint8, count=img.bytesPerLine() * h).reshape(h, img.bytesPerLine())
    return arr[:, : w * 3].reshape(h, w, 3).copy()


def _load_original(path: str) -> QPixmap:
    reader = QImageReader(path)
    reader.setAutoTransform(True)  # EXIF orientation, as the model sees it
    img = reader.read()
    if img.isNull():
        return QPixmap()
    if max(img.width(), img.height()) > 1024:
        img = img.scaled(1024, 1024, Qt.KeepAspectRatio, Qt.SmoothTransformation)
    return QPixmap.fromImage(img)

"""The viewer's looks inside the network for one image: activation maps, all layers, Grad-CAM, first-layer filters.

Each view only shows what it is given (the image as the model sees it and what the engine computed for it); the
viewer asks the engine and hands the answers over.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QSlider, QVBoxLayout, QWidget,
)

from ..core.data.scanning import printable
from ..core.model.pictures import CAM_SMOOTH_SIGMA, colorize_channels, gradcam_overlay, smooth_map
from .widgets import MAX_CHANNEL_TILES, ActivationGrid, ColorBar, array_to_pixmap, channel_pixmap, clear_layout

INPUT_LAYER = "input (the image's channels)"
OVERVIEW_CHANNELS = 8
ENLARGED_SIZE = 180
CAM_VIEW_MIN = 160
NOTE_STYLE = "color: #546e7a; font-size: 9pt"
FWHM_PER_SIGMA = 2.355  # a Gaussian's full width at half its height, in sigmas


def _layer_names(combo: QComboBox, first: int = 0) -> list[str]:
    return [combo.itemText(i) for i in range(first, combo.count())]


class ActivationView(QWidget):
    """One layer's channels as a grid beside one channel enlarged with its colour scale."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self.maps: list[tuple[str, np.ndarray]] = []
        self.pictures: dict[str, np.ndarray] = {}  # layer name -> its first channels coloured off the GUI thread
        v = QVBoxLayout(self)
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
        self.grid.channel_clicked.connect(self.enlarge_channel)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.grid)
        body.addWidget(scroll, 1)
        body.addWidget(self._build_side())
        v.addLayout(body, 1)

    def _build_side(self) -> QScrollArea:
        """The enlarged channel's caption, the channel with its colour bar, and a note, at their natural sizes.

        The caption comes first so that it stays in view in a short window; the whole column sits in a scroll area,
        so a window too short for it scrolls it instead of squeezing its parts on top of each other.
        """
        side = QWidget(objectName="enlargedSide")
        sv = QVBoxLayout(side)
        sv.setContentsMargins(0, 0, 0, 0)
        self.enlarged_caption = QLabel(objectName="enlargedCaption")
        self.enlarged_caption.setTextInteractionFlags(Qt.TextSelectableByMouse)
        sv.addWidget(self.enlarged_caption)
        top = QHBoxLayout()
        self.enlarged = QLabel(objectName="enlargedChannel", alignment=Qt.AlignCenter)
        self.enlarged.setFixedSize(ENLARGED_SIZE, ENLARGED_SIZE)
        self.enlarged.setStyleSheet("border: 1px solid #cfd8dc")
        top.addWidget(self.enlarged)
        self.color_bar = ColorBar("viridis", ENLARGED_SIZE)
        top.addWidget(self.color_bar)
        top.addStretch(1)
        sv.addLayout(top)
        note = QLabel("Each map is scaled to its own range: bright = where this channel responds most.", wordWrap=True)
        note.setStyleSheet(NOTE_STYLE)
        sv.addWidget(note)
        sv.addStretch(1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(side)
        width = ENLARGED_SIZE + self.color_bar.sizeHint().width() + 40
        side.setFixedWidth(width)
        scroll.setFixedWidth(width + scroll.verticalScrollBar().sizeHint().width())
        return scroll

    def clear(self) -> None:
        self.image, self.maps, self.pictures = None, [], {}
        with QSignalBlocker(self.layer_combo):
            self.layer_combo.clear()
        self.grid.show_maps(np.zeros((1, 1, 0), np.float32))
        self.enlarged.clear()
        self.enlarged_caption.setText("")
        self.layer_info.setText("")

    def show_maps(self, image: np.ndarray, maps: list[tuple[str, np.ndarray]], conv_layers: list[str],
                  pictures: dict[str, np.ndarray] | None = None) -> None:
        """Show an image's maps, layer by layer, keeping the chosen layer where the model still has it.

        ``pictures``: layer name -> its first channels already coloured (``colorize_channels``), made off the GUI
        thread; a layer missing there is coloured when it is chosen.
        """
        self.image, self.maps, self.pictures = image, maps, dict(pictures or {})
        names = [n for n, _ in maps]
        if _layer_names(self.layer_combo, 1) != names:
            current = self.layer_combo.currentText()
            with QSignalBlocker(self.layer_combo):
                self.layer_combo.clear()
                self.layer_combo.addItem(INPUT_LAYER)  # the image's own channels come first
                self.layer_combo.addItems(names)
                if current in names or current == INPUT_LAYER:
                    self.layer_combo.setCurrentText(current)
                elif conv_layers:
                    self.layer_combo.setCurrentText(conv_layers[0])
        self._show_layer()

    def layer_maps(self) -> tuple[str, np.ndarray] | None:
        """The chosen layer's name and maps (H, W, C); the input layer is the image itself."""
        i = self.layer_combo.currentIndex()
        if i == 0 and self.image is not None:
            return INPUT_LAYER, self.image.astype(np.float32)
        return self.maps[i - 1] if 1 <= i <= len(self.maps) else None

    def _show_layer(self) -> None:
        lm = self.layer_maps()
        if lm is None:
            return
        name, m = lm
        h, w, c = m.shape
        shown = min(c, MAX_CHANNEL_TILES)
        more = f" (the first {shown} are shown)" if shown < c else ""
        self.layer_info.setText(f"{name}: {c} channels of {h}×{w}{more}")
        self.grid.show_maps(m, tile=96 if c <= 32 else 64, pictures=self.pictures.get(name))
        self.enlarge_channel(0)

    def enlarge_channel(self, index: int) -> None:
        lm = self.layer_maps()
        if lm is None or index >= lm[1].shape[-1]:
            return
        name, m = lm
        ch = m[..., index]
        self.enlarged.setPixmap(channel_pixmap(ch, ENLARGED_SIZE - 4))
        self.enlarged_caption.setText(f"{name}, channel {index}\nmin {float(ch.min()):.3g} · "
                                      f"max {float(ch.max()):.3g} · mean {float(ch.mean()):.3g}")


class LayerOverview(QScrollArea):
    """Every layer in one scrolling column: a row per layer with its first few channels.

    A model such as ResNet50 has well over a hundred such layers, so a row gets its pictures only when it is
    scrolled into view (``filled_rows``); until then it is a caption at the row's final height, so the scroll
    bar is right from the start.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, widgetResizable=True)
        body = QWidget(objectName="layerOverview")
        self.rows = QVBoxLayout(body)
        self.setWidget(body)
        self._layers: list[tuple[str, tuple]] | None = None  # (name, shape) of the layers the rows are for
        self._layer_rows: list[QWidget] = []
        self._input_tile: QLabel | None = None
        self._unfilled: dict[QWidget, tuple[str, np.ndarray, np.ndarray | None]] = {}
        self._filled: list[str] = []
        self.verticalScrollBar().valueChanged.connect(self._fill_visible)

    def clear(self) -> None:
        clear_layout(self.rows)
        self._layers, self._layer_rows, self._input_tile = None, [], None
        self._unfilled, self._filled = {}, []

    def filled_rows(self) -> list[str]:
        """The layers whose rows have their pictures, in the order they got them."""
        return list(self._filled)

    def show_maps(self, image: np.ndarray, maps: list[tuple[str, np.ndarray]],
                  pictures: dict[str, np.ndarray] | None = None) -> None:
        """Show a row per layer; ``pictures``: layer name -> its first channels already coloured (else coloured
        here when the row comes into view). The rows of the same layers are kept from one image to the next."""
        pictures = pictures or {}
        layers = [(name, m.shape) for name, m in maps]
        if layers != self._layers:
            self._build_rows(layers)
        self._input_tile.setPixmap(array_to_pixmap(image, 64, 64))
        self._unfilled, self._filled = {}, []
        for row, (name, m) in zip(self._layer_rows, maps):
            for tile in self._tiles(row):
                tile.clear()  # the previous image's pictures, until the row is in view again
            self._unfilled[row] = (name, m, pictures.get(name))
        QTimer.singleShot(0, self._fill_visible)  # once the rows have their places

    def _build_rows(self, layers: list[tuple[str, tuple]]) -> None:
        """The input's row and a captioned row per layer, without pictures."""
        self.clear()
        inp = self._row("input")
        self._input_tile = QLabel()
        inp.layout().insertWidget(1, self._input_tile)
        self.rows.addWidget(inp)
        for name, (h, w, c) in layers:
            shown = min(OVERVIEW_CHANNELS, c)
            which = f"first {shown} of {c} channels" if shown < c else f"all {c} channels"
            row = self._row(f"{name}\n{h}×{w}×{c}\n{which}")
            self._layer_rows.append(row)
            self.rows.addWidget(row)
        self.rows.addStretch(1)
        self._layers = layers

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self._fill_visible)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fill_visible()

    def _fill_visible(self, _value=None) -> None:
        """Give the rows now in view their channel pictures (the others wait until they are scrolled to)."""
        if not self._unfilled or not self.isVisible():
            return
        top = self.verticalScrollBar().value()
        bottom = top + self.viewport().height()
        for row, y in self._row_tops():
            if y > bottom:
                break
            if row in self._unfilled and y + row.maximumHeight() >= top:
                self._fill(row, *self._unfilled.pop(row))

    def _row_tops(self):
        """(row, its top in the column) for each row, from the rows' fixed heights.

        Worked out rather than read from the rows' geometry: right after ``show_maps`` the column has not grown
        to its full height yet, and the layout squeezes the rows together until it has.
        """
        y = self.rows.contentsMargins().top()
        for i in range(self.rows.count()):
            row = self.rows.itemAt(i).widget()
            if row is None:  # the closing stretch
                return
            yield row, y
            y += row.maximumHeight() + self.rows.spacing()

    def _fill(self, row: QWidget, name: str, m: np.ndarray, pictures: np.ndarray | None) -> None:
        shown = min(OVERVIEW_CHANNELS, m.shape[-1])
        if pictures is None or len(pictures) < shown:
            pictures = colorize_channels(m, count=shown)
        tiles, layout = self._tiles(row), row.layout()
        for ci in range(shown):
            if ci >= len(tiles):
                tiles.append(QLabel(toolTip=f"{name} channel {ci}"))
                layout.insertWidget(layout.count() - 1, tiles[ci])  # before the row's closing stretch
            tiles[ci].setPixmap(array_to_pixmap(pictures[ci], 64, 64))
        self._filled.append(name)

    @staticmethod
    def _tiles(row: QWidget) -> list[QLabel]:
        """The row's picture tiles: what sits between its caption and its closing stretch."""
        layout = row.layout()
        return [layout.itemAt(i).widget() for i in range(1, layout.count() - 1)]

    @staticmethod
    def _row(caption: str) -> QWidget:
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        lab = QLabel(caption, objectName="overviewCaption")
        lab.setFixedWidth(150)
        row.addWidget(lab)
        row.addStretch(1)
        holder.setFixedHeight(max(64, lab.sizeHint().height()))  # the same before and after its pictures come
        return holder


class GradCamView(QWidget):
    """The Grad-CAM heat map of a chosen class at a chosen layer, over the image, with its colour scale.

    Signals:
        target_changed(): the user chose another class or layer; a new map is needed.
    """

    target_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self.cam: np.ndarray | None = None
        self._smoothed: np.ndarray | None = None  # self.cam smoothed, made once per map (redraws are frequent)
        h = QHBoxLayout(self)
        h.addLayout(self._build_controls(), 1)
        h.addLayout(self._build_picture(), 2)

    def _build_controls(self) -> QVBoxLayout:
        controls = QVBoxLayout()
        controls.addWidget(QLabel("Explain the class:"))
        self.cam_class = QComboBox(objectName="camClass")
        self.cam_class.currentIndexChanged.connect(self.target_changed)
        controls.addWidget(self.cam_class)
        controls.addWidget(QLabel("At the layer:"))
        self.cam_layer = QComboBox(objectName="camLayer")
        self.cam_layer.currentIndexChanged.connect(self.target_changed)
        controls.addWidget(self.cam_layer)
        controls.addWidget(QLabel("Method:"))
        self.cam_method = QComboBox(objectName="camMethod")
        self.cam_method.addItem("HiResCAM", "hirescam")
        self.cam_method.addItem("Grad-CAM", "gradcam")
        self.cam_method.setToolTip("HiResCAM: gradient × activation, cell by cell. Grad-CAM: each channel weighted "
                                   "by its mean gradient; it can show evidence where HiResCAM's map is empty.")
        self.cam_method.currentIndexChanged.connect(self.target_changed)
        controls.addWidget(self.cam_method)
        controls.addWidget(QLabel("Heat-map opacity:"))
        self.opacity = QSlider(Qt.Horizontal, objectName="camOpacity", minimum=0, maximum=100, value=50)
        self.opacity.valueChanged.connect(self._redraw)
        controls.addWidget(self.opacity)
        self.smooth = QCheckBox("Smooth", objectName="camSmooth", checked=True)
        self.smooth.setToolTip("Blur the map over a few of its cells so that its regions read clearly; "
                               "off: the layer's exact values, cell by cell.")
        self.smooth.toggled.connect(self._redraw)
        controls.addWidget(self.smooth)
        expl = QLabel("Grad-CAM colours the regions that raised the chosen class's score most (red = most). "
                      "HiResCAM (gradient × activation, the default) stays faithful for Flatten + Dense heads "
                      "such as the seed model's; classic Grad-CAM weighs each channel by its mean gradient.",
                      wordWrap=True)
        expl.setStyleSheet("color: #546e7a")
        controls.addWidget(expl)
        controls.addStretch(1)
        return controls

    def _build_picture(self) -> QVBoxLayout:
        right = QVBoxLayout()
        row = QHBoxLayout()
        # drawn at the right, next to its colour bar
        self.cam_view = QLabel(objectName="gradcamOverlay", alignment=Qt.AlignRight | Qt.AlignTop)
        self.cam_view.setMinimumSize(CAM_VIEW_MIN, CAM_VIEW_MIN)  # grows with the tab; the map is drawn to fit
        self.cam_view.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        row.addWidget(self.cam_view, 1)
        self.color_bar = ColorBar("jet", CAM_VIEW_MIN)
        self.color_bar.high.setText("high: raised the score most")
        self.color_bar.low.setText("low: no effect")
        row.addWidget(self.color_bar, 0, Qt.AlignTop)
        right.addLayout(row, 1)
        self.cam_caption = QLabel(objectName="camCaption", wordWrap=True)
        self.cam_caption.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        right.addWidget(self.cam_caption)
        self.cam_note = QLabel(objectName="camNote", wordWrap=True)
        self.cam_note.setStyleSheet("color: #8a5300")
        right.addWidget(self.cam_note)
        return right

    # -- the class and layer to explain --------------------------------------------------------
    def set_classes(self, names: list[str]) -> None:
        with QSignalBlocker(self.cam_class):
            self.cam_class.clear()
            self.cam_class.addItems([printable(n) for n in names])

    def select_class(self, index: int) -> None:
        """Choose the class to explain without asking for a new map (the caller asks for one)."""
        with QSignalBlocker(self.cam_class):
            self.cam_class.setCurrentIndex(index)

    def set_layers(self, names: list[str], default: str) -> None:
        """Offer the model's layers (chosen: ``default``) unless they are the ones already offered."""
        if _layer_names(self.cam_layer) == names:
            return
        with QSignalBlocker(self.cam_layer):
            self.cam_layer.clear()
            for n in names:
                self.cam_layer.addItem(n, n)
            self.cam_layer.setCurrentIndex(names.index(default))

    def class_index(self) -> int:
        return self.cam_class.currentIndex()

    def layer(self) -> str | None:
        return self.cam_layer.currentData()

    def method(self) -> str:
        """"hirescam" or "gradcam", as ``Inspector.gradcam`` takes it."""
        return self.cam_method.currentData()

    # -- the map ------------------------------------------------------------------------------
    def clear(self) -> None:
        self.image = self.cam = self._smoothed = None
        with QSignalBlocker(self.cam_layer):
            self.cam_layer.clear()
        self.set_classes([])
        self.cam_view.clear()
        self.cam_caption.setText("")
        self.cam_note.setText("")

    def show_cam(self, image: np.ndarray, cam: np.ndarray) -> None:
        """Show ``cam`` (a [0, 1] map at the layer's resolution) for ``image`` and the chosen class and layer."""
        self.image, self.cam, self._smoothed = image, cam, None
        self._redraw()

    def shown_map(self) -> np.ndarray | None:
        """The map as drawn: smoothed when "Smooth" is checked, else the layer's own values."""
        if self.cam is None or not self.smooth.isChecked():
            return self.cam
        if self._smoothed is None:
            self._smoothed = smooth_map(self.cam, CAM_SMOOTH_SIGMA)
        return self._smoothed

    def overlay_image(self) -> np.ndarray | None:
        """The heat map over the image at the image's own size, as an RGB array (what Save view writes)."""
        if self.cam is None or self.image is None:
            return None
        return gradcam_overlay(self.image, self.shown_map(), self.opacity.value() / 100.0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._redraw()

    def _redraw(self) -> None:
        if self.cam is None or self.image is None:
            return
        side = max(CAM_VIEW_MIN, min(self.cam_view.width(), self.cam_view.height())) - 2
        h, w = self.image.shape[:2]
        scale = side / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        shown = gradcam_overlay(self.image, self.shown_map(), self.opacity.value() / 100.0, size=size)
        self.cam_view.setPixmap(array_to_pixmap(shown))
        self.cam_caption.setText(f"Heat map for the class “{self.cam_class.currentText()}” at the layer "
                                 f"{self.cam_layer.currentText()} ({self._map_description()}).")
        self.cam_note.setText(self._empty_note() if not np.any(self.cam) else "")

    def _empty_note(self) -> str:
        """Why the map is blank and what to try: an earlier layer, or classic Grad-CAM when not shown already."""
        also = " or classic Grad-CAM" if self.method() != "gradcam" else ""
        return f"No positive evidence for this class at this layer; try an earlier layer{also}."


    def _map_description(self) -> str:
        """The map's size and how it is drawn, e.g. "26×26, smoothed over about 6 px of the 64-px image"."""
        ch, cw = self.cam.shape[:2]
        if not self.smooth.isChecked():
            return f"{ch}×{cw}, raw: the layer's own values, enlarged to the image's size"
        h, w = self.image.shape[:2]
        cell_px = max(h / ch, w / cw)  # how many of the image's pixels one map cell spans
        width = max(1, round(FWHM_PER_SIGMA * CAM_SMOOTH_SIGMA * cell_px))
        return f"{ch}×{cw}, smoothed over about {width} px of the {max(h, w)}-px image"


class KernelView(QWidget):
    """The first convolution's filters, each scaled to its own range."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        self.kernel_info = QLabel(wordWrap=True)
        v.addWidget(self.kernel_info)
        grid_widget = QWidget(objectName="kernelGrid")
        self.kernel_grid = QGridLayout(grid_widget)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(grid_widget)
        v.addWidget(scroll, 1)
        self._shown: np.ndarray | None = None  # the kernels on screen (the same for every image of a model)

    def show_kernels(self, kernels: np.ndarray | None) -> None:
        """Show kernels (k, k, input channels, filters); None: the model has no convolution."""
        if kernels is not None and self._shown is not None and np.array_equal(kernels, self._shown):
            return  # another image of the same model: nothing to draw again
        self._shown = None if kernels is None else np.array(kernels)
        clear_layout(self.kernel_grid)
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
            tile = QLabel(pixmap=array_to_pixmap(img, 48, 48), toolTip=f"filter {i}")
            r, c = divmod(i, 12)
            self.kernel_grid.addWidget(tile, r, c)

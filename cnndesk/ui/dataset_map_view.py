"""The Map tab: every image of the dataset placed by what the current model sees.

``MapCanvas`` draws the points (a dot per image in its class's colour, filled
for training, hollow for validation, grey for excluded, highlights ringed) into
one cached picture, so that hovering and dragging over 10,000 points stays
fluid; finding the point under the mouse and the points inside a lasso are
numpy sums over the points. ``DatasetMapView`` is the tab: the canvas, the
image under the mouse, the legend, and Exclude / Move to class for the images
the lasso caught. ``MapControl`` runs the map as an engine job (progress and
cancel through the job's ``TaskState``) and keeps it in step with the dataset; the fixes go through
``data_quality_view.DataQuality``, as the Duplicates tab's do. The map itself
is ``core.work.dataset_map``.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (
    QFrame, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolTip, QVBoxLayout,
    QWidget,
)

from ..core.data.scanning import printable
from ..core.work.dataset_map import (
    class_colour, DatasetMap, EXCLUDED, FLAG_COLOURS, FLAG_NAMES, highlights, split_sides, TRAINING, VALIDATION,
)
from .data_quality_view import add_fix_buttons, ChangesView
from .engine import ShownJob
from .engine_worker import EngineWorker
from .widgets import array_to_pixmap, JobRow

#: the radius of a dot (px), and how near the mouse must come to a dot to point at it
DOT = 3.5
NEAR = 8.0
#: the side of the image shown for the point under the mouse
PREVIEW = 96
#: a press and release closer than this (px) is a click, not a lasso
CLICK_SLOP = 4.0


def _qcolour(rgb) -> QColor:
    return QColor(*rgb)


def inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which of ``points`` (n, 2) lie inside ``polygon`` (m, 2), by the even-odd rule (a ray crossing count)."""
    result = np.zeros(len(points), bool)
    if len(polygon) < 3 or not len(points):
        return result
    x, y = points[:, 0], points[:, 1]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    for ax, ay, bx, by in zip(x1, y1, x2, y2):
        crosses = (ay > y) != (by > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = ax + (y - ay) * (bx - ax) / (by - ay)
        result ^= crosses & (x < at)
    return result


class MapCanvas(QWidget):
    """The points of a ``DatasetMap``, with hover, click and lasso.

    Signals:
        hovered(int): the row under the mouse (-1: none).
        clicked(int): the row clicked.
        lassoed(object): the rows a lasso drawn around them caught (an int array, perhaps empty).
    """

    hovered = Signal(int)
    clicked = Signal(int)
    lassoed = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mapCanvas")
        self.setMouseTracking(True)
        self.setMinimumSize(240, 120)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.map: DatasetMap | None = None
        self.selected = np.zeros(0, np.int64)
        self._screen = np.zeros((0, 2))  # each point's place on the widget
        self._picture: QPixmap | None = None
        self._lasso: list[QPointF] = []
        self._pressed: QPointF | None = None
        self._hover = -1

    # -- what is shown -------------------------------------------------------------
    def show_map(self, dataset_map: DatasetMap | None) -> None:
        self.map = dataset_map
        self.selected = np.zeros(0, np.int64)
        self._hover = -1
        self._redraw()

    def refresh(self) -> None:
        """The map's sides or highlights changed: draw it again, keeping the selection."""
        self._redraw()

    def set_selected(self, rows) -> None:
        self.selected = np.asarray(rows, dtype=np.int64)
        self._redraw()

    def screen_point(self, row: int) -> QPointF:
        """Where the point of ``row`` is drawn on the widget."""
        x, y = self._screen[row]
        return QPointF(float(x), float(y))

    def row_at(self, x: float, y: float) -> int:
        """The row whose point is nearest (x, y), within ``NEAR`` pixels; -1 when none."""
        if not len(self._screen):
            return -1
        d = np.sum((self._screen - (x, y)) ** 2, axis=1)
        row = int(np.argmin(d))
        return row if d[row] <= NEAR ** 2 else -1

    def _place(self) -> None:
        if self.map is None or not len(self.map):
            self._screen = np.zeros((0, 2))
            return
        xy = self.map.xy.astype(np.float64)
        low, high = xy.min(axis=0), xy.max(axis=0)
        m = NEAR + 2
        w, h = max(self.width() - 2 * m, 1), max(self.height() - 2 * m, 1)
        span = np.maximum(high - low, 1e-9)
        scale = min(w / span[0], h / span[1])
        offset = np.array([(w - span[0] * scale) / 2 + m, (h - span[1] * scale) / 2 + m])
        screen = (xy - low) * scale + offset
        screen[:, 1] = self.height() - screen[:, 1]  # y up, as on a chart
        self._screen = screen

    def _redraw(self) -> None:
        self._place()
        self._picture = None
        self.update()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._redraw()

    def _draw(self) -> QPixmap:
        ratio = self.devicePixelRatioF()
        picture = QPixmap(self.size() * ratio)
        picture.setDevicePixelRatio(ratio)
        picture.fill(Qt.white)
        m = self.map
        if m is None or not len(m):
            return picture
        p = QPainter(picture)
        p.setRenderHint(QPainter.Antialiasing)
        screen = self._screen

        def dots(rows, colour: QColor, width: float) -> None:
            if len(rows):
                pen = QPen(colour, width)
                pen.setCapStyle(Qt.RoundCap)
                p.setPen(pen)
                p.drawPoints(QPolygonF([QPointF(*screen[r]) for r in rows.tolist()]))

        # excluded first (underneath), then training (filled), validation (a ring: a dot with a white middle)
        dots(np.flatnonzero(m.sides == EXCLUDED), QColor(190, 190, 190), 2 * DOT)
        for c in np.unique(m.labels).tolist():
            colour = _qcolour(class_colour(c))
            of_class = m.labels == c
            dots(np.flatnonzero(of_class & (m.sides == TRAINING)), colour, 2 * DOT)
            val = np.flatnonzero(of_class & (m.sides == VALIDATION))
            dots(val, colour, 2 * DOT)
            dots(val, Qt.white, DOT)
        p.setBrush(Qt.NoBrush)
        for ring, (flag, _name) in enumerate(FLAG_NAMES.items(), 1):
            p.setPen(QPen(_qcolour(FLAG_COLOURS[flag]), 1.2))
            g = DOT + 1.5 * ring
            for r in m.rows_with(flag).tolist():
                p.drawEllipse(QPointF(*screen[r]), g, g)
        if len(self.selected):  # a thin dark square around each picked point: its colour stays readable
            p.setPen(QPen(QColor(0, 0, 0, 200), 1))
            for r in self.selected.tolist():
                x, y = screen[r]
                p.drawRect(QRectF(x - DOT - 1.5, y - DOT - 1.5, 2 * DOT + 3, 2 * DOT + 3))
        p.setPen(QPen(QColor(207, 216, 220), 1))
        p.drawRect(QRectF(0.5, 0.5, self.width() - 1, self.height() - 1))
        p.end()
        return picture

    def paintEvent(self, event) -> None:
        if self._picture is None or self._picture.size() != self.size() * self.devicePixelRatioF():
            self._picture = self._draw()
        p = QPainter(self)
        p.drawPixmap(0, 0, self._picture)
        if 0 <= self._hover < len(self._screen):
            p.setRenderHint(QPainter.Antialiasing)
            p.setPen(QPen(QColor(0, 0, 0), 2))
            p.drawEllipse(self.screen_point(self._hover), DOT + 4, DOT + 4)
        if len(self._lasso) > 1:
            p.setPen(QPen(QColor(30, 30, 30), 1, Qt.DashLine))
            path = QPainterPath(self._lasso[0])
            for q in self._lasso[1:]:
                path.lineTo(q)
            p.drawPath(path)
        p.end()

    # -- the mouse -----------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton and self.map is not None:
            self._pressed = event.position()
            self._lasso = [event.position()]
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        pos = event.position()
        if self._pressed is not None:
            self._lasso.append(pos)
            self.update()
        row = self.row_at(pos.x(), pos.y())
        if row != self._hover:
            self._hover = row
            self.update()
            self.hovered.emit(row)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if event.button() != Qt.LeftButton or self._pressed is None:
            super().mouseReleaseEvent(event)
            return
        pos, start = event.position(), self._pressed
        lasso = self._lasso + [pos]
        self._pressed, self._lasso = None, []
        self.update()
        if max(abs(q.x() - start.x()) + abs(q.y() - start.y()) for q in lasso) < CLICK_SLOP:
            row = self.row_at(pos.x(), pos.y())
            if row >= 0:
                self.clicked.emit(row)
            return
        polygon = np.array([(q.x(), q.y()) for q in lasso])
        self.lassoed.emit(np.flatnonzero(inside(self._screen, polygon)))

    def leaveEvent(self, event) -> None:
        if self._hover != -1:
            self._hover = -1
            self.update()
            self.hovered.emit(-1)
        super().leaveEvent(event)


class DatasetMapView(QWidget):
    """The Map tab: compute the map, look at it, pick images with the lasso and fix them.

    Signals:
        compute_requested(): the user asked for the map.
        cancel_requested(): stop computing it.
        open_requested(str): show this image in the viewer.
        point_hovered(int): the mouse points at this row (-1: none); its picture is wanted (``show_preview``).
        exclude_requested(list[str]), move_requested(list[str]): as in the Duplicates tab.

    It shows the map it is given (``show_map``), which names its own rows' files and classes.
    """

    compute_requested = Signal()
    point_hovered = Signal(int)
    cancel_requested = Signal()
    open_requested = Signal(str)
    exclude_requested = Signal(list)
    move_requested = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("datasetMapView")
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.job_row = JobRow("Compute map", ("computeMap", "mapProgress", "cancelMap"))
        self.compute_button, self.progress, self.cancel_button = (self.job_row.start_button, self.job_row.progress,
                                                                  self.job_row.cancel_button)
        self.compute_button.setToolTip("Place every image of the dataset by what the current model sees in it "
                                       "(its penultimate features, reduced to 2-D by PCA and t-SNE)")
        self.compute_button.clicked.connect(self.compute_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.job_row.set_can_start(False)
        self.note = QLabel("Compute the map to see the dataset as the model sees it.", objectName="mapNote",
                           wordWrap=True)
        self.job_row.layout().addWidget(self.note, 1)
        v.addWidget(self.job_row)
        body = QHBoxLayout()
        self.canvas = MapCanvas()
        self.canvas.hovered.connect(self._on_hover)
        self.canvas.clicked.connect(self._on_click)
        self.canvas.lassoed.connect(self._on_lasso)
        body.addWidget(self.canvas, 1)
        side_widget = QWidget()
        side = QVBoxLayout(side_widget)
        side.setContentsMargins(0, 0, 0, 0)
        self.preview = QLabel(objectName="mapPreview", alignment=Qt.AlignCenter)
        self.preview.setFixedSize(PREVIEW + 4, PREVIEW + 4)
        self.preview.setStyleSheet("border: 1px solid #cfd8dc")
        self.hover_name = QLabel(objectName="mapHoverName", wordWrap=True)
        self.hover_name.setMinimumWidth(200)
        self.legend = QLabel(objectName="mapLegend", wordWrap=True, textFormat=Qt.RichText)
        self.selection = QLabel("Draw around points to pick them; click a point to open its image.",
                                objectName="mapSelection", wordWrap=True)
        buttons = add_fix_buttons(self, "Mapped", "picked")
        self.changes = ChangesView()
        for w in (self.preview, self.hover_name, self.legend, self.selection):
            side.addWidget(w)
        side.addLayout(buttons)
        side.addWidget(self.changes)
        side.addStretch(1)
        # the column scrolls rather than making the window taller: its legend grows with the classes
        column = QScrollArea(objectName="mapSide", widgetResizable=True, frameShape=QFrame.NoFrame)
        column.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        column.setWidget(side_widget)
        column.setMinimumWidth(side_widget.sizeHint().width() + column.verticalScrollBar().sizeHint().width())
        body.addWidget(column)
        v.addLayout(body, 1)

    # -- computing ---------------------------------------------------------------------
    def set_can_compute(self, can: bool) -> None:
        """Whether a map can be computed now (a model, a dataset, an idle engine)."""
        self.job_row.set_can_start(can)

    def set_running(self, running: bool) -> None:
        self.job_row.set_running(running)

    def set_progress(self, percent: float, text: str) -> None:
        self.job_row.set_progress(percent)
        if text:
            self.note.setText(text)

    def show_message(self, text: str) -> None:
        self.note.setText(text)

    # -- the map ---------------------------------------------------------------------------
    def show_map(self, dataset_map: DatasetMap | None) -> None:
        """Show ``dataset_map`` (None: nothing)."""
        self.canvas.show_map(dataset_map)
        self._on_hover(-1)
        self._show_selection()
        if dataset_map is None:
            self.legend.setText("")
            return
        self.note.setText(" ".join([dataset_map.summary()] + dataset_map.notes))
        self._show_legend()

    def refresh(self) -> None:
        """The map's sides and highlights were updated (the same files, split or excluded anew)."""
        self.canvas.refresh()
        self._show_legend()
        self._show_selection()

    def _show_legend(self) -> None:
        m = self.canvas.map
        if m is None:
            return
        rows = []
        for i, name in enumerate(m.class_names):
            r, g, b = class_colour(i)
            rows.append(f"<span style='color: rgb({r},{g},{b})'>●</span> {_html(printable(name))}")
        rows.append("● training &nbsp; ○ validation &nbsp; <span style='color: #aaa'>●</span> excluded")
        for flag, name in FLAG_NAMES.items():
            r, g, b = FLAG_COLOURS[flag]
            rows.append(f"<span style='color: rgb({r},{g},{b})'>◯</span> {name} ({len(m.rows_with(flag))})")
        self.legend.setText("<br>".join(rows))

    def selected_paths(self) -> list[str]:
        m = self.canvas.map
        if m is None:
            return []
        return [m.paths[r] for r in self.canvas.selected.tolist()]

    def _show_selection(self) -> None:
        n = len(self.canvas.selected)
        self.selection.setText(f"{n} image(s) picked." if n else
                               "Draw around points to pick them; click a point to open its image.")
        self.exclude_button.setEnabled(bool(n))
        self.move_button.setEnabled(bool(n))

    def _on_hover(self, row: int) -> None:
        m = self.canvas.map
        if row < 0 or m is None:
            self.preview.clear()
            self.hover_name.setText("")
            self.canvas.setToolTip("")
            return
        line = m.describe(row, m.paths, m.class_names)
        self.preview.clear()
        self.point_hovered.emit(row)
        self.hover_name.setText(line)
        self.canvas.setToolTip(line)
        QToolTip.showText(self.canvas.mapToGlobal(self.canvas.screen_point(row).toPoint()), line, self.canvas)

    def show_preview(self, image) -> None:
        """The picture of the row the mouse points at (an image array)."""
        self.preview.setPixmap(array_to_pixmap(np.asarray(image), PREVIEW, PREVIEW))

    def _on_click(self, row: int) -> None:
        if self.canvas.map is not None:
            self.open_requested.emit(self.canvas.map.paths[row])

    def _on_lasso(self, rows) -> None:
        self.canvas.set_selected(rows)
        self._show_selection()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class MapControl(QObject):
    """Runs the map as an engine job with progress and cancel, and keeps it in step with the dataset.

    Args:
        state: the session (``data``, ``model``, ``busy``).
        engine: runs the job.
        view: the Map tab.
        quality: the data fixes (``DataQuality``): the likely mislabelled rows, and the fixes of the picked images.
        distance: gives the Duplicates tab's hash distance.
    """

    def __init__(self, state, engine, view: DatasetMapView, quality, distance, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.engine, self.view, self.quality, self.distance = state, engine, view, quality, distance
        self.map: DatasetMap | None = None
        self._paths = None  # the dataset's paths list the map was made of
        self._doubts: list[int] = []
        self.job = ShownJob(state, engine, view)  # progress, cancel, and stopped when training starts
        view.compute_requested.connect(self.compute)
        view.point_hovered.connect(self._show_preview)
        view.cancel_requested.connect(self.job.cancel)
        state.observe(self._on_data, "data", "model")

    def compute(self) -> None:
        state = self.state
        if state.data is None or state.model is None:
            self.view.show_message("The map needs a trained model and the dataset it was trained on.")
            return
        if state.busy:
            self.view.show_message("Wait until the current work ends.")
            return
        self._doubts = self.quality.doubtful_rows()
        self.view.show_message("Starting…")
        data = state.data
        self.job.start(EngineWorker.map_dataset, data, self.distance(), self._doubts,
                       on_done=lambda m: self._on_mapped(m, data))

    def _on_mapped(self, dataset_map: DatasetMap | None, data) -> None:
        if dataset_map is None:
            self.view.show_message("Map cancelled.")
            return
        if self.state.data is None or self.state.data.paths is not data.paths:
            self.view.show_message("The dataset was read again while the map was computed: compute it again.")
            return
        self.map, self._paths = dataset_map, data.paths
        self._on_data(("data",))  # the split may have changed while it ran
        self.view.show_map(dataset_map)

    def _show_preview(self, row: int) -> None:
        """The picture of a point of the map: the dataset's decoded image of its row."""
        data = self.state.data
        if row >= 0 and self.map is not None and data is not None and data.paths is self._paths:
            self.view.show_preview(data.images[row])

    def _on_data(self, names) -> None:
        """A new model or dataset: the map no longer holds. The same files split or excluded anew: it is redrawn."""
        data = self.state.data
        if self.map is None:
            return
        if "model" in names or data is None or data.paths is not self._paths:
            self.map = self._paths = None
            self.view.show_map(None)
            self.view.show_message("Compute the map to see the dataset as the model sees it.")
            return
        self.map.sides = split_sides(data)
        self.map.flags = highlights(data, self.map.predicted, self.distance(), self._doubts)
        self.view.refresh()

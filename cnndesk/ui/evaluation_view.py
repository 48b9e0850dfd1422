"""The viewer's Evaluation tab: accuracy, confusion matrix, per-class metrics, misclassified images, and beside
them the images whose label the model doubts (``data_quality_view.LabelDoubtsView``, run by ``DataQuality``).

It shows an evaluation of the validation set and knows nothing of the image the viewer shows: it asks for an
evaluation with ``evaluate_requested`` and hands a clicked image's file back with ``open_path``.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import (
    QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel, QListWidget, QListWidgetItem, QPushButton,
    QScrollArea, QSizePolicy, QSplitter, QTabWidget, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ..core.data.scanning import printable
from ..core.intervals import interval_range, with_interval
from .data_quality_view import LabelDoubtsView
from .trust_views import calibration_sentence, ReliabilityDiagram
from .widgets import array_to_pixmap

MISCLASSIFIED_TITLE = "Misclassified images, most confident first (click to open)"
# The tables are as tall as their rows up to this many, then scroll.
TABLE_VISIBLE_ROWS = 8
# The tables' column is as wide as the confusion matrix up to this many pixels (the images beside it keep the rest).
TABLES_MAX_WIDTH = 720


def _per_class_counts(ev) -> str:
    """How many validation images the classes have: "3 per class", or "4 to 100 per class, fewest: one"."""
    counts = [m.support for m in ev.per_class]
    if not counts or min(counts) == max(counts):
        return f"{counts[0] if counts else 0} per class"
    fewest = [printable(m.name) for m in ev.per_class if m.support == min(counts)]
    more = f" and {len(fewest) - 3} more" if len(fewest) > 3 else ""
    return f"{min(counts)} to {max(counts)} per class, fewest: {', '.join(fewest[:3])}{more}"


class RowsTable(QTableWidget):
    """A read-only table, one line a row, exactly as tall as its rows (at most ``max_rows``, then it scrolls).

    A plain table takes a share of its layout whatever it holds, which showed 4 of 6 classes behind a scroll bar.
    """

    def __init__(self, rows: int, columns: int, max_rows: int = TABLE_VISIBLE_ROWS, **kwargs):
        super().__init__(rows, columns, **kwargs)
        self.max_rows = max_rows
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setWordWrap(False)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)  # one line of text a row

    def full_width(self) -> int:
        """The width that shows every column whole: row names, columns, frame, and a scroll bar past ``max_rows``."""
        names = self.verticalHeader().sizeHint().width() if self.verticalHeader().isVisible() else 0
        scroll_bar = self.verticalScrollBar().sizeHint().width() if self.rowCount() > self.max_rows else 0
        return names + self.horizontalHeader().length() + 2 * self.frameWidth() + scroll_bar

    def sizeHint(self) -> QSize:
        rows = min(max(self.rowCount(), 1), self.max_rows)
        header = self.horizontalHeader().sizeHint().height() if self.horizontalHeader().isVisible() else 0
        too_wide = self.horizontalHeader().length() > self.viewport().width()
        scroll_bar = self.horizontalScrollBar().sizeHint().height() if too_wide else 0
        row_heights = sum(self.rowHeight(r) for r in range(rows)) if self.rowCount() else \
            self.verticalHeader().defaultSectionSize()
        height = header + row_heights + 2 * self.frameWidth() + scroll_bar
        return QSize(super().sizeHint().width(), height)

    def minimumSizeHint(self) -> QSize:
        return QSize(super().minimumSizeHint().width(), self.sizeHint().height())

    def fit_rows(self) -> None:
        """Take the height of the rows now in the table."""
        self.updateGeometry()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.updateGeometry()  # a horizontal scroll bar may have come or gone


class EvaluationView(QWidget):
    """Accuracy, confusion matrix, precision/recall per class and a browser of the evaluated images.

    Signals:
        evaluate_requested(): the user pressed the evaluate button.
        open_path(str): the user clicked an evaluated image; the file to open.
    """

    evaluate_requested = Signal()
    open_path = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.evaluation = None
        self._data = None
        v = QVBoxLayout(self)
        v.addLayout(self._build_header())
        self.split = split = QSplitter(Qt.Horizontal)
        split.addWidget(self._build_tables())
        split.setCollapsible(0, False)
        # the misclassified images and the label doubts share the right side, so the tables keep their height
        self.browser_tabs = QTabWidget(objectName="evaluationBrowsers")
        self.browser_tabs.addTab(self._build_browser(), "Misclassified")
        self.label_doubts = LabelDoubtsView()
        self.label_doubts_tab = doubts = QScrollArea(objectName="labelDoubtsArea", widgetResizable=True,
                                                     frameShape=QFrame.NoFrame)
        doubts.setWidget(self.label_doubts)  # scrolls in a small window rather than making the window taller
        self.browser_tabs.addTab(doubts, "Likely mislabelled")
        split.addWidget(self.browser_tabs)
        v.addWidget(split, 1)

    def _build_header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.evaluate_button = QPushButton("Evaluate on the validation set", objectName="evaluateButton")
        self.evaluate_button.clicked.connect(self.evaluate_requested)
        self.accuracy_label = QLabel(objectName="evalAccuracy", wordWrap=True)
        self.accuracy_label.setStyleSheet("font-size: 13pt; font-weight: bold")
        row.addWidget(self.evaluate_button)
        row.addWidget(self.accuracy_label, 1)
        return row

    def _build_tables(self) -> QScrollArea:
        """The confusion matrix above the per-class metrics, each as tall as its rows, in one scrolling column."""
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(QLabel("Confusion matrix (rows: true class, columns: predicted). Click a cell to list its images.",
                            wordWrap=True))
        self.confusion = RowsTable(0, 0, objectName="confusionMatrix")
        self.confusion.cellClicked.connect(self._on_confusion_cell)
        lv.addWidget(self.confusion)
        self.metrics = RowsTable(0, 5, objectName="classMetrics")
        self.metrics.setHorizontalHeaderLabels(["Class", "Precision", "Recall (95 % interval)", "F1",
                                                "Validation images"])
        self.metrics.horizontalHeaderItem(2).setToolTip(
            "The share of the class's validation images the model got right (its accuracy on the class), with its "
            "95 % interval (Wilson score): on a few images per class it could as well be anywhere in it")
        self.metrics.horizontalHeaderItem(4).setToolTip(
            "The class's validation images, of its images in the split (excluded images not counted)")
        self.metrics.verticalHeader().setVisible(False)
        header = self.metrics.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        lv.addWidget(self.metrics)
        self.calibration_label = QLabel(objectName="calibrationLabel", wordWrap=True)
        lv.addWidget(self.calibration_label)
        self.reliability = ReliabilityDiagram()
        self.reliability.setVisible(False)
        lv.addWidget(self.reliability)
        lv.addStretch(1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame, objectName="evaluationTables")
        scroll.setWidget(left)
        self.tables_area = scroll
        return scroll

    def _fit_tables_width(self) -> None:
        """Make the tables' column wide enough for every column of the confusion matrix (up to
        ``TABLES_MAX_WIDTH``): the splitter moves to give it that room, the images beside it keep the rest."""
        needed = self.confusion.full_width() if self.confusion.columnCount() else 0
        if needed:
            needed += self.tables_area.verticalScrollBar().sizeHint().width()  # the column may scroll
        self.tables_area.setMinimumWidth(min(needed, TABLES_MAX_WIDTH))

    def _build_browser(self) -> QWidget:
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        self.cell_label = QLabel(MISCLASSIFIED_TITLE, objectName="cellLabel", wordWrap=True)
        rv.addWidget(self.cell_label)
        self.eval_list = QListWidget(objectName="evalImages")
        self.eval_list.setViewMode(QListWidget.IconMode)
        self.eval_list.setIconSize(QSize(64, 64))
        self.eval_list.setResizeMode(QListWidget.Adjust)
        self.eval_list.setMovement(QListWidget.Static)
        self.eval_list.setWordWrap(True)
        self.eval_list.setGridSize(QSize(120, 110))
        self.eval_list.itemClicked.connect(self._open_item)
        rv.addWidget(self.eval_list, 1)
        return right

    # -- showing ---------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        """A line in place of the accuracy: "Evaluating…", or why no evaluation could be made."""
        self.accuracy_label.setText(text)

    def clear(self) -> None:
        """Forget the shown evaluation (the model changed)."""
        self.evaluation = None
        self._data = None
        self.accuracy_label.setText("")
        self.confusion.clear()
        self.confusion.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.metrics.setRowCount(0)
        self.confusion.fit_rows()
        self.metrics.fit_rows()
        self._fit_tables_width()
        self.cell_label.setText(MISCLASSIFIED_TITLE)
        self.eval_list.clear()
        self._show_calibration(None)

    def show_result(self, ev, data) -> None:
        """Show an evaluation of ``data``'s validation images (``data`` gives their pixels and files)."""
        self.evaluation = ev
        self._data = data
        self.accuracy_label.setText(f"Accuracy {with_interval(ev.accuracy, ev.images)} on the validation images "
                                    f"({_per_class_counts(ev)}; {len(ev.misclassified)} misclassified)")
        self._fill_confusion(ev)
        self._fill_metrics(ev, data)
        self._show_calibration(ev)
        self.cell_label.setText(MISCLASSIFIED_TITLE)
        self._fill_list([m.index for m in ev.misclassified])

    def _show_calibration(self, ev) -> None:
        """The expected calibration error before and after the temperature, and the reliability diagram."""
        report = getattr(ev, "calibration", None)
        calibrated = bool(report) and report.get("calibrated", False)
        self.calibration_label.setText(calibration_sentence(report, calibrated))
        self.reliability.set_report(report, calibrated)
        self.reliability.setVisible(bool(report))

    def _fill_confusion(self, ev) -> None:
        k = len(ev.class_names)
        self.confusion.clear()
        self.confusion.setRowCount(k)
        self.confusion.setColumnCount(k)
        self.confusion.setHorizontalHeaderLabels([f"→ {printable(c)}" for c in ev.class_names])
        self.confusion.setVerticalHeaderLabels([printable(c) for c in ev.class_names])
        top = max(int(ev.confusion.max()), 1)
        for r in range(k):
            for c in range(k):
                self.confusion.setItem(r, c, self._confusion_item(ev, r, c, top))
        self.confusion.resizeColumnsToContents()
        self.confusion.fit_rows()
        self._fit_tables_width()

    @staticmethod
    def _confusion_item(ev, r: int, c: int, top: int) -> QTableWidgetItem:
        """One cell, shaded by its count: blue on the diagonal (right), red off it (wrong)."""
        v = int(ev.confusion[r, c])
        item = QTableWidgetItem(str(v))
        item.setTextAlignment(Qt.AlignCenter)
        t = v / top
        base = (25, 118, 210) if r == c else (211, 47, 47)
        item.setBackground(QColor(*[int(255 - (255 - b) * t * 0.85) for b in base]))
        item.setForeground(QColor("white" if t > 0.55 else "black"))
        item.setToolTip(f"true {printable(ev.class_names[r])}, predicted {printable(ev.class_names[c])}: "
                        f"{v} image(s)")
        return item

    def _fill_metrics(self, ev, data) -> None:
        self.metrics.setRowCount(len(ev.per_class))
        in_split = np.bincount(np.asarray(data.labels)[np.concatenate([data.train_index, data.val_index])],
                               minlength=len(ev.per_class))
        for r, m in enumerate(ev.per_class):
            share = f"{m.support} of {in_split[r]} ({100 * m.support / in_split[r]:.1f} %)" if in_split[r] else "0"
            recall = f"{m.recall:.3f} ({interval_range(m.recall, m.support)})" if m.support else f"{m.recall:.3f}"
            for c, text in enumerate([printable(m.name), f"{m.precision:.3f}", recall, f"{m.f1:.3f}", share]):
                self.metrics.setItem(r, c, QTableWidgetItem(text))
        self.metrics.fit_rows()

    def _fill_list(self, indices: list[int]) -> None:
        ev, data = self.evaluation, self._data
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
        """The files of the listed images, in the order shown."""
        return [self.eval_list.item(i).data(Qt.UserRole) for i in range(self.eval_list.count())]

    def true_class(self, path: str) -> str | None:
        """The true class of an evaluated image file (None: not in the evaluation shown)."""
        if self.evaluation is None or self._data is None:
            return None
        for i in range(len(self.evaluation.labels)):
            if self._data.paths[self._data.val_index[i]] == path:
                return self.evaluation.class_names[self.evaluation.labels[i]]
        return None

    # -- clicks ------------------------------------------------------------------------------
    def _on_confusion_cell(self, row: int, col: int) -> None:
        ev = self.evaluation
        if ev is None:
            return
        idx = ev.cell(row, col)
        self.cell_label.setText(f"True {printable(ev.class_names[row])}, predicted {printable(ev.class_names[col])}: "
                                f"{len(idx)} image(s) (click to open)")
        self._fill_list(sorted(idx, key=lambda i: -ev.confidence[i]))

    def _open_item(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.UserRole)
        if path:
            self.open_path.emit(path)

"""The dataset panel's tables: classes with their counts, and the files that were skipped.

Both size themselves to what they show: the class table grows with its rows up to
``CLASS_ROWS_SHOWN`` and then scrolls; skipped files are shown relative to the
dataset folder, shortened in the middle so the file name stays visible.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QSizePolicy, QStyledItemDelegate, QTableWidget,
)

from ..core.data.scanning import printable, SkippedFile

QWIDGETSIZE_MAX = (1 << 24) - 1  # Qt's "no maximum" for a widget's size
#: the class table grows with its rows up to this many, then scrolls
CLASS_ROWS_SHOWN = 12


def relative_path(path: str, root: str | os.PathLike | None) -> str:
    """``path`` relative to the dataset folder ``root`` when it lies inside it, else ``path`` unchanged.

    Compared as text, without touching the disk: the loader lists files under
    the root it was given, and a skipped file may no longer exist.
    """
    if root is None:
        return path
    base = os.path.join(os.fspath(root), "")
    return path[len(base):] if path.startswith(base) and len(path) > len(base) else path


class SkippedFilesModel(QAbstractTableModel):
    """The skipped files as a two-column table (file, reason), read lazily by the view.

    Rows are read only when scrolled into view, so tens of thousands of them
    show at once (a ``QTableWidget`` makes an item per cell up front). Files are
    shown relative to the dataset folder, so the file name stays in sight; the
    tooltip has the full path.
    """

    HEADERS = ("File", "Reason")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.files: list[SkippedFile] = []
        self.root: Path | None = None

    def set_files(self, files: list[SkippedFile], root: str | os.PathLike | None = None) -> None:
        self.beginResetModel()
        self.files = list(files)
        self.root = Path(root) if root is not None else None
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.files)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else 2

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid() or role not in (Qt.DisplayRole, Qt.ToolTipRole):
            return None
        f = self.files[index.row()]
        if index.column() == 1:
            return printable(f.reason)
        if role == Qt.ToolTipRole:
            return printable(f.path)
        return printable(relative_path(f.path, self.root))

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.HEADERS[section]
        return None


class ElideMiddleDelegate(QStyledItemDelegate):
    """Elides text in the middle, so a path keeps both its class folder and its file name."""

    def initStyleOption(self, option, index) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.ElideMiddle


class ClassTable(QTableWidget):
    """The class table: as tall as its rows, up to ``CLASS_ROWS_SHOWN`` of them, then it scrolls.

    A table's own size hint ignores its rows, so a fixed height either hides
    classes behind a scrollbar or wastes space; this one asks the layout for
    exactly its rows, and can be squeezed down to ``min_rows`` in a small window.
    """

    def __init__(self, rows_shown: int = CLASS_ROWS_SHOWN, min_rows: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.rows_shown, self.min_rows = rows_shown, min_rows
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Maximum)
        self.setVerticalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.horizontalScrollBar().rangeChanged.connect(self.updateGeometry)

    def height_for_rows(self, rows: int) -> int:
        """The height that shows the header and the first ``rows`` rows without scrolling."""
        header = self.horizontalHeader()
        h = 2 * self.frameWidth() + (header.sizeHint().height() if not header.isHidden() else 0)
        h += sum(self.rowHeight(r) for r in range(min(rows, self.rowCount())))
        h += self.verticalHeader().defaultSectionSize() * max(0, rows - self.rowCount())
        if self.horizontalScrollBar().maximum() > 0:  # a long class name: the bar takes room from the rows
            h += self.horizontalScrollBar().sizeHint().height()
        return h

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height_for_rows(min(max(self.rowCount(), 1), self.rows_shown)))

    def minimumSizeHint(self) -> QSize:
        rows = min(max(self.rowCount(), 1), self.min_rows)
        return QSize(super().minimumSizeHint().width(), self.height_for_rows(rows))

"""Classify a whole folder in the window: the Viewer's Folder tab, its sort dialog, and ``FolderWork``.

``FolderView`` is a view: a table of one row per image (thumbnail, file, predicted class, confidence, second
class, flags), sortable and filterable, with progress, images/s and Cancel, *Export CSV…*, *Sort into Class
Folders…* and the list of changes with Undo (``data_quality_view.ChangesView``). It draws a
``core.work.classify_folder.FolderResult``, which lives in the session state (``state.folder_result``), not in the
widget: its table (``FolderRows``) reads the result's columns through an index array that sorting and filtering
reorder, and decodes thumbnails only for the rows it draws (``Thumbnails``), so that 100,000 rows cost megabytes.

``FolderWork`` turns the view's requests into work: the classification is an engine job
(``EngineWorker.classify_folder``) whose batches of rows it writes into the state as they come; exporting writes
the rows shown to a CSV file in another (``EngineWorker.write_csv``), with the same progress bar and Cancel; sorting copies (or, asked and confirmed, moves) the rows
shown into ``<destination>/<class>/`` in another engine job (``EngineWorker.sort_rows``) and keeps the changes so
that each, or all, can be undone (also listed in the destination, for ``cnndesk-cli undo-sort``). ``FolderWork`` is
the Folder tab's binding, built in ``ui.bindings.bind_window``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
    QHeaderView, QLabel, QLineEdit, QMessageBox, QPushButton, QRadioButton, QTableView, QVBoxLayout, QWidget,
)

from ..core.data.fixes import Change, ChangeLog
from ..core.data.images import decode_or_reason
from ..core.data.scanning import describe_skipped, printable
from ..core.errors import UserError
from ..core.project.store import is_project
from ..core.work.classify_folder import (
    CANCELLED, CsvWritten, DONE, FAILED, FAILED_BIT, FLAG_BITS, FolderDone, FolderResult, FolderRow, NOT_SURE,
    remove_from_sort_log, RowColumns, RowsClassified, RowsView, RUNNING, sort_destination, Sorted, thumbnail_of,
    UNLIKE, undo_all,
)
from .data_quality_view import ChangesView
from .engine import ShownJob
from .engine_worker import EngineWorker
from .file_dialogs import NewFolderDialog
from .widgets import array_to_qimage, JobRow

THUMB = 32
#: the thumbnails kept decoded (those of the rows shown, and of the rows shown last)
THUMBNAILS_KEPT = 512
#: thumbnails waiting to be decoded at most (the newest asked for first; older ones are dropped)
THUMBNAILS_WAITING = 256
#: the classes kept per row (the CSV's top-k)
TOP_K = 3
#: the filter's choices before the classes
ALL, ONLY_NOT_SURE, ONLY_UNLIKE = "All images", "Not sure", "Unlike training"
#: how a row's flags sort: none, not sure, both, unlike training, unreadable
FLAG_ORDER = np.array([0, 1, 3, 2, 4, 4, 4, 4], np.float64)


class Thumbnails(QObject):
    """The thumbnails of the rows a table shows, decoded in a thread of their own as the table asks for them (the
    image as the model sees it, at most ``THUMB`` pixels a side), the last ``THUMBNAILS_KEPT`` kept.

    ``get(path)`` answers at once: the icon, or None while it is being decoded (then ``ready`` says when some are).
    """

    ready = Signal()
    _decoded = Signal(str, object)  # emitted by the decoding thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.kept: OrderedDict[str, QIcon | None] = OrderedDict()  # None: the file could not be read
        self.preprocessing = None
        self._waiting: OrderedDict[str, object] = OrderedDict()  # path -> preprocessing, newest last
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._ready = QTimer(self, singleShot=True, interval=30)  # one repaint for the thumbnails of a scroll
        self._ready.timeout.connect(self.ready)
        self._decoded.connect(self._on_decoded)
        self.destroyed.connect(self._stop)

    def get(self, path: str) -> QIcon | None:
        if path in self.kept:
            self.kept.move_to_end(path)
            return self.kept[path]
        if self.preprocessing is not None:
            with self._wake:
                self._waiting[path] = self.preprocessing
                self._waiting.move_to_end(path)
                while len(self._waiting) > THUMBNAILS_WAITING:
                    self._waiting.popitem(last=False)
                self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._decode, name="cnndesk-thumbnails", daemon=True)
                self._thread.start()
        return None

    def clear(self, preprocessing) -> None:
        """Forget the thumbnails; those asked for next are decoded with ``preprocessing`` (None: none)."""
        self.kept.clear()
        self.preprocessing = preprocessing
        with self._wake:
            self._waiting.clear()

    def _decode(self) -> None:
        """The decoding thread: the newest path asked for first."""
        while True:
            with self._wake:
                while not self._waiting and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                path, preprocessing = self._waiting.popitem(last=True)
            decoded = decode_or_reason(Path(path), preprocessing)
            picture = None if isinstance(decoded, str) else array_to_qimage(thumbnail_of(decoded, THUMB))
            try:
                self._decoded.emit(path, picture)
            except RuntimeError:  # the table went (the window closed) while this one was decoded
                return

    @Slot(str, object)
    def _on_decoded(self, path: str, picture) -> None:
        with self._wake:
            if path in self._waiting:  # asked for again meanwhile: no second decode
                del self._waiting[path]
        self.kept[path] = None if picture is None else QIcon(QPixmap.fromImage(picture))
        while len(self.kept) > THUMBNAILS_KEPT:
            self.kept.popitem(last=False)
        if not self._ready.isActive():
            self._ready.start()

    def _stop(self, *_args) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()


class FolderRows(QAbstractTableModel):
    """The rows of a ``FolderResult`` as a table, read from its columns (``RowColumns``): no object per row.

    The rows shown are an index array into the columns (``order``), filtered (all, "not sure", "unlike
    training", one predicted class) and sorted (by a column's key, ``sort``) with NumPy; rows added to the same
    result are inserted, in their sorted places when the table is sorted. Thumbnails are decoded only for the
    rows drawn (``Thumbnails``).
    """

    COLUMNS = ["Image", "File", "Class", "Confidence", "Second class", "Flags"]

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.columns: RowColumns | None = None
        self.count = 0  # the rows of the result shown (the columns may hold more of a newer result)
        self.order = np.zeros(0, np.int64)  # the rows shown, in the order shown
        self._keys: np.ndarray | None = None  # the sort keys of the rows shown (ascending), when sorted
        self.sort_column, self.sort_order = -1, Qt.AscendingOrder
        self.choice = ALL
        self._root: Path | None = None
        self.thumbnails = Thumbnails(self)
        self.thumbnails.ready.connect(self._thumbnails_ready)

    # -- what is shown ---------------------------------------------------------------------
    def show(self, result: FolderResult | None) -> None:
        columns = result.columns if result is not None else None
        count = result.count if result is not None else 0
        root = Path(result.sources[0]) if result is not None and len(result.sources) == 1 else None
        if columns is not None and columns is self.columns and count >= self.count and root == self._root:
            if count > self.count:  # the same run, more rows: only those are added
                self._add(np.arange(self.count, count))
            return
        self.beginResetModel()
        self.columns, self.count, self._root = columns, count, root
        self.thumbnails.clear(result.model.preprocessing if result is not None and result.model is not None
                              else None)
        self.order = self._passing(np.arange(count))
        self._keys = None
        if self.sort_column >= 0:
            self._sort_order()
        self.endResetModel()

    def set_choice(self, choice: str) -> None:
        """Show only the rows of ``choice`` (ALL, ONLY_NOT_SURE, ONLY_UNLIKE or a class name)."""
        self.layoutAboutToBeChanged.emit()
        before = self._persistent()
        self.choice = choice
        self.order = self._passing(np.arange(self.count))
        if self.sort_column >= 0:
            self._sort_order()
        self._move_persistent(before)
        self.layoutChanged.emit()

    def sort(self, column: int, order=Qt.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        before = self._persistent()
        self.sort_column, self.sort_order = column, order
        if column < 0:
            self.order, self._keys = np.sort(self.order), None
        else:
            self._sort_order()
        self._move_persistent(before)
        self.layoutChanged.emit()

    def total(self) -> int:
        return self.count

    def shown(self) -> RowsView:
        """The rows shown, in the order of the files (not of the table's sorting)."""
        return RowsView(self.columns, indices=np.sort(self.order))

    def row_at(self, shown_row: int) -> FolderRow:
        return self.columns.row(int(self.order[shown_row]))

    def _add(self, new: np.ndarray) -> None:
        self.count = int(new[-1]) + 1
        new = self._passing(new)
        if not len(new):
            return
        if self._keys is None:  # in the files' order: the new rows go last
            first = len(self.order)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self.order = np.concatenate([self.order, new])
            self.endInsertRows()
            return
        keys = self._key(new)
        ranked = np.argsort(keys, kind="stable")
        new, keys = new[ranked], keys[ranked]
        places = np.searchsorted(self._keys, keys, side="right")  # after equal keys: the files' order among them
        self.layoutAboutToBeChanged.emit()
        before = self._persistent()
        self.order = np.insert(self.order, places, new)
        self._keys = np.insert(self._keys, places, keys)
        self._move_persistent(before)
        self.layoutChanged.emit()

    def _passing(self, rows: np.ndarray) -> np.ndarray:
        """Those of ``rows`` (indices into the columns) that the filter lets through."""
        c, choice = self.columns, self.choice
        if c is None or choice == ALL or not len(rows):
            return rows
        flags = c.flags[rows]
        if choice == ONLY_NOT_SURE:
            return rows[(flags & FLAG_BITS[NOT_SURE]) > 0]
        if choice == ONLY_UNLIKE:
            return rows[(flags & FLAG_BITS[UNLIKE]) > 0]
        index = c.class_names.index(choice) if choice in c.class_names else -2
        return rows[(c.top[rows, 0] == index) & ((flags & FAILED_BIT) == 0)]

    def _key(self, rows: np.ndarray) -> np.ndarray:
        """The sort keys of ``rows`` for the column sorted, ascending in the order asked for (ties: files' order)."""
        c, column = self.columns, self.sort_column
        if column == 2:
            ranks = np.argsort(np.argsort(np.array(c.class_names, dtype=object), kind="stable"), kind="stable")
            top = c.top[rows, 0]
            key = np.where(top >= 0, ranks[np.maximum(top, 0)], -1).astype(np.float64)
        elif column in (3, 4):
            key = np.nan_to_num(c.probs[rows, column - 3] if c.k > column - 3 else np.full(len(rows), np.nan),
                                nan=-1.0)
        elif column == 5:
            key = FLAG_ORDER[np.minimum(c.flags[rows], 7)]
        else:  # the image and the file: the files' order
            key = rows.astype(np.float64)
        return key if self.sort_order == Qt.AscendingOrder else -key

    def _sort_order(self) -> None:
        keys = self._key(self.order)
        ranked = np.argsort(keys, kind="stable")
        self.order, self._keys = self.order[ranked], keys[ranked]

    def _persistent(self) -> list[tuple[QModelIndex, int, int]]:
        """The persistent indexes (selection, current row) with the columns' row each points at."""
        return [(i, int(self.order[i.row()]), i.column()) for i in self.persistentIndexList()
                if 0 <= i.row() < len(self.order)]

    def _move_persistent(self, before) -> None:
        if not before:
            return
        where = np.full(self.count, -1, np.int64)
        where[self.order] = np.arange(len(self.order))
        for index, source, column in before:
            row = int(where[source]) if source < len(where) else -1
            self.changePersistentIndex(index, self.index(row, column) if row >= 0 else QModelIndex())

    @Slot()
    def _thumbnails_ready(self) -> None:
        if len(self.order):
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.order) - 1, 0), [Qt.DecorationRole])

    # -- the table's questions -------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return self.COLUMNS[section]
        return None

    def file_name(self, path: str) -> str:
        if self._root is not None:
            try:
                return str(Path(path).relative_to(self._root))
            except ValueError:
                pass
        return path

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        if not index.isValid() or index.row() >= len(self.order):
            return None
        i, col, c = int(self.order[index.row()]), index.column(), self.columns
        if role == Qt.DisplayRole:
            return self._text(i, col)
        if role == Qt.DecorationRole and col == 0 and i not in c.errors:
            return self.thumbnails.get(c.paths[i])
        if role == Qt.ToolTipRole:
            error = c.errors.get(i)
            return printable(c.paths[i]) + (f"\n{error}" if error else "")
        return None

    def _text(self, i: int, col: int) -> str:
        c = self.columns
        if col == 1:
            return printable(self.file_name(c.paths[i]))
        error = c.errors.get(i)
        if error is not None:
            return {2: "—", 5: f"not read: {error}"}.get(col, "")
        if col == 2:
            return printable(c.class_names[c.top[i, 0]])
        if col == 3:
            return f"{c.probs[i, 0]:.1%}"
        if col == 4:
            return f"{printable(c.class_names[c.top[i, 1]])} {c.probs[i, 1]:.1%}" if c.k > 1 and c.top[i, 1] >= 0 else ""
        if col == 5:
            bits = int(c.flags[i])
            return ", ".join(f for f, b in FLAG_BITS.items() if bits & b)
        return ""


class FolderView(QWidget):
    """The Folder tab: a folder's images classified, as a table to sort, filter, open, export and sort into folders.

    Signals:
        classify_requested(): the user asked to choose a folder to classify.
        cancel_requested(): stop the classification.
        export_requested(list): write these rows (``FolderRow``) to a CSV file.
        sort_requested(list): copy (or move) the files of these rows into class folders.
        open_requested(str): show this image in the viewer (a click, or Enter).
        undo_all_requested(): undo every change listed.
    """

    classify_requested = Signal()
    cancel_requested = Signal()
    export_requested = Signal(list)
    sort_requested = Signal(list)
    open_requested = Signal(str)
    undo_all_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("folderView")
        v = QVBoxLayout(self)
        self.job_row = JobRow("Classify Folder…", ("classifyFolder", "folderProgress", "cancelFolder"),
                              stretch_progress=True)
        self.classify_button, self.progress, self.cancel_button = (self.job_row.start_button, self.job_row.progress,
                                                                   self.job_row.cancel_button)
        self.classify_button.setToolTip("Classify every image of a folder (and its subfolders) with the current "
                                        "model; or drop a folder on the viewer")
        self.classify_button.clicked.connect(self.classify_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.job_row.set_can_start(False)
        self.counts = QLabel(objectName="folderCounts")
        self.job_row.layout().addWidget(self.counts)
        v.addWidget(self.job_row)
        self.note = QLabel("Classify a folder, or drop one on the viewer, to see what the model says of every image "
                           "in it.", objectName="folderNote", wordWrap=True)
        v.addWidget(self.note)

        filters = QHBoxLayout()
        filters.addWidget(QLabel("Show"))
        self.filter = QComboBox(objectName="folderFilter")
        self.filter.addItems([ALL, ONLY_NOT_SURE, ONLY_UNLIKE])
        self.filter.setToolTip("Show every image, those the model is not sure of (calibrated confidence under 50 %), "
                               "those unlike the training images, or those of one predicted class")
        self.filter.currentTextChanged.connect(self._filter)
        self.shown_label = QLabel(objectName="folderShown")
        filters.addWidget(self.filter)
        filters.addWidget(self.shown_label, 1)
        self.export_button = QPushButton("Export CSV…", objectName="exportFolderCsv", enabled=False)
        self.export_button.setToolTip("Write the rows shown (path, class, confidence, the top classes, flags) to a "
                                      "CSV file")
        self.export_button.clicked.connect(lambda: self.export_requested.emit(self.rows.shown()))
        self.sort_button = QPushButton("Sort into Class Folders…", objectName="sortIntoFolders", enabled=False)
        self.sort_button.setToolTip("Copy the images shown into <destination>/<class>/ (move them only if you "
                                    "choose to and confirm); every change can be undone")
        self.sort_button.clicked.connect(lambda: self.sort_requested.emit(self.rows.shown()))
        filters.addWidget(self.export_button)
        filters.addWidget(self.sort_button)
        v.addLayout(filters)

        self.rows = FolderRows(self)
        self.table = QTableView(objectName="folderTable")
        self.table.setModel(self.rows)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 4)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)  # the files' order until a click
        self.table.setSortingEnabled(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.resizeSection(0, THUMB + 12)
        self.table.clicked.connect(self._open)
        self.table.activated.connect(self._open)  # Enter (and a double click)
        self.rows.rowsInserted.connect(self._count_shown)
        self.rows.modelReset.connect(self._count_shown)
        self.rows.layoutChanged.connect(self._count_shown)
        v.addWidget(self.table, 1)

        changes = QHBoxLayout()
        self.changes = ChangesView()
        self.undo_all_button = QPushButton("Undo All", objectName="undoAllSorted", enabled=False)
        self.undo_all_button.setToolTip("Undo every copy and move listed: copies are deleted, moved files go back")
        self.undo_all_button.clicked.connect(self.undo_all_requested)
        changes.addWidget(self.changes, 1)
        changes.addWidget(self.undo_all_button, 0, Qt.AlignTop)
        v.addLayout(changes)
        self._classes: tuple[str, ...] = ()
        self._ended = False  # the rows shown are those of a classification that ended

    # -- what ShownJob drives ----------------------------------------------------------
    def set_running(self, running: bool) -> None:
        """A job of the tab (classifying, writing a CSV) runs: its bar and Cancel show, and no other starts."""
        self.job_row.set_running(running)
        self._enable()

    def set_progress(self, percent: float, text: str) -> None:
        self.job_row.set_progress(percent)

    def show_message(self, text: str) -> None:
        self.note.setText(text)

    # -- what the state holds ----------------------------------------------------------
    def show_result(self, result: FolderResult | None, classes: tuple[str, ...], note: str = "") -> None:
        """Draw ``result`` (None: no folder classified); ``classes`` are the filter's; ``note`` says more."""
        if tuple(classes) != self._classes:
            self._classes = tuple(classes)
            chosen = self.filter.currentText()
            self.filter.blockSignals(True)
            self.filter.clear()
            self.filter.addItems([ALL, ONLY_NOT_SURE, ONLY_UNLIKE, *self._classes])
            self.filter.setCurrentText(chosen if chosen in (ALL, ONLY_NOT_SURE, ONLY_UNLIKE, *self._classes)
                                       else ALL)
            self.filter.blockSignals(False)
            self.rows.set_choice(self.filter.currentText())
        self.rows.show(result)
        self._ended = result is not None and result.status != RUNNING and result.count > 0
        self._enable()
        if result is None:
            self.counts.setText("")
            return
        self.counts.setText(_counts(result))
        self.note.setText(_sentence(result, note))

    def show_changes(self, changes: list[Change]) -> None:
        self.changes.show_changes(changes)
        self.undo_all_button.setEnabled(bool(changes))

    def set_can_classify(self, can: bool) -> None:
        """Whether a folder can be classified now (a model, an idle engine)."""
        self.job_row.set_can_start(can)

    def enable_sort(self, can: bool) -> None:
        """Whether Sort into Class Folders may start (no sort under way)."""
        self.sort_button.setEnabled(can and self._ended and not self.job_row.running)

    def _enable(self) -> None:
        idle = self._ended and not self.job_row.running
        self.export_button.setEnabled(idle)
        self.sort_button.setEnabled(idle)

    def _filter(self, choice: str) -> None:
        self.rows.set_choice(choice)
        self._count_shown()

    def _count_shown(self, *_args) -> None:
        total, shown = self.rows.total(), self.rows.rowCount()
        self.shown_label.setText("" if shown == total else f"{shown:,} of {total:,} images shown")

    def _open(self, index: QModelIndex) -> None:
        if index.isValid():
            row = self.rows.row_at(index.row())
            if row.error is None:
                self.open_requested.emit(row.path)


def _counts(result: FolderResult) -> str:
    done = len(result.rows)
    seconds = result.seconds if result.seconds is not None else time.perf_counter() - result.started
    rate = f" · {done / seconds:,.0f} images/s" if done and seconds > 0 else ""
    if result.total is None:
        return "Listing the images…"
    return f"{done:,} of {result.total:,} images{rate}"


def _sentence(result: FolderResult, note: str) -> str:
    """What the note under the buttons says of ``result``."""
    where = ", ".join(printable(s) for s in result.sources)
    tally = f"{result.not_sure:,} not sure, {result.unlike:,} unlike training, {result.unreadable:,} unreadable."
    skipped = " ".join(describe_skipped(list(result.skipped)))
    said = {RUNNING: f"Classifying {where}…",
            DONE: f"Classified {where}: {tally}" if result.total else f"No image files were found in {where}.",
            CANCELLED: f"Cancelled: {len(result.rows):,} of {result.total or 0:,} images of {where} classified "
                       f"(kept below). {tally}",
            FAILED: f"Classifying {where} failed: {result.message}"}[result.status]
    return " ".join(s for s in (result.stale, said, skipped, note) if s)


class SortDialog(QDialog):
    """Where to sort the images shown, whether to copy or move them, and whether flagged ones get folders of their own.

    Opened window-modal (``open``), never with a nested event loop; ``chosen()`` gives the answer once accepted.
    """

    def __init__(self, parent: QWidget | None, count: int, start: str):
        super().__init__(parent)
        self.setObjectName("sortDialog")
        self.setWindowTitle("Sort into class folders")
        form = QFormLayout(self)
        form.addRow(QLabel(f"Put the {count:,} image(s) shown into <destination>/<class>/."))
        row = QHBoxLayout()
        self.destination = QLineEdit(start, objectName="sortDestination")
        browse = QPushButton("Choose…", objectName="chooseSortDestination")
        browse.clicked.connect(self._browse)
        row.addWidget(self.destination, 1)
        row.addWidget(browse)
        form.addRow("Destination", row)
        self.copy = QRadioButton("Copy the files (the originals stay)", objectName="sortCopy", checked=True)
        self.move = QRadioButton("Move the files (asks first)", objectName="sortMove")
        form.addRow(self.copy)
        form.addRow(self.move)
        self.flag_folders = QCheckBox(f"Put \"{NOT_SURE}\" and \"{UNLIKE}\" images into folders of those names",
                                      objectName="sortFlagFolders")
        form.addRow(self.flag_folders)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Sort")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._folder_dialog: NewFolderDialog | None = None

    def _browse(self) -> None:
        dialog = self._folder_dialog = NewFolderDialog(self, "Sort into the folder", self.destination.text())
        dialog.finished.connect(lambda _r: dialog.chosen and self.destination.setText(dialog.chosen))
        dialog.open()

    def chosen(self) -> tuple[str, bool, bool]:
        """(destination, move, flag folders)."""
        return self.destination.text().strip(), self.move.isChecked(), self.flag_folders.isChecked()


class FolderWork(QObject):
    """The Folder tab's binding: classifies folders as an engine job into ``state.folder_result`` (shown in the
    view's table), exports and sorts their rows, undoes sorts.

    Args:
        state: the session (``model``, ``runs``, ``folder_result``).
        engine: runs the classification and the sorting.
        view: the Folder tab.
        show_view: brings the Folder tab to the front.
        dialog_parent: the window the dialogs belong to.
    """

    def __init__(self, state, engine, view: FolderView, show_view: Callable[[], None], dialog_parent: QWidget):
        super().__init__(dialog_parent)
        self.state, self.engine, self.view, self.show_view = state, engine, view, show_view
        self.parent_widget = dialog_parent
        self.job = ShownJob(state, engine, self)  # progress, cancel, and stopped when training starts
        self.log = ChangeLog()
        self.dialog: QWidget | None = None  # the dialog open now (a file dialog, the sort dialog, a question)
        self._sorting = None  # the sort job under way
        self.note = ""  # what the Folder tab adds under the rows (the model carries no statistics)
        self.running = False  # a classification job is under way
        view.classify_requested.connect(self.choose_folder)
        view.cancel_requested.connect(self.cancel)
        view.export_requested.connect(self.export)
        view.sort_requested.connect(self.ask_sort)
        view.undo_all_requested.connect(self.undo_all)
        view.changes.undo_requested.connect(self.undo)
        state.observe(self._show, "folder_result")
        state.observe(self._stale, "model", "data")
        state.observe(lambda _: view.set_can_classify(self.usable), "model", "activity", "engine_ready")
        view.set_can_classify(self.usable)
        self._show()

    def _show(self, _names=None) -> None:
        state = self.state
        result = state.folder_result
        model = result.model if result is not None and result.model is not None else state.model
        self.view.show_result(result, tuple(model.class_names) if model is not None else (), self.note)

    def _stale(self, names) -> None:
        """A new model or dataset makes the rows stale: they stay, saying which model they came from."""
        state = self.state
        result = state.folder_result
        if result is None or result.stale or state.loading:
            return
        if "model" in names and state.model is not result.model:
            why = (f"These rows came from {result.model.label}, which is no longer the current model: classify "
                   "the folder again for the current one's answers.")
        elif "data" in names:
            why = ("Another dataset was read since these rows were made (the model's training images may differ "
                   "from it): classify the folder again if the model changed.")
        else:
            return
        with state.not_an_edit():
            state.folder_result = result.made_stale(why)

    # -- classifying ---------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        state = self.state
        return state.engine_ready and state.has_model and not state.busy

    def choose_folder(self) -> None:
        """Show the Folder tab and ask for a folder to classify."""
        self.show_view()
        if not self._can_start():
            return
        dialog = QFileDialog(self.parent_widget, "Classify the images of a folder", str(self._start_folder()))
        dialog.setObjectName("classifyFolderDialog")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.fileSelected.connect(lambda folder: self.classify([folder]))
        self._open_dialog(dialog)

    def classify(self, sources: list[str]) -> None:
        """Classify every image of ``sources`` (folders, searched recursively, or files) with the current model."""
        self.show_view()
        if not self._can_start():
            return
        state = self.state
        model = state.model
        self.note = "" if model.temperature is not None or model.flags_unlike else (
            "This model carries no statistics of its training images, so no image is flagged \"unlike training\" "
            "and its confidences are not calibrated.")
        k = min(TOP_K, len(model.class_names))
        state.folder_result = FolderResult.start(sources, model, max(2, k), time.perf_counter())
        self.job.start(EngineWorker.classify_folder, list(sources), k=k, on_done=self._on_done,
                       on_report=self._on_rows)

    def _can_start(self) -> bool:
        if self.running:
            self.view.show_message("A folder is being classified or exported: wait for it, or cancel it first.")
            return False
        if not self.usable:
            self.view.show_message("Train or open a model first." if not self.state.has_model else
                                   "Wait until the current work (training, saving) ends.")
            return False
        return True

    def _start_folder(self) -> Path:
        result = self.state.folder_result
        return Path(result.sources[0]) if result is not None and result.sources else Path.home()

    def _on_rows(self, report: RowsClassified) -> None:
        result = self.state.folder_result
        if result is not None and result.status == RUNNING:
            self.state.folder_result = result.with_rows(report)

    def _on_done(self, done: FolderDone) -> None:
        self._end(CANCELLED if done.cancelled else DONE)

    def _end(self, status: str, message: str = "") -> None:
        result = self.state.folder_result
        if result is not None and result.status == RUNNING:
            self.state.folder_result = result.ended(status, time.perf_counter() - result.started, message)

    # ShownJob's view: the bar and Cancel go to the Folder tab; a classification's error ends the result in the state
    def set_running(self, running: bool) -> None:
        self.running = running
        self.view.set_running(running)

    def set_progress(self, percent: float, text: str) -> None:
        self.view.set_progress(percent, text)
        result = self.state.folder_result
        if result is not None:
            self.view.counts.setText(_counts(result))

    def show_message(self, text: str) -> None:
        self._end(FAILED, text)

    def cancel(self) -> None:
        self.job.cancel()

    def dropped_on_viewer(self, paths: list[str], otherwise: Callable[[list[str]], None]) -> None:
        """A folder dropped on the viewer is classified; anything else (images, a project, a model) goes to
        ``otherwise``."""
        first = Path(paths[0]) if paths else None
        if (first is not None and first.is_dir() and not is_project(first)
                and not (first / "saved_model.pb").is_file() and self.state.has_model):
            self.classify([p for p in paths if Path(p).is_dir()])
        else:
            otherwise(paths)

    # -- exporting and sorting ---------------------------------------------------------------
    def export(self, rows: RowsView) -> None:
        """Ask for a CSV file and write ``rows`` to it."""
        if not rows or not self._can_start():
            return
        start = self._start_folder().parent / f"{self._start_folder().name or 'folder'}-classified.csv"
        dialog = QFileDialog(self.parent_widget, "Export the rows as CSV", str(start), "CSV files (*.csv)")
        dialog.setObjectName("exportFolderDialog")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix("csv")
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.fileSelected.connect(lambda path: self.write_csv(path, rows))
        self._open_dialog(dialog)

    def write_csv(self, path: str, rows: RowsView) -> None:
        """Write ``rows`` to the CSV file ``path`` in an engine job (progress and Cancel in the tab); the file appears
        whole or not at all, and a failure (a full disk) is said in a message box."""
        if not self._can_start():
            return
        self.view.show_message(f"Writing {len(rows):,} rows to {printable(path)}…")
        self.job.start(EngineWorker.write_csv, path, rows, TOP_K, on_done=self._on_written,
                       on_error=lambda message: self._on_not_written(path, message))

    def _on_written(self, answer: CsvWritten | None) -> None:
        if answer is None:
            self.view.show_message("Export cancelled: no CSV file was written.")
        else:
            self.view.show_message(f"{answer.count:,} rows written to {printable(answer.path)}.")

    def _on_not_written(self, path: str, message: str) -> None:
        self.view.show_message(f"No CSV file was written to {printable(path)}.")
        self._error("The CSV file could not be written", message)

    def ask_sort(self, rows: RowsView) -> None:
        """Ask where to sort ``rows`` and how; a move is confirmed first."""
        if not rows:
            return
        if self._sorting is not None:
            self.view.show_message("A sort is under way: wait for it to end.")
            return
        start = self._start_folder()
        dialog = SortDialog(self.parent_widget, len(rows), str(start.parent / f"{start.name}-sorted"))
        dialog.accepted.connect(lambda: self._sort_chosen(rows, *dialog.chosen()))
        self._open_dialog(dialog)

    def _sort_chosen(self, rows: RowsView, destination: str, move: bool, flag_folders: bool) -> None:
        if not destination:
            self.view.show_message("Sorting needs a destination folder.")
            return
        if not move:
            self.sort(rows, destination, False, flag_folders)
            return
        box = QMessageBox(QMessageBox.Question, "Move files on disk",
                          f"Move {len(rows):,} file(s) out of their folders into {printable(destination)}/<class>/?"
                          "\n\nNothing is deleted, and Undo moves them back. Choose No to leave them where they "
                          "are (then sort again with Copy).",
                          QMessageBox.Yes | QMessageBox.No, self.parent_widget)
        box.setObjectName("confirmMove")
        box.setDefaultButton(QMessageBox.No)
        box.finished.connect(lambda _answer: box.standardButton(box.clickedButton()) == QMessageBox.Yes
                             and self.sort(rows, destination, True, flag_folders))
        self._open_dialog(box)

    def sort(self, rows: RowsView, destination: str, move: bool, flag_folders: bool) -> None:
        """Copy (or move) the files of ``rows`` into ``destination/<class>/`` in an engine job."""
        self.view.show_message(f"{'Moving' if move else 'Copying'} {len(rows):,} images into "
                               f"{printable(destination)}…")
        self.view.enable_sort(False)
        self._sorting = self.engine.submit(EngineWorker.sort_rows, rows, str(Path(destination).expanduser()),
                                           move, flag_folders, on_done=self._on_sorted, on_error=self._on_sort_failed)

    def _on_sorted(self, answer: Sorted) -> None:
        self._sorting = None
        for change in answer.changes:
            self.log.add(change)
        self._show_changes()
        verb = "moved" if answer.changes and answer.changes[0].kind == "move" else "copied"
        said = f"{len(answer.changes):,} images {verb} into {printable(answer.destination)}/<class>/."
        self.view.show_message(said if answer.problem is None else f"{said} Stopped: {answer.problem}")

    def _on_sort_failed(self, message: str) -> None:
        self._sorting = None
        self._show_changes()
        self._error("The images could not be sorted", message)

    def undo(self, change: Change) -> None:
        try:
            self.log.undo(change, set())
        except UserError as e:
            self._error("The change could not be undone", str(e))
            return
        self._forget_listed([change])
        self._show_changes()

    def undo_all(self) -> None:
        before = list(self.log.changes)
        problems = undo_all(self.log)
        self._forget_listed([c for c in before if c not in self.log.changes])
        self._show_changes()
        if problems:
            self._error("Some changes could not be undone", "\n".join(problems[:10]))
        else:
            self.view.show_message(f"Undid {len(before):,} changes.")

    def _forget_listed(self, changes: list[Change]) -> None:
        """Take undone changes off the lists in their destinations (``cnndesk-cli undo-sort`` reads them)."""
        by_destination: dict[Path, list[Change]] = {}
        for c in changes:
            by_destination.setdefault(sort_destination(c), []).append(c)
        try:
            for destination, undone in by_destination.items():
                remove_from_sort_log(destination, undone)
        except UserError as e:
            self._error("The list of sorted files could not be updated", str(e))

    def _show_changes(self) -> None:
        self.view.show_changes(list(self.log.changes))
        self.view.enable_sort(True)

    # -- dialogs ---------------------------------------------------------------------------
    def _open_dialog(self, dialog: QWidget) -> None:
        """Open ``dialog`` window-modal; its answer continues the flow (no nested event loop)."""
        self.dialog = dialog
        dialog.setWindowModality(Qt.WindowModal)
        dialog.finished.connect(dialog.deleteLater)  # after the answer's own handlers
        dialog.open()

    def _error(self, title: str, message: str) -> None:
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self.parent_widget)
        box.setObjectName("folderError")
        box.open()

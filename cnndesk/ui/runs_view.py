"""The runs list: every training run of the project with its key figures, to compare, restore, rename or delete.

``RunsView`` is a view with setters and signals (``runs_control.RunsControl`` connects it to the state):
it shows the runs it is given and says what the user asked for.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QStyledItemDelegate, QStyleOptionViewItem,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ..core.data.scanning import printable
from ..core.intervals import interval_range, Spread, with_interval

# the group beside the figures it is the spread of; the long cells (the last epoch's figures, the dataset) after them
COLUMNS = ("Run", "Date", "Epochs", "Best val acc", "Best val loss", "Group",
           "Final loss / acc / val loss / val acc", "Dataset", "Note")
NAME, DATE, EPOCHS, BEST_ACC, BEST_LOSS, GROUP, FINAL, DATASET, NOTE = range(len(COLUMNS))
ID_ROLE = Qt.UserRole
#: the dataset column's width when the table has no room to spare, in average characters (its cells are elided in
#: the middle; the whole path is in the tooltip, and the column can be dragged wider)
DATASET_CHARS = 22


def _number(value, fmt: str = ".3f") -> str:
    return "–" if value is None else f"{value:{fmt}}"


#: what the accuracy columns' headers say on hover
INTERVAL_TIP = ("A validation accuracy is shown with its 95 % interval (Wilson score) in brackets, \"0.949 "
                "(0.83–0.99)\": on a few dozen validation images it could as well be anywhere in that interval. Hover "
                "over a cell for the number of images.")
#: what a run of an older cnndesk, which did not record its validation images, says on hover over its accuracies
UNRECORDED_TIP = ("The number of validation images was not recorded with this run (an older cnndesk), so its "
                  "accuracy is shown without its interval.")


def short_interval(accuracy: float, n: int | None) -> str:
    """"0.949 (0.83–0.99)": an accuracy with its 95 % interval in two decimals, for a cell whose header and tooltip
    say what the brackets are; the figure alone when its number of images is unknown (None) or 0."""
    return f"{accuracy:.3f} ({interval_range(accuracy, n, 2)})" if n else f"{accuracy:.3f}"


def final_text(run) -> str:
    """"0.512 / 0.800 / 0.633 / 0.750 (0.53–0.89)": the last epoch's figures (– for one not recorded), its
    validation accuracy with its interval when its number of images was recorded."""
    final = run.final
    text = " / ".join(_number(final.get(k), f) for k, f in (("loss", ".3f"), ("accuracy", ".3f"),
                                                            ("val_loss", ".3f")))
    acc = final.get("val_accuracy")
    return f"{text} / {'–' if acc is None else short_interval(acc, final.get('val_images'))}"


def final_item(run) -> QTableWidgetItem:
    """The last epoch's figures (``final_text``), named in full on hover, the validation accuracy with its interval
    and number of images ("validation accuracy 0.750 (95 % interval 0.531–0.888, 20 images)")."""
    final = run.final
    item = QTableWidgetItem(final_text(run))
    if not final:
        return item
    names = (("loss", "training loss"), ("accuracy", "training accuracy"), ("val_loss", "validation loss"))
    said = [f"{name} {_number(final.get(key))}" for key, name in names]
    acc, n = final.get("val_accuracy"), final.get("val_images")
    said.append(f"validation accuracy {with_interval(acc, n) if n or acc is None else _number(acc)}")
    item.setToolTip(f"Last epoch ({final.get('epoch', len(run.history))}): {', '.join(said)}."
                    + (f"\n{UNRECORDED_TIP}" if acc is not None and not n else ""))
    return item


def best_accuracy_item(run) -> QTableWidgetItem:
    """The best validation accuracy with its interval ("0.949 (0.83–0.99)"; the whole sentence, "0.949 (95 %
    interval 0.831–0.986, 39 images)", on hover), the figure alone for a run of an older cnndesk (the tooltip says
    its number of images is unknown)."""
    best = run.best("val_accuracy")
    if best is None:
        return QTableWidgetItem("–")
    if run.val_images is None:
        item = QTableWidgetItem(_number(best))
        item.setToolTip(UNRECORDED_TIP)
        return item
    item = QTableWidgetItem(short_interval(best, run.val_images))
    item.setToolTip(f"Best validation accuracy {run.best_accuracy_text()}.\n{INTERVAL_TIP}")
    return item


def group_item(run) -> QTableWidgetItem:
    """"one of ×3 · mean 0.72, 0.51–0.95" (``Run.group_text`` in two decimals), the figures in full on hover."""
    item = QTableWidgetItem(run.group_text(2))
    spread = Spread.from_json(run.spread)
    if run.group and spread is not None and spread.values:
        what = (f"An ensemble averaging the {len(run.members)} models of its group" if run.members else
                f"One of {len(spread.values)} models trained alike with seeds one apart")
        item.setToolTip(f"{what}; {spread.describe()} (the range is lowest–highest, not an interval).")
    return item


class _MiddleElided(QStyledItemDelegate):
    """Cells elided in the middle: a long folder name keeps its end ("handwri…folder · 3 classes")."""

    def paint(self, painter, option, index):
        option = QStyleOptionViewItem(option)
        option.textElideMode = Qt.ElideMiddle
        super().paint(painter, option, index)


def dataset_item(run) -> QTableWidgetItem:
    """"faces · 2 classes": the folder a run was trained on (the whole path in the tooltip) and its class count."""
    n = len(run.class_names)
    classes = f"{n} class{'es' if n != 1 else ''}"
    path = run.dataset_path
    item = QTableWidgetItem(f"{Path(path).name} · {classes}" if path else classes)
    names = ", ".join(printable(c) for c in run.class_names)
    where = path if path else "The dataset folder was not recorded (a run of an older cnndesk)."
    item.setToolTip(f"{where}\nClasses: {names}" if names else where)
    return item


class RunsView(QWidget):
    """A table of runs: tick boxes overlay runs on the chart; names and notes are edited in place.

    Signals:
        restore_requested(str): make this run (by id) the current model.
        delete_requested(str): delete this run (the controller asks first); never the current model's run.
        rename_requested(str, str): the user typed a new name for a run.
        note_requested(str, str): the user typed a note for a run.
        overlay_changed(list): the ids of the runs ticked for the chart, in the list's order.
    """

    restore_requested = Signal(str)
    delete_requested = Signal(str)
    rename_requested = Signal(str, str)
    note_requested = Signal(str, str)
    overlay_changed = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 4, 0, 0)
        self.table = QTableWidget(0, len(COLUMNS), objectName="runsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column in (BEST_ACC, FINAL):
            self.table.horizontalHeaderItem(column).setToolTip(INTERVAL_TIP)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(DATASET, QHeaderView.Interactive)  # fitted to the room (_fit_dataset_column)
        header.setSectionResizeMode(NOTE, QHeaderView.Stretch)
        self.table.setWordWrap(False)  # one line a row: a long cell is elided, not cut after its first word
        self._dataset_delegate = _MiddleElided(self.table)
        self.table.setItemDelegateForColumn(DATASET, self._dataset_delegate)
        self._dataset_width = None  # the dataset column's width as last fitted (a width dragged since stays)
        # the note column stretches with the table: the dataset column takes what room there is
        header.sectionResized.connect(lambda column, _old, _new: column == NOTE and self._fit_dataset_column())
        rows = self.table.verticalHeader()
        rows.setDefaultSectionSize(self.table.fontMetrics().height() + 8)  # one line of text a row, as in a list
        # three runs in sight, with a horizontal scroll bar too; more scroll (the chart above keeps its room)
        self.table.setMinimumHeight(header.sizeHint().height() + 3 * rows.defaultSectionSize()
                                    + self.table.horizontalScrollBar().sizeHint().height() + 2 * self.table.frameWidth())
        outer.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.hint = QLabel("Tick runs to draw them on the chart; double-click a name or a note to edit it.",
                           objectName="runsHint")
        self.hint.setStyleSheet("color: #555")
        self.restore_button = QPushButton("Restore as Current Model", objectName="restoreRunButton")
        self.restore_button.setToolTip("Make the selected run's model current again, with its layers and settings")
        self.delete_button = QPushButton("Delete Run…", objectName="deleteRunButton")
        row.addWidget(self.hint, 1)
        row.addWidget(self.restore_button)
        row.addWidget(self.delete_button)
        outer.addLayout(row)
        self._runs: list = []
        self._current: str | None = None
        self._ticked: list[str] = []  # the ids ticked, as last announced
        self._enabled = True
        self.table.itemChanged.connect(self._on_item_changed)
        # once the view has let the editor go (its own slot for this signal runs first, then the event loop)
        self.table.itemDelegate().closeEditor.connect(lambda *_: QTimer.singleShot(0, self._rebuild))
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.restore_button.clicked.connect(lambda: self._emit_selected(self.restore_requested))
        self.delete_button.clicked.connect(lambda: self._emit_selected(self.delete_requested))
        self._update_buttons()

    # -- showing -----------------------------------------------------------------------
    def set_runs(self, runs, current: str | None) -> None:
        """Show ``runs`` (``core.training.runs.Run``, oldest first), marking the run of the current model.

        Ticks and the selection stay on the runs that are still listed.
        """
        self._runs, self._current = list(runs), current
        self._rebuild()

    def _rebuild(self) -> None:
        if self.table.state() == QAbstractItemView.EditingState:
            return  # rebuilding would close the editor the user is typing in: done when it closes
        ticked, selected = self._ticked, self.selected()
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(self._runs))
            for i, run in enumerate(self._runs):
                self._fill_row(i, run, run.id in set(ticked))
            self.table.clearSelection()
            if selected is not None:
                for i, run in enumerate(self._runs):
                    if run.id == selected:
                        self.table.selectRow(i)
        self._fit_dataset_column()
        self._update_buttons()
        self._ticked = self.overlaid()
        if self._ticked != ticked:  # a ticked run was deleted
            self.overlay_changed.emit(self._ticked)

    def _fill_row(self, i: int, run, ticked: bool) -> None:
        current = run.id == self._current
        name = QTableWidgetItem(run.name)
        name.setData(ID_ROLE, run.id)
        name.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsEditable | Qt.ItemIsUserCheckable)
        name.setCheckState(Qt.Checked if ticked else Qt.Unchecked)
        tip = [f"id {run.id}"]
        if current:
            tip.append("the current model")
        if run.parent:
            tip.append(f"continued from {self._name_of(run.parent)}")
        if run.file is None:
            tip.append("its weights were not kept: it cannot be restored")
        if run.is_ensemble:
            tip.append(f"an ensemble averaging {', '.join(self._name_of(m) for m in run.members)}")
        if run.probe_frames is not None:
            tip.append(f"a probe recording of {run.probe_frames} frame{'s' if run.probe_frames != 1 else ''}")
        name.setToolTip("; ".join(tip))
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)) if run.created else "–"
        cells = {NAME: name, DATE: QTableWidgetItem(date), EPOCHS: QTableWidgetItem(str(run.epochs)),
                 BEST_ACC: best_accuracy_item(run),
                 BEST_LOSS: QTableWidgetItem(_number(run.best("val_loss"), ".4f")),
                 FINAL: final_item(run), DATASET: dataset_item(run),
                 GROUP: group_item(run), NOTE: QTableWidgetItem(run.note)}
        for column, item in cells.items():
            if column not in (NAME, NOTE):
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable)
            if column in (EPOCHS, BEST_ACC, BEST_LOSS):
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            if current:
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
            self.table.setItem(i, column, item)
        if current:
            self.table.item(i, DATE).setText(f"{date}  (current)")

    def _fit_dataset_column(self) -> None:
        """The dataset column as wide as its widest cell, if the table has the room (the note column keeps its
        header's width), else at least ``DATASET_CHARS`` characters; unless the user dragged it to another width."""
        table, header = self.table, self.table.horizontalHeader()
        if self._dataset_width is not None and table.columnWidth(DATASET) != self._dataset_width:
            return  # dragged by the user: theirs
        others = sum(table.columnWidth(c) for c in range(table.columnCount()) if c not in (DATASET, NOTE))
        room = table.viewport().width() - others - header.sectionSizeHint(NOTE)
        least = max(table.fontMetrics().averageCharWidth() * DATASET_CHARS, header.sectionSizeHint(DATASET))
        wanted = min(max(table.sizeHintForColumn(DATASET), header.sectionSizeHint(DATASET)), max(room, least))
        if wanted != table.columnWidth(DATASET):
            self._dataset_width = wanted
            table.setColumnWidth(DATASET, wanted)
        self._dataset_width = wanted

    def _name_of(self, run_id: str) -> str:
        return next((r.name for r in self._runs if r.id == run_id), run_id)

    def set_enabled(self, enabled: bool) -> None:
        """While other work runs (training, saving) runs can be ticked, not restored or deleted."""
        self._enabled = enabled
        self._update_buttons()

    # -- questions -------------------------------------------------------------------------
    def run_names(self) -> list[str]:
        return [self.table.item(i, NAME).text() for i in range(self.table.rowCount())]

    def overlaid(self) -> list[str]:
        """The ids of the ticked runs, in the list's order."""
        return [self.table.item(i, NAME).data(ID_ROLE) for i in range(self.table.rowCount())
                if self.table.item(i, NAME).checkState() == Qt.Checked]

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), NAME).data(ID_ROLE) if rows else None

    def row_of(self, name: str) -> int:
        """The row showing the run called ``name`` (-1: none)."""
        return next((i for i, n in enumerate(self.run_names()) if n == name), -1)

    # -- edits -------------------------------------------------------------------------------
    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        run_id = self.table.item(item.row(), NAME).data(ID_ROLE)
        run = next((r for r in self._runs if r.id == run_id), None)
        if run is None:  # deleted while its row was being edited
            return
        if item.column() == NAME:
            if self.overlaid() != self._ticked:  # the tick box is part of the name cell
                self._ticked = self.overlaid()
                self.overlay_changed.emit(self._ticked)
            name = item.text().strip()
            if name != run.name:
                if name:
                    self.rename_requested.emit(run.id, name)
                else:  # a run keeps a name: put the old one back
                    with QSignalBlocker(self.table):
                        item.setText(run.name)
        elif item.column() == NOTE and item.text() != run.note:
            self.note_requested.emit(run.id, item.text())

    def _update_buttons(self) -> None:
        chosen = self.selected()
        run = next((r for r in self._runs if r.id == chosen), None)
        self.restore_button.setEnabled(self._enabled and run is not None and run.id != self._current
                                       and run.file is not None)
        current = run is not None and run.id == self._current
        self.delete_button.setEnabled(self._enabled and run is not None and not current)
        self.delete_button.setToolTip(
            f"{run.name} is the current model's run, so it cannot be deleted. Restore another run first, then "
            "delete this one." if current else "Delete the selected run, its figures and weights (asks first)")

    def _emit_selected(self, signal) -> None:
        chosen = self.selected()
        if chosen is not None:
            signal.emit(chosen)

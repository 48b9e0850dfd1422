"""What may be wrong with the data, shown where the user fixes it.

``DuplicatesView`` (in the dataset panel) lists the duplicate groups with
thumbnails; ``LabelDoubtsView`` (in the Evaluation tab) lists the images whose
label the model doubts most; both carry a ``ChangesView``, the list of fixes
with Undo. They are views: ``DataQuality`` wires them to the session state and
the engine, asks before a file moves on disk, and keeps the ``ChangeLog``. The
logic is in ``core.quality``.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QHBoxLayout, QHeaderView, QInputDialog, QLabel, QListWidget, QListWidgetItem,
    QMessageBox, QPushButton, QTableWidget, QTableWidgetItem, QTreeWidget, QTreeWidgetItem,
    QVBoxLayout, QWidget,
)

from ..core.errors import UserError
from ..core.data.copies import DEFAULT_DISTANCE, DuplicateReport, MAX_DISTANCE
from ..core.data.fixes import Change, ChangeLog, EXCLUDE, MOVE, move_to_class
from ..core.quality.label_scores import LabelScores, SCORED_BY, SCORED_BY_SENTENCE
from ..core.data.scanning import printable
from .engine import ShownJob
from .engine_worker import EngineWorker
from .layer_editing import RangeSpinBox, RefusalNote
from .widgets import array_to_pixmap, JobRow

THUMB = 40
#: the label doubts listed, most doubtful first
DOUBTS_SHOWN = 50


def _side(row: int, data, val_rows: set[int], excluded: frozenset[str]) -> str:
    if data.paths[row] in excluded:
        return "excluded"
    return "validation" if row in val_rows else "training"


def _relative(path: str, root) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:  # another drive
        return path


class ChangesView(QWidget):
    """The fixes made so far, newest last, with Undo for the selected one (the newest when none is selected).

    Signals:
        undo_requested(Change): the user pressed Undo.
    """

    undo_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._changes: list[Change] = []
        # the list with its title and Undo beside it: two lines of height are enough
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.list = QListWidget(objectName="changeList")
        self.list.setMinimumHeight(2 * self.fontMetrics().height() + 8)
        self.list.setMaximumHeight(4 * self.fontMetrics().height() + 12)
        side = QVBoxLayout()
        self.title = QLabel("Changes: none")
        self.undo_button = QPushButton("Undo", objectName="undoChange", enabled=False)
        self.undo_button.setToolTip("Undo the selected change (the last one when none is selected); "
                                    "a moved file goes back to its folder")
        self.undo_button.clicked.connect(self._undo)
        side.addWidget(self.title)
        side.addWidget(self.undo_button)
        side.addStretch(1)
        row.addWidget(self.list, 1)
        row.addLayout(side)

    def show_changes(self, changes: list[Change]) -> None:
        self._changes = list(changes)
        self.list.clear()
        for c in self._changes:
            item = QListWidgetItem(printable(c.describe()))
            item.setToolTip(printable(c.moved_to or c.path))
            self.list.addItem(item)
        self.title.setText(f"Changes: {len(changes)}" if changes else "Changes: none")
        self.undo_button.setEnabled(bool(changes))

    def _undo(self) -> None:
        if not self._changes:
            return
        row = self.list.currentRow()
        self.undo_requested.emit(self._changes[row if 0 <= row < len(self._changes) else -1])


def add_fix_buttons(view: QWidget, name: str, chosen: str) -> QHBoxLayout:
    """Exclude and Move to class… for the images ``view`` has chosen (its ``selected_paths()``), made its
    ``exclude_button`` and ``move_button`` (object names ``exclude<name>``, ``move<name>``), emitting its
    ``exclude_requested`` and ``move_requested``; returns the row holding them. ``chosen``: "selected", "picked"."""
    view.exclude_button = QPushButton("Exclude", objectName=f"exclude{name}", enabled=False)
    view.exclude_button.setToolTip(f"Leave the {chosen} images out of training and validation (kept in the "
                                   "project; the files stay)")
    view.move_button = QPushButton("Move to class…", objectName=f"move{name}", enabled=False)
    view.move_button.setToolTip(f"Move the {chosen} files into another class folder (asks first)")
    view.exclude_button.clicked.connect(lambda: view.exclude_requested.emit(view.selected_paths()))
    view.move_button.clicked.connect(lambda: view.move_requested.emit(view.selected_paths()))
    buttons = QHBoxLayout()
    buttons.addWidget(view.exclude_button)
    buttons.addWidget(view.move_button)
    return buttons


class DuplicatesView(QWidget):
    """The duplicate groups of the dataset, each image with its thumbnail, class, side of the split and file.

    Signals:
        distance_changed(int): the user changed the largest hash distance of near duplicates.
        exclude_requested(list[str]): exclude these files.
        move_requested(list[str]): move these files to another class folder.
    """

    distance_changed = Signal(int)
    exclude_requested = Signal(list)
    move_requested = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("duplicatesView")
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.summary = QLabel("Duplicates", objectName="duplicateSummary", wordWrap=True)
        self.distance = RangeSpinBox(objectName="duplicateDistance", minimum=0, maximum=MAX_DISTANCE,
                                     value=DEFAULT_DISTANCE)
        self.distance.setToolTip("Largest difference (bits of a 64-bit perceptual hash) at which two images are "
                                 "compared as pictures; copies are the pairs whose pictures match. 0 compares only "
                                 "images that hash the same. The split keeps each group on one side.")
        self.distance.valueChanged.connect(self.distance_changed)
        top.addWidget(self.summary, 1)
        top.addWidget(QLabel("Hash distance"))
        top.addWidget(self.distance)
        v.addLayout(top)
        self.distance_refusal = RefusalNote(objectName="distanceRefused")
        self.distance_refusal.watch(self.distance, "Hash distance")
        v.addWidget(self.distance_refusal)
        # the buttons beside the groups, above the changes: the view stays short enough for a small window
        self.tree = QTreeWidget(objectName="duplicateGroups", columnCount=4)
        self.tree.setHeaderLabels(["Image", "Class", "Split", "File"])
        self.tree.setIconSize(QSize(THUMB, THUMB))
        self.tree.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        self.tree.itemSelectionChanged.connect(self._enable)
        self.tree.setMinimumHeight(THUMB + 24)
        body = QHBoxLayout()
        body.addWidget(self.tree, 3)
        side = QVBoxLayout()
        body.addLayout(side, 2)
        v.addLayout(body, 1)
        buttons = add_fix_buttons(self, "Duplicate", "selected")
        buttons.addStretch(1)
        side.addLayout(buttons)
        self.changes = ChangesView()
        side.addWidget(self.changes)
        side.addStretch(1)

    def show_groups(self, data, report: DuplicateReport | None, excluded: frozenset[str]) -> None:
        """Show ``report``'s groups of ``data`` (None: no dataset)."""
        self.tree.clear()
        if data is None or report is None:
            self.summary.setText("Duplicates")
            self._enable()
            return
        self.summary.setText(report.summary())
        val_rows = set(data.val_index.tolist())
        for n, g in enumerate(report.groups, 1):
            top = QTreeWidgetItem([f"Group {n}: {g.kind}, {len(g.members)} images"])
            top.setFirstColumnSpanned(True)
            top.setFlags(top.flags() & ~Qt.ItemIsSelectable)
            self.tree.addTopLevelItem(top)
            for i in g.members:
                child = QTreeWidgetItem(["", printable(data.class_names[data.labels[i]]), _side(i, data, val_rows, excluded),
                                         printable(_relative(data.paths[i], data.root))])
                child.setIcon(0, QIcon(array_to_pixmap(data.images[i], THUMB, THUMB)))
                child.setData(0, Qt.UserRole, data.paths[i])
                child.setToolTip(3, printable(data.paths[i]))
                top.addChild(child)
            top.setFirstColumnSpanned(True)
        self.tree.expandAll()
        self._enable()

    def selected_paths(self) -> list[str]:
        return [p for p in (it.data(0, Qt.UserRole) for it in self.tree.selectedItems()) if p]

    def _enable(self) -> None:
        chosen = bool(self.selected_paths()) and self.isEnabled()
        self.exclude_button.setEnabled(chosen)
        self.move_button.setEnabled(chosen)


class LabelDoubtsView(QWidget):
    """The images whose label the model doubts most: label, predicted class, confidence, how each was scored.

    Signals:
        score_requested(int): find candidates; the number of retrains that score the training
            images (0: the validation images only, by the current model).
        cancel_requested(): stop the scoring.
        exclude_requested(list[str]), move_requested(list[str]): as in ``DuplicatesView``.
    """

    score_requested = Signal(int)
    cancel_requested = Signal()
    exclude_requested = Signal(list)
    move_requested = Signal(list)

    COLUMNS = ["Image", "File", "Label", "Predicted", "Confidence", "P(label)", "Scored by"]

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.job_row = JobRow("Find likely mislabelled images", ("findMislabelled", "doubtProgress", "cancelScoring"))
        self.find_button, self.progress, self.cancel_button = (self.job_row.start_button, self.job_row.progress,
                                                               self.job_row.cancel_button)
        self.find_button.setToolTip("Rank images by how little probability a model that did not train on them "
                                    "gives their own label")
        self.find_button.clicked.connect(self._request)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.job_row.layout().insertStretch(1, 1)
        self.kfold = QCheckBox("Score training images too, with", objectName="scoreTraining")
        self.kfold.setToolTip("Training images are scored by retrains (with the Model tab's layers and epochs) "
                              "that leave them out (k-fold); "
                              "the current model saw them, so its opinion of them says little")
        self.folds = RangeSpinBox(objectName="foldCount", minimum=2, maximum=10, value=3, suffix=" retrains")
        v.addWidget(self.job_row)
        retrains = QHBoxLayout()
        retrains.addWidget(self.kfold)
        retrains.addWidget(self.folds)
        retrains.addStretch(1)
        v.addLayout(retrains)
        self.folds_refusal = RefusalNote(objectName="foldsRefused")
        self.folds_refusal.watch(self.folds, "The number of retrains")
        v.addWidget(self.folds_refusal)
        self.note = QLabel(objectName="doubtNote", wordWrap=True)
        v.addWidget(self.note)
        self.table = QTableWidget(0, len(self.COLUMNS), objectName="labelDoubts")
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._enable)
        v.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        self.exclude_button = QPushButton("Exclude", objectName="excludeDoubt", enabled=False)
        self.move_button = QPushButton("Move to class…", objectName="moveDoubt", enabled=False)
        self.exclude_button.clicked.connect(lambda: self.exclude_requested.emit(self.selected_paths()))
        self.move_button.clicked.connect(lambda: self.move_requested.emit(self.selected_paths()))
        buttons.addStretch(1)
        buttons.addWidget(self.exclude_button)
        buttons.addWidget(self.move_button)
        v.addLayout(buttons)
        self.changes = ChangesView()
        v.addWidget(self.changes)

    def _request(self) -> None:
        self.score_requested.emit(self.folds.value() if self.kfold.isChecked() else 0)

    def set_running(self, running: bool) -> None:
        self.job_row.set_running(running)

    def set_progress(self, percent: float, text: str) -> None:
        self.job_row.set_progress(percent)
        if text:
            self.note.setText(text + "…")

    def show_message(self, text: str) -> None:
        self.note.setText(text)

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.note.setText("")
        self._enable()

    def show_doubts(self, data, scores: LabelScores, doubts, excluded: frozenset[str]) -> None:
        """List ``doubts`` (``core.quality.label_scores.LabelDoubt``, most doubtful first) of ``data``."""
        scored = ". ".join(n.rstrip(".") for n in scores.notes)
        self.note.setText(f"{len(doubts)} image(s) whose predicted class is not their label, least probable label "
                          f"first. {scored}." if doubts else f"No image's predicted class differs from its label. "
                          f"{scored}.")
        self.table.setRowCount(len(doubts))
        for r, d in enumerate(doubts):
            path = data.paths[d.row]
            gone = " (excluded)" if path in excluded else ""
            cells = ["", printable(_relative(path, data.root)) + gone, printable(data.class_names[d.given]),
                     printable(data.class_names[d.predicted]), f"{d.confidence:.1%}", f"{d.given_probability:.1%}",
                     SCORED_BY[d.scored_by]]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, path)
                item.setToolTip(SCORED_BY_SENTENCE[d.scored_by] if c == len(cells) - 1 else printable(path))
                self.table.setItem(r, c, item)
            self.table.item(r, 0).setIcon(QIcon(array_to_pixmap(data.images[d.row], THUMB, THUMB)))
        self._enable()

    def selected_paths(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.table.item(r, 0).data(Qt.UserRole) for r in rows]

    def _enable(self) -> None:
        chosen = bool(self.table.selectedIndexes())
        self.exclude_button.setEnabled(chosen)
        self.move_button.setEnabled(chosen)


class DataQuality(QObject):
    """Fixes of the data: exclusions (kept in the project), moves on disk (after asking) and their undo.

    Also runs the search for mislabelled images as an engine job with progress and cancel.

    Args:
        state: the session (``excluded``, ``data``, ``model``, ``layers``, ``settings``).
        engine: runs the scoring job.
        dataset_panel: has the ``DuplicatesView`` and reads the folder again after a move.
        doubts: the ``LabelDoubtsView`` of the Evaluation tab.
        dialog_parent: the window the questions belong to.
        more_views: other views that pick images to exclude or move and list the changes (the Map tab): each
            has ``exclude_requested``, ``move_requested`` and a ``ChangesView`` as ``changes``.
    """

    def __init__(self, state, engine, dataset_panel, doubts: LabelDoubtsView, dialog_parent: QWidget,
                 more_views: tuple = ()):
        super().__init__(dialog_parent)
        self.state, self.engine, self.panel, self.doubts = state, engine, dataset_panel, doubts
        self.duplicates: DuplicatesView = dataset_panel.duplicates
        self.views = (self.duplicates, doubts, *more_views)
        self.parent_widget = dialog_parent
        self.log = ChangeLog()
        self.job = ShownJob(state, engine, self.doubts)  # progress, cancel, and stopped when training starts
        self._scored: tuple | None = None  # (paths list, LabelScores) of the last answer
        for view in self.views:
            view.exclude_requested.connect(self.exclude)
            view.move_requested.connect(self.move)
            view.changes.undo_requested.connect(self.undo)
        doubts.score_requested.connect(self.score)
        doubts.cancel_requested.connect(self.job.cancel)
        state.observe(self._on_data, "data", "model")

    # -- fixes -----------------------------------------------------------------------
    def _class_of(self, path: str) -> str:
        data = self.state.data
        try:
            return data.class_names[int(data.labels[data.paths.index(path)])]
        except (AttributeError, ValueError):
            return Path(path).parent.name

    def exclude(self, paths: list[str]) -> None:
        """Leave ``paths`` out of training and validation; the project keeps the list, the files stay."""
        new = [p for p in paths if p not in self.state.excluded]
        for p in new:
            self.log.add(Change(EXCLUDE, p, from_class=self._class_of(p)))
        if new:
            self.state.excluded = self.state.excluded | frozenset(new)
        self._show_changes()

    def move(self, paths: list[str]) -> None:
        """Ask for a class, then whether to move the files on disk; move them, log it, read the folder again."""
        data = self.state.data
        if data is None or not paths:
            return
        name, ok = QInputDialog.getItem(self.parent_widget, "Move to class",
                                        f"Move {len(paths)} file(s) into the folder of the class:",
                                        [printable(c) for c in data.class_names], 0, False)
        if not ok:
            return
        target = data.class_names[[printable(c) for c in data.class_names].index(name)]
        answer = QMessageBox.question(
            self.parent_widget, "Move files on disk",
            f"Move {len(paths)} file(s) into {printable(str(Path(data.root) / target))}?\n\nThe files are moved on "
            "disk, not copied; nothing is deleted, and Undo moves them back. To leave the files where they are, "
            "choose No and use Exclude instead.",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            return
        moved_any = False
        try:
            for p in paths:
                source = self._class_of(p)
                if source == target:
                    continue
                to = move_to_class(p, data.root, target)
                self.log.add(Change(MOVE, p, str(to), source, target))
                moved_any = True
        except UserError as e:
            self._error("A file could not be moved", str(e))
        self._show_changes()
        if moved_any:
            self.panel.reload()

    def undo(self, change: Change) -> None:
        try:
            self.state.excluded = frozenset(self.log.undo(change, set(self.state.excluded)))
        except UserError as e:
            self._error("The change could not be undone", str(e))
            return
        self._show_changes()
        if change.kind == MOVE:
            self.panel.reload()

    def _show_changes(self) -> None:
        self._list_changes()
        if self._scored is not None and self.state.data is not None:
            self._show_doubts()

    def _list_changes(self) -> None:
        """The changes of the files of the dataset shown (those of another folder come back with it)."""
        data = self.state.data
        mine = [c for c in self.log.changes if data is not None and Path(c.path).is_relative_to(data.root)]
        for view in self.views:
            view.changes.show_changes(mine)

    def _error(self, title: str, message: str) -> None:
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self.parent_widget)
        box.setObjectName("dataFixError")
        box.open()

    # -- likely mislabelled images -------------------------------------------------------
    def score(self, folds: int) -> None:
        """Submit the scoring job (validation images by the model; with ``folds``, training images by retrains)."""
        state = self.state
        if state.data is None:
            self.doubts.show_message("Read a dataset first.")
            return
        if state.busy:
            self.doubts.show_message("Wait until the current work ends.")
            return
        if state.model is None and folds < 2:
            self.doubts.show_message("There is no model yet: train one, or score the training images with "
                                     "retrains.")
            return
        self.doubts.show_message("Scoring…")
        self.job.start(EngineWorker.score_labels, state.data, list(state.layers), state.settings, folds=folds,
                       on_done=self._on_scored)

    def _on_scored(self, scores: LabelScores | None) -> None:
        if scores is None:
            self.doubts.show_message("Scoring cancelled.")
            return
        if self.state.data is None:
            return
        self._scored = (self.state.data.paths, scores)
        self._show_doubts()

    def doubtful_rows(self) -> list[int]:
        """The dataset rows the Evaluation tab lists as likely mislabelled (none until they are scored)."""
        if self._scored is None or self.state.data is None:
            return []
        return [d.row for d in self._scored[1].doubts(self.state.data.labels, DOUBTS_SHOWN)]

    def _show_doubts(self) -> None:
        data = self.state.data
        scores = self._scored[1]
        self.doubts.show_doubts(data, scores, scores.doubts(data.labels, DOUBTS_SHOWN), self.state.excluded)

    def _on_data(self, names) -> None:
        """A new model, or a dataset read again: the scores no longer hold (a new split or an exclusion keeps them)."""
        data = self.state.data
        if "data" in names:
            self._list_changes()
        if self._scored is None:
            return
        if "model" in names or data is None or data.paths is not self._scored[0]:
            self._scored = None
            self.doubts.clear()
        else:
            self._show_doubts()

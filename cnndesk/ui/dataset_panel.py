"""Dataset panel: choose or drop a folder, see its classes, thumbnails and skipped files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
    QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton, QSpinBox, QSplitter,
    QTableView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ..core.dataset import AUGMENTATIONS, DatasetConfig, LoadedDataset, split_indices
from ..core.images import COLOR_MODES, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, Preprocessing
from ..core.scanning import SkippedFile, count_skipped, printable
from .loading import DatasetLoader
from .widgets import array_to_qimage, parse_size

IMAGE_SIZES = ["32", "48", "64", "96", "128", "160", "224"]
THUMBS_PER_CLASS = 6
AUGMENT_LABELS = {"flip": "Flip left/right", "rotate": "Rotate", "zoom": "Zoom", "contrast": "Contrast",
                  "brightness": "Brightness"}


class SkippedFilesModel(QAbstractTableModel):
    """The skipped files as a two-column table (file, reason), read lazily by the view.

    Rows are read only when scrolled into view, so tens of thousands of them
    show at once (a ``QTableWidget`` makes an item per cell up front).
    """

    HEADERS = ("File", "Reason")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.files: list[SkippedFile] = []

    def set_files(self, files: list[SkippedFile]) -> None:
        self.beginResetModel()
        self.files = list(files)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.files)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else 2

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid() or role not in (Qt.DisplayRole, Qt.ToolTipRole):
            return None
        f = self.files[index.row()]
        return printable(f.path if index.column() == 0 else f.reason)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.HEADERS[section]
        return None


class DatasetPanel(QWidget):
    """Pick a folder, set image size/colour/split/augmentation, see what was read.

    Signals:
        dataset_changed(LoadedDataset | None): a new dataset (or split) is ready.
        config_changed(): a setting changed (the project is modified).
    """

    dataset_changed = Signal(object)
    config_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.data: LoadedDataset | None = None
        self.folder: str | None = None
        self.loader = DatasetLoader(self)
        self._reload_timer = QTimer(self, singleShot=True, interval=350)
        self._reload_timer.timeout.connect(self.reload)
        self._build()
        self.loader.progress.connect(lambda p: self.progress.setValue(int(p)))
        self.loader.status.connect(self.status_label.setText)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.loader.cancelled.connect(self._on_cancelled)
        self.loader.running_changed.connect(self._on_running)

    # -- layout ------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        row = QHBoxLayout()
        self.path_edit = QLineEdit(objectName="datasetPath", readOnly=True,
                                   placeholderText="Choose a folder with one subfolder per class, or drop it here")
        self.choose_button = QPushButton("Choose folder…", objectName="chooseFolder")
        self.choose_button.setToolTip("Choose a dataset folder (Ctrl+Shift+O)")
        self.sample_button = QPushButton("Use sample", objectName="useSample")
        self.sample_button.setToolTip("The built-in sample: four classes of coloured shapes")
        row.addWidget(QLabel("Folder:"))
        row.addWidget(self.path_edit, 1)
        row.addWidget(self.choose_button)
        row.addWidget(self.sample_button)
        outer.addLayout(row)

        prog = QHBoxLayout()
        self.progress = QProgressBar(objectName="scanProgress", visible=False)
        self.cancel_button = QPushButton("Cancel", objectName="cancelScan", visible=False)
        self.cancel_button.clicked.connect(self.loader.cancel)
        self.status_label = QLabel(objectName="datasetStatus", wordWrap=True)
        prog.addWidget(self.status_label, 1)
        prog.addWidget(self.progress)
        prog.addWidget(self.cancel_button)
        outer.addLayout(prog)

        split = QSplitter(Qt.Horizontal)
        outer.addWidget(split, 1)

        # settings
        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        self.val_split = QDoubleSpinBox(objectName="valSplit", suffix=" %", decimals=0, minimum=0, maximum=90,
                                        singleStep=5, value=20)
        self.val_split.setToolTip("Share of each class kept aside to measure accuracy on images the model never trains on")
        form.addRow("Validation split", self.val_split)
        self.image_size = QComboBox(objectName="imageSize", editable=True)
        self.image_size.addItems(IMAGE_SIZES)
        self.image_size.setCurrentText("64")
        self.image_size.setToolTip("Images are resized to this size: N for square, or HxW such as 96x128")
        form.addRow("Image size (px)", self.image_size)
        self.size_error = QLabel(objectName="sizeError", visible=False, styleSheet="color: #c62828")
        form.addRow("", self.size_error)
        self.color_mode = QComboBox(objectName="colorMode")
        self.color_mode.addItems(["RGB", "Grayscale"])
        form.addRow("Colour", self.color_mode)
        aug_box = QWidget()
        aug_layout = QVBoxLayout(aug_box)
        aug_layout.setContentsMargins(0, 0, 0, 0)
        self.augment_checks: dict[str, QCheckBox] = {}
        for name in AUGMENTATIONS:
            cb = QCheckBox(AUGMENT_LABELS[name], objectName=f"augment_{name}")
            cb.toggled.connect(self._on_training_option)
            aug_layout.addWidget(cb)
            self.augment_checks[name] = cb
        form.addRow("Augmentation\n(training only)", aug_box)
        self.class_weights = QCheckBox("Balance classes", objectName="classWeights")
        self.class_weights.setToolTip("Weight the loss so that rare classes count as much as frequent ones")
        self.class_weights.toggled.connect(self._on_training_option)
        form.addRow("Class weights", self.class_weights)
        self.seed = QSpinBox(objectName="splitSeed", minimum=0, maximum=2**31 - 1, value=1337)
        self.seed.setToolTip("Seed of the train/validation split; the same seed gives the same split")
        form.addRow("Split seed", self.seed)
        split.addWidget(settings)

        # results
        results = QWidget()
        rl = QVBoxLayout(results)
        rl.setContentsMargins(0, 0, 0, 0)
        self.totals = QLabel(objectName="datasetTotals")
        self.totals.setStyleSheet("font-weight: bold")
        rl.addWidget(self.totals)
        self.imbalance = QLabel(objectName="imbalanceWarning", wordWrap=True, visible=False)
        self.imbalance.setStyleSheet("color: #8a5300; background: #fff4e0; padding: 4px; border-radius: 3px")
        rl.addWidget(self.imbalance)
        self.class_table = QTableWidget(0, 3, objectName="classTable")
        self.class_table.setHorizontalHeaderLabels(["Class", "Images", ""])
        header = self.class_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.class_table.setSelectionMode(QAbstractItemView.NoSelection)
        self.class_table.setMaximumHeight(180)
        rl.addWidget(self.class_table)
        rl.addWidget(QLabel("Examples"))
        self.thumbs = QListWidget(objectName="thumbnails")
        self.thumbs.setViewMode(QListWidget.IconMode)
        self.thumbs.setIconSize(QSize(72, 72))
        self.thumbs.setResizeMode(QListWidget.Adjust)
        self.thumbs.setMovement(QListWidget.Static)
        self.thumbs.setSpacing(4)
        rl.addWidget(self.thumbs, 2)
        self.skipped_label = QLabel("Skipped files", objectName="skippedLabel", wordWrap=True)
        rl.addWidget(self.skipped_label)
        self.skipped_model = SkippedFilesModel(self)
        self.skipped_table = QTableView(objectName="skippedTable")
        self.skipped_table.setModel(self.skipped_model)
        self.skipped_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Interactive)
        self.skipped_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.skipped_table.horizontalHeader().resizeSection(0, 360)
        self.skipped_table.verticalHeader().setVisible(False)
        self.skipped_table.verticalHeader().setDefaultSectionSize(22)
        self.skipped_table.setWordWrap(False)
        self.skipped_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.skipped_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        rl.addWidget(self.skipped_table, 1)
        split.addWidget(results)
        split.setStretchFactor(1, 1)

        self.choose_button.clicked.connect(self.choose_folder)
        self.val_split.valueChanged.connect(self._on_split_changed)
        self.seed.valueChanged.connect(self._on_split_changed)
        self.image_size.currentTextChanged.connect(self._on_decode_setting)
        self.color_mode.currentIndexChanged.connect(self._on_decode_setting)

    # -- config ------------------------------------------------------------
    def config(self) -> DatasetConfig:
        size = parse_size(self.image_size.currentText()) or (self.data.preprocessing.image_size if self.data else (64, 64))
        return DatasetConfig(
            preprocessing=Preprocessing(size, COLOR_MODES[self.color_mode.currentIndex()]),
            val_split=self.val_split.value() / 100.0,
            seed=self.seed.value(),
            augment=tuple(n for n, cb in self.augment_checks.items() if cb.isChecked()),
            class_weights=self.class_weights.isChecked(),
        )

    def set_config(self, config: DatasetConfig) -> None:
        """Show ``config`` in the controls without reloading."""
        widgets = [self.val_split, self.seed, self.image_size, self.color_mode, self.class_weights,
                   *self.augment_checks.values()]
        for w in widgets:
            w.blockSignals(True)
        h, w_ = config.preprocessing.image_size
        self.image_size.setCurrentText(str(h) if h == w_ else f"{h}x{w_}")
        self.color_mode.setCurrentIndex(COLOR_MODES.index(config.preprocessing.color_mode))
        self.val_split.setValue(round(config.val_split * 100))
        self.seed.setValue(config.seed)
        for name, cb in self.augment_checks.items():
            cb.setChecked(name in config.augment)
        self.class_weights.setChecked(config.class_weights)
        for w in widgets:
            w.blockSignals(False)

    # -- actions -----------------------------------------------------------
    def choose_folder(self) -> None:
        start = self.folder or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Choose a dataset folder", start)
        if folder:
            self.load_folder(folder)

    def load_folder(self, folder: str, make_sample: bool = False) -> None:
        """Read ``folder`` with the current settings (off the GUI thread)."""
        self.folder = str(folder)
        self.path_edit.setText(self.folder)
        self.status_label.setText(f"Reading {self.folder}…")
        self.loader.load(self.folder, self.config(), make_sample=make_sample)

    def reload(self) -> None:
        if self.folder:
            self.load_folder(self.folder)

    def _on_cancelled(self) -> None:
        """Keep what was loaded before: the previous dataset stays selected."""
        if self.data is not None:
            self.folder = str(self.data.root)
            self.path_edit.setText(self.folder)
            self.status_label.setText(f"Reading cancelled; still using {self.folder}.")
        else:
            self.status_label.setText("Reading cancelled.")

    def _on_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        if running:
            self.progress.setValue(0)

    def _on_decode_setting(self) -> None:
        size = parse_size(self.image_size.currentText())
        self.size_error.setVisible(size is None)
        self.size_error.setText(f"Use N or HxW, {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} pixels, e.g. 64 or 96x128")
        self.config_changed.emit()
        if size is not None:
            self._reload_timer.start()

    def _on_split_changed(self) -> None:
        self.config_changed.emit()
        if self.data is None:
            return
        cfg = self.config()
        train, val = split_indices(self.data.labels, cfg.val_split, cfg.seed)
        self.data = dataclasses.replace(self.data, train_index=train, val_index=val)
        self._show_totals()
        self.dataset_changed.emit(self.data)

    def _on_training_option(self) -> None:
        self.config_changed.emit()

    def _on_loaded(self, data: LoadedDataset) -> None:
        self.data = data
        self.status_label.setText(f"Read {len(data.labels)} images from {data.root}")
        self._show(data)
        self.dataset_changed.emit(data)

    def _on_failed(self, message: str) -> None:
        self.data = None
        self.status_label.setText("")
        self.totals.setText("No usable dataset")
        self.class_table.setRowCount(0)
        self.thumbs.clear()
        self.skipped_model.set_files([])
        self.imbalance.setVisible(True)
        self.imbalance.setText(message)
        self.dataset_changed.emit(None)

    # -- display -----------------------------------------------------------
    def _show_totals(self) -> None:
        d = self.data
        self.totals.setText(f"{len(d.labels)} images in {d.num_classes} classes: {len(d.train_index)} for training, "
                            f"{len(d.val_index)} for validation")

    def _show(self, data: LoadedDataset) -> None:
        self._show_totals()
        warnings = data.warnings()  # every warning the CLI prints: unreadable files, links, few images, imbalance
        self.imbalance.setVisible(bool(warnings))
        self.imbalance.setText("\n".join(warnings))
        counts = data.counts()
        most = max(counts.values())
        self.class_table.setRowCount(len(counts))
        for r, (name, n) in enumerate(counts.items()):
            self.class_table.setItem(r, 0, QTableWidgetItem(printable(name)))
            item = QTableWidgetItem(str(n))
            item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            self.class_table.setItem(r, 1, item)
            bar = QProgressBar(maximum=most, value=n, textVisible=False)
            bar.setMaximumHeight(14)
            self.class_table.setCellWidget(r, 2, bar)
        self.thumbs.clear()
        for ci, name in enumerate(data.class_names):
            idx = np.flatnonzero(data.labels == ci)[:THUMBS_PER_CLASS]
            for i in idx:
                item = QListWidgetItem(QIcon(QPixmap.fromImage(array_to_qimage(data.images[i]))), printable(name))
                item.setToolTip(printable(data.paths[i]))
                self.thumbs.addItem(item)
        self.skipped_model.set_files(data.skipped)
        if data.skipped:
            counts = ", ".join(f"{n:,} {kind}" for kind, n in count_skipped(data.skipped).items())
            self.skipped_label.setText(f"Skipped files ({len(data.skipped):,}): {counts}")
        else:
            self.skipped_label.setText("Skipped files: none")
        self.skipped_table.setVisible(bool(data.skipped))

    def set_busy(self, busy: bool) -> None:
        """Disable changes while training runs."""
        for w in (self.choose_button, self.sample_button, self.image_size, self.color_mode, self.val_split, self.seed,
                  self.class_weights, *self.augment_checks.values()):
            w.setEnabled(not busy)

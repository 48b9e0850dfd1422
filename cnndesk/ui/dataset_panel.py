"""Dataset panel: choose or drop a folder, see its classes, thumbnails, skipped files and duplicates."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSignalBlocker, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
    QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
    QSplitter, QTableView, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget,
)

from ..core.data.batches import AUGMENTATIONS
from ..core.data.cache_plan import CachePlan, CacheSettings, default_memory_limit, format_bytes, plan_cache
from ..core.data.color_hint import ColorSample
from ..core.data.copies import find_duplicates
from ..core.data.dataset import DatasetConfig, LoadedDataset, excluded_rows
from ..core.data.images import COLOR_MODES, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, Preprocessing
from ..core.data.scanning import count_skipped, printable
from .data_quality_view import DuplicatesView
from .dataset_tables import QWIDGETSIZE_MAX, ClassTable, ElideMiddleDelegate, SkippedFilesModel
from .layer_editing import RangeDoubleSpinBox, RangeSpinBox, RefusalNote
from .widgets import array_to_qimage, parse_size

IMAGE_SIZES = ["32", "48", "64", "96", "128", "160", "224"]
THUMBS_PER_CLASS = 6
#: the reason column of the skipped files fits its text up to this width; the file column gets the rest
REASON_WIDTH = 420
AUGMENT_LABELS = {"flip": "Flip left/right", "rotate": "Rotate", "zoom": "Zoom", "contrast": "Contrast",
                  "brightness": "Brightness"}


class DatasetPanel(QWidget):
    """Pick a folder, set image size/colour/split/augmentation, see what was read: a view.

    The dataset, its folder, its split and the exclusions are the session state's; ``bindings.DatasetReading``
    reads folders for the panel's requests and shows the state in it (``show_dataset``, ``show_read``, …).

    Signals:
        folder_requested(str, bool): read this folder (True: write the built-in sample there first).
        reload_requested(): read the folder again (a decoding setting or the memory limit changed).
        cancel_requested(): stop reading.
        config_changed(): a setting changed (the project is modified).
        memory_limit_changed(): the user set another memory limit for decoded images.
    """

    folder_requested = Signal(str, bool)
    reload_requested = Signal()
    cancel_requested = Signal()
    config_changed = Signal()
    memory_limit_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._rgb_kept_for: str | None = None  # the hint put away: the folder the user chose RGB for by hand
        self._reload_timer = QTimer(self, singleShot=True, interval=350)  # edits settle before a new read
        self._reload_timer.timeout.connect(self.reload)
        self._build()

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
        self.cancel_button.clicked.connect(self.cancel_requested)
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
        # numbers apply when finished (Enter, leaving the box): 35 % passes 3 % on the way
        self.val_split = RangeDoubleSpinBox(objectName="valSplit", suffix=" %", decimals=0, minimum=0, maximum=90,
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
        self.seed = RangeSpinBox(objectName="splitSeed", minimum=0, maximum=2**31 - 1, value=1337)
        self.seed.setToolTip("Seed of the train/validation split; the same seed gives the same split")
        form.addRow("Split seed", self.seed)
        self._build_memory_limit(form)
        self.setting_refusal = RefusalNote(objectName="settingRefused")
        for box, what in ((self.val_split, "Validation split"), (self.seed, "Split seed"),
                          (self.memory_limit, "Memory for images")):
            self.setting_refusal.watch(box, what)
        form.addRow(self.setting_refusal)
        split.addWidget(settings)

        # results
        results = QWidget()
        rl = QVBoxLayout(results)
        rl.setContentsMargins(0, 0, 0, 0)
        self.totals = QLabel(objectName="datasetTotals")
        self.totals.setStyleSheet("font-weight: bold")
        rl.addWidget(self.totals)
        self.split_note = QLabel(objectName="splitNote", wordWrap=True)
        rl.addWidget(self.split_note)
        self.scale_note = QLabel(objectName="scaleNote", wordWrap=True, visible=False)
        rl.addWidget(self.scale_note)
        rl.addWidget(self._build_color_hint())
        self.imbalance = QLabel(objectName="imbalanceWarning", wordWrap=True, visible=False)
        self.imbalance.setStyleSheet("color: #8a5300; background: #fff4e0; padding: 4px; border-radius: 3px")
        rl.addWidget(self.imbalance)
        rl.addWidget(self._build_class_table())
        # examples (or the duplicates) over skipped files: the user can give either more room
        lists = QSplitter(Qt.Vertical, childrenCollapsible=False)
        self.duplicates = DuplicatesView()
        self.duplicates.distance_changed.connect(self.config_changed)
        self.pictures = QTabWidget(objectName="datasetPictures", documentMode=True)
        self.pictures.addTab(self._build_examples(), "Examples")
        self.pictures.addTab(self.duplicates, "Duplicates")
        lists.addWidget(self.pictures)
        lists.addWidget(self._build_skipped())
        lists.setStretchFactor(0, 2)
        lists.setStretchFactor(1, 1)
        rl.addWidget(lists, 1)
        split.addWidget(results)
        split.setStretchFactor(1, 1)

        self.choose_button.clicked.connect(self.choose_folder)
        self.val_split.valueChanged.connect(self.config_changed)
        self.seed.valueChanged.connect(self.config_changed)
        self.image_size.currentTextChanged.connect(self._on_decode_setting)
        self.color_mode.currentIndexChanged.connect(self._on_color_mode)

    def _build_memory_limit(self, form: QFormLayout) -> None:
        """The memory the decoded images may take, and a line saying what it means for this dataset."""
        self.memory_limit = RangeSpinBox(objectName="memoryLimit", suffix=" MB", minimum=0, maximum=10**7,
                                         singleStep=500, value=0)
        self.memory_limit.setGroupSeparatorShown(True)
        self.memory_limit.setSpecialValueText(f"Auto ({format_bytes(default_memory_limit())})")
        self.memory_limit.setToolTip("Decoded images up to this size are kept in memory; a larger dataset is "
                                     "decoded once into a cache on disk and read from there while training. "
                                     "Auto: half of the memory available when the dataset is read.")
        self.memory_limit.valueChanged.connect(self.memory_limit_changed)
        form.addRow("Memory for images", self.memory_limit)
        self.cache_estimate = QLabel(objectName="cacheEstimate", wordWrap=True)
        self.cache_estimate.setStyleSheet("color: palette(placeholder-text)")
        form.addRow("", self.cache_estimate)
        self.show_cache_estimate(None)

    def _build_class_table(self) -> QTableWidget:
        self.class_table = ClassTable(rowCount=0, columnCount=3, objectName="classTable")
        self.class_table.setHorizontalHeaderLabels(["Class", "Images", ""])
        header = self.class_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        header.setMaximumSectionSize(320)  # a very long class name is elided (its tooltip has it whole)
        rows = self.class_table.verticalHeader()
        rows.setVisible(False)
        rows.setDefaultSectionSize(self.fontMetrics().height() + 10)
        self.class_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.class_table.setSelectionMode(QAbstractItemView.NoSelection)
        return self.class_table

    def _build_examples(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.thumbs = QListWidget(objectName="thumbnails")
        self.thumbs.setViewMode(QListWidget.IconMode)
        self.thumbs.setIconSize(QSize(72, 72))
        # one cell size for every thumbnail, class names elided, so the grid stays even
        self.thumbs.setGridSize(QSize(96, 72 + self.fontMetrics().height() + 12))
        self.thumbs.setTextElideMode(Qt.ElideMiddle)
        self.thumbs.setWordWrap(False)
        self.thumbs.setResizeMode(QListWidget.Adjust)
        self.thumbs.setMovement(QListWidget.Static)
        self.thumbs.setMinimumHeight(self.thumbs.gridSize().height() + 2 * self.thumbs.frameWidth())
        layout.addWidget(self.thumbs, 1)
        return box

    def _build_skipped(self) -> QWidget:
        self.skipped_box = box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.skipped_label = QLabel("Skipped files", objectName="skippedLabel", wordWrap=True)
        layout.addWidget(self.skipped_label)
        self.skipped_model = SkippedFilesModel(self)
        self.skipped_table = QTableView(objectName="skippedTable")
        self.skipped_table.setModel(self.skipped_model)
        header = self.skipped_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)  # the file gets the room; the reason is short
        header.setSectionResizeMode(1, QHeaderView.Interactive)
        header.setStretchLastSection(False)
        header.resizeSection(1, 320)
        self.skipped_table.verticalHeader().setVisible(False)
        self.skipped_table.verticalHeader().setDefaultSectionSize(22)
        self.skipped_table.setWordWrap(False)
        self.skipped_table.setItemDelegateForColumn(0, ElideMiddleDelegate(self.skipped_table))
        self.skipped_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.skipped_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.skipped_table.setMinimumHeight(header.sizeHint().height() + 3 * 22 + 2 * self.skipped_table.frameWidth())
        layout.addWidget(self.skipped_table, 1)
        return box

    def _build_color_hint(self) -> QWidget:
        """A one-line suggestion to read a grayscale dataset as grayscale, with the button that does it."""
        self.color_hint = QWidget(objectName="colorHint", visible=False)
        self.color_hint.setStyleSheet("#colorHint { background: #e3f2fd; border-radius: 3px }"
                                      "#colorHint QLabel { color: #0d47a1 }")
        row = QHBoxLayout(self.color_hint)
        row.setContentsMargins(6, 2, 2, 2)
        self.color_hint_label = QLabel(objectName="colorHintText", wordWrap=True)
        self.use_grayscale_button = QPushButton("Use grayscale", objectName="useGrayscale")
        self.use_grayscale_button.setToolTip("Read the images with one channel: a smaller, faster model, "
                                             "nothing lost")
        self.use_grayscale_button.clicked.connect(self._use_grayscale)
        row.addWidget(self.color_hint_label, 1)
        row.addWidget(self.use_grayscale_button)
        return self.color_hint

    # -- config ------------------------------------------------------------
    def cache_settings(self) -> CacheSettings:
        """The memory limit as set (None: automatic) and the default cache folder."""
        megabytes = self.memory_limit.value()
        return CacheSettings(memory_limit=None if megabytes == 0 else megabytes * 10**6)

    def set_memory_limit(self, megabytes: int) -> None:
        """Show a remembered limit in MB (0: automatic) without reading again."""
        with QSignalBlocker(self.memory_limit):
            self.memory_limit.setValue(megabytes)

    def config(self, fallback_size: tuple[int, int] = (64, 64)) -> DatasetConfig:
        """The settings as shown; ``fallback_size`` while the image size typed is not one (yet)."""
        size = parse_size(self.image_size.currentText()) or fallback_size
        return DatasetConfig(
            preprocessing=Preprocessing(size, COLOR_MODES[self.color_mode.currentIndex()]),
            val_split=self.val_split.value() / 100.0,
            seed=self.seed.value(),
            augment=tuple(n for n, cb in self.augment_checks.items() if cb.isChecked()),
            class_weights=self.class_weights.isChecked(),
            duplicate_distance=self.duplicates.distance.value(),
        )

    def set_config(self, config: DatasetConfig) -> None:
        """Show ``config`` in the controls without reading again."""
        widgets = [self.val_split, self.seed, self.image_size, self.color_mode, self.class_weights,
                   self.duplicates.distance, *self.augment_checks.values()]
        with ExitStack() as stack:
            for w in widgets:
                stack.enter_context(QSignalBlocker(w))
            h, w_ = config.preprocessing.image_size
            self.image_size.setCurrentText(str(h) if h == w_ else f"{h}x{w_}")
            self.color_mode.setCurrentIndex(COLOR_MODES.index(config.preprocessing.color_mode))
            self.val_split.setValue(round(config.val_split * 100))
            self.seed.setValue(config.seed)
            for name, cb in self.augment_checks.items():
                cb.setChecked(name in config.augment)
            self.class_weights.setChecked(config.class_weights)
            self.duplicates.distance.setValue(config.duplicate_distance)

    # -- requests ----------------------------------------------------------
    def choose_folder(self) -> None:
        start = self.path_edit.text() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Choose a dataset folder", start)
        if folder:
            self.load_folder(folder)

    def load_folder(self, folder: str, make_sample: bool = False) -> None:
        """Ask for ``folder`` to be read with the current settings (off the GUI thread)."""
        self.folder_requested.emit(str(folder), make_sample)

    def reload(self) -> None:
        self.reload_requested.emit()

    def _on_color_mode(self) -> None:
        if COLOR_MODES[self.color_mode.currentIndex()] == "rgb":
            shown = self.path_edit.text()  # chosen by the user: suggest nothing more for this folder
            self._rgb_kept_for = str(Path(shown)) if shown else None
        self._on_decode_setting()

    def _on_decode_setting(self) -> None:
        size = parse_size(self.image_size.currentText())
        self.size_error.setVisible(size is None)
        self.size_error.setText(f"Use N or HxW, {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} pixels, e.g. 64 or 96x128")
        self.config_changed.emit()
        if size is not None:
            self._reload_timer.start()

    def _on_training_option(self) -> None:
        self.config_changed.emit()

    def _use_grayscale(self) -> None:
        """Switch to grayscale, which reads the dataset again like any change of the colour mode."""
        self.color_mode.setCurrentIndex(COLOR_MODES.index("grayscale"))

    # -- reading -----------------------------------------------------------
    def show_reading(self, folder: str) -> None:
        self.show_folder(folder)
        self.status_label.setText(f"Reading {folder}…")

    def show_folder(self, folder: str | None) -> None:
        """The folder read (or being read); None: none."""
        self.path_edit.setText(folder or "")

    def show_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_progress(self, percent: float) -> None:
        self.progress.setValue(int(percent))

    def show_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        if running:
            self.progress.setValue(0)

    def start_reload_timer(self) -> None:
        """Read again once the edits settle (the memory limit moved the images into or out of memory)."""
        self._reload_timer.start()

    def show_cache_estimate(self, data: LoadedDataset | None) -> "CachePlan | None":
        """The decoded images' size for the current image size and colour against the limit, and where they
        will be kept; the plan, or None before a dataset is read."""
        size = parse_size(self.image_size.currentText())
        if data is None or size is None:
            self.cache_estimate.setText("Decoded images are kept in memory up to this size, on disk beyond it; "
                                        "the estimate follows once a folder is read.")
            return None
        images = len(data.labels)  # the images decoded, as the header counts them (not the files found)
        pre = Preprocessing(size, COLOR_MODES[self.color_mode.currentIndex()])
        settings = self.cache_settings()
        plan = plan_cache(images, pre, settings)
        where = (f"read from a cache on disk in {settings.root()}" if plan.on_disk else "kept in memory")
        self.cache_estimate.setText(f"{images:,} images decoded: {format_bytes(plan.bytes)} of "
                                    f"{format_bytes(plan.limit)} allowed, so they are {where}.")
        return plan

    def show_no_dataset(self, message: str = "") -> None:
        """No line of a dataset read before stays; ``message`` says why the folder was refused."""
        self.totals.setText("No usable dataset" if message else "")
        self.split_note.setText("")
        self.scale_note.hide()
        self.class_table.setRowCount(0)
        self.thumbs.clear()
        self.skipped_model.set_files([])
        self.skipped_label.setText("Skipped files")
        self.duplicates.show_groups(None, None, frozenset())
        self.pictures.setTabText(1, "Duplicates")
        self.show_cache_estimate(None)
        self.show_color_hint(None, None)
        self.imbalance.setVisible(bool(message))
        self.imbalance.setText(message)

    # -- display -----------------------------------------------------------
    def show_read(self, data: LoadedDataset) -> None:
        """What a new read brought that no split changes: the status line, the examples, the skipped files."""
        where = f" {data.storage.describe()}" if data.on_disk else ""
        self.status_label.setText(f"Read {len(data.labels)} images from {data.root}.{where}")
        self.scale_note.setText(data.upscaling_note())
        self.scale_note.setVisible(bool(self.scale_note.text()))
        self.thumbs.clear()
        for ci, name in enumerate(data.class_names):
            idx = np.flatnonzero(data.labels == ci)[:THUMBS_PER_CLASS]
            for i in idx:
                item = QListWidgetItem(QIcon(QPixmap.fromImage(array_to_qimage(data.images[i]))), printable(name))
                item.setToolTip(printable(data.paths[i]))
                self.thumbs.addItem(item)
        self._show_skipped(data)

    def show_dataset(self, data: LoadedDataset, excluded: frozenset[str]) -> None:
        """The dataset as it is split now: totals, warnings, each class's counts and the duplicate groups, with the
        files ``excluded`` in neither side."""
        self._show_totals(data)
        self._show_warnings(data)
        self._show_classes(data)
        self._show_duplicates(data, excluded)

    def _show_totals(self, d: LoadedDataset) -> None:
        excluded = len(d.labels) - len(d.train_index) - len(d.val_index)  # in neither side of the split
        self.totals.setText(f"{len(d.labels)} images in {d.num_classes} classes: {len(d.train_index)} for training, "
                            f"{len(d.val_index)} for validation" + (f", {excluded} excluded" if excluded else ""))
        self.split_note.setText(f"Split: {d.split_note}." if d.split_note else "")

    def _show_classes(self, d: LoadedDataset) -> None:
        """Each class with the images it trains and validates on, and those excluded beside them."""
        counts, found = d.split_counts(), d.counts()
        most = max(max(counts.values()), 1)
        self.class_table.setRowCount(d.num_classes)
        for r, name in enumerate(d.class_names):
            name_item = QTableWidgetItem(printable(name))
            name_item.setToolTip(printable(name))
            self.class_table.setItem(r, 0, name_item)
            n, out = counts[name], found[name] - counts[name]
            item = QTableWidgetItem(f"{n} + {out} excluded" if out else str(n))
            item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            self.class_table.setItem(r, 1, item)
            bar = QProgressBar(maximum=most, value=n, textVisible=False)
            bar.setMaximumHeight(14)
            self.class_table.setCellWidget(r, 2, bar)
        self.class_table.updateGeometry()

    def _show_warnings(self, d: LoadedDataset) -> None:
        """Every warning the CLI prints (unreadable files, links, few images, imbalance), of the images trained on."""
        warnings = d.warnings()
        self.imbalance.setVisible(bool(warnings))
        self.imbalance.setText("\n".join(warnings))

    def _show_duplicates(self, d: LoadedDataset, excluded: frozenset[str]) -> None:
        report = None
        if d.pairs is not None:
            report = find_duplicates(d.images, d.labels, d.pairs, self.duplicates.distance.value(), d.val_index,
                                     excluded_rows(d, excluded))
        self.duplicates.show_groups(d, report, excluded)
        groups = len(report.groups) if report is not None else 0
        self.pictures.setTabText(1, f"Duplicates ({groups})" if groups else "Duplicates")

    def show_color_hint(self, data: LoadedDataset | None, sample: ColorSample | None) -> None:
        """Suggest grayscale when every sampled image of ``data`` is grayscale and the panel reads them as RGB.

        Never switches by itself: the user may want RGB (e.g. to add colour
        images later), and once they choose RGB by hand for a folder the hint
        stays away for it.
        """
        mode = COLOR_MODES[self.color_mode.currentIndex()]
        show = (data is not None and sample is not None and sample.suggestion(mode) == "grayscale"
                and self._rgb_kept_for != str(data.root))
        if show:
            looked_at = "images are" if sample.sampled >= len(data.labels) else "images sampled are"
            self.color_hint_label.setText(f"All {sample.sampled:,} {looked_at} grayscale: read as RGB, the model "
                                          "gets three copies of one channel.")
        self.color_hint.setVisible(show)

    def _show_skipped(self, data: LoadedDataset) -> None:
        """The skipped files and their counts by reason; with none, a line that says so and leaves the room
        to the examples."""
        self.skipped_model.set_files(data.skipped, data.root)
        self._fit_reason_column()
        if data.skipped:
            counts = ", ".join(f"{n:,} {kind}" for kind, n in count_skipped(data.skipped).items())
            self.skipped_label.setText(f"Skipped files ({len(data.skipped):,}): {counts}")
            self.skipped_box.setMaximumHeight(QWIDGETSIZE_MAX)
        else:
            self.skipped_label.setText("Skipped files: none")
            self.skipped_box.setMaximumHeight(self.skipped_label.sizeHint().height())
        self.skipped_table.setVisible(bool(data.skipped))

    def _fit_reason_column(self) -> None:
        """Size the reason column to its text, up to ``REASON_WIDTH``.

        Measured here from the distinct reasons of the first thousand files:
        Qt's ``resizeColumnToContents`` asks the model for every role of each
        row and took half a second for a large list.
        """
        reasons = {printable(f.reason) for f in self.skipped_model.files[:1000]}
        metrics = self.skipped_table.fontMetrics()
        text = max((metrics.horizontalAdvance(r) for r in reasons), default=0) + 3 * metrics.averageCharWidth()
        header = self.skipped_table.horizontalHeader()
        header.resizeSection(1, max(header.sectionSizeFromContents(1).width(), min(text, REASON_WIDTH)))

    def set_busy(self, busy: bool) -> None:
        """Disable changes while training runs."""
        for w in (self.choose_button, self.sample_button, self.image_size, self.color_mode, self.use_grayscale_button,
                  self.val_split, self.seed, self.class_weights, self.duplicates, self.memory_limit,
                  *self.augment_checks.values()):
            w.setEnabled(not busy)

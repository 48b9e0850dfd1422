"""Model panel: presets, an editable layer stack with live shapes, training settings."""

from __future__ import annotations

import copy

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView,
    QLabel, QMenu, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget,
)

from ..core.architecture import (
    ACTIVATIONS, CLASSES, EXPLANATIONS, LAYER_KINDS, OPTIMIZERS, PRESETS, LayerSpec, TrainingSettings, layer_table,
    preset, total_params,
)
from ..core.errors import ArchitectureError
from ..core.model_file import LIMITS

ERROR_BG = QColor("#ffd8d8")


class ModelPanel(QWidget):
    """Edit the layer stack and the training settings.

    Signals:
        changed(): the stack or a setting changed.
        validity_changed(bool, str): whether the stack can be built, and why not.
    """

    changed = Signal()
    validity_changed = Signal(bool, str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.layers: list[LayerSpec] = preset("seed")
        self.preset_name = "seed"
        self.input_shape: tuple[int, int, int] = (64, 64, 3)
        self.num_classes = 4
        self.error: ArchitectureError | None = None
        self._editing = False
        self._build()
        self.refresh()

    # -- layout ------------------------------------------------------------
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        left = QVBoxLayout()
        outer.addLayout(left, 3)

        top = QHBoxLayout()
        top.addWidget(QLabel("Preset:"))
        self.preset_combo = QComboBox(objectName="presetCombo")
        for name, (desc, _) in PRESETS.items():
            self.preset_combo.addItem(desc.split(" - ")[0], name)
            self.preset_combo.setItemData(self.preset_combo.count() - 1, desc, Qt.ToolTipRole)
        self.preset_combo.addItem("Custom", "custom")
        self.preset_combo.currentIndexChanged.connect(self._on_preset)
        top.addWidget(self.preset_combo, 1)
        left.addLayout(top)
        self.error_label = QLabel(objectName="modelError", wordWrap=True, visible=False)
        self.error_label.setStyleSheet("color: #b71c1c; background: #ffecec; padding: 4px; border-radius: 3px")
        left.addWidget(self.error_label)

        self.table = QTableWidget(0, 4, objectName="layerTable")
        self.table.setHorizontalHeaderLabels(["Layer", "Output shape", "Parameters", ""])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._on_selection)
        left.addWidget(self.table, 1)

        buttons = QHBoxLayout()
        self.add_button = QToolButton(objectName="addLayer", text="Add layer", popupMode=QToolButton.InstantPopup)
        menu = QMenu(self.add_button)
        for kind in LAYER_KINDS:
            act = QAction(kind, menu)
            act.triggered.connect(lambda _=False, k=kind: self.add_layer(k))
            menu.addAction(act)
        self.add_button.setMenu(menu)
        self.remove_button = QPushButton("Remove", objectName="removeLayer")
        self.up_button = QPushButton("Move up", objectName="moveUp")
        self.down_button = QPushButton("Move down", objectName="moveDown")
        self.remove_button.clicked.connect(self.remove_selected)
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        for b in (self.add_button, self.remove_button, self.up_button, self.down_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.total_label = QLabel(objectName="totalParams")
        self.total_label.setStyleSheet("font-weight: bold")
        buttons.addWidget(self.total_label)
        left.addLayout(buttons)

        right = QVBoxLayout()
        outer.addLayout(right, 2)
        self.editor_box = QGroupBox("Layer", objectName="layerEditor")
        self.editor_form = QFormLayout(self.editor_box)
        right.addWidget(self.editor_box)
        self.explanation = QLabel(objectName="layerExplanation", wordWrap=True)
        self.explanation.setStyleSheet("color: #37474f; background: #eef3f7; padding: 6px; border-radius: 4px")
        self.explanation.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        right.addWidget(self.explanation)

        train_box = QGroupBox("Training")
        form = QFormLayout(train_box)
        self.optimizer = QComboBox(objectName="optimizer")
        self.optimizer.addItems(OPTIMIZERS)
        form.addRow("Optimizer", self.optimizer)
        self.learning_rate = QDoubleSpinBox(objectName="learningRate", decimals=5, minimum=0.00001, maximum=1.0,
                                            singleStep=0.0005, value=0.001)
        form.addRow("Learning rate", self.learning_rate)
        self.batch_size = QSpinBox(objectName="batchSize", minimum=1, maximum=4096, value=32)
        form.addRow("Batch size", self.batch_size)
        self.epochs = QSpinBox(objectName="epochs", minimum=1, maximum=10000, value=10)
        form.addRow("Epochs", self.epochs)
        self.patience = QSpinBox(objectName="patience", minimum=0, maximum=1000, value=3, specialValueText="off")
        self.patience.setToolTip("Stop when neither validation accuracy nor validation loss has improved for this "
                                 "many epochs (at least a quarter of the run). It never stops before half the "
                                 "epochs, and is off with fewer than 50 validation images (0 = off)")
        form.addRow("Early stopping patience", self.patience)
        self.restore_best = QCheckBox("Keep the best epoch's weights", objectName="restoreBest", checked=True)
        self.restore_best.setToolTip("Keep the weights of the epoch with the best validation accuracy "
                                     "(ties: the lower validation loss) instead of the last epoch's")
        # stopping-rule settings with no control of their own: kept as a project brought them
        self._stopping_limits = {"min_epochs": TrainingSettings.min_epochs,
                                 "min_val_images": TrainingSettings.min_val_images}
        form.addRow("", self.restore_best)
        self.device = QComboBox(objectName="device")
        self.device.addItem("CPU", "cpu")
        form.addRow("Device", self.device)
        right.addWidget(train_box)
        right.addStretch(1)
        for w in (self.optimizer, self.device):
            w.currentIndexChanged.connect(self.changed)
        for w in (self.learning_rate, self.batch_size, self.epochs, self.patience):
            w.valueChanged.connect(self.changed)
        self.restore_best.toggled.connect(self.changed)

    # -- state -------------------------------------------------------------
    def set_input(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.refresh()

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        current = self.device.currentData()
        self.device.blockSignals(True)
        self.device.clear()
        for dev_id, desc in devices:
            self.device.addItem(desc, dev_id)
        gpus = [d for d, _ in devices if d.startswith("gpu:")]
        if len(gpus) > 1:
            self.device.addItem(f"All {len(gpus)} GPUs (mirrored)", "gpu:" + ",".join(g[4:] for g in gpus))
        i = self.device.findData(current)
        self.device.setCurrentIndex(max(i, 0))
        self.device.blockSignals(False)

    def settings(self) -> TrainingSettings:
        return TrainingSettings(optimizer=self.optimizer.currentText(), learning_rate=self.learning_rate.value(),
                                batch_size=self.batch_size.value(), epochs=self.epochs.value(),
                                patience=self.patience.value(), restore_best=self.restore_best.isChecked(),
                                device=self.device.currentData() or "cpu", **self._stopping_limits)

    def set_settings(self, s: TrainingSettings) -> None:
        self.optimizer.setCurrentText(s.optimizer)
        self.learning_rate.setValue(s.learning_rate)
        self.batch_size.setValue(s.batch_size)
        self.epochs.setValue(s.epochs)
        self.patience.setValue(s.patience)
        self.restore_best.setChecked(s.restore_best)
        self._stopping_limits = {"min_epochs": s.min_epochs, "min_val_images": s.min_val_images}
        i = self.device.findData(s.device)
        if i >= 0:
            self.device.setCurrentIndex(i)

    def set_layers(self, layers: list[LayerSpec], preset_name: str = "custom") -> None:
        self.layers = copy.deepcopy(layers)
        self.preset_name = preset_name if preset_name in PRESETS else "custom"
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(self.preset_name))
        self.preset_combo.blockSignals(False)
        self.refresh()

    def is_valid(self) -> bool:
        return self.error is None

    # -- editing -----------------------------------------------------------
    def _on_preset(self) -> None:
        name = self.preset_combo.currentData()
        if name in PRESETS:
            self.layers = preset(name)
            self.preset_name = name
            self.refresh()
            self.changed.emit()

    def _mark_custom(self) -> None:
        self.preset_name = "custom"
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(self.preset_combo.findData("custom"))
        self.preset_combo.blockSignals(False)

    def selected_index(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        r = rows[0].row() - 1  # row 0 is the input
        return r if 0 <= r < len(self.layers) else None

    def select_layer(self, index: int) -> None:
        self.table.selectRow(index + 1)

    def add_layer(self, kind: str) -> None:
        i = self.selected_index()
        # insert after the selection, but before the output layer by default
        at = (i + 1) if i is not None else max(len(self.layers) - 1, 0)
        self.layers.insert(at, LayerSpec(kind, dict(LAYER_KINDS[kind])))
        self._mark_custom()
        self.refresh()
        self.select_layer(at)
        self.changed.emit()

    def remove_selected(self) -> None:
        i = self.selected_index()
        if i is None:
            return
        del self.layers[i]
        self._mark_custom()
        self.refresh()
        if self.layers:
            self.select_layer(min(i, len(self.layers) - 1))
        self.changed.emit()

    def move_selected(self, delta: int) -> None:
        i = self.selected_index()
        if i is None or not (0 <= i + delta < len(self.layers)):
            return
        self.layers[i], self.layers[i + delta] = self.layers[i + delta], self.layers[i]
        self._mark_custom()
        self.refresh()
        self.select_layer(i + delta)
        self.changed.emit()

    def set_param(self, index: int, key: str, value) -> None:
        """Change one parameter of one layer (what the editor widgets call)."""
        self.layers[index].params[key] = value
        self._mark_custom()
        self._editing = True
        try:
            self.refresh()
        finally:
            self._editing = False
        self.changed.emit()

    # -- display -----------------------------------------------------------
    def refresh(self) -> None:
        """Recompute shapes and parameters and show them; mark the offending layer."""
        sel = self.selected_index()
        try:
            rows = layer_table(self.layers, self.input_shape, self.num_classes)
            self.error = None
        except ArchitectureError as e:
            rows = None
            self.error = e
        shown = rows if rows is not None else self.error.rows
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.layers) + 1)
        h, w, c = self.input_shape
        self._set_row(0, f"Input {h}×{w}×{c}, scaled to 0–1", (h, w, c), 0, None)
        by_index = {r.index: r for r in shown}
        for i, spec in enumerate(self.layers):
            r = by_index.get(i)
            text = spec.describe()
            if spec.kind == "Dense" and spec.full_params()["units"] == CLASSES:
                text = f"Dense({self.num_classes} classes, {spec.full_params()['activation']})"
            self._set_row(i + 1, f"{i + 1}. {text}", r.output_shape if r else None, r.params if r else None,
                          self.error if (self.error is not None and self.error.layer_index == i) else None)
        self.table.blockSignals(False)
        if rows:
            self.total_label.setText(f"Total parameters: {total_params(rows):,}")
        else:
            self.total_label.setText("Total parameters: —")
        self.error_label.setVisible(self.error is not None)
        self.error_label.setText(str(self.error) if self.error else "")
        self.validity_changed.emit(self.error is None, str(self.error) if self.error else "")
        if sel is not None and sel < len(self.layers):
            self.table.blockSignals(True)
            self.table.selectRow(sel + 1)
            self.table.blockSignals(False)
        if not self._editing:
            self._show_editor(sel)
        self.remove_button.setEnabled(sel is not None)

    def _set_row(self, row: int, text: str, shape, params, error) -> None:
        items = [QTableWidgetItem(text), QTableWidgetItem("—" if shape is None else " × ".join(map(str, shape))),
                 QTableWidgetItem("" if params is None else f"{params:,}"), QTableWidgetItem("⚠" if error else "")]
        items[2].setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
        for col, item in enumerate(items):
            if error is not None:
                item.setBackground(QBrush(ERROR_BG))
                item.setToolTip(str(error))
            self.table.setItem(row, col, item)

    def _on_selection(self) -> None:
        i = self.selected_index()
        self.remove_button.setEnabled(i is not None)
        self.up_button.setEnabled(i is not None and i > 0)
        self.down_button.setEnabled(i is not None and i < len(self.layers) - 1)
        self._show_editor(i)

    def _show_editor(self, index: int | None) -> None:
        while self.editor_form.rowCount():
            self.editor_form.removeRow(0)
        if index is None:
            self.editor_box.setTitle("Layer")
            self.editor_form.addRow(QLabel("Select a layer to edit its parameters."))
            self.explanation.setText("Click a layer to see what it does.")
            return
        spec = self.layers[index]
        self.editor_box.setTitle(f"Layer {index + 1}: {spec.kind}")
        self.explanation.setText(EXPLANATIONS.get(spec.kind, ""))
        params = spec.full_params()
        if not params:
            self.editor_form.addRow(QLabel("This layer has no parameters."))
        for key, value in params.items():
            self.editor_form.addRow(key.replace("_", " ").capitalize(), self._param_editor(index, spec, key, value))

    def _param_editor(self, index: int, spec: LayerSpec, key: str, value) -> QWidget:
        name = f"param_{key}"
        if key == "activation":
            w = QComboBox(objectName=name)
            w.addItems(ACTIVATIONS)
            w.setCurrentText(str(value))
            w.currentTextChanged.connect(lambda v: self.set_param(index, key, v))
        elif key == "padding":
            w = QComboBox(objectName=name)
            w.addItems(["valid", "same"])
            w.setCurrentText(str(value))
            w.currentTextChanged.connect(lambda v: self.set_param(index, key, v))
        elif key == "rate":
            w = QDoubleSpinBox(objectName=name, decimals=2, minimum=0.0, maximum=0.95, singleStep=0.05, value=float(value))
            w.valueChanged.connect(lambda v: self.set_param(index, key, round(v, 4)))
        elif key == "units" and index == len(self.layers) - 1 and value == CLASSES:
            w = QLabel(f"one per class ({self.num_classes})", objectName=name)
        elif key == "strides" and spec.kind != "Conv2D":
            w = QSpinBox(objectName=name, minimum=0, maximum=64, value=int(value), specialValueText="= pool size")
            w.valueChanged.connect(lambda v: self.set_param(index, key, v))
        else:
            # units and filters up to what cnndesk opens again (a bigger number is refused in a model file)
            w = QSpinBox(objectName=name, minimum=1, maximum=LIMITS.dimension if key in ("units", "filters") else 64)
            w.setValue(int(value) if value != CLASSES else self.num_classes)
            w.setKeyboardTracking(True)
            w.valueChanged.connect(lambda v: self.set_param(index, key, v))
        return w

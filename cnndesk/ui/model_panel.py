"""Model panel: presets, an editable layer stack with live shapes, training settings.

Every edit of the layer stack (add, remove, move, a parameter, a preset switch)
is a command on a ``QUndoStack``, so Undo and Redo cover them all alike.

The module is a little over 500 lines on purpose: the stack table, the
parameter editor and the training box share one selection and one undo
stack. The pieces that stand alone (refusing number boxes, the undo command)
are in ``layer_editing``.
"""

from __future__ import annotations

import copy

from PySide6.QtCore import QEvent, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView, QAbstractSpinBox, QApplication, QCheckBox, QComboBox, QFormLayout, QFrame, QGroupBox,
    QHBoxLayout, QHeaderView, QLabel, QMenu, QPushButton, QScrollArea, QTableWidget, QTableWidgetItem,
    QToolButton, QVBoxLayout, QWidget,
)

from ..core.model.architecture import (
    ACTIVATIONS, CLASSES, EXPLANATIONS, has_backbone, LAYER_KINDS, layer_table, LayerSpec, multiply_adds, OPTIMIZERS,
    PRECISIONS, preset, preset_summary, PRESETS, PresetSummary, total_params, TrainingSettings,
)
from ..core.errors import ArchitectureError
from ..core.model.config_checks import LIMITS
from .backbone_editor import backbone_rows
from .device_choice import DeviceChoice
from .layer_editing import RangeDoubleSpinBox, RangeSpinBox, RefusalNote, Stack, StackEdit, format_number

ERROR_BG = QColor("#ffd8d8")
#: the Precision box's rows: (settings value, what it shows)
PRECISION_CHOICES = tuple(zip(PRECISIONS, ("Automatic (bfloat16 where the CPU has it)", "float32",
                                           "bfloat16 mixed precision")))


# -- the panel -------------------------------------------------------------------

class ModelPanel(QWidget):
    """Edit the layer stack and the training settings.

    Signals:
        changed(): the stack or a setting changed.
        validity_changed(bool, str): whether the stack can be built, and why not.

    ``undo_action`` and ``redo_action`` undo and redo stack edits; they carry the
    standard shortcuts, active while the focus is in the panel.
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
        self.undo_stack = QUndoStack(self)
        self._editor_generation = 0  # a new parameter editor starts a new undo step
        self._notices: list[str] = []  # what the last step did besides the stack (said in the notice)
        self._build()
        self._build_undo_actions()
        self.refresh()

    # -- layout ------------------------------------------------------------
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        left = QVBoxLayout()
        outer.addLayout(left, 3)
        self._build_preset_picker(left)
        self._build_layer_table(left)
        right = QVBoxLayout()
        outer.addLayout(right, 2)
        right.addWidget(self._build_layer_editor(), 1)
        right.addWidget(self._build_training_box())

    def _build_preset_picker(self, column: QVBoxLayout) -> None:
        top = QHBoxLayout()
        top.addWidget(QLabel("Preset:"))
        self.preset_combo = QComboBox(objectName="presetCombo")
        for name, (desc, _) in PRESETS.items():
            self.preset_combo.addItem(desc.split(" - ")[0], name)
        self.preset_combo.addItem("Custom", "custom")
        self.preset_combo.currentIndexChanged.connect(self._on_preset)
        top.addWidget(self.preset_combo, 1)
        column.addLayout(top)
        self.preset_info = QLabel(objectName="presetInfo", wordWrap=True)
        self.preset_info.setStyleSheet("color: #455a64")
        column.addWidget(self.preset_info)
        self.notice = QLabel(objectName="modelNotice", wordWrap=True, visible=False, textFormat=Qt.RichText)
        self.notice.setStyleSheet("background: #fff8e1; padding: 4px; border-radius: 3px")
        self.notice.linkActivated.connect(lambda _: self.undo_action.trigger())
        column.addWidget(self.notice)
        self.error_label = QLabel(objectName="modelError", wordWrap=True, visible=False)
        self.error_label.setStyleSheet("color: #b71c1c; background: #ffecec; padding: 4px; border-radius: 3px")
        column.addWidget(self.error_label)
        self.classes_note = QLabel(objectName="modelClassesNote", wordWrap=True, visible=False)
        self.classes_note.setStyleSheet("background: #fff8e1; padding: 4px; border-radius: 3px")
        column.addWidget(self.classes_note)

    def _build_layer_table(self, column: QVBoxLayout) -> None:
        self.table = QTableWidget(0, 4, objectName="layerTable")
        self.table.setHorizontalHeaderLabels(["Layer", "Output shape", "Parameters", ""])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._on_selection)
        column.addWidget(self.table, 1)

        buttons = QHBoxLayout()
        self.add_button = QToolButton(objectName="addLayer", text="Add layer", popupMode=QToolButton.InstantPopup)
        menu = QMenu(self.add_button)
        for kind in (k for k in LAYER_KINDS if k != "Backbone"):  # a backbone comes with its preset
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
        column.addLayout(buttons)

    def _build_layer_editor(self) -> QWidget:
        """The selected layer's editor and explanation, in a scroll area that takes the height left over.

        However many rows the selected layer has, the training box below keeps
        its place: a click aimed at it must not land on another control.
        """
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        self.editor_box = QGroupBox("Layer", objectName="layerEditor")
        box = QVBoxLayout(self.editor_box)
        self.editor_form = QFormLayout()
        box.addLayout(self.editor_form)
        self.refusal = RefusalNote("the layer keeps {kept}", objectName="paramRefused")
        box.addWidget(self.refusal)
        column.addWidget(self.editor_box)
        self.explanation = QLabel(objectName="layerExplanation", wordWrap=True)
        self.explanation.setStyleSheet("color: #37474f; background: #eef3f7; padding: 6px; border-radius: 4px")
        self.explanation.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        column.addWidget(self.explanation)
        column.addStretch(1)
        scroll = QScrollArea(objectName="layerEditorScroll", widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        return scroll

    def _build_training_box(self) -> QGroupBox:
        train_box = QGroupBox("Training", objectName="trainingBox")
        form = QFormLayout(train_box)
        defaults = TrainingSettings()  # the one place of the training defaults, the CLI's too
        self.optimizer = QComboBox(objectName="optimizer")
        self.optimizer.addItems(OPTIMIZERS)
        self.optimizer.setCurrentText(defaults.optimizer)
        form.addRow("Optimizer", self.optimizer)
        # numbers apply when finished (Enter, leaving the box): 25 epochs pass 2 on the way
        self.learning_rate = RangeDoubleSpinBox(objectName="learningRate", decimals=5, minimum=0.00001, maximum=1.0,
                                                singleStep=0.0005, value=defaults.learning_rate)
        form.addRow("Learning rate", self.learning_rate)
        self.batch_size = RangeSpinBox(objectName="batchSize", minimum=1, maximum=4096, value=defaults.batch_size)
        self.batch_size.setToolTip("Images per step on each device; with several GPUs a step takes this many on "
                                   "each of them")
        form.addRow("Batch size", self.batch_size)
        self.epochs = RangeSpinBox(objectName="epochs", minimum=1, maximum=10000, value=defaults.epochs)
        form.addRow("Epochs", self.epochs)
        self.min_steps = RangeSpinBox(objectName="minSteps", minimum=0, maximum=1_000_000, singleStep=50,
                                      value=defaults.min_steps, specialValueText="off")
        self.min_steps.setToolTip("A new model takes at least this many optimizer steps: on a small folder, whose "
                                  "epochs are a few steps each, the run gets more epochs than asked and the log "
                                  "says how many (off: exactly the epochs asked)")
        form.addRow("At least steps", self.min_steps)
        self.patience = RangeSpinBox(objectName="patience", minimum=0, maximum=1000, value=defaults.patience,
                                     specialValueText="off")
        self.patience.setToolTip("Stop when neither validation accuracy nor validation loss has improved for this "
                                 "many epochs (at least a quarter of the run). It never stops before half the "
                                 "epochs, and is off with fewer than 50 validation images (0 = off)")
        form.addRow("Early stopping patience", self.patience)
        self.restore_best = QCheckBox("Keep the best epoch's weights", objectName="restoreBest",
                                      checked=defaults.restore_best)
        self.restore_best.setToolTip("Keep the weights of the epoch with the best validation accuracy "
                                     "(ties: the lower validation loss) instead of the last epoch's")
        # stopping-rule settings with no control of their own: kept as a project brought them
        self._stopping_limits = {"min_epochs": defaults.min_epochs, "min_val_images": defaults.min_val_images}
        form.addRow("", self.restore_best)
        self.device = DeviceChoice(objectName="device")
        form.addRow("Devices", self.device)
        self.precision = QComboBox(objectName="precision")
        for value, text in PRECISION_CHOICES:
            self.precision.addItem(text, value)
        self.precision.setToolTip("Automatic: bfloat16 mixed precision on a CPU that computes bfloat16 natively "
                                  "(AVX-512 BF16, AMX), float32 elsewhere; the training log says which. The saved "
                                  "model is float32 either way")
        form.addRow("Precision", self.precision)
        self.setting_refusal = RefusalNote(objectName="settingRefused")
        for box, what in ((self.learning_rate, "Learning rate"), (self.batch_size, "Batch size"),
                          (self.epochs, "Epochs"), (self.min_steps, "At least steps"),
                          (self.patience, "Early stopping patience")):
            self.setting_refusal.watch(box, what)
        form.addRow(self.setting_refusal)
        self.device.changed.connect(self.changed)
        self.precision.currentIndexChanged.connect(self.changed)
        self.batch_size.valueChanged.connect(self.device.set_batch_size)
        self.optimizer.currentIndexChanged.connect(self.changed)
        for w in (self.learning_rate, self.batch_size, self.epochs, self.min_steps, self.patience):
            w.valueChanged.connect(self.changed)
        self.restore_best.toggled.connect(self.changed)
        return train_box

    def _build_undo_actions(self) -> None:
        self.undo_action = QAction("&Undo", self, objectName="undoLayerEdit",
                                   statusTip="Undo the last change to the layers (Model tab)")
        self.undo_action.setShortcuts(QKeySequence.StandardKey.Undo)
        self.undo_action.triggered.connect(self.undo_stack.undo)
        self.redo_action = QAction("&Redo", self, objectName="redoLayerEdit",
                                   statusTip="Redo the change to the layers just undone (Model tab)")
        self.redo_action.setShortcuts(QKeySequence.StandardKey.Redo)
        self.redo_action.triggered.connect(self.undo_stack.redo)
        for action in (self.undo_action, self.redo_action):
            action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            self.addAction(action)
        for signal in (self.undo_stack.indexChanged, self.undo_stack.undoTextChanged, self.undo_stack.redoTextChanged):
            signal.connect(self._update_undo_actions)
        self._update_undo_actions()

    def _update_undo_actions(self) -> None:
        """Name the step each action would take; off while the panel is (during training, say)."""
        stack = self.undo_stack
        self.undo_action.setEnabled(self.isEnabled() and stack.canUndo())
        self.redo_action.setEnabled(self.isEnabled() and stack.canRedo())
        self.undo_action.setText(f"&Undo {stack.undoText()}" if stack.canUndo() else "&Undo")
        self.redo_action.setText(f"&Redo {stack.redoText()}" if stack.canRedo() else "&Redo")

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.EnabledChange:
            self._update_undo_actions()

    # -- state -------------------------------------------------------------
    def set_input(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        """Describe the stack for this input and class count (nothing is redrawn when neither changed)."""
        if (tuple(input_shape), int(num_classes)) == (self.input_shape, self.num_classes):
            return
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.refresh()

    def set_classes_note(self, text: str) -> None:
        """A sentence when the classes the panel counts are not the loaded dataset's ("" hides it)."""
        self.classes_note.setText(text)
        self.classes_note.setVisible(bool(text))

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        self.device.set_devices(devices)

    def settings(self) -> TrainingSettings:
        return TrainingSettings(optimizer=self.optimizer.currentText(), learning_rate=self.learning_rate.value(),
                                batch_size=self.batch_size.value(), epochs=self.epochs.value(),
                                patience=self.patience.value(), restore_best=self.restore_best.isChecked(),
                                device=self.device.value(), min_steps=self.min_steps.value(),
                                precision=self.precision.currentData(),
                                **self._stopping_limits)

    def set_settings(self, s: TrainingSettings) -> None:
        self.optimizer.setCurrentText(s.optimizer)
        self.learning_rate.setValue(s.learning_rate)
        self.batch_size.setValue(s.batch_size)
        self.epochs.setValue(s.epochs)
        self.min_steps.setValue(s.min_steps)
        self.patience.setValue(s.patience)
        self.restore_best.setChecked(s.restore_best)
        self._stopping_limits = {"min_epochs": s.min_epochs, "min_val_images": s.min_val_images}
        self.device.set_value(s.device)
        self.set_precision(s.precision)

    def set_precision(self, precision: str) -> None:
        """Show ``precision`` ("auto", "float32", "bfloat16"); anything else shows "auto"."""
        self.precision.setCurrentIndex(max(0, self.precision.findData(precision)))

    def set_layers(self, layers: list[LayerSpec], preset_name: str = "custom") -> None:
        """Show a stack brought from elsewhere (a project, the last session).

        It starts a fresh undo history: undoing into the stack of the project
        that was open before would surprise.
        """
        self.undo_stack.clear()
        self.layers = copy.deepcopy(layers)
        self.preset_name = preset_name if preset_name in PRESETS else "custom"
        self._show_preset_choice()
        self._clear_notices()
        self.refresh()

    def take_layers(self, layers: list[LayerSpec], preset_name: str = "custom") -> None:
        """Show a stack this session changed elsewhere (a weights file chosen in the offline dialog, a run
        brought back) as one undoable step; the history before it stays."""
        preset_name = preset_name if preset_name in PRESETS else "custom"
        if list(layers) == self.layers and preset_name == self.preset_name:
            return
        i = self.selected_index()
        self._push(_step_text(self.layers, layers), Stack(copy.deepcopy(list(layers)), preset_name),
                   i if i is not None and i < len(layers) else None)

    def add_notice(self, text: str) -> None:
        """Say what the last step did besides the stack (the next step takes it away)."""
        self._notices.append(text)
        self.notice.setText("<br>".join(self._notices))
        self.notice.show()

    def _clear_notices(self) -> None:
        self._notices = []
        self.notice.hide()

    def is_valid(self) -> bool:
        return self.error is None

    # -- editing -----------------------------------------------------------
    def _on_preset(self) -> None:
        """Switch to the chosen preset as one undoable step, saying so when it replaces a custom stack."""
        name = self.preset_combo.currentData()
        if name not in PRESETS:  # "Custom" names an edited stack; it is not something to switch to
            self._show_preset_choice()
            return
        if name == self.preset_name:
            return
        replaced_custom = self.preset_name == "custom"
        title = PRESETS[name][0].split(" - ")[0]
        self._push(f"Switch to {title}", Stack(preset(name), name), None)
        if replaced_custom:
            keys = self.undo_action.shortcut().toString(QKeySequence.NativeText)
            self.add_notice(f"Your custom stack was replaced by the {title} preset. "
                            f"<a href='undo'>Undo</a> ({keys}) brings it back.")

    def _show_preset_choice(self) -> None:
        with QSignalBlocker(self.preset_combo):
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(self.preset_name))

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
        layers = copy.deepcopy(self.layers)
        layers.insert(at, LayerSpec(kind, dict(LAYER_KINDS[kind])))
        self._push(f"Add {kind}", Stack(layers, "custom"), at)

    def remove_selected(self) -> None:
        i = self.selected_index()
        if i is None:
            return
        layers = copy.deepcopy(self.layers)
        removed = layers.pop(i)
        self._push(f"Remove {removed.kind}", Stack(layers, "custom"), min(i, len(layers) - 1) if layers else None)

    def move_selected(self, delta: int) -> None:
        i = self.selected_index()
        if i is None or not (0 <= i + delta < len(self.layers)):
            return
        layers = copy.deepcopy(self.layers)
        layers[i], layers[i + delta] = layers[i + delta], layers[i]
        self._push(f"Move {layers[i + delta].kind} {'up' if delta < 0 else 'down'}", Stack(layers, "custom"),
                   i + delta)

    def set_param(self, index: int, key: str, value) -> None:
        """Change one parameter of one layer (what the editor widgets call)."""
        if self.layers[index].full_params().get(key) == value:
            return
        layers = copy.deepcopy(self.layers)
        layers[index].params[key] = value
        what = key.replace("_", " ")
        self._push(f"Change {what} of layer {index + 1}", Stack(layers, "custom"), index,
                   merge_key=(self._editor_generation, index, key))

    def _push(self, text: str, after: Stack, selected_after: int | None, merge_key: tuple | None = None) -> None:
        before = Stack(copy.deepcopy(self.layers), self.preset_name)
        self.undo_stack.push(StackEdit(self, text, before, after, self.selected_index(), selected_after, merge_key))

    def _apply(self, stack: Stack, selected: int | None, rebuild_editor: bool) -> None:
        """Show a snapshot of the stack (what undo and redo do)."""
        self.layers = copy.deepcopy(stack.layers)
        self.preset_name = stack.preset
        self._show_preset_choice()
        self._clear_notices()
        self._refresh(selected, rebuild_editor)
        self.changed.emit()

    # -- display -----------------------------------------------------------
    def refresh(self) -> None:
        """Recompute shapes and parameters and show them; mark the offending layer."""
        self._refresh(self.selected_index(), rebuild_editor=True)

    def _refresh(self, selected: int | None, rebuild_editor: bool) -> None:
        try:
            rows = layer_table(self.layers, self.input_shape, self.num_classes)
            self.error = None
        except ArchitectureError as e:
            rows = None
            self.error = e
        self._fill_table(rows if rows is not None else self.error.rows, selected)
        if rows:
            self.total_label.setText(f"Total parameters: {total_params(rows):,}")
        else:
            self.total_label.setText("Total parameters: —")
        self.error_label.setVisible(self.error is not None)
        self.error_label.setText(str(self.error) if self.error else "")
        self._show_preset_info(rows)
        self.validity_changed.emit(self.error is None, str(self.error) if self.error else "")
        if rebuild_editor:
            self._show_editor(self.selected_index())
        self._update_buttons()

    def _fill_table(self, shown, selected: int | None) -> None:
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(self.layers) + 1)
            h, w, c = self.input_shape
            scaling = "the backbone scales them itself" if has_backbone(self.layers) else "scaled to 0–1"
            self._set_row(0, f"Input {h}×{w}×{c}, {scaling}", (h, w, c), 0, None)
            by_index = {r.index: r for r in shown}
            for i, spec in enumerate(self.layers):
                r = by_index.get(i)
                text = spec.describe()
                if spec.kind == "Dense" and spec.full_params()["units"] == CLASSES:
                    text = f"Dense({self.num_classes} classes, {spec.full_params()['activation']})"
                self._set_row(i + 1, f"{i + 1}. {text}", r.output_shape if r else None, r.params if r else None,
                              self.error if (self.error is not None and self.error.layer_index == i) else None)
            if selected is not None and selected < len(self.layers):
                self.select_layer(selected)
            else:
                self.table.clearSelection()

    def _set_row(self, row: int, text: str, shape, params, error) -> None:
        items = [QTableWidgetItem(text), QTableWidgetItem("—" if shape is None else " × ".join(map(str, shape))),
                 QTableWidgetItem("" if params is None else f"{params:,}"), QTableWidgetItem("⚠" if error else "")]
        items[2].setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
        for col, item in enumerate(items):
            if error is not None:
                item.setBackground(QBrush(ERROR_BG))
                item.setToolTip(str(error))
            self.table.setItem(row, col, item)

    def _show_preset_info(self, rows) -> None:
        """Each preset's use, size and relative speed for the current input: a tooltip each, a line for the current."""
        summaries = {name: preset_summary(name, self.input_shape, self.num_classes) for name in PRESETS}
        # the speed yardstick is the fastest preset trained from scratch: a backbone's many thin layers
        # make its multiply-adds a poor guess of its time next to them
        fitting = [s for s in summaries.values() if s.multiply_adds is not None and not has_backbone(preset(s.name))]
        fastest = min(fitting, key=lambda s: s.multiply_adds) if fitting else None
        for name, s in summaries.items():
            self.preset_combo.setItemData(self.preset_combo.findData(name), self._preset_tooltip(s, fastest),
                                          Qt.ToolTipRole)
        if self.preset_name in summaries:
            self.preset_info.setText(self._preset_line(summaries[self.preset_name], fastest))
        elif rows:
            speed = _speed_words(multiply_adds(rows), fastest)
            self.preset_info.setText(f"Your own stack: {total_params(rows):,} parameters{speed}.")
        else:
            self.preset_info.setText("Your own stack; it cannot be built as it is.")

    def _input_words(self) -> str:
        h, w, c = self.input_shape
        return f"{h}×{w}×{c} images"

    def _preset_line(self, s: PresetSummary, fastest: PresetSummary | None) -> str:
        if s.params is None:
            return f"{s.use} It does not fit {self._input_words()}."
        return f"{s.use} {s.params:,} parameters for {self._input_words()}{_speed_words(s.multiply_adds, fastest, s)}."

    def _preset_tooltip(self, s: PresetSummary, fastest: PresetSummary | None) -> str:
        head = f"<b>{s.title}</b>: {s.layers}.<br>{s.use}<br>"
        if s.params is None:
            return head + f"It does not fit {self._input_words()}: {s.problem}"
        return (head + f"{s.params:,} parameters for {self._input_words()}{_speed_words(s.multiply_adds, fastest, s)} "
                f"({s.multiply_adds / 1e6:.1f} million multiply-adds per image).")

    def _update_buttons(self) -> None:
        i = self.selected_index()
        self.remove_button.setEnabled(i is not None)
        self.up_button.setEnabled(i is not None and i > 0)
        self.down_button.setEnabled(i is not None and i < len(self.layers) - 1)

    def _on_selection(self) -> None:
        self._update_buttons()
        self._show_editor(self.selected_index())

    def _show_editor(self, index: int | None) -> None:
        # the cursor in a box of the editor (undo rebuilds it) goes to the same parameter's new box: the box it
        # was in is deleted, and a cursor nowhere would let the next Ctrl+Z go unheard
        focused = QApplication.focusWidget()
        focused_name = focused.objectName() if focused is not None and self.editor_box.isAncestorOf(focused) else None
        self._fill_editor(index)
        if focused_name is not None:
            same = self.editor_box.findChild(QWidget, focused_name) if focused_name else None
            if same is not None and same.isEnabled():
                same.show()  # a new row shows once the event loop runs; a hidden box would not take the cursor
                same.setFocus(Qt.OtherFocusReason)
            else:
                self.table.setFocus(Qt.OtherFocusReason)

    def _fill_editor(self, index: int | None) -> None:
        self._editor_generation += 1
        self.refusal.clear_refusal()
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
        if spec.kind == "Backbone":
            for label, editor in backbone_rows(params, lambda key, value: self.set_param(index, key, value)):
                if isinstance(editor, QAbstractSpinBox):
                    self.refusal.watch(editor, label)
                self.editor_form.addRow(label, editor)
            return
        if not params:
            self.editor_form.addRow(QLabel("This layer has no parameters."))
        for key, value in params.items():
            name = key.replace("_", " ").capitalize()
            editor = self._param_editor(index, spec, key, value)
            if isinstance(editor, QAbstractSpinBox):  # the limits in sight, not found by hitting them
                name += f" ({format_number(editor.minimum())}–{format_number(editor.maximum())})"
                self.refusal.watch(editor, key.replace("_", " ").capitalize())
            self.editor_form.addRow(name, editor)

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
            w = RangeDoubleSpinBox(objectName=name, decimals=2, minimum=0.0, maximum=0.95, singleStep=0.05,
                                   value=float(value))
            w.valueChanged.connect(lambda v: self.set_param(index, key, round(v, 4)))
        elif key == "units" and index == len(self.layers) - 1 and value == CLASSES:
            w = QLabel(f"one per class ({self.num_classes})", objectName=name)
        elif key == "strides" and spec.kind != "Conv2D":
            w = RangeSpinBox(objectName=name, minimum=0, maximum=64, value=int(value), specialValueText="= pool size")
            w.setToolTip("0 means as far as the pool size")
            w.valueChanged.connect(lambda v: self.set_param(index, key, v))
        else:
            # units and filters up to what cnndesk opens again (a bigger number is refused in a model file)
            largest = LIMITS.dimension if key in ("units", "filters") else 64
            w = RangeSpinBox(objectName=name, minimum=1, maximum=largest)
            w.setValue(int(value) if value != CLASSES else self.num_classes)
            w.valueChanged.connect(lambda v: self.set_param(index, key, v))
        return w


def _step_text(before: list[LayerSpec], after: list[LayerSpec]) -> str:
    """The undo step's name for a stack changed elsewhere: one parameter's change named as the editor names it."""
    changed = [(i, key) for i, (a, b) in enumerate(zip(before, after))
               for key in sorted({*a.full_params(), *b.full_params()})
               if a.kind == b.kind and a.full_params().get(key) != b.full_params().get(key)]
    same_kinds = [a.kind for a in before] == [b.kind for b in after]
    if same_kinds and len(changed) == 1:
        i, key = changed[0]
        return f"Change {key.replace('_', ' ')} of layer {i + 1}"
    return "Bring back a run's layers"


def _speed_words(cost: int, fastest: PresetSummary | None, own: PresetSummary | None = None) -> str:
    """How fast a stack runs next to the fastest preset, from their multiply-adds (", the fastest preset")."""
    if fastest is None:
        return ""
    if own is not None and own.name == fastest.name:
        return ", the fastest preset"
    ratio = max(cost, 1) / max(fastest.multiply_adds, 1)
    if ratio < 1 / 1.5:
        return f", about {1 / ratio:.0f}× as fast as {fastest.title}"
    if ratio < 1.5:
        return f", about as fast as {fastest.title}"
    return f", about {ratio:.0f}× slower than {fastest.title}"

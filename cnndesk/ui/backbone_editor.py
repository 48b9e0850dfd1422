"""The model panel's editor for a pretrained backbone: family, weights, fine-tuning and its blocks, folded.

A backbone is one row of the layer table, not its 150-odd Keras layers; its
editor names the family, where its weights come from, how many of its top
blocks are fine-tuned, and lists the blocks (which are trained, which stay
frozen) in a section that is folded until opened.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from ..core.model.backbones import FAMILIES, IMAGENET, keras_cache_dir
from .layer_editing import RangeSpinBox


def backbone_rows(params: dict, set_param: Callable[[str, object], None]) -> list[tuple[str, QWidget]]:
    """(label, widget) rows for the layer editor's form, each edit going through ``set_param(key, value)``."""
    fam = FAMILIES[params["family"]]
    blocks = BlockList(fam.name, int(params["fine_tune"]))
    family = QComboBox(objectName="param_family")
    family.addItems(list(FAMILIES))
    family.setCurrentText(fam.name)

    tune = RangeSpinBox(objectName="param_fine_tune", minimum=0, maximum=len(fam.blocks),
                        specialValueText="off: backbone frozen")
    tune.setValue(int(params["fine_tune"]))
    tune.setToolTip("After the head has trained, train the backbone's top N blocks too, for as many epochs again, "
                    "at a tenth of the learning rate. BatchNormalization layers stay frozen.")

    def family_chosen(name: str) -> None:
        set_param("family", name)
        tune.setMaximum(len(FAMILIES[name].blocks))
        blocks.show_blocks(name, tune.value())

    def tune_chosen(n: int) -> None:
        set_param("fine_tune", n)
        blocks.show_blocks(family.currentText(), n)

    family.currentTextChanged.connect(family_chosen)
    tune.valueChanged.connect(tune_chosen)
    return [("Family", family), ("Weights", _weights_row(params, set_param)), ("Fine-tune top blocks", tune),
            ("Blocks", blocks)]


def _weights_row(params: dict, set_param) -> QWidget:
    row = QWidget()
    layout = QVBoxLayout(row)  # a long folder name wraps above the buttons instead of widening the editor
    layout.setContentsMargins(0, 0, 0, 0)
    weights = params["weights"]
    text = f"ImageNet, from {keras_cache_dir()}" if weights == IMAGENET else str(weights)
    label = QLabel(text, objectName="backboneWeights", wordWrap=True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    layout.addWidget(label)
    buttons = QHBoxLayout()
    layout.addLayout(buttons)
    choose = QPushButton("Choose a weights file…", objectName="chooseBackboneWeights")

    def chosen() -> None:
        path, _ = QFileDialog.getOpenFileName(row, "Choose a weights file", str(keras_cache_dir()),
                                              "Keras weights (*.h5);;All files (*)")
        if path:
            set_param("weights", path)

    choose.clicked.connect(chosen)
    buttons.addWidget(choose)
    if weights != IMAGENET:
        back = QPushButton("Use ImageNet", objectName="useImagenetWeights")
        back.clicked.connect(lambda: set_param("weights", IMAGENET))
        buttons.addWidget(back)
    buttons.addStretch(1)
    return row


class BlockList(QWidget):
    """The backbone's blocks, folded under a button that says how many are trained and how many frozen."""

    def __init__(self, family: str, tuned: int, parent: QWidget | None = None):
        super().__init__(parent, objectName="backboneBlocks")
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        self.toggle = QToolButton(objectName="backboneBlocksToggle", checkable=True, arrowType=Qt.RightArrow,
                                  toolButtonStyle=Qt.ToolButtonTextBesideIcon, autoRaise=True)
        column.addWidget(self.toggle)
        self.details = QLabel(objectName="backboneBlockList", visible=False)
        self.details.setStyleSheet("color: #37474f; padding-left: 18px")
        column.addWidget(self.details)
        self.toggle.toggled.connect(self._show)
        self.show_blocks(family, tuned)

    def show_blocks(self, family: str, tuned: int) -> None:
        """Name the family's blocks, the top ``tuned`` of them as fine-tuned."""
        fam = FAMILIES[family]
        blocks = fam.blocks
        state = f"top {tuned} fine-tuned, {len(blocks) - tuned} frozen" if tuned else "all frozen"
        self.toggle.setText(f"{len(blocks)} blocks, {fam.params:,} parameters: {state}")
        lines = [f"{name}: {'fine-tuned' if i >= len(blocks) - tuned else 'frozen'}" for i, name in enumerate(blocks)]
        self.details.setText("\n".join(lines))

    def _show(self, shown: bool) -> None:
        self.toggle.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)
        self.details.setVisible(shown)

"""Where to train: the CPU, one GPU, or several GPUs ticked together (mirrored).

A short list of checkable rows, one per device TensorFlow found. The CPU and
the GPUs exclude each other: ticking the CPU unticks every GPU, ticking a GPU
unticks the CPU, and unticking the last ticked row ticks the CPU again, so
exactly one choice is always made. With several GPUs ticked the batch size is
per GPU and a line under the list says what a step takes in all.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

CPU = "cpu"


def device_value(ticked: list[str]) -> str:
    """The settings' device string for the ticked rows' ids ("cpu", "gpu:1", "gpu:0,1")."""
    gpus = [d[4:] for d in ticked if d.startswith("gpu:")]
    return "gpu:" + ",".join(gpus) if gpus else CPU


def ticked_ids(device: str, known: list[str]) -> list[str] | None:
    """The row ids a device string ticks, or None when it names a device not in ``known``."""
    device = (device or CPU).strip().lower()
    if device == CPU:
        return [CPU]
    if device == "gpu:all":
        gpus = [d for d in known if d.startswith("gpu:")]
        return gpus or None
    ids = [f"gpu:{part.strip()}" for part in device[4:].split(",")] if device.startswith("gpu:") else [device]
    return ids if all(i in known for i in ids) else None


class DeviceChoice(QWidget):
    """Tick the device(s) to train on.

    Signals:
        changed(): the choice changed through a click or ``set_value``.
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None, objectName: str = "device"):
        super().__init__(parent, objectName=objectName)
        self._batch_size = 32
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        self.list = QListWidget(objectName="deviceList")
        self.list.setSelectionMode(QAbstractItemView.NoSelection)
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setToolTip("Tick the CPU, one GPU, or several GPUs: several train together (TensorFlow's "
                             "MirroredStrategy), each on its own batch, and average what they learn")
        self.list.itemChanged.connect(self._on_item_changed)
        column.addWidget(self.list)
        self.batch_note = QLabel(objectName="globalBatch", wordWrap=True, visible=False)
        self.batch_note.setStyleSheet("color: #455a64")
        column.addWidget(self.batch_note)
        self.set_devices([(CPU, "CPU")])

    # -- what is offered ---------------------------------------------------------
    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """Offer ``devices`` ((id, description), as ``available_devices`` gives them); keeps the choice if it still can."""
        current = self.value()
        with QSignalBlocker(self.list):
            self.list.clear()
            for dev_id, desc in devices:
                item = QListWidgetItem(desc)
                item.setData(Qt.UserRole, dev_id)
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Unchecked)
                self.list.addItem(item)
            self._tick(ticked_ids(current, self.ids()) or [CPU])
        self._fit_height()
        self._show_batch()

    def ids(self) -> list[str]:
        return [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]

    def item(self, dev_id: str) -> QListWidgetItem | None:
        """The row of ``dev_id`` ("cpu", "gpu:0", …), if offered."""
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.UserRole) == dev_id:
                return self.list.item(i)
        return None

    # -- the choice --------------------------------------------------------------
    def value(self) -> str:
        """The chosen device as the training settings write it: "cpu", "gpu:1" or "gpu:0,1"."""
        ticked = [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())
                  if self.list.item(i).checkState() == Qt.Checked]
        return device_value(ticked)

    def set_value(self, device: str) -> bool:
        """Tick what ``device`` names; False (and nothing changed) when it names a device not offered."""
        ids = ticked_ids(device, self.ids())
        if ids is None:
            return False
        before = self.value()
        with QSignalBlocker(self.list):
            self._tick(ids)
        self._show_batch()
        if self.value() != before:
            self.changed.emit()
        return True

    def device_count(self) -> int:
        """How many devices a step runs on with the current choice."""
        value = self.value()
        return len(value[4:].split(",")) if value.startswith("gpu:") else 1

    def set_batch_size(self, batch_size: int) -> None:
        """The per-device batch size, to show the global batch with it."""
        self._batch_size = int(batch_size)
        self._show_batch()

    # -- inside ------------------------------------------------------------------
    def _tick(self, ids: list[str]) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in ids else Qt.Unchecked)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        """Keep the CPU and the GPUs exclusive, and one row always ticked."""
        dev_id = item.data(Qt.UserRole)
        ticked = [d for d in self.ids() if self.item(d).checkState() == Qt.Checked]
        if item.checkState() == Qt.Checked:
            keep = [dev_id] if dev_id == CPU else [d for d in ticked if d != CPU]
        else:
            keep = ticked or [CPU]
        with QSignalBlocker(self.list):
            self._tick(keep)
        self._show_batch()
        self.changed.emit()

    def _show_batch(self) -> None:
        n = self.device_count()
        self.batch_note.setVisible(n > 1)
        self.batch_note.setText(f"Mirrored over {n} GPUs: each step takes a global batch of "
                                f"{self._batch_size * n} images ({self._batch_size} per GPU).")

    def _fit_height(self) -> None:
        """As tall as its rows: a machine with only a CPU shows one line, not an empty box."""
        rows = max(self.list.count(), 1)
        row = self.list.sizeHintForRow(0) if self.list.count() else self.fontMetrics().height() + 4
        self.list.setFixedHeight(rows * row + 2 * self.list.frameWidth() + 2)

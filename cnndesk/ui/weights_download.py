"""Getting a pretrained backbone's weights before training: download with progress and Cancel, or a chosen file.

``WeightsGate.ensure`` answers at once when the weights are in the Keras cache
(or a chosen file exists). Otherwise it downloads them in a plain thread (no
TensorFlow is involved, so the engine stays free) behind a progress dialog with
Cancel. Offline it shows what is needed, exactly: the file, its size and the
Keras cache folder, with a "Choose a weights file…" button. Nothing waits in a
nested event loop: the dialogs are opened, and their answers continue the flow.
"""

from __future__ import annotations

import threading
from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QPushButton, QWidget

from ..core.model.architecture import has_backbone, LayerSpec
from ..core.model.backbones import (
    chosen_weights_problem, ensure_weights, keras_cache_dir, weights_path, WeightsUnavailable,
)
from ..core.errors import Cancelled, UserError
from ..core.tasks import ReportingTaskState


class WeightsGate(QObject):
    """Makes sure a stack's backbone weights are on this computer, then calls back.

    Signals:
        error(str, str): a title and message for an error box (a chosen file that cannot be used).
    """

    error = Signal(str, str)
    _status = Signal(str)
    _progress = Signal(float)
    _finished = Signal(object)  # None when the weights are there, else the exception that stopped the download

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self._parent = parent
        self._task: ReportingTaskState | None = None
        self._dialog: QProgressDialog | None = None
        self._then: tuple | None = None
        # emitted from the download thread: each lands in a @Slot (docs/tensorflow-notes.md)
        self._status.connect(self._on_status)
        self._progress.connect(self._on_progress)
        self._finished.connect(self._on_finished)

    @property
    def busy(self) -> bool:
        return self._task is not None

    def ensure(self, layers: list[LayerSpec], input_shape: tuple[int, int, int], on_ready: Callable[[], None],
               use_file: Callable[[str], None]) -> bool:
        """True when ``layers`` can be built now; else start getting the weights and call ``on_ready`` once they are.

        Args:
            use_file: called with the path the user chose in the offline dialog; it should put the
                path into the stack (the Backbone's ``weights``) before ``on_ready`` runs.
        """
        if not has_backbone(layers):
            return True
        params = layers[0].full_params()
        try:
            weights_path(params, input_shape)
            return True
        except WeightsUnavailable:
            pass
        except UserError as e:  # a chosen file that is gone: offer to choose another
            self._offer_file(str(e), params, on_ready, use_file)
            return False
        if self._task is None:
            self._start(params, input_shape, on_ready, use_file)
        return False

    def _start(self, params: dict, input_shape, on_ready, use_file) -> None:
        self._then = (on_ready, use_file, params)
        # the download's reports become the gate's signals (emitted from the download thread, queued)
        self._task = ReportingTaskState(self._status.emit, self._progress.emit, min_interval=0.1)
        dialog = QProgressDialog("Downloading the ImageNet weights…", "Cancel", 0, 100, self._parent)
        dialog.setObjectName("weightsDownload")
        dialog.setWindowTitle("Pretrained weights")
        dialog.setWindowModality(Qt.WindowModal)
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(self._task.request_interruption)
        dialog.show()
        self._dialog = dialog
        task = self._task

        def run() -> None:
            try:
                ensure_weights(params, input_shape, task)
                self._finished.emit(None)
            except Exception as e:  # every failure becomes a message on the GUI thread, never a traceback
                self._finished.emit(e)

        threading.Thread(target=run, name="cnndesk-weights", daemon=True).start()

    @Slot(str)
    def _on_status(self, text: str) -> None:
        if self._dialog is not None:
            self._dialog.setLabelText(text)

    @Slot(float)
    def _on_progress(self, percent: float) -> None:
        if self._dialog is not None:
            self._dialog.setValue(int(percent))

    @Slot(object)
    def _on_finished(self, failure) -> None:
        on_ready, use_file, params = self._then
        self._task, self._then = None, None
        if self._dialog is not None:
            self._dialog.close()
            self._dialog.deleteLater()
            self._dialog = None
        if failure is None:
            on_ready()
        elif isinstance(failure, Cancelled):
            return
        elif isinstance(failure, UserError):
            self._offer_file(str(failure), params, on_ready, use_file)
        else:  # not one of the failures ensure_weights words itself: no library's words in the box either
            self.error.emit("Could not get the weights", "The weights could not be downloaded. Try again, or "
                            "choose a weights file in the backbone's editor on the Model tab.")

    def _offer_file(self, message: str, params: dict, on_ready, use_file) -> None:
        """The offline dialog: what is needed and where, and a button to choose a weights file instead."""
        box = QMessageBox(QMessageBox.Warning, "ImageNet weights not available", message, QMessageBox.Cancel,
                          self._parent)
        box.setObjectName("weightsMissingBox")
        box.setTextInteractionFlags(Qt.TextSelectableByMouse)  # the file name and folder can be copied
        choose = QPushButton("Choose a weights file…", objectName="chooseWeightsFile")
        box.addButton(choose, QMessageBox.AcceptRole)
        box.setDefaultButton(choose)

        def answered(button) -> None:
            if button is choose:
                self._choose_file(params, on_ready, use_file)

        box.buttonClicked.connect(answered)
        box.open()

    def _choose_file(self, params: dict, on_ready, use_file) -> None:
        """Put the chosen file into the stack; train with it unless it is refused, which the backbone's row
        then says (and Train, where to fix it): no box that every later Train would show again."""
        folder = keras_cache_dir()
        path, _ = QFileDialog.getOpenFileName(self._parent, "Choose a weights file",
                                              str(folder if folder.is_dir() else folder.parent),
                                              "Keras weights (*.h5);;All files (*)")
        if path:
            use_file(path)
            if chosen_weights_problem({**params, "weights": path}) is None:
                on_ready()

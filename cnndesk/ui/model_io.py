"""Opening a .keras or .h5 model the user brings, and exporting the current model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from ..core.errors import UserError
from ..core.model.export import labels_path, SUFFIX
from ..core.project.session import EXPORTING, IDLE, ModelOpened, OPENING, SessionState
from . import file_dialogs
from .engine import Engine
from .engine_worker import EngineWorker

EXPORT_LABELS = {"keras": "Keras model (.keras)…", "saved_model": "TensorFlow SavedModel (folder)…",
                 "litert": "LiteRT / TensorFlow Lite (.tflite)…", "onnx": "ONNX (.onnx)…"}


class ModelFiles(QObject):
    """Open Model and Export for the window; results go into the ``SessionState``.

    Signals:
        status(str, int): a message for the status bar and how long to show it (ms; 0 = until replaced).
        error(str, str): a title and message for an error box.
        opened(): a model from a file is now the current model.

    A model from a file is fed its pixels as its layers suggest (``recognise_pixels``); the status bar
    says which mode and why, and ``set_pixels`` changes it.
    """

    status = Signal(str, int)
    error = Signal(str, str)
    opened = Signal()

    def __init__(self, state: SessionState, engine: Engine, settings: QSettings, dialog_parent: QWidget):
        super().__init__(dialog_parent)
        self.state, self.engine, self.settings = state, engine, settings
        self._parent = dialog_parent

    def _start_folder(self, key: str) -> str:
        """The folder a dialog opens in: the last one used for this, else the project's or dataset's."""
        for candidate in (self.settings.value(key), self.settings.value("folders/project"),
                          self.settings.value("folders/dataset")):
            if candidate and Path(candidate).is_dir():
                return str(candidate)
        return str(Path.home())

    # -- open ---------------------------------------------------------------------
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._parent, "Open a Keras model", self._start_folder("folders/model"),
                                              "Keras models (*.keras *.h5 *.hdf5)")
        if path:
            self.open(path)

    def open(self, path: str) -> None:
        """Open any .keras or legacy .h5 image classifier for the viewer (safe mode)."""
        if self.state.busy:
            self.status.emit("Wait until the current work ends before opening a model.", 6000)
            return
        self.settings.setValue("folders/model", str(Path(path).parent))
        self.state.activity = OPENING
        self.engine.submit(EngineWorker.open_model, path, on_done=self._on_opened, on_error=self._on_failed)

    def _on_failed(self, message: str) -> None:
        self.state.activity = IDLE
        self.error.emit("Could not open the model", message)

    def _on_opened(self, answer: ModelOpened) -> None:
        model = answer.model
        self.state.update(model=model, history=[], best_epoch=None, batch_loss=[], activity=IDLE)
        self.opened.emit()
        why = answer.pixels_why
        self.status.emit(f"Opened {model.file}: pixels {model.preprocessing.pixels}"
                         + (f" ({why})" if why else "") + "; change it with Pixels in the viewer.", 10000)

    # -- pixels --------------------------------------------------------------------
    def set_pixels(self, pixels: str) -> None:
        """Feed the current model's pixels as ``pixels`` (a ``PIXEL_MODES`` key) says; the viewer re-classifies."""
        model = self.state.model
        if model is None or model.preprocessing.pixels == pixels:
            return
        if self.state.busy:
            self.status.emit("Wait until the current work ends before changing the pixels.", 6000)
            return
        try:
            wanted = dataclasses.replace(model.preprocessing, pixels=pixels)
        except UserError as e:
            self.error.emit("Cannot use these pixels", str(e))
            return
        self.engine.submit(EngineWorker.set_preprocessing, wanted,
                           on_done=self._on_pixels_set, on_error=lambda m: self.error.emit("Cannot use these pixels", m))

    def _on_pixels_set(self, applied) -> None:
        # answers come in the order jobs were submitted, so a model opened or trained after this job arrives
        # after this answer: the current model is the one the engine changed (perhaps renamed meanwhile)
        model = self.state.model
        if model is not None and model.preprocessing.input_shape == applied.input_shape:
            self.state.model = dataclasses.replace(model, preprocessing=applied)

    # -- export --------------------------------------------------------------------
    def export_dialog(self, fmt: str) -> None:
        start = self._start_folder("folders/export")
        name = Path(self.state.project_path).name if self.state.project_path else "model"
        if fmt == "saved_model":
            out = file_dialogs.ask_folder_for_writing(self._parent, "SavedModel folder to write (a new name makes a "
                                                      "new folder)", str(Path(start) / f"{name}_saved_model"))
        else:
            out, _ = QFileDialog.getSaveFileName(self._parent, "Export model", str(Path(start) / f"{name}{SUFFIX[fmt]}"),
                                                 f"*{SUFFIX[fmt]}")
        if not out:
            return
        self.settings.setValue("folders/export", str(Path(out).parent))
        self.export(fmt, out)

    def export(self, fmt: str, out: str) -> None:
        if self.state.busy:
            self.status.emit("Wait until the current work ends before exporting.", 6000)
            return
        self.state.activity = EXPORTING
        self.status.emit(f"Exporting to {out}…", 0)
        self.engine.submit(EngineWorker.export, fmt, out, on_done=lambda path: self._on_exported(path, fmt),
                           on_error=self._on_export_failed)

    def _on_exported(self, path: str, fmt: str) -> None:
        self.state.activity = IDLE
        self.status.emit(f"Exported {path}; the class names are in {labels_path(path, fmt).name}", 6000)

    def _on_export_failed(self, message: str) -> None:
        self.state.activity = IDLE
        self.error.emit("Export failed", message)

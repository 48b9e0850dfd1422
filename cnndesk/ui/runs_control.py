"""Keeping every training run, and restoring, renaming, noting, deleting and comparing runs.

``RunsControl`` turns the requests of the runs list (``runs_view.RunsView``) into
state changes and engine jobs. A run is added to the list by the Train flow itself
(``TrainingControl._on_trained``), with its weights already in a scratch file until
a save puts them into the project. Only the
current model and the previous run's are held in memory (``docs/memory.md``);
restoring any other run loads its weights from disk.

"Bring Back Previous Model" stays as the shortcut to restoring the run before the
current one (``bring_back``): that run's model is still in memory, so it comes back at once
(``TrainingControl.bring_back_previous``); restoring it from the list does the same. With
no such model in memory (a reopened project), it restores the latest other run of the list.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.training.runs import Run
from ..core.project.session import describe_run, IDLE, ModelInfo, SessionState, SWAPPING
from .engine import Engine
from .engine_worker import EngineWorker
from .runs_view import RunsView
from .training_control import TrainingControl
from .training_panel import TrainingChart


class RunsControl(QObject):
    """The runs of the session's project, for the runs list and the chart.

    Signals:
        status(str, int): a message for the status bar and how long to show it (ms).
        error(str, str): a title and message for an error box.
    """

    status = Signal(str, int)
    error = Signal(str, str)

    def __init__(self, state: SessionState, engine: Engine, training: TrainingControl, view: RunsView,
                 chart: TrainingChart, reload_dataset: Callable[[], None], dialog_parent: QWidget):
        super().__init__(dialog_parent)
        self.state, self.engine, self.training, self.view, self.chart = state, engine, training, view, chart
        self._reload_dataset = reload_dataset
        self._dialog_parent = dialog_parent
        self._overlaid: list[str] = []
        state.observe(self._on_model, "model")
        state.observe(self._show, "runs", "model")
        state.observe(self._enable, "activity", "engine_ready")
        state.observe(self._offer_previous, "previous", "runs", "model", "activity", "engine_ready")
        view.restore_requested.connect(self.restore)
        view.delete_requested.connect(self.delete)
        view.rename_requested.connect(self.rename)
        view.note_requested.connect(self.set_note)
        view.overlay_changed.connect(self._overlay)
        self._show()
        self._enable()
        self._offer_previous()

    # -- the current model renamed -------------------------------------------------------------
    def _on_model(self, _names=None) -> None:
        """The user renamed the current model's classes: its run in the list takes the new names."""
        state, model = self.state, self.state.model
        if model is None or model.run is None:
            return
        listed = next((r for r in state.runs if r.id == model.run), None)
        if listed is not None and listed.class_names != model.class_names:
            state.runs = [dataclasses.replace(r, class_names=model.class_names) if r is listed else r
                          for r in state.runs]

    # -- requests of the list -----------------------------------------------------------------
    def restore(self, run_id: str) -> None:
        """Make the run ``run_id`` the current model, with its layers and settings; the current one stays listed."""
        state = self.state
        run = self._find(run_id)
        if run is None or state.busy or not state.engine_ready:
            return
        if state.model is not None and state.model.run == run_id:
            self.status.emit(f"{run.name} is the current model already.", 5000)
            return
        if state.previous is not None and state.previous.model.run == run_id:
            self.training.bring_back_previous()  # still in memory: swapped at once
            return
        if run.file is None:
            self.error.emit("Cannot restore the run", f"The weights of {run.name} were not kept, so it cannot be "
                            "restored; its figures stay listed.")
            return
        state.activity = SWAPPING
        self.engine.submit(EngineWorker.restore_run, run.file, list(run.class_names), run.dataset.preprocessing,
                           run.probe_dir, on_done=lambda answer: self._restored(run, answer),
                           on_error=self._restore_failed)

    def bring_back(self) -> None:
        """Bring Back Previous Model: the model held beside the current one, else the run ``_previous_listed`` names."""
        if self.state.previous is not None:
            self.training.bring_back_previous()
            return
        run = self._previous_listed()
        if run is not None:
            self.restore(run.id)

    def previous_offer(self) -> str | None:
        """What Bring Back Previous Model makes current, in words ("the model of …"); None: nothing to bring back."""
        if self.state.previous is not None:
            return self.state.previous.describe()
        run = self._previous_listed()
        return describe_run(run.history, run.best_epoch) if run is not None else None

    def _previous_listed(self) -> Run | None:
        """The run Bring Back restores from disk when no model before the current one is held (after reopening a
        project, or opening a model file): the latest run of the list, other than the current model's, whose
        weights were kept."""
        model = self.state.model
        current = model.run if model is not None else None
        return next((r for r in reversed(self.state.runs) if r.id != current and r.file is not None), None)

    def _restored(self, run: Run, answer: dict) -> None:
        state = self.state
        model = ModelInfo(run.class_names, run.dataset.preprocessing, source="run", label=run.name, run=run.id,
                          spec=(list(run.layers), run.preset, run.settings), has_maps=answer["has_maps"],
                          output_note=answer["output_note"])
        # the data settings come back too (the dataset is read again with them); the device is this
        # machine's choice, not the run's
        config = run.dataset
        reread = config != state.dataset_config and state.dataset_path is not None
        with state.changes():
            state.previous = state.current_run()
            state.model = model
            state.history, state.best_epoch, state.batch_loss = list(run.history), run.best_epoch, list(run.batch_loss)
            state.layers, state.preset = list(run.layers), run.preset
            state.settings = dataclasses.replace(run.settings, device=state.settings.device)
            state.dataset_config = config
            state.activity = IDLE
        if reread:
            self._reload_dataset()
        self.status.emit(f"{run.name} is the current model again, with its layers and settings.", 8000)

    def _restore_failed(self, message: str) -> None:
        self.state.activity = IDLE
        self.error.emit("Could not restore the run", message)

    def delete(self, run_id: str) -> None:
        """Delete a run after asking (a window-modal question; the answer continues in ``_delete``).

        The current model's run is never deleted: the list disables Delete for it and says why.
        """
        run = self._find(run_id)
        if run is None or not self._deletable(run_id):
            return
        box = QMessageBox(QMessageBox.Question, "Delete the run?",
                          f"Delete {run.name} ({run.epochs} epoch{'s' if run.epochs != 1 else ''})? Its figures and "
                          "weights leave the project when it is next saved. This cannot be undone.",
                          QMessageBox.Yes | QMessageBox.Cancel, self._dialog_parent)
        box.setObjectName("deleteRunBox")
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.button(QMessageBox.Yes).setText("Delete")
        box.setDefaultButton(QMessageBox.Cancel)

        def answered(_result: int) -> None:
            if box.standardButton(box.clickedButton()) == QMessageBox.Yes:
                self._delete(run_id)

        box.finished.connect(answered)
        box.open()

    def _deletable(self, run_id: str) -> bool:
        state = self.state
        return not state.busy and (state.model is None or state.model.run != run_id)

    def _delete(self, run_id: str) -> None:
        """Delete the run the user said yes to, as the state is now (the answer may come after engine answers)."""
        state = self.state
        run = self._find(run_id)
        if run is None:
            return
        if not self._deletable(run_id):
            self.status.emit(f"{run.name} was not deleted: " + ("other work is running; try again when it ends."
                             if state.busy else "it is the current model's run now."), 8000)
            return
        with state.changes():
            state.runs = [r for r in state.runs if r.id != run_id]
            if state.previous is not None and state.previous.model.run == run_id:
                state.previous = None  # a deleted run cannot be brought back either
        self.status.emit(f"Deleted {run.name}.", 5000)

    def rename(self, run_id: str, name: str) -> None:
        self.state.runs = [r.renamed(name) if r.id == run_id else r for r in self.state.runs]

    def set_note(self, run_id: str, note: str) -> None:
        self.state.runs = [r.noted(note) if r.id == run_id else r for r in self.state.runs]

    # -- showing ------------------------------------------------------------------------------
    def _show(self, _names=None) -> None:
        state = self.state
        self.view.set_runs(state.runs, state.model.run if state.model is not None else None)
        self._draw_overlays()

    def _enable(self, _names=None) -> None:
        self.view.set_enabled(self.state.engine_ready and not self.state.busy)

    def _offer_previous(self, _names=None) -> None:
        self.training.panel.set_previous(self.previous_offer(), enabled=self.state.engine_ready and not self.state.busy)

    def _overlay(self, ids: list) -> None:
        self._overlaid = list(ids)
        self._draw_overlays()

    def _draw_overlays(self) -> None:
        runs = [r for r in self.state.runs if r.id in self._overlaid]
        self.chart.set_overlays([(r.name, list(r.history)) for r in runs])

    def _find(self, run_id: str) -> Run | None:
        return next((r for r in self.state.runs if r.id == run_id), None)

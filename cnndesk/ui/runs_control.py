"""Keeping every training run, and restoring, renaming, noting, deleting and comparing runs.

``RunsControl`` turns the requests of the runs list (``runs_view.RunsView``) into
state changes and engine jobs. A run is added to the list by the Train flow itself
(``TrainingControl._on_trained``), with its weights already in a scratch file until
a save puts them into the project. The runs list is the one history: "Bring Back
Previous Model" (``bring_back``) restores the run before the current one
(``core.training.runs.run_before``) as the list restores any run. The engine holds
the current model and the model of the run it replaced (``docs/memory.md``), so
bringing that one back is instant; restoring any other run loads its weights from disk.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.training.runs import Run, run_before
from ..core.project.session import IDLE, RunRestored, SessionState, SWAPPING
from .engine import Engine
from .engine_worker import EngineWorker
from .runs_view import RunsView
from .training_panel import TrainingPanel


class RunsControl(QObject):
    """The binding of the runs list (``view``) and of the training panel's chart overlays and Bring Back offer.

    Signals:
        status(str, int): a message for the status bar and how long to show it (ms).
        error(str, str): a title and message for an error box.
    """

    status = Signal(str, int)
    error = Signal(str, str)

    def __init__(self, state: SessionState, engine: Engine, view: RunsView, panel: TrainingPanel,
                 reload_dataset: Callable[[], None], dialog_parent: QWidget):
        super().__init__(dialog_parent)
        self.state, self.engine, self.view, self.panel, self.chart = state, engine, view, panel, panel.chart
        self._reload_dataset = reload_dataset
        self._dialog_parent = dialog_parent
        self._overlaid: list[str] = []
        state.observe(self._on_model, "model")
        state.observe(self._show, "runs", "model")
        state.observe(self._enable, "activity", "engine_ready")
        state.observe(self._offer_previous, "runs", "model", "activity", "engine_ready")
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
        if run.file is None:
            self.error.emit("Cannot restore the run", f"The weights of {run.name} were not kept, so it cannot be "
                            "restored; its figures stay listed.")
            return
        state.activity = SWAPPING
        # the engine answers at once when it holds the run's model (the run the current one replaced)
        self.engine.submit(EngineWorker.restore_run, run, on_done=lambda answer: self._restored(run, answer),
                           on_error=self._restore_failed)

    def bring_back(self) -> None:
        """Bring Back Previous Model: restore the run before the current one (``core.training.runs.run_before``)."""
        run = self._run_before()
        if run is not None:
            self.restore(run.id)

    def previous_offer(self) -> str | None:
        """What Bring Back Previous Model makes current, in words ("the model of …"); None: nothing to bring back."""
        run = self._run_before()
        return run.described() if run is not None else None

    def _run_before(self) -> Run | None:
        model = self.state.model
        return run_before(self.state.runs, *((model.run, model.before) if model is not None else (None, None)))

    def _restored(self, run: Run, answer: RunRestored) -> None:
        state = self.state
        model = answer.model
        # the data settings come back too (the dataset is read again with them); the device and the
        # precision are this machine's choice, not the run's
        config = run.dataset
        reread = config != state.dataset_config and state.dataset_path is not None
        with state.changes():
            state.model = model
            state.history, state.best_epoch, state.batch_loss = list(run.history), run.best_epoch, list(run.batch_loss)
            state.layers, state.preset = list(run.layers), run.preset
            state.settings = dataclasses.replace(run.settings, device=state.settings.device,
                                                 precision=state.settings.precision)
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
        state.runs = [r for r in state.runs if r.id != run_id]  # and it cannot be brought back either
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
        self.panel.set_previous(self.previous_offer(), enabled=self.state.engine_ready and not self.state.busy)

    def _overlay(self, ids: list) -> None:
        self._overlaid = list(ids)
        self._draw_overlays()

    def _draw_overlays(self) -> None:
        runs = [r for r in self.state.runs if r.id in self._overlaid]
        self.chart.set_overlays([(r.name, list(r.history)) for r in runs])

    def _find(self, run_id: str) -> Run | None:
        return next((r for r in self.state.runs if r.id == run_id), None)

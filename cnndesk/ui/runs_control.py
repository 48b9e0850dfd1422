"""Keeping every training run, and restoring, renaming, noting, deleting and comparing runs.

``RunsControl`` adds a ``core.runs.Run`` to the state each time a training run
ends (from scratch or continued), has the engine write its weights to a scratch
file until a save puts them into the project, and turns the requests of the runs
list (``runs_view.RunsView``) into state changes and engine jobs. The runs list
is the one history: "Bring Back Previous Model" (``bring_back``) restores the run
before the current one (``core.runs.run_before``) as the list restores any run.
The engine holds the current model and the model of the run it replaced
(``docs/memory.md``), so bringing that one back is instant; restoring any other
run loads its weights from disk.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.training.runs import KeptRun, Run, new_run, run_before
from ..core.project.session import IDLE, RunRestored, SessionState, SWAPPING
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
        state.observe(self._offer_previous, "runs", "model", "activity", "engine_ready")
        view.restore_requested.connect(self.restore)
        view.delete_requested.connect(self.delete)
        view.rename_requested.connect(self.rename)
        view.note_requested.connect(self.set_note)
        view.overlay_changed.connect(self._overlay)
        self._show()
        self._enable()
        self._offer_previous()

    # -- a run ends ---------------------------------------------------------------------------
    def _on_model(self, _names=None) -> None:
        """A model this session trained that is not listed yet is a new run: list it and keep its weights."""
        state, model = self.state, self.state.model
        if model is None or model.run is None:
            return
        listed = next((r for r in state.runs if r.id == model.run), None)
        if listed is not None:
            if listed.class_names != model.class_names:  # the user renamed the model's classes
                state.runs = [dataclasses.replace(r, class_names=model.class_names) if r is listed else r
                              for r in state.runs]
            return
        if model.source != "trained" or model.spec is None:
            return
        layers, preset_name, settings = model.spec
        run = new_run(state.runs, model.run, class_names=model.class_names,
                      dataset=dataclasses.replace(state.dataset_config, preprocessing=model.preprocessing),
                      dataset_path=state.dataset_path, preset=preset_name, layers=layers, settings=settings,
                      history=state.history, best_epoch=state.best_epoch, batch_loss=state.batch_loss,
                      parent=self.training.parent_run, kept_message=self.training.kept_message)
        state.runs = [*state.runs, run]
        self.engine.submit(EngineWorker.keep_run, run.id, on_done=lambda kept: self._kept(run.id, kept),
                           on_error=lambda message: self.status.emit(
                               f"The weights of {run.name} could not be kept for later: {message}", 10000))

    def _kept(self, run_id: str, kept: KeptRun) -> None:
        """The engine wrote the run's weights (and its probe recording, if its training made one) to disk."""
        with self.state.not_an_edit():  # where the files wait for the save is no edit of the project
            self.state.runs = [r.at(kept.file) if r.id == run_id and r.file is None else r
                               for r in self.state.runs]
            if kept.probe_dir is not None:
                self.attach_probes(run_id, kept.probes, kept.probe_dir)

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
        """Bring Back Previous Model: restore the run before the current one (``core.runs.run_before``)."""
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
        # the data settings come back too (the dataset is read again with them); the device is this
        # machine's choice, not the run's
        config = run.dataset
        reread = config != state.dataset_config and state.dataset_path is not None
        with state.changes():
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
        state.runs = [r for r in state.runs if r.id != run_id]  # and it cannot be brought back either
        self.status.emit(f"Deleted {run.name}.", 5000)

    def attach_probes(self, run_id: str, probes, probe_dir: str | None = None) -> bool:
        """Give the run ``run_id`` its probe recordings: ``probes`` (JSON-able data, saved as it is) and a
        folder of files (copied into the project with the run when the run is first saved). False: no such run.

        ``_kept`` calls it with what ``EngineWorker.keep_run`` wrote; restoring the run hands ``probe_dir``
        back to the engine, which shows that recording in the probe view.
        """
        if self._find(run_id) is None:
            return False
        self.state.runs = [r.with_probes(probes, probe_dir) if r.id == run_id else r for r in self.state.runs]
        return True

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

"""Starting, stopping and undoing training runs.

``TrainingControl`` turns the Train/Stop requests of the window and the
training panel into engine jobs, streams the training job's reports (its one
channel: ``Engine.submit``'s ``on_report``) into the training panel and the
probe view, and writes what the run produced (model identity, history, kept
epoch, the run listed with its kept weights) into the ``SessionState``.
Bringing a run back is restoring it (``RunsControl``).

One press of Train, read from the button (docs/architecture.md, "Flows")::

    TrainingPanel.train_requested -> MainWindow.train -> TrainingControl.start
        one state write: activity TRAINING (and a fresh history)
        one engine job:  EngineWorker.train(run=…) trains, measures the model's trust on the validation split
                         (temperature, calibration, novelty statistics: progress and Stop as for training),
                         makes the model current, writes its weights to the scratch folder (keep_run) and
                         answers with all of it (``Trained``)
        each epoch:      _on_report writes the history (the chart draws it live)
    TrainingControl._on_trained
        one state write: the model, its kept epoch, the run recorded in the runs list (_record_run), idle
        then, once idle, spares for the next presses (_stock_when_idle)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.model.architecture import has_backbone, layer_table, LayerSpec, run_epochs, total_params
from ..core.errors import ArchitectureError, ProjectError
from ..core.project.store import check_destination, estimate_model_bytes, new_run_id
from ..core.project.session import IDLE, ModelInfo, SessionState, STOPPING, thin, Trained, TRAINING
from ..core.training.probes import ProbeFrame
from ..core.training.runs import KeptRun, Run, batch_point, new_run, run_before
from .engine import Engine
from .engine_worker import EngineWorker
from .training_panel import TrainingPanel
from .weights_download import WeightsGate


def describe_preprocessing(pre) -> str:
    if pre is None:
        return "unknown"
    h, w = pre.image_size
    return f"{h}×{w} {pre.color_mode}"


class TrainingControl(QObject):
    """The training panel's binding: runs training; the state says whether one is running (``state.training``).

    The training panel shows the live run (batches and epochs as they come); when the state's model
    changes for another reason (a project opened, a model file, Bring Back, New), it shows that model's
    run from the state. Its buttons follow the state (``show_buttons``).

    Args:
        can_train: whether a run could be trained now and, if not, why (the window's answer, which also asks
            the model panel whether its stack can be built).

    Signals:
        status(str, int): a message for the status bar and how long to show it (ms).
        error(str, str): a title and message for an error box.
        started(): a run started (also one that started after a question or a download of weights).
        probe_frame(ProbeFrame): a frame of the running training's probe recording.
    """

    status = Signal(str, int)
    error = Signal(str, str)
    started = Signal()
    probe_frame = Signal(object)

    def __init__(self, state: SessionState, engine: Engine, panel: TrainingPanel,
                 can_train: Callable[[], tuple[bool, str]], dialog_parent: QWidget):
        super().__init__(dialog_parent)
        self.state, self.engine, self.panel = state, engine, panel
        self._can_train = can_train
        self._dialog_parent = dialog_parent
        self._job = None  # the running training job
        self._parent_run: str | None = None  # the run the running training continues (None: from scratch)
        self._before: tuple | None = None  # (history, kept epoch, batch losses) of the model a new run replaces
        self._continuing = False  # whether the latest run continued the current model
        self._batch_points: list[tuple[float, float]] = []  # this run's batch losses, written with each epoch
        self._stock_job = None  # a spare model being traced for the next run (docs/training-speed.md)
        self._restock = QTimer(self, singleShot=True, interval=1500)  # after edits of the stack settle
        self._restock.timeout.connect(self._stock_when_idle)
        self.weights = WeightsGate(dialog_parent)  # a pretrained backbone's weights, fetched before its first run
        self.weights.error.connect(self.error)
        self._was_training = False
        state.observe(self._stock_when_idle, "engine_ready", "data")
        state.observe(self._on_activity, "activity")
        state.observe(lambda _: self._restock.start(), "layers", "settings")
        state.observe(self._show_run, "model")
        state.observe(self._on_dataset_folder, "dataset_path")
        state.observe(self.show_buttons)
        panel.stop_requested.connect(self.stop)
        self.show_buttons()

    def show_buttons(self, _names=None) -> None:
        """Show in the training panel what the state allows: Train, Continue, Stop, "Stopping…" (called again for
        changes outside the state: the stack's validity)."""
        ok, reason = self._can_train()
        state = self.state
        self.panel.show_state(ok, reason, has_model=state.has_model, training=state.training,
                              stopping=state.activity == STOPPING)

    # -- requests -------------------------------------------------------------------
    def start(self, continuing: bool = False, asked_about: str | None = None) -> bool:
        """Train the layer stack on the dataset (or continue the current model). False: refused, or a question or a
        download of weights comes first (which calls this again: everything is read from the state then).

        Args:
            asked_about: the project folder the user chose to train for although it cannot take the model.
        """
        state = self.state
        data = state.data
        if state.busy or data is None:
            return False
        model = state.model
        if continuing and (model is None or list(model.class_names) != list(data.class_names)):
            self.error.emit("Cannot continue", "The current model was trained on other classes; train a new model.")
            return False
        if continuing and model.preprocessing != data.preprocessing:
            self.error.emit("Cannot continue", "The current model takes other images "
                            f"({describe_preprocessing(model.preprocessing)}) than the dataset panel now prepares "
                            f"({describe_preprocessing(data.preprocessing)}); set them back or train a new model.")
            return False
        if not continuing and not self._weights_ready(data):
            return False  # Train starts again once the weights are there
        if state.project_path and state.project_path != asked_about and not self._destination_ok(data, continuing):
            return False
        settings = state.settings
        initial = len(state.history) if continuing else 0
        run = new_run_id()  # every training, continued or not, is a run of its own (core.runs)
        self._parent_run = model.run if continuing else None
        # continuing trains the model's own layers: the stack shown may have been edited since
        spec = model.spec if continuing else (list(state.layers), state.preset, settings)
        # until the run ends, the current model stays the engine's: if it fails, its run is shown again
        self._before = (list(state.history), state.best_epoch, list(state.batch_loss))
        self._continuing = continuing
        self.engine.cancel(self._stock_job)  # a spare not yet started would only make this run wait
        self._batch_points = list(state.batch_loss) if continuing else []
        with state.changes():
            state.activity = TRAINING
            if not continuing:
                state.history, state.best_epoch, state.batch_loss = [], None, []
        self.panel.training_started(run_epochs(settings, list(state.layers)), continuing, initial)
        config = state.dataset_config
        self._job = self.engine.submit(EngineWorker.train, data=data, layers=list(state.layers), settings=settings,
                                       augment=config.augment, class_weights=config.class_weights,
                                       continue_training=continuing, initial_epoch=initial,
                                       probes=list(state.probe_images), run=run, spec=spec,
                                       on_done=self._on_trained, on_error=self._on_failed, on_report=self._on_report,
                                       on_status=self.panel.show_phase, on_progress=self.panel.show_phase_progress)
        self.started.emit()
        return True

    def stop(self) -> None:
        """Stop the running training within a batch; the model trained so far is kept."""
        if self.state.activity == TRAINING:
            self.state.activity = STOPPING  # the panel shows "Stopping…" from the state
            self.engine.cancel(self._job)

    # -- the training job's reports and answer ---------------------------------------------
    def _on_report(self, report) -> None:
        """What the running training reports through its job: batches, epochs, probe frames, log sentences.

        (A ``core.training.progress.BatchReport`` is told from an ``EpochReport`` by its batch number: the window never
        imports ``core.training``, which imports Keras, outside the engine thread.)"""
        if isinstance(report, str):
            self.panel.add_note(report)
        elif isinstance(report, ProbeFrame):
            self.probe_frame.emit(report)
        elif hasattr(report, "batch"):
            # reports still queued when Stop was pressed must not bring back the ETA
            self.panel.on_batch(report, stopping=self.state.activity == STOPPING)
            self._batch_points.append(batch_point(report))
        else:
            self.panel.on_epoch(report)
            self.state.update(history=[*self.state.history, report.to_json()], batch_loss=thin(self._batch_points))

    def _on_trained(self, answer: Trained) -> None:
        """The end of Train: the model, its run in the runs list (with the weights the job kept) and idle, in one
        write of the state; then the spare for the next press."""
        # the epochs themselves arrived one by one through _on_report
        state, result = self.state, answer.result
        self._job = None
        kept_message = self.panel.kept_sentence(result)  # before the model changes: its run keeps it
        with state.changes():
            state.model = state.charted = answer.model  # the chart drew its run live
            state.best_epoch = result.best_epoch
            state.batch_loss = thin(self._batch_points)  # with the batches of a stopped epoch
            state.runs = [*state.runs, self._record_run(answer.model, kept_message, answer.kept,
                                                           answer.trust)]
            state.activity = IDLE
        self._before = None
        self.panel.training_finished(result)  # the spares are made again once idle (_on_activity)
        before = run_before(state.runs, state.model.run, state.model.before)
        if answer.kept is None:
            self.status.emit(f"The weights of {state.runs[-1].name} could not be kept for later: "
                             f"{answer.kept_error}", 10000)
        elif before is not None:
            kept = before.described()
            self.status.emit(f"{kept[0].upper()}{kept[1:]} is kept: Training > Bring Back Previous Model makes it "
                             "current again.", 15000)

    def _record_run(self, model: ModelInfo, kept_message: str, kept: KeptRun | None, trust: dict | None) -> Run:
        """The run that just ended, as the runs list keeps it: what it trained, its figures, its trust
        (``Trained.trust``) and where its weights (and probe recording) wait for the save; ``kept`` is
        ``EngineWorker.keep_run``'s answer, None when the weights could not be written."""
        state = self.state
        layers, preset_name, settings = model.spec
        run = new_run(state.runs, model.run, class_names=model.class_names,
                      dataset=dataclasses.replace(state.dataset_config, preprocessing=model.preprocessing),
                      dataset_path=state.dataset_path, preset=preset_name, layers=layers, settings=settings,
                      history=state.history, best_epoch=state.best_epoch, batch_loss=state.batch_loss,
                      parent=self._parent_run, kept_message=kept_message, trust=trust)
        return run.kept_at(kept)

    def _on_failed(self, message: str) -> None:
        state = self.state
        self._job = None
        self.panel.training_finished(error=message)  # the chart and the log go on showing the run that failed
        with state.changes():
            if not self._continuing:  # the engine still holds the model it had (or none): its run goes with it,
                # and the edits the user tried to train stay
                state.history, state.best_epoch, state.batch_loss = self._before
            state.activity = IDLE
        self._before = None
        self.error.emit("Training failed", message)

    # -- helpers -------------------------------------------------------------------------
    def _on_dataset_folder(self, names) -> None:
        """Another dataset folder chosen: the chart and log of a run on the one before go (a project opened with
        its dataset shows its own run instead)."""
        if not {"model", "history"} & names and not self.state.training:
            self.panel.clear_run()

    def _show_run(self, _names=None) -> None:
        """Show the current model's run, unless the chart already does (``state.charted``: it drew it live, or only
        the names changed)."""
        state = self.state
        model, charted = state.model, state.charted
        if model is not None and charted is not None and (
                model is charted or charted.renamed(list(model.class_names)) == model):
            state.charted = model
            return
        listed = next((r for r in state.runs if model is not None and r.id == model.run), None)
        self.panel.show_history(state.history, state.best_epoch, state.batch_loss,
                                listed.kept_message if listed is not None else "")
        state.charted = model

    def _stock_when_idle(self, _names=None) -> None:
        """Have the engine trace spare models for the next presses of Train while nothing else runs.

        Tracing a new model is most of the time from Train to the first batch; spares traced now
        make the next presses on these layers start at once, one right after another included
        (``SPARES_AHEAD``; figures: docs/training-speed.md).
        """
        state = self.state
        if not state.engine_ready or state.data is None or state.busy:
            return
        if has_backbone(state.layers):  # a pretrained model is never pooled: its weights are not a fresh start
            return
        self.engine.cancel(self._stock_job)
        self._stock_job = self.engine.submit(EngineWorker.stock_pool, state.data, list(state.layers), state.settings,
                                             on_error=lambda _message: None)  # a stack that cannot be built: Train says why

    def _on_activity(self, _names=None) -> None:
        """Any training (a Train ×N too, ``RepeatsControl``) stops the tracing of spares, which would only make it
        wait; once it ends, the spares are made again."""
        training = self.state.training
        if training:
            self.engine.cancel(self._stock_job)
        elif self._was_training:
            self._restock.start()  # not at once: a press right after the run must not wait for a spare being traced
        self._was_training = training

    def _weights_ready(self, data) -> bool:
        """Whether a pretrained backbone's weights are here; if not, get them (or a chosen file) and train then."""
        def use_file(path: str) -> None:
            layers = [LayerSpec(l.kind, dict(l.params)) for l in self.state.layers]
            layers[0].params["weights"] = path
            self.state.layers = layers

        return self.weights.ensure(list(self.state.layers), data.preprocessing.input_shape, self.start, use_file)

    def _destination_ok(self, data, continuing: bool) -> bool:
        """Before training: can the project folder take the trained model? When it cannot, ask (False).

        The question is window-modal and nothing waits for it: "Train Anyway" calls ``start`` again, which reads
        the state as it is then (an engine answer may have changed it while the question was shown).
        """
        folder = self.state.project_path
        try:
            rows = layer_table(list(self.state.layers), data.preprocessing.input_shape, data.num_classes)
            check_destination(folder, estimate_model_bytes(total_params(rows)))
        except ArchitectureError:
            return True  # training reports it
        except ProjectError as e:
            box = QMessageBox(QMessageBox.Warning, "The project cannot be saved there",
                              f"{e}\n\nTrain anyway? You can save the result elsewhere with Save Project As.",
                              QMessageBox.Yes | QMessageBox.Cancel, self._dialog_parent)
            box.setObjectName("destinationBox")
            box.setAttribute(Qt.WA_DeleteOnClose)
            box.button(QMessageBox.Yes).setText("Train Anyway")
            box.setDefaultButton(QMessageBox.Cancel)
            box.setEscapeButton(QMessageBox.Cancel)

            def answered(_result: int) -> None:
                if box.standardButton(box.clickedButton()) == QMessageBox.Yes:
                    self.start(continuing, asked_about=folder)

            box.finished.connect(answered)
            box.open()
            return False
        return True

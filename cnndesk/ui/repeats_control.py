"""Train ×N in the window: the choice beside Stop (how many models, keep the best or an ensemble, a new split
each) and the engine job that trains them (``EngineWorker.train_repeats``, ``core.training.repeats``).

One press of Train with ×N above 1, read from the button (docs/architecture.md, "Flows")::

    TrainingPanel.train_requested -> MainWindow.train -> RepeatsControl.start
        one state write: activity TRAINING (and a fresh history)
        one engine job:  EngineWorker.train_repeats trains the N models, writes each one's weights, makes the kept
                         one current and answers with all of it (``TrainedGroup``)
        its reports:     "Model 2 of 5" (``MemberStarted``) clears the chart for that model; batches, epochs and
                         probe frames are shown as for one training; Stop (activity STOPPING) cancels the job: no further model
    RepeatsControl._on_trained
        one state write: the kept model, its history, the N runs (and the ensemble's) of one group with their
        spread, idle
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QSpinBox, QWidget

from ..core.model.architecture import run_epochs
from ..core.project.session import IDLE, SessionState, STOPPING, thin, TrainedGroup, TRAINING
from ..core.project.store import new_run_id
from ..core.training.probes import ProbeFrame
from ..core.training.repeat_runs import group_runs, MemberStarted, MOST
from ..core.training.runs import batch_point
from .engine import Engine
from .engine_worker import EngineWorker
from .training_panel import TrainingPanel

#: the QSettings keys of the choice
REPEATS_KEY, KEEP_KEY = "training/repeats", "training/keep"


class RepeatsChoice(QWidget):
    """"×[3]  [keep best ▾]  [ ] new split each": how many models Train trains, and which it keeps."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.count = QSpinBox(objectName="repeatsBox", minimum=1, maximum=MOST, prefix="× ")
        self.count.setToolTip("Train this many models with the seeds seed, seed+1, …, and show the spread of their "
                              "validation accuracy: on a small folder one training is a draw of luck")
        self.keep = QComboBox(objectName="keepChoice")
        self.keep.addItem("keep the best", "best")
        self.keep.addItem("keep an ensemble", "ensemble")
        self.keep.setItemData(0, "The model with the best validation accuracy; that figure flatters it, since it "
                                 "chose it", 3)  # Qt.ToolTipRole
        self.keep.setItemData(1, "One model that averages the probabilities of all of them", 3)
        self.resplit = QCheckBox("new split each", objectName="resplitCheck")
        self.resplit.setToolTip("Each model on its own train/validation split (drawn with its seed)")
        for w in (self.count, self.keep, self.resplit):
            row.addWidget(w)
        self._settings = settings
        self.count.setValue(_int(settings.value(REPEATS_KEY, 1), 1))
        self.keep.setCurrentIndex(max(0, self.keep.findData(settings.value(KEEP_KEY, "best"))))
        self.count.valueChanged.connect(self._remember)
        self.keep.currentIndexChanged.connect(self._remember)
        self._remember()

    def _remember(self, _value=None) -> None:
        self._settings.setValue(REPEATS_KEY, self.count.value())
        self._settings.setValue(KEEP_KEY, self.keep.currentData())
        several = self.count.value() > 1
        self.keep.setEnabled(several)
        self.resplit.setEnabled(several)


def _int(value, default: int) -> int:
    try:
        return min(max(int(value), 1), MOST)
    except (TypeError, ValueError):
        return default


class RepeatsControl(QObject):
    """Train ×N's binding: the choice beside Stop and its runs; Stop (the state's activity STOPPING) stops them.

    Signals:
        error(str, str): a title and message for an error box.
        status(str, int): a message for the status bar and how long to show it (ms).
        probe_frame(ProbeFrame): a frame of the probe recording of the model training now.
    """

    error = Signal(str, str)
    status = Signal(str, int)
    probe_frame = Signal(object)

    def __init__(self, state: SessionState, engine: Engine, panel: TrainingPanel, settings: QSettings,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.engine, self.panel = state, engine, panel
        self.choice = RepeatsChoice(settings)
        panel.add_train_option(self.choice)
        self.choice.count.valueChanged.connect(self._name_button)
        self._name_button()
        self._job = None
        self._batches: list[list] = []  # each model's batch-loss line
        self._count = 0
        state.observe(self._on_activity, "activity")

    def _name_button(self, _value=None) -> None:
        """"▶  Train ×3" when Train trains several models."""
        count = self.choice.count.value()
        self.panel.train_button.setText(f"▶  Train ×{count}" if count > 1 else "▶  Train")

    @property
    def wanted(self) -> bool:
        """Whether Train should train several models."""
        return self.choice.count.value() > 1

    def start(self) -> bool:
        """Train the layer stack ×N on the dataset. False: refused (busy, or no dataset)."""
        state = self.state
        data = state.data
        if state.busy or data is None:
            return False
        count, keep = self.choice.count.value(), self.choice.keep.currentData()
        settings, layers = state.settings, list(state.layers)
        self._count, self._batches = count, []
        run_ids = [new_run_id() for _ in range(count)]
        ensemble_id = new_run_id() if keep == "ensemble" else None
        with state.changes():
            state.activity = TRAINING
            state.history, state.best_epoch, state.batch_loss = [], None, []
        self.panel.training_started(run_epochs(settings, layers), False, 0)
        self._job = self.engine.submit(
            EngineWorker.train_repeats, data, layers, settings, state.dataset_config, count, keep,
            self.choice.resplit.isChecked(), list(state.probe_images), run_ids=run_ids, ensemble_id=ensemble_id,
            spec=(layers, state.preset, settings), on_done=lambda answer: self._on_trained(answer, run_ids, ensemble_id),
            on_error=self._on_failed, on_report=self._on_report)
        return True

    def _on_activity(self, _names) -> None:
        if self._job is not None and self.state.activity == STOPPING:
            self.engine.cancel(self._job)

    def _on_report(self, report) -> None:
        """The job's reports: which model starts, its batches and epochs, log sentences."""
        if isinstance(report, MemberStarted):
            self._batches.append([])
            if report.index > 1:
                self.panel.chart.clear()
                self.panel.chart.set_epochs(run_epochs(self.state.settings, list(self.state.layers)))
            self.panel.add_note(f"{report}…")
            self.panel.set_stage(f"Model {report.index} of {report.count}")
        elif isinstance(report, str):
            self.panel.add_note(report)
        elif isinstance(report, ProbeFrame):  # each model's frames follow the last one's (a restart at epoch 1)
            self.probe_frame.emit(report)
        elif hasattr(report, "batch"):
            self.panel.on_batch(report, stopping=self.state.activity == STOPPING)
            if self._batches:
                self._batches[-1].append(batch_point(report))
        elif hasattr(report, "epoch"):
            self.panel.on_epoch(report)

    def _on_trained(self, answer: TrainedGroup, run_ids, ensemble_id) -> None:
        state, repeats = self.state, answer.repeats
        self._job = None
        self.panel.set_stage("")
        ids = run_ids[:len(repeats.members)]
        runs = group_runs(state.runs, repeats, ids, ensemble_id=ensemble_id, class_names=answer.model.class_names,
                          dataset_path=state.dataset_path, preset=state.preset, layers=list(state.layers),
                          batch_losses=[thin(b) for b in self._batches])
        runs = [r.kept_at(answer.kept_runs.get(r.id)) for r in runs]
        if answer.trust is not None:  # the kept member's trust goes with its run, as for one training
            runs = [dataclasses.replace(r, trust=answer.trust) if r.id == answer.kept_run else r for r in runs]
        kept = next(r for r in runs if r.id == answer.kept_run)
        with state.changes():
            state.model = answer.model
            state.history, state.best_epoch = list(kept.history), kept.best_epoch
            state.batch_loss = list(kept.batch_loss)
            state.runs = [*state.runs, *runs]
            state.activity = IDLE
        self.panel.progress.setValue(1000)
        self.panel.progress.setFormat("Stopped" if repeats.cancelled else f"Done: {len(repeats.members)} models")
        for line in repeats.lines():
            self.panel.add_note(line)
        if answer.kept_error:
            self.status.emit(f"Some weights could not be kept for later: {answer.kept_error}", 10000)

    def _on_failed(self, message: str) -> None:
        self._job = None
        self.panel.set_stage("")
        self.panel.training_finished(error=message)
        self.state.activity = IDLE
        self.error.emit("Training failed", message)


"""What a training run reports while it runs, and how it is stopped within a batch.

:class:`TrainingListener` receives one :class:`BatchReport` per batch and one
:class:`EpochReport` per epoch (the CLI prints them); :class:`TaskReports`, the
default, sends them through the run's ``TaskState`` (``report``: the GUI job's one
channel); :class:`Reporter` is the Keras callback that makes them and raises
:class:`Stopped` (a ``Cancelled``) right after the batch in which Stop was pressed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import keras

from ..errors import Cancelled
from ..tasks import TaskState

#: the stop reason of a run that ran every epoch asked for
ALL_EPOCHS = "all_epochs"

@dataclass
class StartTimes:
    """When ``train`` reached each stage on its way to the first batch report.

    Each mark is a stage name and the ``time.perf_counter()`` reading when
    the stage ended, so a caller that noted the same clock before calling
    (e.g. when Train was pressed) can tell queue wait from the work itself.
    Stages, in order: ``called``, ``input pipeline``, ``model`` (built, or
    taken from the pool with fresh weights), ``compile`` (or the pooled
    optimizer reset), ``fit setup`` (Keras up to its first callback),
    ``iterator`` (the input pipeline's iterator made, up to the first batch's
    start), ``first step`` (the first batch fetched and trained; on a model
    that has not trained before this includes tracing the train step), ``reported``
    (the listener took the first batch report) and ``second step``.
    Recording costs a few clock readings per run, nothing per later batch.
    """

    marks: list[tuple[str, float]] = field(default_factory=list)
    traced: bool = True  # whether the run traced a new train step (False: a pooled model's was reused)

    def mark(self, stage: str) -> None:
        if stage not in dict(self.marks):
            self.marks.append((stage, time.perf_counter()))

    def at(self, stage: str) -> float | None:
        return dict(self.marks).get(stage)

    def durations(self) -> list[tuple[str, float]]:
        """(stage, seconds it took): each mark minus the one before it, from ``called`` on."""
        return [(name, t - prev) for (_, prev), (name, t) in zip(self.marks, self.marks[1:])]


@dataclass
class BatchReport:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based, within the epoch
    steps: int
    loss: float
    accuracy: float
    images_per_s: float
    eta_s: float


@dataclass
class EpochReport:
    """One epoch's figures; ``val_images``: how many validation images ``val_accuracy`` was measured on (what its
    interval needs, ``core.intervals``; 0 without validation)."""

    epoch: int  # 1-based
    epochs: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    images_per_s: float
    seconds: float
    val_images: int = 0

    def to_json(self) -> dict:
        """The epoch's row of a history (as the session, a run and ``project.json`` keep it)."""
        return {"epoch": self.epoch, "loss": self.loss, "accuracy": self.accuracy, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "val_images": self.val_images,
                "images_per_s": self.images_per_s, "seconds": self.seconds}


@dataclass
class TrainResult:
    """What ``train`` gives back: the model, the history, why it stopped and which weights it kept.

    ``stop_message`` and ``kept_message`` are the sentences the CLI and the
    training panel show; ``notes`` says which stopping rules were off and why;
    ``chance_message`` is set when the kept epoch is no better than guessing.
    """

    model: object
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based epoch whose weights the model holds, if restored
    stopped_early: bool = False
    cancelled: bool = False
    stop_reason: str = ALL_EPOCHS
    stop_message: str = ""
    kept_message: str = ""
    notes: list[str] = field(default_factory=list)
    chance_message: str | None = None
    start_times: StartTimes = field(default_factory=StartTimes)

    @property
    def kept_row(self) -> dict:
        """The history row of the epoch whose weights the model holds (the last one unless a best was kept)."""
        if not self.history:
            return {}
        # ``best_epoch`` counts epochs trained before this run too; history rows carry their number
        rows = [r for r in self.history if r.get("epoch") == self.best_epoch] if self.best_epoch else []
        return (rows or self.history[-1:])[0]

    @property
    def final_val_accuracy(self) -> float | None:
        return self.kept_row.get("val_accuracy")

    @property
    def val_images(self) -> int | None:
        """How many validation images ``final_val_accuracy`` was measured on."""
        return self.kept_row.get("val_images")

    def summary_json(self) -> dict:
        """The stopping and keeping facts, as the CLI's ``done`` event carries them."""
        return {"stop_reason": self.stop_reason, "stop_message": self.stop_message, "kept_epoch": self.best_epoch,
                "kept_message": self.kept_message, "notes": list(self.notes),
                "near_chance": self.chance_message is not None, "chance_message": self.chance_message}


class TrainingListener:
    """Receives training reports; override what you need. Called on the training thread."""

    def on_batch(self, report: BatchReport) -> None:
        pass

    def on_epoch(self, report: EpochReport) -> None:
        pass

    def on_message(self, text: str) -> None:
        """A sentence for the log, e.g. "validation set of 24 images: early stopping is off"."""


class TaskReports(TrainingListener):
    """A run's reports sent through its ``TaskState``'s ``report``: each ``BatchReport`` and ``EpochReport``, and
    the log's sentences as ``str``. ``train``'s listener unless another is given."""

    def __init__(self, state: TaskState | None):
        self.state = state or TaskState()

    def on_batch(self, report: BatchReport) -> None:
        self.state.report(report)

    def on_epoch(self, report: EpochReport) -> None:
        self.state.report(report)

    def on_message(self, text: str) -> None:
        self.state.report(text)


class Reporter(keras.callbacks.Callback):
    """Per-batch progress, ETA, images/s and cancel within one batch."""

    def __init__(self, listener: TrainingListener, state: TaskState | None, epochs: int, steps: int,
                 n_train: int, batch_size: int, first_epoch: int, times: StartTimes | None = None, n_val: int = 0):
        super().__init__()
        self.n_val = n_val  # the validation images each epoch's report says its validation figures were measured on
        self.listener, self.state = listener, state
        self.times = times or StartTimes()
        self.epochs, self.steps, self.n_train, self.batch_size = epochs, steps, n_train, batch_size
        self.first_epoch = first_epoch
        self.cancelled = False
        self.reports: list[EpochReport] = []

    def on_train_begin(self, logs=None):
        self.times.mark("fit setup")
        self.cancelled = False
        self._train_start = time.perf_counter()
        self._steps_done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._batch_time = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.times.mark("iterator")

    def _images_seen(self, batch: int) -> int:
        return min((batch + 1) * self.batch_size, self.n_train)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        now = time.perf_counter()
        self._steps_done += 1
        if self._steps_done <= 2:
            self.times.mark("first step" if self._steps_done == 1 else "second step")
        elapsed = now - self._epoch_start
        ips = self._images_seen(batch) / elapsed if elapsed > 0 else 0.0
        per_step = (now - self._train_start) / self._steps_done
        epoch_idx = self._current_epoch
        remaining = (self.steps - (batch + 1)) + (self.epochs - epoch_idx) * self.steps
        self.listener.on_batch(BatchReport(
            epoch=epoch_idx, epochs=self.epochs, batch=batch + 1, steps=self.steps,
            loss=float(logs.get("loss", math.nan)), accuracy=float(logs.get("accuracy", math.nan)),
            images_per_s=ips, eta_s=remaining * per_step))
        if self._steps_done == 1:
            self.times.mark("reported")
        if self.state is not None and self.state.is_interruption_requested():
            # Setting model.stop_training would still run the validation pass and close the
            # partial epoch as if it were complete; leaving fit at once keeps neither.
            self.cancelled = True
            raise Stopped()

    @property
    def _current_epoch(self) -> int:
        return self.first_epoch + len(self.reports) + 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._epoch_start
        val_loss = logs.get("val_loss")
        val_acc = logs.get("val_accuracy")
        report = EpochReport(
            epoch=self._current_epoch, epochs=self.epochs,
            loss=float(logs.get("loss", math.nan)), accuracy=float(logs.get("accuracy", math.nan)),
            val_loss=None if val_loss is None else float(val_loss),
            val_accuracy=None if val_acc is None else float(val_acc),
            images_per_s=self.n_train / seconds if seconds > 0 else 0.0, seconds=seconds,
            val_images=self.n_val if val_acc is not None else 0)
        self.reports.append(report)
        self.listener.on_epoch(report)


class Stopped(Cancelled):
    """Raised by the reporter to leave ``fit`` right after the batch in which Stop was pressed; ``train``
    catches it and keeps the weights trained so far (``TrainResult.cancelled``)."""

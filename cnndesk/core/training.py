"""Train a model on a loaded dataset, reporting every batch and epoch.

(When a run stops early and which epoch it keeps are decided in ``stopping``.)

``train`` runs Keras ``fit`` on the calling thread. It reports through its
``TaskState`` (``TaskReports``: each batch, epoch and log sentence to the
state's ``report``; the GUI's job channel) or through a plain
``TrainingListener`` given instead (the CLI prints the calls), and stops within
one batch when the ``TaskState`` is interrupted, keeping the weights trained so far.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import keras

from .architecture import LayerSpec, TrainingSettings, build_model, compile_model, has_backbone
from .dataset import LoadedDataset, make_tf_dataset, release_tf_dataset, steps_for
from .errors import Cancelled, UserError
from .stopping import ALL_EPOCHS, BestWeights, EarlyStop, explain, stopping_plan
from .tasks import TaskState


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
    epoch: int  # 1-based
    epochs: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    images_per_s: float
    seconds: float

    def to_json(self) -> dict:
        return {"epoch": self.epoch, "loss": self.loss, "accuracy": self.accuracy, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "images_per_s": self.images_per_s, "seconds": self.seconds}




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
    def final_val_accuracy(self) -> float | None:
        if not self.history:
            return None
        # ``best_epoch`` counts epochs trained before this run too; history rows carry their number
        rows = [r for r in self.history if r.get("epoch") == self.best_epoch] if self.best_epoch else []
        return (rows or self.history[-1:])[0].get("val_accuracy")

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


class _Reporter(keras.callbacks.Callback):
    """Per-batch progress, ETA, images/s and cancel within one batch."""

    def __init__(self, listener: TrainingListener, state: TaskState | None, epochs: int, steps: int,
                 n_train: int, batch_size: int, first_epoch: int, times: StartTimes | None = None):
        super().__init__()
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
            images_per_s=self.n_train / seconds if seconds > 0 else 0.0, seconds=seconds)
        self.reports.append(report)
        self.listener.on_epoch(report)


class Stopped(Cancelled):
    """Raised by the reporter to leave ``fit`` right after the batch in which Stop was pressed; ``train``
    catches it and keeps the weights trained so far (``TrainResult.cancelled``)."""


def available_devices() -> list[tuple[str, str]]:
    """(id, description) of each device training can run on: "cpu", "gpu:0", …"""
    import tensorflow as tf

    devices = [("cpu", "CPU")]
    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        except Exception:
            name = gpu.name
        devices.append((f"gpu:{i}", f"GPU {i}: {name}"))
    return devices


def distribution_scope(device: str = "cpu", strategy=None):
    """The context to build and train in: a device, or a ``tf.distribute`` strategy.

    Args:
        device: "cpu", "gpu:N", "gpu:N,M,…" or "gpu:all" (several GPUs: ``MirroredStrategy``).
        strategy: any ``tf.distribute.Strategy``; overrides ``device``.
    """
    import tensorflow as tf

    if strategy is not None:
        return strategy.scope()
    ids = gpu_ids(device)
    if ids is None:
        return tf.device("/CPU:0")
    if len(ids) == 1:
        return tf.device(f"/GPU:{ids[0]}")
    return tf.distribute.MirroredStrategy([f"/GPU:{i}" for i in ids]).scope()


def several_devices(device: str | None) -> bool:
    """Whether ``device`` names a mirrored run ("gpu:0,1", or "gpu:all", which may be mirrored)."""
    device = (device or "").strip().lower()
    return "," in device or device == "gpu:all"


def gpu_ids(device: str | None) -> list[int] | None:
    """The GPUs ``device`` names, checked against those TensorFlow found; None for the CPU.

    "gpu:all" is every GPU TensorFlow found.

    Raises:
        UserError: an unknown device, or a GPU that is not there.
    """
    import tensorflow as tf

    device = (device or "cpu").strip().lower()
    if device == "cpu":
        return None
    if not device.startswith("gpu:"):
        raise UserError(f"Unknown device {device!r}: use 'cpu', 'gpu:N', 'gpu:N,M' or 'gpu:all'.")
    gpus = tf.config.list_logical_devices("GPU")
    found = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    if device == "gpu:all":
        if not gpus:
            raise UserError(f"'gpu:all' needs a GPU: TensorFlow found {found}. Train on the CPU or install the "
                            "'gpu' extra with a supported NVIDIA driver.")
        return list(range(len(gpus)))
    try:
        ids = [int(part) for part in device[4:].split(",")]
    except ValueError:
        raise UserError(f"Unknown device {device!r}: use 'cpu', 'gpu:N', 'gpu:N,M' or 'gpu:all'.") from None
    missing = [i for i in ids if not 0 <= i < len(gpus)]
    if missing:
        raise UserError(f"GPU {missing[0]} is not available: TensorFlow found {found}. Train on the CPU or install "
                        "the 'gpu' extra with a supported NVIDIA driver.")
    return ids


def replica_count(device: str = "cpu", strategy=None) -> int:
    """How many devices one training step runs on; the batch size is per device, so the step's
    (global) batch is the batch size times this."""
    if strategy is not None:
        return int(strategy.num_replicas_in_sync)
    ids = gpu_ids(device)
    return len(ids) if ids else 1


def train(
    data: LoadedDataset,
    layers: list[LayerSpec],
    settings: TrainingSettings,
    listener: TrainingListener | None = None,
    state: TaskState | None = None,
    model=None,
    augment: tuple[str, ...] = (),
    class_weights: bool = False,
    strategy=None,
    initial_epoch: int = 0,
    pool=None,
    callbacks: tuple = (),
) -> TrainResult:
    """Build (or continue) the model and fit it on ``data``'s training split.

    Args:
        data: the loaded dataset with its split.
        layers: the layer stack (ignored when ``model`` is given).
        settings: optimizer, learning rate, batch size, epochs, patience, device, seed.
        listener: receives a report per batch and per epoch; by default they go to ``state.report``
            (``TaskReports``).
        state: its interruption request stops training within one batch.
        model: a model to continue training; a fresh one is built when None.
        augment: augmentation names applied in the input pipeline only.
        class_weights: weight the loss by inverse class frequency.
        strategy: a ``tf.distribute.Strategy`` to run under instead of ``settings.device``.
        initial_epoch: epochs already trained (numbers the reports when continuing).
        pool: a ``ModelPool`` to take an already compiled model from instead of building
            (and tracing) a new one; the run trains exactly as on a new model. Defaults to None.
        callbacks: more Keras callbacks for ``fit`` (a ``ProbeRecorder``'s, say), called after the
            reporting ones.

    Returns:
        the model (the weights of the epoch with the best validation accuracy
        when ``settings.restore_best`` and not cancelled), the history, and
        sentences saying why training stopped and which weights were kept.
    """
    pretrained = _has_backbone_model(model) if model is not None else has_backbone(layers)
    if pretrained:
        from .transfer import train_transfer  # two stages, cached features (imports this module)

        return train_transfer(data, layers, settings, listener, state, model, augment, class_weights, strategy,
                              initial_epoch)
    times = StartTimes()
    times.mark("called")
    settings.validate()
    listener = listener or TaskReports(state)
    keras.utils.set_random_seed(settings.seed)
    n_train = len(data.train_index)
    if n_train == 0:
        raise UserError("The training split is empty: lower the validation split or add images.")
    has_val = len(data.val_index) > 0
    replicas = replica_count(settings.device, strategy)
    bs = settings.batch_size * replicas  # the global batch: a strategy splits it among the devices
    steps = steps_for(n_train, bs)
    # Both pipelines read the one uint8 cache through the split's row numbers (no copies). They are
    # built outside the device/strategy scope: the input pipeline (and the augmentation layers'
    # random state) lives on the host; a strategy distributes the dataset itself inside ``fit``.
    train_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=True, seed=settings.seed,
                               augment=augment, repeat=True, index=data.train_index)
    val_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=False,
                             index=data.val_index) if has_val else None
    times.mark("input pipeline")

    with distribution_scope(settings.device, strategy):
        # several GPUs: each run makes its own MirroredStrategy, whose variables cannot take a pooled model's
        if pool is not None and strategy is None and not several_devices(settings.device):
            model = pool.prepare(model, layers, data.preprocessing.input_shape, data.num_classes, settings, times)
        else:
            if model is None:
                model = build_model(layers, data.preprocessing.input_shape, data.num_classes)
            times.mark("model")
            compile_model(model, settings)
        times.mark("compile")
        times.traced = getattr(model, "train_function", None) is None
        reporter = _Reporter(listener, state, initial_epoch + settings.epochs, steps, n_train, bs, initial_epoch,
                             times)
        best = BestWeights(data.validation_size())
        callbacks = [reporter, best, *callbacks]
        plan = stopping_plan(settings, data.validation_size())
        if replicas > 1:
            listener.on_message(mirrored_note(settings.batch_size, replicas))
        listener.on_message(plan.note)
        if data.on_disk:  # say where the images come from: reading them may be what limits the speed
            listener.on_message(data.storage.describe())
        stopper = None
        if plan.enabled:
            stopper = EarlyStop(plan.patience, plan.min_epochs)
            callbacks.append(stopper)
        with _quiet_tf():
            try:
                model.fit(train_ds, validation_data=val_ds, epochs=settings.epochs, steps_per_epoch=steps,
                          callbacks=callbacks, verbose=0, shuffle=False,
                          class_weight=data.class_weight() if class_weights else None)
            except Stopped:
                pass  # the weights trained so far stay in the model
            finally:
                release_tf_dataset(train_ds, val_ds)  # TF would keep the image cache alive for good

    history = [r.to_json() for r in reporter.reports]
    result = TrainResult(model=model, history=history, cancelled=reporter.cancelled, notes=[plan.note],
                         start_times=times)
    if settings.restore_best and not reporter.cancelled and best.best_weights is not None:
        if best.best_epoch != len(history) - 1:
            model.set_weights(best.best_weights)
        result.best_epoch = initial_epoch + best.best_epoch + 1
    explain(result, settings, plan, stopper, best, initial_epoch, data.num_classes,
             data.validation_size() if has_val else n_train)
    return result


def mirrored_note(batch_size: int, replicas: int) -> str:
    """The log's sentence for a run mirrored over ``replicas`` devices."""
    return (f"Training on {replicas} devices (mirrored): each step takes a global batch of {batch_size * replicas} "
            f"images, {batch_size} per device.")


def _has_backbone_model(model) -> bool:
    from .backbones import find_backbone

    return find_backbone(model) is not None


def trace_steps(model, data: LoadedDataset, batch_size: int) -> None:
    """Trace a compiled ``model``'s train and validation steps with one batch of ``data``.

    A later ``fit`` on the same kind of input runs them without tracing. The
    step really runs: the caller resets the weights and the optimizer before
    the model is trained for real (``ModelPool.prepare`` does).
    """
    rows = data.train_index[:batch_size]
    train_ds = make_tf_dataset(data.images, data.labels, data.num_classes, batch_size, training=True,
                               repeat=True, index=rows)
    val_ds = make_tf_dataset(data.images, data.labels, data.num_classes, batch_size, training=False,
                             index=rows) if len(data.val_index) else None
    with _quiet_tf():
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        finally:
            release_tf_dataset(train_ds, val_ds)


@contextlib.contextmanager
def _quiet_tf():
    """Keep TF/absl warnings about the input pipeline out of the user's terminal."""
    import logging

    logger = logging.getLogger("tensorflow")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


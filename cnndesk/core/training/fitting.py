"""Train a model on a loaded dataset, reporting every batch and epoch.

(When a run stops early and which epoch it keeps are decided in ``stopping``.)

``train`` runs Keras ``fit`` on the calling thread. It reports through its
``TaskState`` (``TaskReports``: each batch, epoch and log sentence to the
state's ``report``; the GUI's job channel) or through a plain
``TrainingListener`` given instead (the CLI prints the calls), and stops within
one batch when the ``TaskState`` is interrupted, keeping the weights trained so far.
"""

from __future__ import annotations

import dataclasses

from ..data.dataset import LoadedDataset
from ..data.pipeline import make_tf_dataset, release_tf_dataset, steps_for
from ..errors import UserError
from ..library_warnings import quiet_tensorflow_logger
from ..model.architecture import (
    LayerSpec, TrainingSettings, build_model, compile_model, has_backbone, planned_epochs,
)
from ..model.backbones import find_backbone
from ..tasks import TaskState
from .devices import distribution_scope, mirrored_note, replica_count, several_devices
from .precision import choose_precision, copy_optimizer_state, policy_during, with_policy
from .seeding import seed_run
from .progress import Reporter, StartTimes, Stopped, TaskReports, TrainingListener, TrainResult
from .stopping import BestWeights, EarlyStop, explain, stopping_plan
from .transfer import train_transfer

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
        The model is float32 whatever precision the run trained in
        (``settings.precision``, ``core.training.precision``); a model trained in
        bfloat16 goes back to ``pool``, which hands it to the next such run.
    """
    pretrained = _has_backbone_model(model) if model is not None else has_backbone(layers)
    if pretrained:
        return train_transfer(data, layers, settings, listener, state, model, augment, class_weights, strategy,
                              initial_epoch)
    times = StartTimes()
    times.mark("called")
    settings.validate()
    listener = listener or TaskReports(state)
    seed_run(settings.seed)
    n_train = len(data.train_index)
    if n_train == 0:
        raise UserError("The training split is empty: lower the validation split or add images.")
    has_val = len(data.val_index) > 0
    replicas = replica_count(settings.device, strategy)
    bs = settings.batch_size * replicas  # the global batch: a strategy splits it among the devices
    steps = steps_for(n_train, bs)
    epochs = planned_epochs(settings, steps) if model is None else settings.epochs  # continuing: as asked
    more_steps = more_steps_note(settings, epochs, n_train, steps) if epochs != settings.epochs else None
    settings = dataclasses.replace(settings, epochs=epochs)  # a new model on a small folder: more epochs
    # Both pipelines read the one uint8 cache through the split's row numbers (no copies). They are
    # built outside the device/strategy scope: the input pipeline (and the augmentation layers'
    # random state) lives on the host; a strategy distributes the dataset itself inside ``fit``.
    train_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=True, seed=settings.seed,
                               augment=augment, repeat=True, index=data.train_index)
    val_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=False,
                             index=data.val_index) if has_val else None
    times.mark("input pipeline")
    precision = choose_precision(settings.precision, settings.device)

    with distribution_scope(settings.device, strategy), policy_during(precision):
        # several GPUs: each run makes its own MirroredStrategy, whose variables cannot take a pooled model's
        if model is not None:
            model = with_policy(model, precision)  # continuing: the same weights, in this run's precision
        if pool is not None and strategy is None and not several_devices(settings.device):
            model = pool.prepare(model, layers, data.preprocessing.input_shape, data.num_classes, settings, times)
        else:
            if model is None:
                model = build_model(layers, data.preprocessing.input_shape, data.num_classes)
            times.mark("model")
            compile_model(model, settings)
        times.mark("compile")
        times.traced = getattr(model, "train_function", None) is None
        reporter = Reporter(listener, state, initial_epoch + settings.epochs, steps, n_train, bs, initial_epoch,
                            times, n_val=data.validation_size())
        best = BestWeights(data.validation_size())
        callbacks = [reporter, best, *callbacks]
        plan = stopping_plan(settings, data.validation_size())
        if replicas > 1:
            listener.on_message(mirrored_note(settings.batch_size, replicas))
        if more_steps:
            listener.on_message(more_steps)
        listener.on_message(plan.note)
        listener.on_message(precision.note)
        if data.on_disk:  # say where the images come from: reading them may be what limits the speed
            listener.on_message(data.storage.describe())
        stopper = None
        if plan.enabled:
            stopper = EarlyStop(plan.patience, plan.min_epochs)
            callbacks.append(stopper)
        with quiet_tensorflow_logger():
            try:
                model.fit(train_ds, validation_data=val_ds, epochs=settings.epochs, steps_per_epoch=steps,
                          callbacks=callbacks, verbose=0, shuffle=False,
                          class_weight=data.class_weight() if class_weights else None)
            except Stopped:
                pass  # the weights trained so far stay in the model
            finally:
                release_tf_dataset(train_ds, val_ds)  # TF would keep the image cache alive for good

    if settings.restore_best and not reporter.cancelled and best.best_weights is not None \
            and best.best_epoch != len(reporter.reports) - 1:
        model.set_weights(best.best_weights)
    trained = with_policy(model, precision.float32())  # what is saved, exported and shown is float32
    if trained is not model:
        compile_model(trained, settings)  # compiled, as a model leaves any run, with the run's optimizer state
        copy_optimizer_state(model, trained)
        if pool is not None:
            pool.give_back(model)  # the run's own model, traced: the next bfloat16 run takes it
    model = trained
    history = [r.to_json() for r in reporter.reports]
    result = TrainResult(model=model, history=history, cancelled=reporter.cancelled,
                         notes=[n for n in (more_steps, plan.note) if n], start_times=times)
    if settings.restore_best and not reporter.cancelled and best.best_weights is not None:
        result.best_epoch = initial_epoch + best.best_epoch + 1
    explain(result, settings, plan, stopper, best, initial_epoch, data.num_classes,
             data.validation_size() if has_val else n_train)
    return result


def more_steps_note(settings: TrainingSettings, epochs: int, n_train: int, steps: int) -> str:
    """The log's sentence when a small training set gets more epochs than asked (``planned_epochs``)."""
    asked = f"{settings.epochs} epoch{'s' if settings.epochs != 1 else ''}"
    return (f"{n_train} training images make {steps} step{'s' if steps != 1 else ''} per epoch, so {asked} would be "
            f"only {settings.epochs * steps} steps, too few for a new model to get past its random start: this run "
            f"trains {epochs} epochs ({epochs * steps} steps, at least {settings.min_steps}; set the minimum steps to "
            "0 to train exactly the epochs asked).")


def _has_backbone_model(model) -> bool:
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
    with quiet_tensorflow_logger():
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        finally:
            release_tf_dataset(train_ds, val_ds)

"""Training a stack that starts with a pretrained backbone: the head first, then optionally fine-tuning.

Stage 1 trains the head (pooling, dropout, the softmax layer) with the
backbone frozen. When no augmentation is on, every epoch would push the same
pictures through the same frozen backbone, so its features are computed once
per image and the head trains on them (the *cached-features* path); with
augmentation each epoch sees new pictures and training runs through the
frozen backbone. Stage 2, when the Backbone layer's ``fine_tune`` is N > 0,
unfreezes the top N blocks (BatchNormalization layers stay frozen, i.e. in
inference mode) and trains the whole model for as many epochs again at a
tenth of the learning rate, as the Keras transfer-learning guide does. The
training log says which path each stage takes.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from ..model.architecture import build_model, compile_model, has_backbone, LayerSpec, TrainingSettings
from ..model.backbones import find_backbone, FINE_TUNE_LR_DIVISOR, set_fine_tune
from ..data.dataset import LoadedDataset
from ..data.pipeline import make_tf_dataset, release_tf_dataset, steps_for
from ..errors import UserError
from .stopping import BestWeights, EarlyStop, explain, stopping_plan
from ..tasks import TaskState
from .progress import Reporter, StartTimes, Stopped, TaskReports, TrainingListener, TrainResult
from ..library_warnings import quiet_tensorflow_logger
from .devices import distribution_scope
from .seeding import seed_run

#: the training-log sentence of each head-training path (tests and the benchmark look for these words)
CACHED_PATH = "cached backbone features"
THROUGH_PATH = "through the frozen backbone"


@dataclasses.dataclass
class _Stage:
    """What one ``fit`` of a stage left: its epoch reports, the best epoch's weights and the stopper."""

    reporter: Reporter
    best: BestWeights
    stopper: EarlyStop | None


def uses_cached_features(augment, strategy=None, device: str = "cpu") -> bool:
    """Whether the head trains on cached features: no augmentation and one device."""
    return not augment and strategy is None and "," not in (device or "")


def train_transfer(data: LoadedDataset, layers: list[LayerSpec], settings: TrainingSettings,
                   listener: TrainingListener | None = None, state: TaskState | None = None, model=None,
                   augment: tuple[str, ...] = (), class_weights: bool = False, strategy=None,
                   initial_epoch: int = 0, cache_features: bool | None = None) -> TrainResult:
    """``fitting.train`` for a stack with a backbone (same arguments and result; see the module docstring).

    The epochs of both stages are numbered on from each other; with fine-tuning
    the run has twice ``settings.epochs`` epochs. The model keeps the best
    epoch's weights of its last stage. ``cache_features`` forces the head's
    path (False: through the backbone even without augmentation, as the
    benchmark compares); None decides by ``uses_cached_features``.
    """
    times = StartTimes()
    times.mark("called")
    settings.validate()
    listener = listener or TaskReports(state)
    seed_run(settings.seed)
    if len(data.train_index) == 0:
        raise UserError("The training split is empty: lower the validation split or add images.")
    fine_tune = int(layers[0].full_params()["fine_tune"]) if has_backbone(layers) else 0
    run = dataclasses.replace(settings, epochs=settings.epochs * (2 if fine_tune else 1))
    plan = stopping_plan(settings, len(data.val_index))
    with distribution_scope(settings.device, strategy):
        if model is None:
            model = build_model(layers, data.preprocessing.input_shape, data.num_classes)
        backbone = find_backbone(model)
        set_fine_tune(backbone, 0)
        times.mark("model")
        listener.on_message(plan.note)
        cached = uses_cached_features(augment, strategy, settings.device) if cache_features is None else cache_features
        with quiet_tensorflow_logger():
            if cached:
                head = _fit_head_on_features(model, data, settings, run, listener, state, class_weights,
                                             initial_epoch, plan, times)
            else:
                why = ("augmentation is on, so every epoch sees new pictures" if augment else
                       "features are not cached on several devices" if cache_features is None else "as asked")
                listener.on_message(f"Training the head {THROUGH_PATH} {backbone.name}: {why}.")
                compile_model(model, settings)
                head = _fit_through(model, data, settings, run, listener, state, augment, class_weights,
                                    initial_epoch, plan, times, initial_epoch)
            stages = [head]
            if fine_tune and not head.reporter.cancelled:
                _restore_best(model if not cached else None, head, settings)
                n = set_fine_tune(backbone, fine_tune)
                rate = settings.learning_rate / FINE_TUNE_LR_DIVISOR
                listener.on_message(f"Fine-tuning the top {fine_tune} blocks of {backbone.name} ({n:,} weights) "
                                    f"at learning rate {rate:g}; its BatchNormalization layers stay in inference "
                                    "mode.")
                tune = dataclasses.replace(settings, learning_rate=rate)
                compile_model(model, tune)
                stages.append(_fit_through(model, data, tune, run, listener, state, augment, class_weights,
                                           initial_epoch + len(head.reporter.reports), plan, times,
                                           initial_epoch))
        if cached and len(stages) == 1:
            # the full model leaves compiled, as after any training, with its optimizer's variables made, so a
            # saved model reloads without Keras warning that the optimizer's saved variables do not match
            compile_model(model, settings)
            model.optimizer.build(model.trainable_variables)
    return _result(model, stages, settings, run, plan, initial_epoch, data, times, cached)


def _restore_best(model, stage: _Stage, settings: TrainingSettings) -> None:
    """Put the stage's best epoch's weights back into the model it trained (the head model when cached)."""
    if settings.restore_best and stage.best.best_weights is not None:
        (model or stage.reporter.model).set_weights(stage.best.best_weights)


def _callbacks(listener, state, run, run_start, steps, n_train, bs, first_epoch, times, n_val, plan) -> _Stage:
    """A stage's reporter (epochs numbered from ``first_epoch``, of ``run_start + run.epochs``), best weights and stopper."""
    reporter = Reporter(listener, state, run_start + run.epochs, steps, n_train, bs, first_epoch, times, n_val)
    stopper = EarlyStop(plan.patience, plan.min_epochs) if plan.enabled else None
    return _Stage(reporter, BestWeights(n_val), stopper)


def _fit(fit_model, stage: _Stage, epochs: int, **fit_args) -> _Stage:
    callbacks = [stage.reporter, stage.best] + ([stage.stopper] if stage.stopper else [])
    try:
        fit_model.fit(epochs=epochs, callbacks=callbacks, verbose=0, **fit_args)
    except Stopped:
        pass  # the weights trained so far stay in the model
    return stage


def _fit_through(model, data, settings, run, listener, state, augment, class_weights, first_epoch, plan,
                 times, run_start: int) -> _Stage:
    """Fit the whole model on images (the frozen or partly unfrozen backbone runs every batch)."""
    bs, n_train = settings.batch_size, len(data.train_index)
    steps = steps_for(n_train, bs)
    train_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=True, seed=settings.seed,
                               augment=augment, repeat=True, index=data.train_index)
    val_ds = make_tf_dataset(data.images, data.labels, data.num_classes, bs, training=False,
                             index=data.val_index) if len(data.val_index) else None
    stage = _callbacks(listener, state, run, run_start, steps, n_train, bs, first_epoch, times, len(data.val_index),
                       plan)
    try:
        return _fit(model, stage, settings.epochs, x=train_ds, validation_data=val_ds, steps_per_epoch=steps,
                    shuffle=False, class_weight=data.class_weight() if class_weights else None)
    finally:
        release_tf_dataset(train_ds, val_ds)


def _fit_head_on_features(model, data, settings, run, listener, state, class_weights, first_epoch, plan,
                          times) -> _Stage:
    """Compute the frozen backbone's features once per image, then fit the head's own layers on them."""
    extractor, head = split_at_backbone(model)
    rows = len(data.train_index) + len(data.val_index)
    listener.on_message(f"Computing the frozen backbone's features once for {rows:,} images…")
    start = time.perf_counter()
    features = backbone_features(extractor, data.images, np.concatenate([data.train_index, data.val_index]),
                                 settings.batch_size, state)
    n_train, bs = len(data.train_index), settings.batch_size
    stage = _callbacks(listener, state, run, first_epoch, steps_for(n_train, bs), n_train, bs, first_epoch, times,
                       len(data.val_index), plan)
    if features is None:  # cancelled while computing them
        stage.reporter.cancelled = True
        return stage
    listener.on_message(f"Training the head on {CACHED_PATH}: the backbone is frozen and no augmentation is on, so "
                        f"its features were computed once for {len(features):,} images "
                        f"({time.perf_counter() - start:.1f} s).")
    onehot = keras.utils.to_categorical(data.labels, data.num_classes).astype("float32")
    val = None
    if len(data.val_index):
        val = (features[n_train:], onehot[data.val_index])
    compile_model(head, settings)
    stage.reporter.cancelled = False
    return _fit(head, stage, settings.epochs, x=features[:n_train], y=onehot[data.train_index], batch_size=bs,
                validation_data=val, shuffle=True,
                class_weight=data.class_weight() if class_weights else None)


def split_at_backbone(model):
    """(the model up to its backbone's output, a model of the layers after it), sharing the model's layers.

    Training the second trains the model's own head: the layer objects are the same.
    """
    layers = model.layers
    cut = next(i for i, l in enumerate(layers) if l is find_backbone(model)) + 1
    extractor = keras.Sequential([keras.Input(shape=tuple(model.inputs[0].shape[1:]))] + layers[:cut])
    head = keras.Sequential([keras.Input(shape=tuple(layers[cut - 1].output.shape[1:]))] + layers[cut:])
    return extractor, head


def backbone_features(extractor, images: np.ndarray, rows: np.ndarray, batch_size: int,
                      state: TaskState | None = None) -> np.ndarray | None:
    """The extractor's output for ``images[rows]``, one batch at a time; None when cancelled between batches."""
    out = []
    for start in range(0, len(rows), batch_size):
        if state is not None and state.is_interruption_requested():
            return None
        batch = images[rows[start:start + batch_size]].astype("float32")
        out.append(np.asarray(extractor.predict_on_batch(batch)))
    return np.concatenate(out) if out else np.zeros((0,) + tuple(extractor.outputs[0].shape[1:]), "float32")


def _result(model, stages: list[_Stage], settings, run, plan, initial_epoch, data, times, cached) -> TrainResult:
    reports = [r for s in stages for r in s.reporter.reports]
    last = stages[-1]
    cancelled = any(s.reporter.cancelled for s in stages)
    result = TrainResult(model=model, history=[r.to_json() for r in reports], cancelled=cancelled,
                         notes=[plan.note], start_times=times)
    if settings.restore_best and not cancelled and last.best.best_weights is not None:
        first = initial_epoch + sum(len(s.reporter.reports) for s in stages[:-1])
        (last.reporter.model if cached and len(stages) == 1 else model).set_weights(last.best.best_weights)
        result.best_epoch = first + last.best.best_epoch + 1
    has_val = len(data.val_index) > 0
    explain(result, run, plan, last.stopper, last.best, initial_epoch, data.num_classes,
            len(data.val_index) if has_val else len(data.train_index))
    return result

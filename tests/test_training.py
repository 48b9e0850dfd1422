"""Training as the training panel drives it: reports, cancel, early stopping, seeds, devices, continuing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from cnndesk.core.model.architecture import build_model, preset, TrainingSettings
from cnndesk.core.data.dataset import DatasetConfig, load_dataset, Preprocessing
from cnndesk.core.errors import UserError
from cnndesk.core.intervals import interval_range, with_interval
from cnndesk.core.tasks import TaskState
from cnndesk.core.training.progress import BatchReport, EpochReport, TrainingListener
from cnndesk.core.training.fitting import train
from cnndesk.core.training.precision import choose_precision

from conftest import write_dataset

SETTINGS = dict(batch_size=4, learning_rate=3e-3, epochs=2, patience=0, seed=11)


class Recorder(TrainingListener):
    def __init__(self):
        self.batches: list[BatchReport] = []
        self.epochs: list[EpochReport] = []
        self.messages: list[str] = []

    def on_batch(self, report):
        self.batches.append(report)

    def on_epoch(self, report):
        self.epochs.append(report)

    def on_message(self, text):
        self.messages.append(text)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("train") / "tiny")
    return load_dataset(root, DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=3))


@pytest.fixture(scope="module")
def trained(data):
    rec = Recorder()
    result = train(data, preset("seed"), TrainingSettings(**SETTINGS), rec)
    return result, rec


def _val_accuracy(model, data) -> float:
    x, y = data.subset(data.val_index)
    probs = np.asarray(model(x.astype(np.float32), training=False))
    return float((probs.argmax(1) == y).mean())


@pytest.mark.slow
def test_two_epochs_learn_well_above_chance(trained, data):
    result, _ = trained
    assert len(result.history) == 2
    assert result.final_val_accuracy > 0.8  # chance is 1/3
    assert _val_accuracy(result.model, data) == pytest.approx(result.final_val_accuracy)
    assert not result.cancelled and not result.stopped_early
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.slow
def test_every_batch_and_epoch_is_reported(trained, data):
    result, rec = trained
    steps = math.ceil(len(data.train_index) / 4)  # 48 training images
    assert steps == 12
    assert [(b.epoch, b.batch) for b in rec.batches] == [(e, b) for e in (1, 2) for b in range(1, 13)]
    for b in rec.batches:
        assert b.epochs == 2 and b.steps == steps
        assert math.isfinite(b.loss) and 0 <= b.accuracy <= 1
        assert b.images_per_s > 0 and b.eta_s >= 0
    assert rec.batches[-1].eta_s == 0
    assert rec.batches[0].eta_s > rec.batches[12].eta_s

    assert [e.epoch for e in rec.epochs] == [1, 2]
    for e in rec.epochs:
        assert e.epochs == 2 and e.seconds > 0 and e.images_per_s > 0
        assert 0 <= e.accuracy <= 1 and 0 <= e.val_accuracy <= 1 and e.val_loss > 0
    assert result.history == [e.to_json() for e in rec.epochs]
    assert set(result.history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_images",
                                      "images_per_s", "seconds"}
    # each validation accuracy says how many images measured it, which its interval needs
    assert [e.val_images for e in rec.epochs] == [len(data.val_index)] * 2 == [12, 12]
    assert result.val_images == 12


@pytest.mark.slow
def test_the_same_seed_gives_the_same_history(trained, data):
    result, _ = trained
    again = train(data, preset("seed"), TrainingSettings(**SETTINGS))
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [r[k] for r in again.history for k in keys] == pytest.approx(
        [r[k] for r in result.history for k in keys], abs=1e-6)


STAGES = ["called", "input pipeline", "model", "compile", "fit setup", "iterator", "first step", "reported",
          "second step"]


@pytest.mark.slow
def test_a_run_says_where_the_time_to_its_first_batch_went(trained):
    result, _ = trained
    times = result.start_times
    assert [name for name, _ in times.marks] == STAGES
    assert all(seconds >= 0 for _, seconds in times.durations())
    assert [name for name, _ in times.durations()] == STAGES[1:]
    assert times.traced  # a new model traces its train step in its first batch


@pytest.mark.slow
def test_a_stocked_spare_trains_exactly_as_a_new_model_without_tracing(trained, data):
    from cnndesk.core.training.model_pool import ModelPool

    new, _ = trained
    settings = TrainingSettings(**SETTINGS)
    pool = ModelPool()
    assert pool.stock(data, preset("seed"), settings)
    assert not pool.stock(data, preset("seed"), settings), "one spare per kind of run is enough"
    assert pool.has_spare(preset("seed"), data.preprocessing.input_shape, data.num_classes, settings)
    assert not pool.has_spare(preset("tinyvgg"), data.preprocessing.input_shape, data.num_classes, settings)

    rec = Recorder()
    reused = train(data, preset("seed"), settings, rec, pool=pool)
    assert pool.reused == 1 and pool.compiled == 1 and len(pool) == 0
    assert pool.values_remembered == 1, "the spare's initial values were remembered for this seed"
    assert not reused.start_times.traced
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [r[k] for r in reused.history for k in keys] == pytest.approx(
        [r[k] for r in new.history for k in keys], abs=1e-6)
    assert len(rec.batches) == 2 * 12

    # the same seed again: the initial values come from memory, not from building a model again
    pool.give_back(reused.model)
    again = train(data, preset("seed"), settings, pool=pool)
    assert again.model is reused.model and pool.values_remembered == 2
    assert [r[k] for r in again.history for k in keys] == pytest.approx(
        [r[k] for r in new.history for k in keys], abs=1e-6)


@pytest.mark.slow
def test_runs_on_traced_spares_leave_tensorflows_compiled_steps_in_place(data, monkeypatch):
    """Setting TensorFlow's global seed empties its caches of instantiated functions and kernels: every run did
    (``keras.utils.set_random_seed``), so the first batch of a run on a traced spare instantiated its train step
    again, five times a later batch (docs/training-speed.md)."""
    from tensorflow.python import pywrap_tfe

    from cnndesk.core.training.model_pool import ModelPool

    settings = TrainingSettings(**SETTINGS)
    pool = ModelPool()
    train(data, preset("seed"), settings, pool=pool)  # the first run of a process may set the global seed once
    emptied = []
    empty = pywrap_tfe.TFE_ContextClearCaches
    monkeypatch.setattr(pywrap_tfe, "TFE_ContextClearCaches", lambda handle: (emptied.append(1), empty(handle)))
    for seed in (11, 12, 11):  # another seed, as Train xN gives each of its models
        run = TrainingSettings(**{**SETTINGS, "seed": seed, "epochs": 1})
        assert pool.stock(data, preset("seed"), run)
        train(data, preset("seed"), run, pool=pool)
    assert pool.reused == 3 and emptied == []


@pytest.mark.slow
def test_the_seed_decides_a_run_whatever_ran_before_it(trained, data):
    import random

    import keras

    new, _ = trained
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    keras.utils.set_random_seed(99)  # other code seeding and drawing in the same process
    random.random(), np.random.rand(), keras.random.uniform((2,)), keras.random.uniform((2,), seed=3)
    again = train(data, preset("seed"), TrainingSettings(**SETTINGS))
    assert [r[k] for r in again.history for k in keys] == pytest.approx(
        [r[k] for r in new.history for k in keys], abs=1e-6)
    other = train(data, preset("seed"), TrainingSettings(**{**SETTINGS, "seed": 12}))
    assert [r[k] for r in other.history for k in keys] != pytest.approx(
        [r[k] for r in new.history for k in keys], abs=1e-6)


class CancelAfterFirstBatch(Recorder):
    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_batch(self, report):
        super().on_batch(report)
        self.state.request_interruption()  # the user presses Stop after the first batch


@pytest.mark.slow
def test_cancel_stops_within_one_batch_and_keeps_a_usable_model(data):
    state = TaskState()
    rec = CancelAfterFirstBatch(state)
    result = train(data, preset("seed"), TrainingSettings(batch_size=4, epochs=5, patience=0), rec, state)
    assert result.cancelled
    assert len(rec.batches) == 1  # of 12 per epoch, 60 in all
    assert result.history == []  # the interrupted epoch is not recorded as if it were complete
    x, _ = data.subset(data.val_index)
    probs = np.asarray(result.model(x.astype(np.float32), training=False))
    assert probs.shape == (len(x), 3)
    assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(1), 1, atol=1e-5)


class SpoilEpochThree(Recorder):
    """Snapshots the weights each epoch and wrecks them at the start of epoch 3."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.snapshots: dict[int, list[np.ndarray]] = {}

    def on_epoch(self, report):
        super().on_epoch(report)
        self.snapshots[report.epoch] = [w.copy() for w in self.model.get_weights()]

    def on_batch(self, report):
        super().on_batch(report)
        if report.epoch == 3 and report.batch == 1:
            rng = np.random.default_rng(0)
            self.model.set_weights([rng.normal(0, 3, w.shape).astype(w.dtype) for w in self.model.get_weights()])


@pytest.mark.slow
def test_a_wrecked_epoch_is_not_the_one_kept(data):
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    rec = SpoilEpochThree(model)
    settings = TrainingSettings(**{**SETTINGS, "epochs": 3, "restore_best": True})
    result = train(data, [], settings, rec, model=model)

    assert len(result.history) == 3 and result.stop_reason == "all_epochs"
    accs = [r["val_accuracy"] for r in result.history]
    assert accs[2] < max(accs[:2])  # the wrecked epoch is the worst
    assert result.best_epoch != 3
    for kept, best in zip(result.model.get_weights(), rec.snapshots[result.best_epoch]):
        np.testing.assert_array_equal(kept, best)
    assert result.final_val_accuracy == result.history[result.best_epoch - 1]["val_accuracy"]
    assert _val_accuracy(result.model, data) == pytest.approx(result.final_val_accuracy)


# ---------------------------------------------------------------------------
# stopping rules (docs/early-stopping.md)

class Frozen(Recorder):
    """Puts the same weights back after every batch: validation accuracy and loss never improve after epoch 1."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.weights = [w.copy() for w in model.get_weights()]

    def on_batch(self, report):
        super().on_batch(report)
        self.model.set_weights(self.weights)


def _frozen_run(data, **settings):
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    rec = Frozen(model)
    result = train(data, [], TrainingSettings(**{**SETTINGS, **settings}), rec, model=model)
    return result, rec


@pytest.mark.slow
def test_early_stopping_waits_for_half_the_run(data):
    # 12 validation images: the limit is lowered so that early stopping may act at all
    result, rec = _frozen_run(data, epochs=8, patience=1, min_val_images=10)
    # nothing improves after epoch 1, so patience alone would stop at epoch 2 (patience 1) or 3 (a quarter of 8)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.stopped_early and result.stop_reason == "early_stopping"
    assert result.stop_message == ("Early stopping at epoch 4 of 8: neither validation accuracy nor validation "
                                   "loss improved in the last 2 epochs.")
    assert rec.messages == ["Early stopping: from epoch 4 of this run on, training stops when neither validation "
                            "accuracy nor validation loss improved for 2 epochs.", choose_precision().note]
    assert result.notes == rec.messages[:1]


@pytest.mark.slow
def test_the_minimum_number_of_epochs_can_be_set(data):
    result, _ = _frozen_run(data, epochs=8, patience=1, min_val_images=10, min_epochs=6)
    assert len(result.history) == 6 and result.stopped_early
    assert result.stop_message.startswith("Early stopping at epoch 6 of 8:")


@pytest.mark.slow
def test_early_stopping_is_off_for_a_tiny_validation_set_and_says_so(data):
    result, rec = _frozen_run(data, epochs=6, patience=1)  # min_val_images left at its default, 50
    assert len(result.history) == 6 and not result.stopped_early
    assert result.stop_reason == "all_epochs" and result.stop_message == "Trained all 6 epochs."
    assert rec.messages == ["Validation set of 12 images: early stopping is off (it needs at least 50 to tell an "
                            "improvement from noise); all epochs will run.", choose_precision().note]


def test_patience_grows_with_the_length_of_the_run():
    from cnndesk.core.training.stopping import stopping_plan

    plan = stopping_plan(TrainingSettings(epochs=40, patience=3), n_val=200)
    assert (plan.enabled, plan.min_epochs, plan.patience) == (True, 20, 10)
    assert plan.note == ("Early stopping: from epoch 20 of this run on, training stops when neither validation "
                         "accuracy nor validation loss improved for 10 epochs.")
    assert stopping_plan(TrainingSettings(epochs=10, patience=3), n_val=200).patience == 3
    assert stopping_plan(TrainingSettings(epochs=10, patience=6), n_val=200).patience == 6
    assert not stopping_plan(TrainingSettings(epochs=10, patience=0), n_val=200).enabled
    assert stopping_plan(TrainingSettings(epochs=10), n_val=0).note == (
        "No validation images: early stopping is off and all epochs will run.")


class Scripted(Recorder):
    """Sets the weights of each epoch to a given list right after its last batch, before validation."""

    def __init__(self, model, per_epoch):
        super().__init__()
        self.model, self.per_epoch = model, per_epoch

    def on_batch(self, report):
        super().on_batch(report)
        if report.batch == report.steps:
            self.model.set_weights(self.per_epoch[report.epoch - 1])


def _with_head(weights, scale=1.0, bias_shift=None):
    """The weights with the output layer's logits scaled (less or more confident) and a bias shifted."""
    w = [a.copy() for a in weights]
    w[-2] *= scale
    w[-1] *= scale
    if bias_shift is not None:
        w[-1] = w[-1] + bias_shift
    return w


@pytest.fixture(scope="module")
def heads(trained, data):
    """Output-layer variants of a trained model and their measured validation (accuracy, loss)."""
    good = trained[0].model.get_weights()
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    x, y = data.subset(data.val_index)
    x = x.astype(np.float32)

    def measure(weights):
        model.set_weights(weights)
        p = np.asarray(model(x, training=False))
        return float((p.argmax(1) == y).mean()), float(-np.log(p[np.arange(len(y)), y]).mean())

    top, _ = measure(good)
    image = 1 / len(y)
    # heads biased towards one class: some validation images wrong, yet confident on the rest (low loss)
    biased = {}
    for shift in np.linspace(0.25, 30, 120):
        w = _with_head(good, bias_shift=np.eye(data.num_classes, dtype=np.float32)[0] * shift)
        short = round((top - measure(w)[0]) / image)  # validation images fewer right than the good head
        biased.setdefault(short, w)
    return {"top": top, "measure": measure, "biased": biased,
            "soft": _with_head(good, 0.05), "softer": _with_head(good, 0.02)}  # right answers, near-uniform


@pytest.mark.slow
def test_the_kept_epoch_has_the_best_validation_accuracy_ties_broken_by_loss(heads, data):
    measure, top = heads["measure"], heads["top"]
    biased = next(w for short, w in sorted(heads["biased"].items()) if short >= 2)
    soft, softer = heads["soft"], heads["softer"]
    (acc_b, loss_b), (acc_s2, loss_s2), (acc_s, loss_s) = measure(biased), measure(softer), measure(soft)
    assert acc_s == acc_s2 == top and loss_s < loss_s2  # a tie on accuracy, broken by loss
    assert acc_b < top - 1.5 / len(data.val_index)  # two or more images fewer right
    assert loss_b < loss_s  # by validation loss alone, the biased epoch would win

    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    rec = Scripted(model, [biased, softer, soft, biased])
    result = train(data, [], TrainingSettings(**{**SETTINGS, "epochs": 4}), rec, model=model)
    assert [r["val_accuracy"] for r in result.history] == pytest.approx([acc_b, acc_s2, acc_s, acc_b], abs=1e-6)
    assert result.best_epoch == 3
    for kept, want in zip(result.model.get_weights(), soft):
        np.testing.assert_allclose(kept, want, rtol=1e-6)
    n = len(data.val_index)
    assert result.kept_message == (f"Kept epoch 3's weights: best validation accuracy {acc_s:.3f} (95 % interval "
                                   f"{interval_range(acc_s, n)}, {n} images) and the lowest "
                                   f"validation loss of the epochs within one image of it (validation loss "
                                   f"{result.history[2]['val_loss']:.4f}).")


@pytest.mark.slow
def test_one_validation_image_short_of_the_best_counts_as_a_tie(heads, data):
    measure, top = heads["measure"], heads["top"]
    assert 1 in heads["biased"], "no head one image short of the best was found"
    one_short, softer = heads["biased"][1], heads["softer"]
    (acc_1, loss_1), (acc_s2, loss_s2) = measure(one_short), measure(softer)
    assert acc_s2 == top and acc_1 == pytest.approx(top - 1 / len(data.val_index)) and loss_1 < loss_s2

    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    rec = Scripted(model, [softer, one_short])
    result = train(data, [], TrainingSettings(**{**SETTINGS, "epochs": 2}), rec, model=model)
    assert result.best_epoch == 2
    assert result.kept_message == (f"Kept epoch 2's weights: validation accuracy "
                                   f"{with_interval(acc_1, len(data.val_index))}, one validation image "
                                   f"short of the best ({top:.3f}), with a lower validation loss "
                                   f"({result.history[1]['val_loss']:.4f}).")


@pytest.mark.slow
def test_without_keep_the_best_the_last_epoch_is_kept_and_said(data):
    result, _ = _frozen_run(data, epochs=2, restore_best=False)
    assert result.best_epoch is None
    assert result.kept_message == "Kept the last epoch's weights (epoch 2): keeping the best epoch is off."


def _same_images(root, per_class=10):
    """Two classes of the same grey pictures: nothing to learn, so validation accuracy is exactly chance.

    Picture i of one class is picture i of the other (a copy under two labels, which the split keeps on
    one side); the pictures differ from one i to the next, so that every copy pair is its own group and
    validation gets whole pairs: whatever the model says of a pair, it is right about exactly one of them.
    """
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (16, 16), (40 + 12 * i,) * 3).save(root / c / f"{i}.png")
    return root


@pytest.mark.slow
def test_a_model_at_chance_is_called_so_with_advice(tmp_path):
    data = load_dataset(_same_images(tmp_path / "same"), DatasetConfig(Preprocessing((16, 16)), val_split=0.2))
    result = train(data, preset("seed"), TrainingSettings(**{**SETTINGS, "epochs": 1}))
    assert result.history[0]["val_accuracy"] == 0.5
    n = data.validation_size()
    assert result.chance_message == (
        f"Validation accuracy 0.500 (95 % interval {interval_range(0.5, n)}, {n} images) is at or near chance (0.500 "
        "with 2 classes; its interval reaches down to chance): the model has not clearly learned "
        "to tell the classes apart. What usually helps: more epochs, augmentation (flip, rotate, zoom), a smaller "
        "image size, and more images per class.")


@pytest.mark.slow
def test_a_run_whose_loss_diverged_is_told_to_lower_the_learning_rate_not_to_train_longer(data):
    result = train(data, preset("seed"), TrainingSettings(**{**SETTINGS, "epochs": 1, "learning_rate": 0.5}))
    loss = result.history[0]["loss"]
    assert not math.isfinite(loss) or loss > 100, "the run did not diverge"  # 7,233 here
    message = result.chance_message
    assert message.startswith(f"Validation accuracy {with_interval(1 / 3, data.validation_size())} is at or near "
                              "chance (0.333 with 3 classes; its interval reaches down to chance)")
    shown = f"{loss:,.0f}" if math.isfinite(loss) else "not a number"
    assert (f"The training loss diverged ({shown} in epoch 1 at learning rate 0.5): lower the learning rate, "
            "for example to 0.05, and train again.") in message
    assert "more epochs" not in message


@pytest.mark.slow
def test_a_model_well_above_chance_gets_no_warning(trained):
    assert trained[0].chance_message is None


def test_near_chance_allows_for_the_noise_of_a_small_validation_set():
    from cnndesk.core.training.stopping import near_chance

    # 2 classes, 32 validation images: 21 right is 0.483–0.796, 22 right 0.514–0.820
    assert near_chance(21 / 32, 2, 32) and not near_chance(22 / 32, 2, 32)
    # 10 classes, 287 validation images: the floor of 0.05 above chance applies (0.14: 0.104–0.184)
    assert near_chance(0.14, 10, 287) and not near_chance(0.16, 10, 287)


def test_near_chance_is_an_interval_that_reaches_down_to_chance():
    from cnndesk.core.training.stopping import near_chance

    # 60 of 100 right with 2 classes: 0.502–0.690, clear of chance though within two of a guesser's standard errors
    assert not near_chance(0.60, 2, 100)
    # 59 of 100: 0.492–0.680 reaches 0.5
    assert near_chance(0.59, 2, 100)
    # the same accuracy on fewer images is less sure: 6 of 10 right, 0.313–0.832
    assert near_chance(0.60, 2, 10)
    for k, n, classes in ((13, 39, 3), (14, 39, 3), (19, 39, 3), (7, 30, 10), (6, 30, 10)):
        low = binomtest(k, n).proportion_ci(0.95, method="wilson").low
        assert near_chance(k / n, classes, n) == (low <= 1 / classes or k / n <= 1 / classes + 0.05), (k, n)


def test_an_unknown_gpu_is_refused_with_a_clear_message(data):
    with pytest.raises(UserError) as e:
        train(data, preset("seed"), TrainingSettings(device="gpu:99", epochs=1))
    assert "GPU 99 is not available" in str(e.value) and "Train on the CPU" in str(e.value)
    with pytest.raises(UserError, match="Unknown device 'tpu'"):
        train(data, preset("seed"), TrainingSettings(device="tpu", epochs=1))


@pytest.mark.slow
def test_continuing_training_numbers_epochs_on_and_keeps_learning(trained, data):
    first, _ = trained
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    model.set_weights(first.model.get_weights())
    before = [w.copy() for w in model.get_weights()]
    rec = Recorder()
    result = train(data, [], TrainingSettings(**{**SETTINGS, "epochs": 1}), rec, model=model, initial_epoch=2)
    assert result.model is model
    assert [r["epoch"] for r in result.history] == [3]
    assert {(b.epoch, b.epochs) for b in rec.batches} == {(3, 3)}
    assert result.best_epoch == 3
    assert result.final_val_accuracy == result.history[0]["val_accuracy"] > 0.8
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.slow
def test_augmentation_and_class_weights_train_and_stay_out_of_the_model(data):
    result = train(data, preset("seed"), TrainingSettings(**{**SETTINGS, "epochs": 1}),
                   augment=("flip", "brightness"), class_weights=True)
    assert len(result.history) == 1 and math.isfinite(result.history[0]["loss"])
    assert not any(type(layer).__name__.startswith("Random") for layer in result.model.layers)


MIRRORED = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cnndesk.core.model.architecture import TrainingSettings, preset
from cnndesk.core.data.dataset import DatasetConfig, Preprocessing, load_dataset
from cnndesk.core.data.pipeline import make_tf_dataset
from cnndesk.core.training.fitting import train

data = load_dataset(sys.argv[1], DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=3))
strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
ds = make_tf_dataset(data.images, data.labels, data.num_classes, 8, training=True, seed=1, augment=("flip",),
                     index=data.train_index)
x, y = next(iter(strategy.experimental_distribute_dataset(ds)))
shapes = [list(v.shape) for v in strategy.experimental_local_results(x)]
settings = TrainingSettings(batch_size=8, learning_rate=3e-3, epochs=2, patience=0, seed=11, min_steps=0)
result = train(data, preset("seed"), settings, strategy=strategy, augment=("flip", "rotate"))
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "shapes": shapes, "history": result.history}))
"""


@pytest.mark.slow
def test_training_runs_distributed_over_two_devices(tmp_path):
    # a child process: the CPU is split into 2 logical devices before TensorFlow runs any op,
    # which would otherwise apply to every later test
    root = write_dataset(tmp_path / "tiny")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(root)], cwd=repo, capture_output=True, text=True,
                          timeout=240, env=dict(os.environ, PYTHONPATH=str(repo)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["shapes"] == [[4, 32, 32, 3], [4, 32, 32, 3]]  # the global batch of 8, split in two
    history = out["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["val_loss"]) for r in history)
    assert history[-1]["loss"] < history[0]["loss"]


# ---------------------------------------------------------------------------
# small folders: a new model takes at least ``min_steps`` optimizer steps (docs/small-folders.md)

def test_a_small_folder_gets_the_epochs_that_make_the_minimum_number_of_steps(app_min_steps):
    from cnndesk.core.model.architecture import planned_epochs

    assert TrainingSettings().min_steps == app_min_steps > 0  # on by default
    # 122 images at batch 32: 4 steps per epoch, so 10 epochs would be 40 steps
    assert planned_epochs(TrainingSettings(epochs=10), 4) == math.ceil(app_min_steps / 4)
    assert planned_epochs(TrainingSettings(epochs=10), 4) * 4 >= app_min_steps
    # a folder whose epochs already make enough steps trains exactly the epochs asked, and so does 0 (off)
    assert planned_epochs(TrainingSettings(epochs=10), math.ceil(app_min_steps / 10)) == 10
    assert planned_epochs(TrainingSettings(epochs=10, min_steps=0), 4) == 10
    assert planned_epochs(TrainingSettings(epochs=500), 4) == 500
    with pytest.raises(UserError, match="minimum number of training steps"):
        TrainingSettings(min_steps=-1).validate()


@pytest.mark.slow
def test_the_deeper_preset_learns_small_handwritten_digits(tmp_path):
    """Its BatchNormalization layers' moving statistics, which the validation pass and every later prediction use,
    followed the batches' too slowly (Keras's momentum 0.99) for the few hundred steps of a small folder: the
    validation accuracy stayed at chance while the training accuracy rose, and early stopping ended the run."""
    from PIL import Image

    from lookalikes import stroke_digits

    images, labels = stroke_digits(30, seed=0, side=32)
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / str(label)).mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / str(label) / f"{i:03d}.png")
    data = load_dataset(tmp_path, DatasetConfig(Preprocessing((32, 32), "grayscale"), seed=3))
    result = train(data, preset("deeper"), TrainingSettings(epochs=10, min_steps=0))  # 80 steps
    assert _val_accuracy(result.model, data) >= 0.6  # chance is 0.1
    assert result.chance_message is None


@pytest.mark.slow
def test_a_new_model_on_a_small_folder_trains_more_epochs_and_the_log_says_why(data):
    rec = Recorder()
    # 48 training images at batch 4: 12 steps per epoch; 2 epochs are 24 steps, short of 30
    result = train(data, preset("seed"), TrainingSettings(**{**SETTINGS, "min_steps": 30}), rec)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert {r.epochs for r in rec.epochs} == {3}
    note = ("48 training images make 12 steps per epoch, so 2 epochs would be only 24 steps, too few for a new "
            "model to get past its random start: this run trains 3 epochs (36 steps, at least 30; set the minimum "
            "steps to 0 to train exactly the epochs asked).")
    assert rec.messages[0] == note and result.notes[0] == note
    assert result.stop_message == "Trained all 3 epochs."


@pytest.mark.slow
def test_continuing_a_model_trains_exactly_the_epochs_asked(trained, data):
    first, _ = trained
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    model.set_weights(first.model.get_weights())
    rec = Recorder()
    result = train(data, [], TrainingSettings(**{**SETTINGS, "epochs": 1, "min_steps": 1000}), rec, model=model,
                   initial_epoch=2)
    assert [r["epoch"] for r in result.history] == [3]
    assert not any("steps" in m for m in rec.messages)

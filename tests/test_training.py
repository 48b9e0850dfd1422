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

from cnndesk.core.architecture import TrainingSettings, build_model, preset
from cnndesk.core.dataset import DatasetConfig, Preprocessing, load_dataset
from cnndesk.core.errors import UserError
from cnndesk.core.tasks import TaskState
from cnndesk.core.training import BatchReport, EpochReport, TrainingListener, train

from conftest import write_dataset

SETTINGS = dict(batch_size=4, learning_rate=3e-3, epochs=2, patience=0, seed=11)


class Recorder(TrainingListener):
    def __init__(self):
        self.batches: list[BatchReport] = []
        self.epochs: list[EpochReport] = []

    def on_batch(self, report):
        self.batches.append(report)

    def on_epoch(self, report):
        self.epochs.append(report)


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


def test_two_epochs_learn_well_above_chance(trained, data):
    result, _ = trained
    assert len(result.history) == 2
    assert result.final_val_accuracy > 0.8  # chance is 1/3
    assert _val_accuracy(result.model, data) == pytest.approx(result.final_val_accuracy)
    assert not result.cancelled and not result.stopped_early
    assert result.history[-1]["loss"] < result.history[0]["loss"]


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
    assert set(result.history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "images_per_s",
                                      "seconds"}


def test_the_same_seed_gives_the_same_history(trained, data):
    result, _ = trained
    again = train(data, preset("seed"), TrainingSettings(**SETTINGS))
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [r[k] for r in again.history for k in keys] == pytest.approx(
        [r[k] for r in result.history for k in keys], abs=1e-6)


class CancelAfterFirstBatch(Recorder):
    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_batch(self, report):
        super().on_batch(report)
        self.state.request_interruption()  # the user presses Stop after the first batch


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


def test_early_stopping_restores_the_best_epoch(data):
    model = build_model(preset("seed"), data.preprocessing.input_shape, data.num_classes)
    rec = SpoilEpochThree(model)
    settings = TrainingSettings(**{**SETTINGS, "epochs": 8, "patience": 1, "restore_best": True})
    result = train(data, [], settings, rec, model=model)

    val_losses = [r["val_loss"] for r in result.history]
    assert len(result.history) == 3 and result.stopped_early
    assert val_losses[2] > max(val_losses[:2])  # the wrecked epoch is the worst
    assert result.best_epoch == int(np.argmin(val_losses)) + 1 != 3
    for kept, best in zip(result.model.get_weights(), rec.snapshots[result.best_epoch]):
        np.testing.assert_array_equal(kept, best)
    assert result.final_val_accuracy == result.history[result.best_epoch - 1]["val_accuracy"]


def test_an_unknown_gpu_is_refused_with_a_clear_message(data):
    with pytest.raises(UserError) as e:
        train(data, preset("seed"), TrainingSettings(device="gpu:99", epochs=1))
    assert "GPU 99 is not available" in str(e.value) and "Train on the CPU" in str(e.value)
    with pytest.raises(UserError, match="Unknown device 'tpu'"):
        train(data, preset("seed"), TrainingSettings(device="tpu", epochs=1))


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
from cnndesk.core.architecture import TrainingSettings, preset
from cnndesk.core.dataset import DatasetConfig, Preprocessing, load_dataset, make_tf_dataset
from cnndesk.core.training import train

data = load_dataset(sys.argv[1], DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=3))
strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
ds = make_tf_dataset(data.images, data.labels, data.num_classes, 8, training=True, seed=1, augment=("flip",),
                     index=data.train_index)
x, y = next(iter(strategy.experimental_distribute_dataset(ds)))
shapes = [list(v.shape) for v in strategy.experimental_local_results(x)]
settings = TrainingSettings(batch_size=8, learning_rate=3e-3, epochs=2, patience=0, seed=11)
result = train(data, preset("seed"), settings, strategy=strategy, augment=("flip", "rotate"))
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "shapes": shapes, "history": result.history}))
"""


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

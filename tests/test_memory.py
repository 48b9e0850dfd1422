"""Memory over a long session (issue 12): training again and again must not grow the process.

Every new Keras model traces a train and a test step whose graphs TensorFlow
never frees (about 7-10 MB per run, docs/memory.md). The engine gives each
replaced model back to a ``ModelPool`` and later runs on the same layers reuse
it. These tests train as the engine does and hold the growth to a generous
bound (a median slope over runs after warm-up, so one noisy reading cannot
fail them), and check that a reused model trains exactly as a new one.
"""

from __future__ import annotations

import gc
import statistics
import sys
import weakref

import numpy as np
import pytest

from cnndesk.core.model.architecture import preset, TrainingSettings
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.data.images import Preprocessing
from cnndesk.core.training.model_pool import ModelPool
from cnndesk.core.project.store import new_run_id
from cnndesk.core.tasks import TaskState
from cnndesk.core.training.fitting import train

from conftest import write_dataset

pytestmark = pytest.mark.slow  # every test here trains several models in turn

#: growth allowed per run; before the pool this loop grew 7-10 MB per run, with it well under 1 MB
LIMIT_MB_PER_RUN = 3.0


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def median_slope(values: list[float]) -> float:
    """The median of the slopes between every pair of points: one outlier cannot move it."""
    return statistics.median((values[j] - values[i]) / (j - i)
                             for i in range(len(values)) for j in range(i + 1, len(values)))


def func_graphs() -> int:
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "FuncGraph")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("memory") / "tiny", per_class=8, size=16)
    return load_dataset(root, DatasetConfig(Preprocessing((16, 16)), val_split=0.25, seed=3))


SETTINGS = TrainingSettings(batch_size=8, epochs=1, patience=0, seed=5)


def engine_worker():
    """The engine's worker, called directly on this thread (its jobs are plain methods)."""
    from cnndesk.ui.engine_worker import EngineWorker

    return EngineWorker()


def train_in(worker, data, settings=SETTINGS, task=None):
    """Train a new run in ``worker``; returns the run's id."""
    run = new_run_id()
    worker.train(data, preset("seed"), settings, run=run, task=task or TaskState())
    return run


def held_models(worker) -> list:
    """The models the worker holds beside the current one (the run it replaced, to bring back at once)."""
    return [model for model, _ in worker.held.values()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident size from /proc")
def test_training_again_and_again_does_not_grow_the_process(data):
    worker = engine_worker()
    # three models take turns: the current run's, the previous run's (kept so it can be brought back) and
    # the one before, back in the pool; so the third run is the last that compiles
    warmup, runs = 3, 6
    rss, graphs = [], []
    for i in range(warmup + runs):
        train_in(worker, data)
        worker.inspect(data.images[0])  # as the viewer does with a new model
        gc.collect()
        rss.append(rss_mb())
        graphs.append(func_graphs())
    slope = median_slope(rss[warmup:])
    print(f"\nRSS per run after warm-up: {[round(v, 1) for v in rss]} MB -> {slope:+.2f} MB/run; "
          f"graphs {graphs}; models compiled {worker._pool.compiled}, reused {worker._pool.reused}")
    assert slope < LIMIT_MB_PER_RUN, f"the process grew {slope:.2f} MB per training run"
    # the cause, counted exactly: no run after the warm-up leaves a new graph alive (earlier tests' may go)
    assert max(graphs[warmup:]) <= graphs[warmup - 1], f"traced graphs alive after each run: {graphs}"
    assert worker._pool.compiled == 3 and worker._pool.reused == warmup + runs - 3


def test_cancelled_runs_reuse_their_models_and_the_viewer_sees_the_current_one(data):
    worker = engine_worker()

    class StopAtTheFirstBatch(TaskState):
        """Stop pressed as the job reports its first batch (through the job's own TaskState)."""

        def report(self, item):
            if hasattr(item, "batch"):
                self.request_interruption()

    for _ in range(4):
        run = new_run_id()
        answer = worker.train(data, preset("seed"), TrainingSettings(batch_size=2, epochs=3, patience=0, seed=5),
                              run=run, task=StopAtTheFirstBatch())
        assert answer.result.cancelled and answer.model.run == run and worker.run_id == run
    assert worker._pool.compiled == 3 and worker._pool.reused == 1  # current, previous, pooled: see above
    # the reused model's inspector reads the model's current weights
    x = data.images[:1].astype("float32")
    assert worker.inspector.model is worker.model
    np.testing.assert_allclose(worker.inspector.probabilities(data.images[0]), np.asarray(worker.model(x)),
                               atol=1e-5)


def weights(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def test_a_reused_model_trains_exactly_as_a_new_one(data):
    settings = TrainingSettings(batch_size=4, epochs=2, patience=0, seed=21, learning_rate=2e-3)
    new = train(data, preset("seed"), settings)

    pool = ModelPool()
    other = TrainingSettings(batch_size=4, epochs=1, patience=0, seed=99, learning_rate=9e-3)
    first = train(data, preset("seed"), other, pool=pool).model
    pool.give_back(first)
    reused = train(data, preset("seed"), settings, pool=pool)
    assert reused.model is first, "the run was meant to reuse the first model"
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [r[k] for r in reused.history for k in keys] == pytest.approx(
        [r[k] for r in new.history for k in keys], abs=1e-6)
    for a, b in zip(weights(reused.model), weights(new.model)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(np.asarray(reused.model.optimizer.learning_rate)) == pytest.approx(2e-3)
    assert int(np.asarray(reused.model.optimizer.iterations)) == int(np.asarray(new.model.optimizer.iterations))


def test_other_layers_or_optimizer_get_a_new_model(data):
    pool = ModelPool()
    first = train(data, preset("seed"), SETTINGS, pool=pool).model
    pool.give_back(first)
    sgd = train(data, preset("seed"), TrainingSettings(batch_size=8, epochs=1, patience=0, optimizer="sgd"),
                pool=pool).model
    assert sgd is not first
    other_layers = train(data, preset("tinyvgg"), SETTINGS, pool=pool).model
    assert other_layers is not first
    assert train(data, preset("seed"), SETTINGS, pool=pool).model is first
    assert pool.reused == 1


def test_a_finished_dataset_does_not_keep_its_images(tmp_path):
    root = write_dataset(tmp_path / "gone", per_class=6, size=16)
    loaded = load_dataset(root, DatasetConfig(Preprocessing((16, 16)), val_split=0.25, seed=3))
    images = weakref.ref(loaded.images)
    train(loaded, preset("seed"), SETTINGS)
    del loaded
    gc.collect()
    assert images() is None, "TensorFlow still holds the image cache of a dataset nobody uses"


# ---------------------------------------------------------------------------
# the pool never takes a model the user can still see or bring back

def test_a_trained_model_the_viewer_refuses_leaves_the_current_and_previous_runs_as_they_were(data, monkeypatch):
    from cnndesk.core.model.architecture import CLASSES, LayerSpec
    from cnndesk.core.errors import UserError

    worker = engine_worker()
    train_in(worker, data)
    first = worker.model
    train_in(worker, data)
    second = worker.model
    assert held_models(worker) == [first]
    flat = [LayerSpec("Flatten"), LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"})]

    def refuse(model, class_names, preprocessing):
        raise UserError("The viewer cannot open this model.")

    monkeypatch.setattr(worker, "_inspector_for", refuse)
    with pytest.raises(UserError, match="cannot open this model"):
        worker.train(data, flat, SETTINGS, run=new_run_id(), task=TaskState())
    assert worker.model is second and held_models(worker) == [first]
    assert worker.inspector.model is second
    assert id(first) not in worker._pool._free and id(second) not in worker._pool._free


def test_a_project_whose_model_the_viewer_refuses_leaves_the_runs_as_they_were(data, tmp_path, monkeypatch):
    from cnndesk.core.errors import UserError
    from cnndesk.core.project.store import Project, save_project

    worker = engine_worker()
    train_in(worker, data)
    first = worker.model
    train_in(worker, data)
    second = worker.model
    save_project(tmp_path / "p", Project(class_names=data.class_names, layers=preset("seed")), second)

    def refuse(model, class_names, preprocessing):
        raise UserError("The project file does not match its model.")

    monkeypatch.setattr(worker, "_inspector_for", refuse)
    with pytest.raises(UserError, match="does not match"):
        worker.open_project(str(tmp_path / "p"))
    assert worker.model is second and held_models(worker) == [first]
    assert id(first) not in worker._pool._free


def test_training_on_several_devices_does_not_take_a_pooled_model(data, monkeypatch):
    """Each multi-GPU run has its own MirroredStrategy; a pooled model's variables belong to another one."""
    import contextlib

    import cnndesk.core.training.fitting as training

    monkeypatch.setattr(training, "distribution_scope", lambda device, strategy=None: contextlib.nullcontext())
    monkeypatch.setattr(training, "replica_count", lambda device="cpu", strategy=None: 1)  # no GPUs to count here
    pool = ModelPool()
    settings = TrainingSettings(batch_size=8, epochs=1, patience=0, seed=5, device="gpu:0,1")
    train(data, preset("seed"), settings, pool=pool)
    train(data, preset("seed"), settings, pool=pool)
    assert pool.compiled == 0 and pool.reused == 0

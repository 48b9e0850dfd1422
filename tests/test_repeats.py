"""Train ×N (core.training.repeats): N models with N seeds, recorded as runs of one group with their spread; the
best kept (saying its figure flatters it) or an ensemble that averages them (core.model.ensemble)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cnndesk.core.data.dataset import DatasetConfig, load_dataset, Preprocessing
from cnndesk.core.errors import UserError
from cnndesk.core.intervals import Spread, with_interval
from cnndesk.core.model.architecture import preset, TrainingSettings
from cnndesk.core.model.ensemble import ensemble_members, is_ensemble
from cnndesk.core.model.inspection import Inspector
from cnndesk.core.tasks import TaskState
from cnndesk.core.training.probes import known_labels, load_probes, ProbeFrame
from cnndesk.core.training.repeat_runs import group_runs, kept_run_id, MemberStarted
from cnndesk.core.training.repeats import train_repeats
from cnndesk.core.training.runs import Run

from conftest import write_dataset
from test_transfer import Log  # a listener that keeps the sentences and epochs it hears

SETTINGS = TrainingSettings(epochs=1, batch_size=16, seed=5, min_steps=0)  # made before the suite turns the minimum off


@pytest.fixture(scope="module")
def config():
    return DatasetConfig(Preprocessing((32, 32)), val_split=0.25, seed=5)


@pytest.fixture(scope="module")
def data(tmp_path_factory, config):
    return load_dataset(write_dataset(tmp_path_factory.mktemp("rep") / "d", per_class=12), config)


@pytest.fixture(scope="module")
def ensemble(data, config):
    heard = Log()
    repeats = train_repeats(data, preset("seed"), SETTINGS, config, 3, keep="ensemble", listener=heard)
    return repeats, heard


def test_three_models_train_with_three_seeds_each_said_and_their_spread_reported(ensemble, data):
    repeats, heard = ensemble
    assert repeats.seeds == [5, 6, 7]
    assert [m.settings.seed for m in repeats.members] == [5, 6, 7]
    assert [m for m in heard.messages if m.startswith("Model ")] == [
        "Model 1 of 3 (seed 5)", "Model 2 of 3 (seed 6)", "Model 3 of 3 (seed 7)"]
    assert len(heard.epochs) == 3  # one epoch each
    values = [m.val_accuracy for m in repeats.members]
    assert repeats.spread == Spread(tuple(values), len(data.val_index))
    assert repeats.spread.mean == pytest.approx(sum(values) / 3)
    assert (repeats.spread.low, repeats.spread.high) == (min(values), max(values))
    # the models differ: different seeds, different weights
    first, second = (m.result.model.get_weights()[0] for m in repeats.members[:2])
    assert not np.allclose(first, second)
    said = repeats.lines()[0]
    assert said.startswith("Validation accuracy of 3 models: mean ")
    assert with_interval(repeats.spread.mean, len(data.val_index)) in said


def test_the_ensemble_predicts_the_mean_of_its_members(ensemble, data):
    repeats, _ = ensemble
    model = repeats.model
    assert is_ensemble(model) and len(ensemble_members(model)) == 3
    x = np.asarray(data.images[:6], np.float32)
    mean = np.mean([np.asarray(m.result.model(x, training=False)) for m in repeats.members], axis=0)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), mean, atol=1e-6)
    assert repeats.kept == "ensemble" and repeats.best is None
    assert "ensemble of 3 models" in repeats.message
    row = repeats.history[0]
    predicted = np.asarray(model(np.asarray(data.images[data.val_index], np.float32), training=False)).argmax(1)
    assert row["val_accuracy"] == pytest.approx(float((predicted == data.labels[data.val_index]).mean()))


def test_the_members_and_the_ensemble_are_recorded_as_runs_of_one_group(ensemble, data):
    repeats, _ = ensemble
    earlier = [Run(id="r0", name="Run 1")]
    ids = ["m1", "m2", "m3"]
    runs = group_runs(earlier, repeats, ids, ensemble_id="e1", class_names=data.class_names, dataset_path=None,
                      preset="seed", layers=preset("seed"))
    assert [r.name for r in runs] == ["Run 2", "Run 3", "Run 4", "Run 5"]
    assert {r.group for r in runs} == {"m1"}
    assert [r.settings.seed for r in runs[:3]] == [5, 6, 7]
    assert runs[-1].members == ("m1", "m2", "m3") and runs[-1].is_ensemble
    assert Spread.from_json(runs[0].spread) == repeats.spread
    assert kept_run_id(repeats, ids, "e1") == "e1"
    assert runs[-1].group_text().startswith("ensemble of 3 · mean ")
    again = Run.from_json(runs[-1].to_json())
    assert (again.group, again.members, again.spread) == ("m1", runs[-1].members, runs[-1].spread)


def test_the_ensembles_run_shows_its_validation_figure_with_its_interval_as_its_members_do(ensemble, data):
    repeats, _ = ensemble
    runs = group_runs([], repeats, ["m1", "m2", "m3"], ensemble_id="e1", class_names=data.class_names,
                      dataset_path=None, preset="seed", layers=preset("seed"))
    n = len(data.val_index)
    assert [r.val_images for r in runs] == [n] * 4
    assert runs[-1].best_accuracy_text() == with_interval(repeats.history[0]["val_accuracy"], n)
    assert "unknown" not in runs[-1].best_accuracy_text()


def test_the_viewer_looks_inside_a_chosen_member_of_the_ensemble(ensemble, data):
    repeats, _ = ensemble
    ins = Inspector(repeats.model, data.class_names, data.preprocessing)
    assert ins.members == ["member_1", "member_2", "member_3"]
    assert ins.has_maps and all(n.startswith("member_1/") for n in ins.layer_names)
    assert ins.output_note == ""  # the averaged outputs are probabilities
    image = data.images[0]
    maps, probs = ins.activation_maps(image)
    np.testing.assert_allclose(probs, np.asarray(repeats.model(image[None].astype(np.float32)))[0], atol=1e-5)
    member = repeats.members[1].result.model
    ins.choose_member(1)
    assert all(n.startswith("member_2/") for n in ins.layer_names)
    maps2, probs2 = ins.activation_maps(image)
    np.testing.assert_allclose(probs2, probs, atol=1e-6)  # still the ensemble's prediction
    conv = next(l for l in member.layers if "Conv" in type(l).__name__)
    import keras

    expected = keras.Model(member.inputs[0], conv.output)(image[None].astype(np.float32))
    np.testing.assert_allclose(maps2[0][1], np.asarray(expected)[0], atol=1e-5)
    cam = ins.gradcam(image, 0, ins.conv_layer_names[-1])
    assert cam.shape == dict(maps2)[ins.conv_layer_names[-1]].shape[:2] and np.isfinite(cam).all()
    with pytest.raises(UserError, match="3 members"):
        ins.choose_member(3)


def test_keeping_the_best_says_its_figure_flatters_it(data, config):
    repeats = train_repeats(data, preset("seed"), SETTINGS, config, 2, keep="best", listener=Log())
    values = [m.val_accuracy for m in repeats.members]
    assert repeats.kept == "best" and repeats.best == int(np.argmax(values))
    assert repeats.model is repeats.members[repeats.best].result.model
    assert "flatters it" in repeats.message and "used to choose it" in repeats.message
    runs = group_runs([], repeats, ["a", "b"], ensemble_id=None, class_names=data.class_names, dataset_path=None,
                      preset="seed", layers=preset("seed"))
    assert len(runs) == 2 and "flatters it" in runs[repeats.best].kept_message
    assert "flatters" not in runs[1 - repeats.best].kept_message


def test_with_a_new_split_each_model_trains_on_its_own_split(data, config):
    calls = []

    def fit(d, layers, settings, listener, state, **kw):
        calls.append((settings.seed, tuple(d.val_index)))
        from cnndesk.core.training.fitting import train

        return train(d, layers, dataclasses.replace(settings, epochs=1), listener, state, **kw)

    repeats = train_repeats(data, preset("seed"), SETTINGS, config, 2, keep="ensemble", resplit_each=True,
                            listener=Log(), fit=fit)
    assert [s for s, _ in calls] == [5, 6]
    assert calls[0][1] == tuple(data.val_index) and calls[1][1] != calls[0][1]
    assert [m.config.seed for m in repeats.members] == [5, 6]
    assert repeats.history[0]["val_accuracy"] is None and "no validation figure" in repeats.message


def test_stop_trains_no_further_model(data, config):
    state = TaskState()
    seen = []

    def on_member(i, member):
        seen.append(i)
        state.request_interruption()

    repeats = train_repeats(data, preset("seed"), SETTINGS, config, 3, keep="ensemble", state=state,
                            on_member=on_member)
    assert seen == [0] and len(repeats.members) == 1 and repeats.cancelled
    assert repeats.kept == "best"  # one model cannot make an ensemble


def test_the_reports_go_through_the_task_state_as_member_started(data, config):
    got = []

    class Reports(TaskState):
        def report(self, item):
            got.append(item)

    train_repeats(data, preset("seed"), dataclasses.replace(SETTINGS, epochs=1), config, 2, state=Reports())
    assert [g for g in got if isinstance(g, MemberStarted)] == [MemberStarted(1, 2, 5), MemberStarted(2, 2, 6)]


def test_each_model_records_the_probe_images_epoch_by_epoch_as_one_training_does(data, config):
    probes = load_probes([data.paths[0], data.paths[-1]], data.preprocessing, data.class_names, known_labels(data))
    got = []

    class Reports(TaskState):
        def report(self, item):
            got.append(item)

    repeats = train_repeats(data, preset("seed"), dataclasses.replace(SETTINGS, epochs=2), config, 2,
                            state=Reports(), probes=probes)
    recordings = [m.recording for m in repeats.members]
    assert all(r is not None and r.epochs() == [1, 2] for r in recordings)
    assert recordings[0] is not recordings[1] and [p.name for p in recordings[1].probes] == [p.name for p in probes]
    assert not np.array_equal(recordings[0].frames[-1].top_p, recordings[1].frames[-1].top_p)  # two models
    # the frames go out as they are recorded, as a single training's do: 2 models × 2 epochs
    assert [f.epoch for f in got if isinstance(f, ProbeFrame)] == [1, 2, 1, 2]
    assert train_repeats(data, preset("seed"), SETTINGS, config, 2, listener=Log()).members[0].recording is None


@pytest.mark.parametrize("count,keep", [(1, "best"), (21, "best"), (2, "worst")])
def test_an_impossible_request_is_refused_in_words(data, config, count, keep):
    with pytest.raises(UserError):
        train_repeats(data, preset("seed"), SETTINGS, config, count, keep=keep)

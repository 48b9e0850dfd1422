"""Pretrained backbones: weights through the Keras cache, two-stage training, cached features, exports."""

from __future__ import annotations

import io
import warnings

import keras
import numpy as np
import pytest

from cnndesk.core.model import backbones
from cnndesk.core.model.architecture import build_model, layer_table, LayerSpec, preset, total_params, TrainingSettings
from cnndesk.core.model.backbones import (
    backbone_blocks, ensure_weights, find_backbone, weights_path, WeightsUnavailable,
)
from cnndesk.core.data.dataset import DatasetConfig, load_dataset, Preprocessing
from cnndesk.core.errors import ArchitectureError, Cancelled, UserError
from cnndesk.core.tasks import TaskState
from cnndesk.core.training.progress import TrainingListener
from cnndesk.core.training.fitting import train
from cnndesk.core.training.transfer import CACHED_PATH, THROUGH_PATH

from conftest import write_dataset
from pretrained import cache_weights, offline_urlopen, save_legacy_weights

SETTINGS = dict(batch_size=8, learning_rate=1e-2, epochs=1, patience=0, seed=3)


class Log(TrainingListener):
    def __init__(self):
        self.messages, self.epochs = [], []

    def on_message(self, text):
        self.messages.append(text)

    def on_epoch(self, report):
        self.epochs.append(report)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("urllib.request.urlopen", offline_urlopen)
    return tmp_path / "keras-home"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("transfer") / "tiny", per_class=8, size=32)
    return load_dataset(root, DatasetConfig(Preprocessing((32, 32)), val_split=0.25, seed=3))


@pytest.mark.slow
def test_the_table_knows_each_backbone_without_building_it():
    for name in ("mobilenetv3small", "efficientnetb0", "mobilenetv2"):
        stack = preset(name)
        stack[0].params["weights"] = "none"  # random weights: the shapes and counts are the same
        rows = layer_table(stack, (40, 72, 3), 3)
        model = build_model(stack, (40, 72, 3), 3)
        assert total_params(rows) == model.count_params()
        assert rows[1].output_shape == tuple(find_backbone(model).output.shape[1:])


@pytest.mark.slow
def test_each_family_groups_its_layers_into_the_blocks_it_names(keras_home):
    for name, fam in backbones.FAMILIES.items():
        model = getattr(keras.applications, name)(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                  name=fam.layer_name)
        assert [b for b, _ in backbone_blocks(model)] == list(fam.blocks)


def test_a_backbone_must_come_first_and_take_colour_images_of_32_pixels():
    stack = preset("mobilenetv3small")
    with pytest.raises(ArchitectureError, match="RGB"):
        layer_table(stack, (64, 64, 1), 3)
    with pytest.raises(ArchitectureError, match="at least 32x32"):
        layer_table(stack, (24, 64, 3), 3)
    with pytest.raises(ArchitectureError, match="first layer"):
        layer_table([LayerSpec("Dropout")] + stack, (64, 64, 3), 3)
    stack[0].params["fine_tune"] = 99
    with pytest.raises(ArchitectureError, match="13 blocks"):
        layer_table(stack, (64, 64, 3), 3)


def test_offline_with_an_empty_cache_says_which_file_its_size_and_where(keras_home):
    params = preset("mobilenetv3small")[0].params
    with pytest.raises(WeightsUnavailable) as e:
        ensure_weights(params, (32, 32, 3))
    text = str(e.value)
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in text
    assert "4.3 MB" in text and str(keras_home / "models") in text
    assert text.startswith("No internet connection: the weights could not be downloaded.") and "Errno" not in text
    assert "choose a weights file" in text
    assert not list((keras_home / "models").iterdir())  # no partial file left


class FakeResponse(io.BytesIO):
    headers = {"Content-Length": str(4 * backbones.CHUNK)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_a_download_reports_progress_and_cancel_leaves_nothing(keras_home):
    seen = []

    class Cancelling(TaskState):
        def on_progress(self, percent):
            seen.append(percent)
            if percent >= 50:
                self.request_interruption()

    state = Cancelling(min_interval=0)
    opener = lambda url, timeout: FakeResponse(b"x" * (4 * backbones.CHUNK))
    with pytest.raises(Cancelled, match="cancelled; nothing was kept"):
        ensure_weights(preset("mobilenetv3small")[0].params, (32, 32, 3), state, opener)
    assert seen[:2] == [25.0, 50.0]
    assert not list((keras_home / "models").iterdir())
    # a download that arrives whole but does not match Keras' checksum is not kept either
    with pytest.raises(WeightsUnavailable, match="damaged"):
        ensure_weights(preset("mobilenetv3small")[0].params, (32, 32, 3), TaskState(), opener)
    assert not list((keras_home / "models").iterdir())


def test_a_download_without_a_known_checksum_lands_under_the_keras_name(keras_home):
    # MobileNetV2's files have no published hash in Keras; the file must still arrive whole and renamed
    opener = lambda url, timeout: FakeResponse(b"y" * (4 * backbones.CHUNK))
    path = ensure_weights(preset("mobilenetv2")[0].params, (96, 96, 3), TaskState(), opener)
    assert path.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert path.stat().st_size == 4 * backbones.CHUNK


@pytest.mark.slow
def test_cached_weights_are_the_ones_the_model_gets(keras_home):
    path = cache_weights(keras_home, "MobileNetV3Small")
    reference = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
    reference.load_weights(str(path))
    model = build_model(preset("mobilenetv3small"), (32, 32, 3), 3)
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(find_backbone(model)(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_efficientnet_from_a_file_computes_what_keras_imagenet_build_does(keras_home, monkeypatch):
    path = cache_weights(keras_home, "EfficientNetB0")
    # Keras' own ImageNet build, handed the same file instead of downloading it
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", lambda *a, **k: str(path))
    reference = keras.applications.EfficientNetB0(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    model = build_model(preset("efficientnetb0"), (32, 32, 3), 3)
    x = np.random.default_rng(1).integers(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(find_backbone(model)(x), reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_chosen_weights_file_is_used_and_a_wrong_one_refused(keras_home, tmp_path):
    chosen = cache_weights(tmp_path / "elsewhere", "MobileNetV3Small")
    stack = preset("mobilenetv3small")
    stack[0].params["weights"] = str(chosen)
    assert ensure_weights(stack[0].params, (32, 32, 3)) == chosen
    build_model(stack, (32, 32, 3), 3)
    other = save_legacy_weights(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), tmp_path / "o.h5")
    stack[0].params["weights"] = str(other)
    with pytest.raises(UserError, match="does not fit MobileNetV3Small"):
        build_model(stack, (32, 32, 3), 3)


def test_a_chosen_file_that_holds_no_keras_weights_is_refused_in_plain_words(keras_home, tmp_path):
    import h5py

    stack = preset("mobilenetv3small")
    photo = tmp_path / "photo.h5"
    photo.write_bytes(b"\xff\xd8\xff\xe0 a JPEG with the wrong name")
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    for path, words in ((photo, "This file is not a Keras weights file (.h5)"),
                        (empty, "holds no Keras weights")):
        stack[0].params["weights"] = str(path)
        for attempt in (lambda: weights_path(stack[0].params, (32, 32, 3)),
                        lambda: build_model(stack, (32, 32, 3), 3)):
            with pytest.raises(UserError) as e:
                attempt()
            text = str(e.value)
            assert words in text and str(path) in text, text
            assert "signature" not in text and "synchronously" not in text and "Errno" not in text


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A MobileNetV2 preset trained for one epoch on weights from a temporary Keras cache, and its log."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("keras-home")
        mp.setenv("KERAS_HOME", str(home))
        cache_weights(home, "MobileNetV2")
        before = build_model(preset("mobilenetv2"), (32, 32, 3), 3)
        log = Log()
        result = train(data, preset("mobilenetv2"), TrainingSettings(**SETTINGS), log)
    return result, log, find_backbone(before).get_weights()


@pytest.mark.slow
def test_the_head_trains_on_cached_features_and_says_so(trained, data):
    result, log, loaded = trained
    assert any(CACHED_PATH in m for m in log.messages)
    assert len(result.history) == 1 and result.history[0]["val_accuracy"] is not None
    assert result.history[0]["val_images"] == result.val_images == len(data.val_index) > 0  # its interval's count
    for a, b in zip(loaded, find_backbone(result.model).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the backbone stayed as loaded


@pytest.mark.slow
def test_fine_tuning_goes_through_the_backbone_changes_the_top_blocks_only_and_keeps_batchnorm(keras_home, data):
    cache_weights(keras_home, "MobileNetV3Small")
    stack = preset("mobilenetv3small")
    stack[0].params["fine_tune"] = 2
    before = find_backbone(build_model(stack, (32, 32, 3), 3))
    log = Log()
    result = train(data, stack, TrainingSettings(**SETTINGS), log, augment=("flip",))
    after = find_backbone(result.model)
    assert [r.epoch for r in log.epochs] == [1, 2]
    assert any(THROUGH_PATH in m for m in log.messages)  # augmentation: no cached features
    assert not any(CACHED_PATH in m for m in log.messages)
    assert any("Fine-tuning the top 2 blocks" in m and "0.001" in m for m in log.messages)
    old = [l for _, layers in backbone_blocks(before) for l in layers]  # Keras numbers unnamed layers per build
    new = [(block, l) for block, layers in backbone_blocks(after) for l in layers]
    for old_layer, (block, layer) in zip(old, new, strict=True):
        same = all(np.array_equal(a, b) for a, b in zip(old_layer.get_weights(), layer.get_weights()))
        tuned = block in ("expanded_conv_10", "top") and not isinstance(layer, keras.layers.BatchNormalization)
        assert same != (tuned and bool(layer.weights)), layer.name


@pytest.mark.slow
def test_an_exported_model_loads_in_plain_keras_with_identical_predictions(trained, data, tmp_path):
    model = trained[0].model
    path = tmp_path / "model.keras"
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(path, safe_mode=True)
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    x = data.images[:5].astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.slow
def test_the_viewer_reads_maps_inside_a_trained_backbone(trained, data):
    from cnndesk.core.model.inspection import Inspector

    inspector = Inspector(trained[0].model, data.class_names, data.preprocessing)
    names = inspector.layer_names
    assert "mobilenetv2/Conv1" in names
    maps, probabilities = inspector.activation_maps(data.images[0])
    assert [n for n, _ in maps] == names and all(m.ndim == 3 for _, m in maps)
    assert probabilities.shape[-1] == 3
    cam = inspector.gradcam(data.images[0], 0, "mobilenetv2/Conv1")
    assert cam.shape == maps[0][1].shape[:2] and 0 <= cam.min() <= cam.max() <= 1


@pytest.mark.slow
def test_a_project_with_a_backbone_saves_and_reopens_with_the_same_predictions(trained, data, tmp_path):
    from cnndesk.core.data.dataset import DatasetConfig
    from cnndesk.core.project.store import open_project, Project, save_project

    result = trained[0]
    layers = preset("mobilenetv2")
    project = Project(dataset_path=str(data.root), class_names=data.class_names,
                      dataset=DatasetConfig(Preprocessing((32, 32))), preset="mobilenetv2", layers=layers,
                      settings=TrainingSettings(**SETTINGS), history=result.history, best_epoch=result.best_epoch)
    save_project(tmp_path / "p", project, result.model)
    reopened, model = open_project(tmp_path / "p")
    assert reopened.preset == "mobilenetv2" and reopened.layers[0].to_json() == layers[0].to_json()
    x = data.images[:3].astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)

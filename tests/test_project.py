"""Saving and opening project folders and model files: round trips, atomic saves, damaged and hostile files."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from cnndesk.core.architecture import LayerSpec, TrainingSettings, build_model, preset
from cnndesk.core.dataset import DatasetConfig, Preprocessing
from cnndesk.core.errors import ModelFileError, ProjectError
from cnndesk.core.project import MODEL_FILE, PROJECT_FILE, Project, is_project, load_keras_model, open_project, \
    save_project

FIXTURES = Path(__file__).parent / "fixtures"
CLASSES = ["cat", "dog", "owl"]


def _project(**kw) -> Project:
    p = Project(
        dataset_path="/data/pets", class_names=list(CLASSES),
        dataset=DatasetConfig(Preprocessing((24, 20), "rgb"), val_split=0.3, seed=9, augment=("flip",)),
        preset="tinyvgg", layers=preset("tinyvgg"),
        settings=TrainingSettings(optimizer="rmsprop", learning_rate=0.002, batch_size=8, epochs=4, seed=9),
        history=[{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 0.9, "val_accuracy": 0.55,
                  "images_per_s": 100.0, "seconds": 1.0}],
        best_epoch=1)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(4)
    return build_model(preset("tinyvgg"), (24, 20, 3), 3)


@pytest.fixture
def saved(tmp_path, model):
    folder = tmp_path / "proj"
    save_project(folder, _project(), model)
    return folder


def _images():
    return np.random.default_rng(1).integers(0, 256, (4, 24, 20, 3)).astype(np.float32)


def test_a_saved_project_opens_with_everything_it_had(saved, model):
    assert sorted(p.name for p in saved.iterdir()) == [MODEL_FILE, PROJECT_FILE]
    assert is_project(saved) and is_project(saved / PROJECT_FILE)
    project, reopened = open_project(saved)
    original = _project()
    for field in ("dataset_path", "class_names", "dataset", "preset", "layers", "settings", "history", "best_epoch"):
        assert getattr(project, field) == getattr(original, field), field
    assert project.preprocessing == Preprocessing((24, 20), "rgb")
    assert project.saved_at is not None
    np.testing.assert_allclose(np.asarray(reopened(_images())), np.asarray(model(_images())), atol=1e-6)
    # opening the project.json itself, and without the model, works too
    assert open_project(saved / PROJECT_FILE, load_model=False) == (project, None)


def test_a_project_without_a_trained_model_opens_with_none(tmp_path):
    save_project(tmp_path / "p", _project())
    project, model = open_project(tmp_path / "p")
    assert model is None and project.class_names == CLASSES


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failure_while_writing_the_model_leaves_the_previous_save(saved, model, monkeypatch):
    before = _snapshot(saved)

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(model), "save", full_disk)
    with pytest.raises(ProjectError) as e:
        save_project(saved, _project(history=[]), model)
    assert "the disk is full" in str(e.value) and "previous save is unchanged" in str(e.value)
    assert _snapshot(saved) == before  # same two files, same bytes, no temporary files left


def test_a_failure_while_writing_project_json_leaves_the_previous_model_too(saved, model, monkeypatch):
    before = _snapshot(saved)
    keras.utils.set_random_seed(99)
    other_model = build_model(preset("tinyvgg"), (24, 20, 3), 3)  # different weights

    def fail(self, *args, **kwargs):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(ProjectError, match="Permission denied"):
        save_project(saved, _project(history=[]), other_model)
    assert _snapshot(saved) == before


def test_a_project_from_a_newer_cnndesk_is_refused(tmp_path):
    d = _project().to_json()
    d["schema_version"] = 7
    (tmp_path / PROJECT_FILE).write_text(json.dumps(d))
    with pytest.raises(ProjectError) as e:
        open_project(tmp_path)
    assert "newer cnndesk (schema 7" in str(e.value) and "Update cnndesk" in str(e.value)


@pytest.mark.parametrize("text, words", [
    ('{"schema_version": 1, "class_names": [', "is damaged and cannot be read"),
    ("\xff\xfe not text", "is damaged"),
    ('{"class_names": ["a", "b"]}', "not a cnndesk project file"),
    ('["schema_version"]', "not a cnndesk project file"),
    ('{"schema_version": "one"}', "invalid schema_version"),
    ('{"schema_version": 1, "layers": []}', "is damaged: KeyError"),
    ('{"schema_version": 1, "dataset": {"preprocessing": {"image_size": [32, 32]}}, "layers": 5}', "is damaged"),
    ('{"schema_version": 1, "dataset": {"preprocessing": {"image_size": [32, 32]}}, "layers": [],'
     ' "settings": "fast"}', "is damaged"),
])
def test_a_damaged_project_json_is_refused_with_a_message(tmp_path, text, words):
    (tmp_path / PROJECT_FILE).write_bytes(text.encode("latin-1"))
    with pytest.raises(ProjectError, match=words):
        open_project(tmp_path)


def test_a_folder_that_is_not_a_project_is_refused(tmp_path):
    with pytest.raises(ProjectError, match="is not a cnndesk project"):
        open_project(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "empty zip"])
def test_a_damaged_model_file_is_not_a_readable_keras_model(saved, damage):
    path = saved / MODEL_FILE
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not a zip":
        path.write_text("definitely not a model")
    else:
        path.unlink()
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "hello")
    with pytest.raises(ModelFileError, match="not a readable .keras model"):
        open_project(saved)
    with pytest.raises(ModelFileError, match="not a readable .keras model"):
        load_keras_model(path)


def test_model_paths_that_are_not_keras_files_are_refused(tmp_path, saved):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_keras_model(tmp_path / "gone.keras")
    with pytest.raises(ModelFileError, match="is a folder"):
        load_keras_model(saved)
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="is not a .keras model file"):
        load_keras_model(tmp_path / "weights.h5")


def test_a_model_file_with_python_code_is_refused_and_the_code_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "the_lambda_ran"
    monkeypatch.setenv("CNNDESK_TEST_MARKER", str(marker))
    inp = keras.Input((8, 8, 3))
    # only builtins, so that the serialized code would run anywhere: it creates the marker file
    touch = lambda t: (open(__import__("os").environ["CNNDESK_TEST_MARKER"], "w").close(), t)[1]  # noqa: E731
    x = keras.layers.Lambda(touch, output_shape=(8, 8, 3))(inp)
    assert not marker.exists()
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inp, out).save(tmp_path / "hostile.keras")
    shutil.copy(tmp_path / "hostile.keras", tmp_path / "copy.keras")

    with pytest.raises(ModelFileError, match="contains code"):
        load_keras_model(tmp_path / "hostile.keras")
    assert not marker.exists()

    # the file really carries code that runs when loaded unsafely and called: the check above can fail
    unsafe = keras.saving.load_model(tmp_path / "copy.keras", safe_mode=False)
    assert not marker.exists()
    unsafe(np.zeros((1, 8, 8, 3), np.float32))
    assert marker.exists()


def test_a_schema_1_project_written_by_hand_still_opens(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(FIXTURES / "project_v1", folder)
    project, model = open_project(folder)
    assert model is None
    assert project.class_names == ["circle", "cross", "square", "triangle"]
    assert project.dataset_path == "/home/ada/datasets/shapes"
    assert project.dataset == DatasetConfig(Preprocessing((64, 48), "grayscale"), val_split=0.25, seed=42,
                                            augment=("flip", "zoom"), class_weights=True)
    assert project.layers[0] == LayerSpec("Conv2D", {"filters": 8, "kernel_size": 3, "activation": "relu",
                                                     "padding": "same"})
    assert [l.kind for l in project.layers] == ["Conv2D", "MaxPool2D", "Dropout", "GlobalAveragePooling2D", "Dense"]
    assert project.settings == TrainingSettings(optimizer="sgd", learning_rate=0.01, batch_size=16, epochs=3,
                                                patience=2, seed=42)
    assert [h["val_accuracy"] for h in project.history] == [0.47, 0.61, 0.6]
    assert project.best_epoch == 2
    # and it saves again in the current schema
    save_project(folder, project)
    assert json.loads((folder / PROJECT_FILE).read_text())["schema_version"] >= 1
    assert open_project(folder)[0].layers == project.layers
    assert not [p for p in os.listdir(folder) if p.startswith(".")]


def test_saved_project_files_can_be_read_by_others_as_usual(tmp_path):
    import os
    import stat

    from cnndesk.core.project import Project, save_project

    old = os.umask(0o022)
    try:
        folder = save_project(tmp_path / "p", Project())
    finally:
        os.umask(old)
    assert stat.S_IMODE((folder / "project.json").stat().st_mode) == 0o644

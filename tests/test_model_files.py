"""Model files from strangers: crafted ``.keras`` archives are refused in moments, with one clear sentence.

Each case of issue 12 is rebuilt here, small: a 99 KB file whose config holds
a 50 MB layer name, a config and a weights member that inflate to 2 GB,
path-traversal member names, a custom registered layer. The CLI must answer
each within seconds, in bounded memory, with one line and exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cnndesk.core.model.architecture import build_model, preset
from cnndesk.core.errors import ModelFileError
from cnndesk.core.model.config_checks import LIMITS, Limits, unknown_classes
from cnndesk.core.model.keras_file import check_model_file, check_model_path
from cnndesk.core.model.loading import load_keras_model, load_model_with_labels

from crafted_models import MiB, bomb_member, config_of, raw_member, read_members, rewrite, write_zip

from conftest import child_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: how every custom-class refusal ends
ONLY_KERAS = "; cnndesk loads only Keras's own layers, so use the model in the program that defines them"
GiB = 1024 * MiB


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """A real model saved by Keras: the base of every crafted file."""
    keras.utils.set_random_seed(3)
    path = tmp_path_factory.mktemp("real") / "real.keras"
    build_model(preset("seed"), (16, 16, 3), 2).save(path)
    return path


def _with_layer_name(real, target, name: str) -> Path:
    config = config_of(real)
    config["config"]["layers"][1]["config"]["name"] = name
    return rewrite(real, target, config=config)


# -- the crafted files (one builder per case, shared by the core and the CLI tests) ----------------------------

def long_name_file(real, d) -> Path:
    """A 64 KB file whose config holds a 50 MB layer name."""
    return _with_layer_name(real, d / "long-name.keras", "A" * (50 * MiB))


def config_bomb_file(real, d) -> Path:
    """A 2 MB zip whose config.json inflates to 2 GB."""
    members = read_members(real)
    return write_zip(d / "config-bomb.keras", [raw_member("metadata.json", members["metadata.json"]),
                                               bomb_member("config.json", 2 * 10**9),
                                               raw_member("model.weights.h5", members["model.weights.h5"], False)])


def weights_bomb_file(real, d) -> Path:
    """A real config with a weights member that inflates to 2 GB."""
    return rewrite(real, d / "weights-bomb.keras", replace={"model.weights.h5": bomb_member("model.weights.h5",
                                                                                             2 * 10**9, b"\0")})


def traversal_file(real, d) -> Path:
    """A real model plus a member that would be written outside the archive's folder."""
    return rewrite(real, d / "traversal.keras", extra=[raw_member("assets/../../../evil.txt", b"pwned")])


CRAFTED = {"long layer name": long_name_file, "config bomb": config_bomb_file, "weights bomb": weights_bomb_file,
           "path traversal": traversal_file}


def test_a_real_model_passes_the_check_and_loads(real):
    config = check_model_file(real)
    assert config["class_name"] == "Sequential"
    assert unknown_classes(config) == []
    assert isinstance(load_keras_model(real), keras.Model)


@pytest.mark.slow
def test_the_limits_comfortably_allow_a_keras_applications_model(tmp_path):
    path = tmp_path / "mobilenet.keras"
    keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=5).save(path)
    config = check_model_file(path)
    assert unknown_classes(config) == []  # a Functional model: Keras's tensor markers are not custom classes
    info = {i.filename: i.file_size for i in zipfile.ZipFile(path).infolist()}
    # about 100x room on the config, 10x on the layers, and weights are stored uncompressed
    assert info["config.json"] * 50 < LIMITS.config_bytes
    assert len(config["config"]["layers"]) * 10 < LIMITS.layers
    assert isinstance(load_keras_model(path), keras.Model)


def test_a_50_mb_layer_name_in_a_small_file_is_refused_by_the_config_size(real, tmp_path):
    path = long_name_file(real, tmp_path)
    assert path.stat().st_size < 200_000
    t = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"config.json would inflate to 50.0 MB, over the limit of 16.0 MB"):
        load_keras_model(path)
    assert time.perf_counter() - t < 2


def test_a_long_layer_name_within_the_config_size_is_refused_by_the_string_limit(real, tmp_path):
    path = _with_layer_name(real, tmp_path / "name.keras", "B" * 200_000)
    with pytest.raises(ModelFileError, match=r"a layer name of 200,000 characters, over the limit of 10,000"):
        load_keras_model(path)


def test_a_config_that_inflates_to_2_gb_is_refused_without_reading_it(real, tmp_path):
    path = config_bomb_file(real, tmp_path)
    assert path.stat().st_size < 3 * MiB
    t = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"config.json would inflate to 1.9 GB, over the limit of 16.0 MB"):
        load_keras_model(path)
    assert time.perf_counter() - t < 2


def test_a_config_that_inflates_past_its_declared_size_is_read_no_further(real, tmp_path):
    name, payload, method, crc, size = bomb_member("config.json", 64 * MiB)
    members = read_members(real)
    path = write_zip(tmp_path / "liar.keras", [(name, payload, method, crc, 1000),  # declares 1000 bytes
                                               raw_member("model.weights.h5", members["model.weights.h5"], False)])
    with pytest.raises(ModelFileError, match=r"not a readable .keras model: config.json is damaged"):
        load_keras_model(path)


def test_a_weights_bomb_is_refused_by_its_compression_ratio(real, tmp_path):
    path = weights_bomb_file(real, tmp_path)
    t = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"model.weights.h5 would inflate [\d,]+-fold .* over the limit of "
                                             r"100-fold: a decompression bomb"):
        load_keras_model(path)
    assert time.perf_counter() - t < 2


def test_a_member_declaring_more_bytes_than_the_file_has_is_damaged(real, tmp_path):
    members = read_members(real)
    weights = members["model.weights.h5"]
    name, payload, method, crc, size = raw_member("model.weights.h5", weights, False)
    path = write_zip(tmp_path / "short.keras", [raw_member("config.json", members["config.json"]),
                                                (name, payload[:1000], method, crc, size, 10 * MiB)])
    with pytest.raises(ModelFileError, match=r"declares 10.0 MB stored but the file has only .* \(damaged or truncated\)"):
        load_keras_model(path)


@pytest.mark.parametrize("member", ["../evil.txt", "assets/../../evil.txt", "/etc/cron.d/evil", "assets\\..\\evil",
                                    "C:evil.txt"])
def test_path_traversal_member_names_are_refused_by_name(real, tmp_path, member, capfd):
    path = rewrite(real, tmp_path / "t.keras", extra=[raw_member(member, b"pwned")])
    with pytest.raises(ModelFileError, match=r"holds a member named .* that points outside the archive"):
        load_keras_model(path)
    assert capfd.readouterr().err == ""  # no raw zipfile warning


def test_an_unexpected_member_is_refused(real, tmp_path):
    path = rewrite(real, tmp_path / "u.keras", extra=[raw_member("payload.py", b"import os")])
    with pytest.raises(ModelFileError, match=r"unexpected member 'payload.py'"):
        load_keras_model(path)


def test_a_member_stored_twice_is_refused(real, tmp_path):
    path = rewrite(real, tmp_path / "d.keras", extra=[raw_member("config.json", b"{}")])
    with pytest.raises(ModelFileError, match=r"holds the member 'config.json' twice"):
        load_keras_model(path)


def test_thousands_of_members_are_refused(real, tmp_path):
    path = rewrite(real, tmp_path / "m.keras", extra=[raw_member(f"assets/{i}", b"") for i in range(1200)])
    with pytest.raises(ModelFileError, match=r"holds 1,203 archive members; .* \(limit 1,000\)"):
        load_keras_model(path)


def test_tens_of_thousands_of_members_are_refused_from_the_end_record_alone(real, tmp_path):
    path = rewrite(real, tmp_path / "many.keras", extra=[raw_member(f"assets/{i}", b"", False) for i in range(60_000)])
    assert path.stat().st_size > 5 * MiB
    t = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"holds 60,003 archive members; .* \(limit 1,000\)"):
        check_model_file(path)
    assert time.perf_counter() - t < 0.2  # without opening the archive: zipfile makes an object per member


def test_a_deeply_nested_config_is_refused(real, tmp_path):
    config = config_of(real)
    deep: list = []
    for _ in range(500):
        deep = [deep]
    config["config"]["extra"] = deep
    path = rewrite(real, tmp_path / "n.keras", config=config)
    with pytest.raises(ModelFileError, match=r"nested more than 64 levels deep"):
        load_keras_model(path)


def test_a_config_nested_beyond_what_python_parses_is_refused(real, tmp_path):
    path = rewrite(real, tmp_path / "n.keras", config=b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ModelFileError, match=r"nested deeper than Python can parse"):
        load_keras_model(path)


def test_a_config_with_too_many_layers_is_refused(real, tmp_path):
    config = config_of(real)
    layer = config["config"]["layers"][-1]
    config["config"]["layers"] = [layer] * 6000
    path = rewrite(real, tmp_path / "l.keras", config=config)
    with pytest.raises(ModelFileError, match=r"describes more than 5,000 layers"):
        load_keras_model(path)


def test_a_layer_sized_to_allocate_gigabytes_is_refused(real, tmp_path):
    config = config_of(real)
    config["config"]["layers"][-1]["config"]["units"] = 10**9
    path = rewrite(real, tmp_path / "w.keras", config=config)
    with pytest.raises(ModelFileError, match=r"sets 'units' to 1,000,000,000, over the limit of 65,536"):
        load_keras_model(path)


def test_layers_that_would_allocate_far_more_than_the_weights_file_holds_are_refused(real, tmp_path):
    config = config_of(real)
    dense = config["config"]["layers"][-1]
    assert dense["class_name"] == "Dense"
    dense["config"]["units"] = 60_000  # within the dimension limit, but after a Flatten of 150,528 values:
    dense["build_config"]["input_shape"] = [None, 150_528]  # 9 billion parameters, 36 GB
    path = rewrite(real, tmp_path / "wide.keras", config=config)
    with pytest.raises(ModelFileError, match=r"describes layers of about 9,031,6\d\d,\d{3} parameters \(33.6 GB of "
                                             r"memory\) but its weights file holds only .*: a memory bomb"):
        load_keras_model(path)


@pytest.mark.slow
def test_the_parameter_estimate_matches_real_models(tmp_path, real):
    from cnndesk.core.model.config_checks import estimate_parameters

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=5)
    path = tmp_path / "m.keras"
    model.save(path)
    estimate = estimate_parameters(check_model_file(path))
    assert 0.9 * model.count_params() < estimate <= model.count_params()  # biases and norms not counted


def _custom_layer_file(real, path) -> Path:
    config = config_of(real)
    custom = {"module": None, "class_name": "Scale01", "registered_name": "mine>Scale01",
              "config": {"name": "scale01", "trainable": True}, "build_config": {"input_shape": [None, 16, 16, 3]}}
    config["config"]["layers"].insert(1, custom)
    return rewrite(real, path, config=config)


def test_a_custom_registered_layer_is_named(real, tmp_path):
    path = _custom_layer_file(real, tmp_path / "custom.keras")
    with pytest.raises(ModelFileError) as e:
        load_keras_model(path)
    assert str(e.value) == ("custom.keras: the model uses a layer cnndesk cannot load safely: Scale01 (custom code, "
                            f"registered as `mine>Scale01`){ONLY_KERAS}.")


def test_unknown_classes_lists_custom_objects_once_and_not_keras_own():
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [
        {"module": "keras.layers", "class_name": "Dense", "config": {
            "kernel_initializer": {"module": "my.inits", "class_name": "Odd", "config": {}, "registered_name": None}}},
        {"module": None, "class_name": "A", "registered_name": "p>A", "config": {}},
        {"module": None, "class_name": "A", "registered_name": "p>A", "config": {}},
        {"module": None, "class_name": "B", "registered_name": "p>B", "config": {}},
    ]}}
    assert unknown_classes(config, lambda n: n == "p>B") == [("object", "my.inits.Odd"), ("layer", "p>A")]


def test_a_custom_layer_keras_writes_without_registering_it_is_named_by_its_class(tmp_path):
    path = tmp_path / "mine.keras"
    _with_custom_layer().save(path)
    with pytest.raises(ModelFileError) as e:
        load_keras_model(path)
    assert str(e.value) == f"mine.keras: the model uses a layer cnndesk cannot load safely: MyCustomLayer (custom code){ONLY_KERAS}."


# -- legacy .h5 and SavedModel folders -----------------------------------------------------------------------

class MyCustomLayer(keras.layers.Layer):
    """A layer of the program that saved the model: no other program can build it."""

    def call(self, x):
        return x * 2.0


def _small_classifier(middle=()) -> keras.Model:
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((16, 16, 3)), *middle, keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])


def _with_custom_layer() -> keras.Model:
    return _small_classifier([MyCustomLayer()])


def _save_h5(model: keras.Model, path: Path) -> Path:
    """``model.save("x.h5")``: Keras 3 still writes the legacy format (and warns that it is legacy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    return path


def test_an_h5_written_by_keras_opens_with_the_same_predictions_and_the_labels_beside_it(tmp_path):
    model = _small_classifier([keras.layers.Rescaling(1 / 255)])
    path = _save_h5(model, tmp_path / "legacy.h5")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n", encoding="utf-8")
    x = np.random.default_rng(2).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    opened, names = load_model_with_labels(path)
    np.testing.assert_allclose(np.asarray(opened(x)), np.asarray(model(x)), atol=1e-6, rtol=0)
    assert names == ["red", "green", "blue"]


def _as_keras2_config(node):
    """Rewrite a Keras 3 legacy config in place the way Keras 2 wrote it: batch_input_shape, dtype strings."""
    if isinstance(node, dict):
        if "batch_shape" in node:
            node["batch_input_shape"] = node.pop("batch_shape")
        if isinstance(node.get("dtype"), dict):
            node["dtype"] = "float32"
        for value in node.values():
            _as_keras2_config(value)
    elif isinstance(node, list):
        for value in node:
            _as_keras2_config(value)


def test_an_h5_in_the_form_keras_2_wrote_opens_with_the_same_predictions(tmp_path):
    import json

    import h5py

    model = _small_classifier([keras.layers.Rescaling(1 / 255), keras.layers.BatchNormalization()])
    path = _save_h5(model, tmp_path / "keras2.h5")
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        _as_keras2_config(config)
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
    x = np.random.default_rng(4).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(load_keras_model(path)(x)), np.asarray(model(x)), atol=1e-6, rtol=0)


def test_an_h5_with_a_lambda_is_refused_with_the_same_message_as_a_keras_file(tmp_path):
    model = _small_classifier([keras.layers.Lambda(lambda t: t / 255.0)])
    h5 = _save_h5(model, tmp_path / "code.h5")
    model.save(tmp_path / "code.keras")
    messages = []
    for path in (h5, tmp_path / "code.keras"):
        with pytest.raises(ModelFileError) as e:
            load_keras_model(path)
        messages.append(str(e.value).replace(path.name, "FILE"))
    assert messages[0] == messages[1] == ("FILE contains code (e.g. a Lambda layer) that cnndesk will not run from a "
                                          "file it did not make.")


def test_a_custom_layer_in_an_h5_is_refused_by_its_class_name_before_keras_reads_it(tmp_path):
    path = _save_h5(_with_custom_layer(), tmp_path / "custom.h5")
    with pytest.raises(ModelFileError) as e:
        load_keras_model(path)
    assert str(e.value) == f"custom.h5: the model uses a layer cnndesk cannot load safely: MyCustomLayer (custom code){ONLY_KERAS}."


def test_an_h5_holding_weights_only_is_refused_with_what_to_save_instead(tmp_path):
    path = tmp_path / "only.weights.h5"
    _small_classifier().save_weights(path)
    with pytest.raises(ModelFileError, match=r"holds weights only, not a model: save the whole model \(model.save\)"):
        check_model_path(path)


def test_a_file_named_h5_that_is_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ModelFileError, match="fake.h5 is not a readable .h5 model: it is not an HDF5 file"):
        check_model_path(path)


def test_a_saved_model_folder_is_refused_with_how_to_convert_it(tmp_path):
    folder = tmp_path / "served"
    _small_classifier().export(str(folder), format="tf_saved_model", verbose=False)
    with pytest.raises(ModelFileError) as e:
        load_keras_model(folder)
    assert str(e.value).startswith("served is a TensorFlow SavedModel, which keeps no layers cnndesk can show. "
                                   "To open it, load it in TensorFlow where it was made")
    assert "save it as .keras or .h5" in str(e.value)


# -- the same files opened in the window, as a person would ----------------------------------------------------

def _classified(window, qtbot, image) -> list[str]:
    """Drop ``image`` on the viewer and return the class names its bars show."""
    from test_app import drop_paths

    v = window.viewer_panel
    drop_paths(v, [image])
    qtbot.waitUntil(lambda: v.strip.count() == 1 and bool(v.current_view.bars.items), timeout=30000)
    return sorted(name for name, _ in v.current_view.bars.items)


def test_an_exported_keras_file_reopened_in_the_window_shows_the_real_names(window, qtbot, tmp_path, image,
                                                                            monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from cnndesk.core.model.export import export_model

    path = export_model(_small_classifier([keras.layers.Rescaling(1 / 255)]), "keras", tmp_path / "rockets",
                        ["rocket", "ракета", "bus"])
    (tmp_path / "rockets.labels.txt").unlink()  # the names inside the file are enough
    window.open_model(str(path))
    qtbot.waitUntil(lambda: window.state.has_model, timeout=30000)
    assert window.viewer_panel.class_names == ["rocket", "ракета", "bus"]
    assert _classified(window, qtbot, image) == sorted(["rocket", "ракета", "bus"])
    # renamed in the viewer, exported from the File menu: the new names travel
    window.viewer_panel.rename_classes(["one", "two", "three"])
    qtbot.waitUntil(lambda: window.viewer_panel.class_names == ["one", "two", "three"], timeout=20000)
    out = tmp_path / "again" / "renamed.tflite"
    out.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "*.tflite"))
    window.export_actions["litert"].trigger()
    qtbot.waitUntil(lambda: out.exists() and window.engine.pending() == 0, timeout=60000)
    assert (out.parent / "renamed.labels.txt").read_text(encoding="utf-8") == "one\ntwo\nthree\n"
    assert window.statusBar().currentMessage() == f"Exported {out}; the class names are in renamed.labels.txt"


def test_dropping_an_h5_file_opens_it(window, qtbot, tmp_path, image):
    from test_app import drop_paths

    path = _save_h5(_small_classifier(), tmp_path / "legacy.h5")
    drop_paths(window, [path])
    qtbot.waitUntil(lambda: window.state.has_model, timeout=30000)
    assert "legacy.h5 · 3 classes" in window.viewer_panel.model_label.text()
    assert _classified(window, qtbot, image) == ["class 0", "class 1", "class 2"]


def test_dropping_a_saved_model_folder_says_how_to_convert_it(window, qtbot, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    from test_app import drop_paths

    folder = tmp_path / "served"
    _small_classifier().export(str(folder), format="tf_saved_model", verbose=False)
    drop_paths(window, [folder])
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None, timeout=30000)
    text = window.findChild(QMessageBox, "errorBox").text()
    assert "served is a TensorFlow SavedModel" in text and "save it as .keras or .h5" in text
    assert not window.state.has_model


def test_the_limits_are_documented_with_their_values():
    doc = (REPO / "docs" / "model-files.md").read_text(encoding="utf-8")
    defaults = Limits()
    for value in ("16 MiB", "2 GiB", "3 GiB", "100", "64", "10,000", "5,000", "65,536", "1,000"):
        assert value in doc
    assert defaults.config_bytes == 16 * MiB and defaults.weights_bytes == 2 * GiB


# -- the CLI, in a real process: one line, exit 2, within seconds and bounded memory ---------------------------

# peak memory from VmHWM: ru_maxrss survives exec on Linux, so a child of this (TensorFlow-sized) process
# would report the parent's peak
_MEASURE = """
import sys, time
t = time.perf_counter()
from cnndesk.cli import main
code = main(sys.argv[2:])
sys.stderr.flush()
seconds = time.perf_counter() - t
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds} {peak}")
sys.exit(code)
"""


def measure_cli(argv, tmp_path) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``cnndesk-cli argv`` in a fresh process: (result, seconds, peak memory in MB)."""
    stats = tmp_path / "stats.txt"
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(stats), *map(str, argv)], capture_output=True,
                            text=True, env=child_env(), timeout=120)
    seconds, rss_kb = stats.read_text().split()
    return result, float(seconds), int(rss_kb) / 1024


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize("case", list(CRAFTED))
def test_predict_refuses_each_crafted_file_in_a_moment_with_one_line(real, tmp_path, image, case):
    path = CRAFTED[case](real, tmp_path)
    result, seconds, peak_mb = measure_cli(["predict", path, image], tmp_path)
    print(f"{case}: {seconds:.2f} s, peak {peak_mb:.0f} MB, {path.stat().st_size / 1024:.0f} KB file")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnndesk-cli: error: ") and "Refused" in lines[0], lines
    assert result.stdout == ""
    assert seconds < 5
    assert peak_mb < 300
    assert "tensorflow" not in result.stderr.lower()


def test_predict_names_a_custom_layer_in_one_line(real, tmp_path, image):
    path = _custom_layer_file(real, tmp_path / "custom.keras")
    result, seconds, peak_mb = measure_cli(["predict", path, image], tmp_path)
    print(f"custom layer: {seconds:.2f} s, peak {peak_mb:.0f} MB")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "cnndesk-cli: error: custom.keras: the model uses a layer cnndesk cannot load safely: Scale01 (custom code, "
        f"registered as `mine>Scale01`){ONLY_KERAS}."]
    assert seconds < 60


def test_predict_refuses_an_h5_with_a_lambda_before_tensorflow_loads(tmp_path, image):
    path = _save_h5(_small_classifier([keras.layers.Lambda(lambda t: t / 255.0)]), tmp_path / "code.h5")
    result, seconds, peak_mb = measure_cli(["predict", path, image], tmp_path)
    print(f"Lambda in .h5: {seconds:.2f} s, peak {peak_mb:.0f} MB")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["cnndesk-cli: error: code.h5 contains code (e.g. a Lambda layer) that "
                                          "cnndesk will not run from a file it did not make."]
    assert seconds < 5 and peak_mb < 300


@pytest.mark.slow
def test_predict_and_export_keep_the_class_names_of_an_h5(tmp_path, image):
    path = _save_h5(_small_classifier([keras.layers.Rescaling(1 / 255)]), tmp_path / "legacy.h5")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n", encoding="utf-8")
    result, _, _ = measure_cli(["predict", path, image], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] in ("red", "green", "blue")
    out = tmp_path / "out" / "model.keras"
    result, _, _ = measure_cli(["export", path, "--format", "keras", "--out", out], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(out), f"class names: {out.parent / 'model.labels.txt'}"]
    assert (out.parent / "model.labels.txt").read_text(encoding="utf-8") == "red\ngreen\nblue\n"

"""Exported models give the same predictions as the model in cnndesk, in plain runtimes.

Each format is reloaded with its own runtime (Keras, TensorFlow SavedModel,
LiteRT, onnxruntime), never through cnndesk, and compared with the original
model on random 0-255 images.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile

import numpy as np
import pytest

import keras
import tensorflow as tf

from cnndesk.core.model.architecture import build_model, compile_model, preset, TrainingSettings
from cnndesk.core.errors import UserError
from cnndesk.core.model.export import export_model, FORMATS, labels_path, ONNX_LABELS_KEY
from cnndesk.core.model.labels import escape_label, labels_text, parse_labels
from cnndesk.core.model.keras_file import check_model_path
from cnndesk.core.model.loading import load_model_with_labels

SIZE = 32
CLASSES = 3
TOLERANCE = 1e-5


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def _learnable_batch(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 dark left half, 1 dark top half, 2 bright centre."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(CLASSES):
        x = rng.uniform(90, 140, (n_per_class, SIZE, SIZE, 3)).astype(np.float32)
        if c == 0:
            x[:, :, : SIZE // 2] = 20
        elif c == 1:
            x[:, : SIZE // 2] = 20
        else:
            x[:, SIZE // 4: 3 * SIZE // 4, SIZE // 4: 3 * SIZE // 4] = 250
        xs.append(x)
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs), keras.utils.to_categorical(np.concatenate(ys), CLASSES)


@pytest.fixture(scope="module")
def model():
    """The seed preset at 32x32 for 3 classes, trained one short epoch (fixed seed)."""
    keras.utils.set_random_seed(7)
    m = build_model(preset("seed"), (SIZE, SIZE, 3), CLASSES)
    compile_model(m, TrainingSettings(epochs=1, batch_size=16))
    x, y = _learnable_batch(16, seed=1)
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return m


@pytest.fixture(scope="module")
def inputs(model):
    x = _images(4, seed=3)
    expected = np.asarray(model(x, training=False))
    # the comparison means something only if the outputs differ between images
    assert np.ptp(expected, axis=0).max() > 1e-3
    return x, expected


# ---------------------------------------------------------------------------
# each format, reloaded with its own runtime

@pytest.mark.slow
def test_keras_export_reloads_in_plain_keras_with_the_same_predictions(model, inputs, tmp_path):
    x, expected = inputs
    path = export_model(model, "keras", tmp_path / "model")
    assert path == tmp_path / "model.keras" and path.is_file()
    reloaded = keras.saving.load_model(path)  # safe_mode=True by default
    np.testing.assert_allclose(np.asarray(reloaded(x, training=False)), expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=TOLERANCE, rtol=0)


def test_saved_model_export_serves_the_same_predictions(model, inputs, tmp_path):
    x, expected = inputs
    path = export_model(model, "saved_model", tmp_path / "served")
    assert (path / "saved_model.pb").is_file()
    loaded = tf.saved_model.load(str(path))  # keep a reference: its variables live in it
    got = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def _litert_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the package ships wheels only for some platforms
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


@pytest.mark.slow
def test_litert_export_runs_in_the_litert_interpreter_with_the_same_predictions(model, inputs, tmp_path):
    x, expected = inputs
    path = export_model(model, "litert", tmp_path / "model")
    assert path.name == "model.tflite"
    np.testing.assert_allclose(_run_export("litert", path, x), expected, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_with_the_same_predictions(model, inputs, tmp_path):
    import onnxruntime

    x, expected = inputs
    path = export_model(model, "onnx", tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    got = session.run(None, {inp.name: x})[0]
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_a_model_with_augmentation_layers_exports_deterministic_inference(tmp_path):
    """A .keras model from elsewhere may hold Random* layers; exports must not serve random outputs."""
    import onnxruntime

    keras.utils.set_random_seed(11)
    m = keras.Sequential([
        keras.Input((SIZE, SIZE, 3), name="image"),
        keras.layers.RandomFlip("horizontal"), keras.layers.RandomContrast(0.5),
        keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    x = _images(3, seed=5)
    expected = np.asarray(m(x, training=False))

    served = tf.saved_model.load(str(export_model(m, "saved_model", tmp_path / "sm")))
    for _ in range(2):
        np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), expected, atol=TOLERANCE, rtol=0)

    session = onnxruntime.InferenceSession(str(export_model(m, "onnx", tmp_path / "aug")),
                                           providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def test_a_model_onnx_cannot_express_is_refused_instead_of_writing_a_broken_file(tmp_path):
    # random noise at inference time: tf2onnx only logs that it cannot convert the op
    keras.utils.set_random_seed(13)
    m = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Lambda(lambda x: x + 1e-3 * keras.random.uniform(keras.ops.shape(x), seed=1)),
        keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    with pytest.raises(UserError) as info:
        export_model(m, "onnx", tmp_path / "noisy.onnx")
    assert "cannot be exported to ONNX" in str(info.value) and "StatelessRandomUniform" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_exported_keras_file_loads_in_a_process_without_cnndesk(model, inputs, tmp_path):
    x, expected = inputs
    path = export_model(model, "keras", tmp_path / "standalone.keras")
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent("""
        import importlib.abc, sys

        class NoCnndesk(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "cnndesk":
                    raise ImportError("this process must not need cnndesk")

        sys.meta_path.insert(0, NoCnndesk())
        import numpy as np
        import keras

        model = keras.saving.load_model(sys.argv[1], safe_mode=True)
        np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]), training=False)))
        assert not [m for m in sys.modules if m.split(".")[0] == "cnndesk"]
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=TOLERANCE, rtol=0)


# ---------------------------------------------------------------------------
# class names travel with every export

#: a plain name, one in another script with an emoji, and one a folder name could hold with a line break
NAMES = ["rocket", "ракета 🚀", "two\nlines \\ done"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_export_writes_labels_txt_with_the_class_names(model, tmp_path, fmt):
    path = export_model(model, fmt, tmp_path / "out" / "model", NAMES)
    labels = labels_path(path, fmt)
    assert labels == (path / "labels.txt" if fmt == "saved_model" else path.parent / "model.labels.txt")
    text = labels.read_text(encoding="utf-8")
    assert text.splitlines() == ["rocket", "ракета 🚀", "two\\nlines \\\\ done"]  # one class a line
    assert parse_labels(text) == NAMES
    if fmt == "saved_model":
        assert parse_labels((path / "assets" / "labels.txt").read_text(encoding="utf-8")) == NAMES
    beside = [path.name] if fmt == "saved_model" else [path.name, "model.labels.txt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(beside)  # no leftovers


def test_the_keras_file_holds_the_names_and_opens_with_them_without_the_labels_txt(model, tmp_path):
    path = export_model(model, "keras", tmp_path / "model", NAMES)
    with zipfile.ZipFile(path) as zf:
        assert parse_labels(zf.read("labels.txt").decode("utf-8")) == NAMES
    (tmp_path / "model.labels.txt").unlink()
    check_model_path(path)  # cnndesk's own archive checks accept the extra member
    reopened, names = load_model_with_labels(path)
    assert names == NAMES
    assert reopened.outputs[0].shape[-1] == len(NAMES)


def test_a_labels_txt_beside_a_keras_file_without_embedded_names_is_read(model, tmp_path):
    path = tmp_path / "elsewhere.keras"
    model.save(path)
    assert load_model_with_labels(path)[1] is None
    (tmp_path / "labels.txt").write_text("0 cat\r\n1 dog\r\n2 bird\r\n", encoding="utf-8-sig")  # Teachable Machine
    assert load_model_with_labels(path)[1] == ["cat", "dog", "bird"]


def test_plain_keras_loads_the_exported_keras_file_without_warnings(model, inputs, tmp_path):
    x, expected = inputs
    path = export_model(model, "keras", tmp_path / "model", NAMES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.models.load_model(path)
    assert [str(w.message) for w in caught] == []
    np.testing.assert_allclose(np.asarray(reloaded(x, training=False)), expected, atol=TOLERANCE, rtol=0)


def test_the_onnx_file_holds_the_names_in_its_metadata(model, tmp_path):
    import onnx
    import onnxruntime

    path = export_model(model, "onnx", tmp_path / "model", NAMES)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props[ONNX_LABELS_KEY]) == NAMES
    meta = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(meta.custom_metadata_map[ONNX_LABELS_KEY]) == NAMES


@pytest.mark.slow
def test_without_names_an_export_writes_the_names_the_viewer_shows(model, tmp_path):
    path = export_model(model, "litert", tmp_path / "model")
    assert parse_labels(labels_path(path, "litert").read_text()) == ["class 0", "class 1", "class 2"]


@pytest.mark.slow
def test_two_models_exported_into_one_folder_keep_their_own_class_names(model, tmp_path):
    first = export_model(model, "litert", tmp_path / "cats", ["cat", "lynx", "puma"])
    second = export_model(model, "litert", tmp_path / "cars", ["bus", "van", "taxi"])
    assert labels_path(first, "litert") == tmp_path / "cats.labels.txt"
    assert (tmp_path / "cats.labels.txt").read_text(encoding="utf-8") == "cat\nlynx\npuma\n"
    assert (tmp_path / "cars.labels.txt").read_text(encoding="utf-8") == "bus\nvan\ntaxi\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cars.labels.txt", "cars.tflite", "cats.labels.txt",
                                                          "cats.tflite"]
    assert second == tmp_path / "cars.tflite"


def test_a_models_own_labels_file_is_read_before_a_shared_labels_txt(model, tmp_path):
    path = tmp_path / "elsewhere.keras"
    model.save(path)  # no names inside
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n", encoding="utf-8")
    (tmp_path / "elsewhere.labels.txt").write_text("red\ngreen\nblue\n", encoding="utf-8")
    assert load_model_with_labels(path)[1] == ["red", "green", "blue"]


def test_a_second_export_to_the_same_file_replaces_its_labels_file(model, tmp_path):
    export_model(model, "keras", tmp_path / "model", ["a", "b", "c"])
    export_model(model, "keras", tmp_path / "model", ["x", "y", "z"])
    assert (tmp_path / "model.labels.txt").read_text() == "x\ny\nz\n"


@pytest.mark.parametrize("name", ["plain", "", "back\\slash", "\\n literally", "cr\rlf\n", "\u2028sep\x85",
                                  "tab\tkept", "ünï 🚀"])
def test_every_name_survives_the_labels_txt_as_one_line(name):
    line = escape_label(name)
    assert len(f"{line}\n".splitlines()) == 1 and "\n" not in line
    assert parse_labels(labels_text([name, "next"])) == [name, "next"]


def test_names_without_backslashes_or_line_breaks_are_written_as_they_are():
    assert labels_text(["rocket", "ракета", "a b"]) == "rocket\nракета\na b\n"


# ---------------------------------------------------------------------------
# destinations and mistakes

def test_every_format_is_offered():
    assert FORMATS == ("keras", "saved_model", "litert", "onnx")


def test_an_unknown_format_is_refused_with_the_formats_to_choose_from(model, tmp_path):
    with pytest.raises(UserError) as info:
        export_model(model, "pytorch", tmp_path / "model")
    message = str(info.value)
    assert "Unknown export format 'pytorch'" in message
    for fmt in FORMATS:
        assert fmt in message
    assert list(tmp_path.iterdir()) == []


def test_a_destination_under_a_file_is_refused_with_a_clear_message(model, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    with pytest.raises(UserError) as info:
        export_model(model, "keras", blocker / "sub" / "model.keras")
    assert "notes.txt is a file, not a folder" in str(info.value)
    assert blocker.read_text() == "not a folder"


def test_a_folder_in_the_way_of_a_model_file_is_left_alone(model, tmp_path):
    folder = tmp_path / "model.keras"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="a folder of that name is in the way"):
        export_model(model, "keras", folder)
    assert (folder / "keep.txt").read_text() == "mine"


def test_a_saved_model_export_never_deletes_an_unrelated_folder(model, tmp_path):
    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("precious")
    with pytest.raises(UserError, match="not a SavedModel"):
        export_model(model, "saved_model", documents)
    assert (documents / "thesis.txt").read_text() == "precious"


@pytest.mark.slow
def test_a_saved_model_export_replaces_an_earlier_one(model, inputs, tmp_path):
    x, expected = inputs
    first = export_model(model, "saved_model", tmp_path / "served")
    (first / "stale.txt").write_text("from the first export")
    second = export_model(model, "saved_model", tmp_path / "served")
    assert second == first and not (second / "stale.txt").exists()
    loaded = tf.saved_model.load(str(second))
    np.testing.assert_allclose(loaded.serve(tf.constant(x)).numpy(), expected, atol=TOLERANCE, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["served"]  # no temporary folder left


def test_an_unwritable_destination_is_reported_as_permission_denied(model, tmp_path, monkeypatch):
    # tests may run as root, which ignores file modes: simulate the refusal the OS gives
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(UserError) as info:
        export_model(model, "keras", tmp_path / "model.keras")
    assert str(info.value).startswith(f"Could not export to {tmp_path / 'model.keras'}: permission denied")


def test_a_full_disk_keeps_the_earlier_export_and_leaves_no_temporary_files(model, tmp_path, monkeypatch):
    path = export_model(model, "keras", tmp_path / "model.keras", ["a", "b", "c"])
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save", disk_full)
    with pytest.raises(UserError, match="the disk is full"):
        export_model(model, "keras", path, ["x", "y", "z"])
    assert path.read_bytes() == before
    assert (tmp_path / "model.labels.txt").read_text() == "a\nb\nc\n"  # still the names of the model beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "model.labels.txt"]


# ---------------------------------------------------------------------------
# the temperature, folded into every format

def _run_export(fmt: str, path, x: np.ndarray) -> np.ndarray:
    """The outputs of the exported model at ``path`` for ``x``, from the format's own runtime."""
    if fmt == "keras":
        return np.asarray(keras.saving.load_model(path)(x, training=False))
    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(path))
        return loaded.serve(tf.constant(x)).numpy()
    if fmt == "litert":
        interpreter = _litert_interpreter(path)
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_with_a_temperature_gives_softmax_of_the_logits_over_it(model, inputs, tmp_path, fmt):
    from cnndesk.core.model.calibration import softmax
    from cnndesk.core.work.trust import ModelHeads

    x, expected = inputs
    _, logits = ModelHeads(model)(x)
    np.testing.assert_allclose(softmax(logits), expected, atol=TOLERANCE, rtol=0)  # the logits are the model's
    weights = [w.copy() for w in model.get_weights()]
    path = export_model(model, fmt, tmp_path / "calibrated", temperature=2.5)
    calibrated = softmax(logits, 2.5)
    assert np.abs(calibrated - expected).max() > 0.01  # the temperature changes the probabilities
    np.testing.assert_allclose(_run_export(fmt, path, x), calibrated, atol=TOLERANCE, rtol=0)
    # the model in cnndesk is exactly as it was
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), expected)


def test_a_temperature_that_cannot_be_folded_is_refused_and_nothing_is_written(tmp_path):
    inp = keras.Input((SIZE, SIZE, 3))
    a = keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling2D()(inp))
    b = keras.layers.Dense(CLASSES)(keras.layers.GlobalMaxPooling2D()(inp))
    m = keras.Model(inp, keras.layers.Softmax()(keras.layers.Add()([a, b])))
    with pytest.raises(UserError, match="temperature cannot be folded"):
        export_model(m, "keras", tmp_path / "branching", temperature=2.0)
    assert list(tmp_path.iterdir()) == []
    assert export_model(m, "keras", tmp_path / "branching", temperature=1.0).is_file()  # 1: nothing to fold


@pytest.fixture(scope="module")
def ensemble(model):
    """The trained model and a second one of another seed, averaged (core.model.ensemble)."""
    from cnndesk.core.model.ensemble import build_ensemble

    keras.utils.set_random_seed(8)
    other = build_model(preset("seed"), (SIZE, SIZE, 3), CLASSES)
    return build_ensemble([model, other]), [model, other]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_ensemble_exports_to_every_format_with_the_mean_of_its_members_predictions(ensemble, tmp_path, fmt):
    model, members = ensemble
    x = _images(4, seed=5)
    mean = np.mean([np.asarray(m(x, training=False)) for m in members], axis=0)
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(expected, mean, atol=1e-6, rtol=0)
    path = export_model(model, fmt, tmp_path / "ensemble", class_names=["a", "b", "c"])
    np.testing.assert_allclose(_run_export(fmt, path, x), expected, atol=TOLERANCE, rtol=0)
    if fmt == "keras":  # and cnndesk opens it again as an ensemble, in safe mode
        from cnndesk.core.model.ensemble import is_ensemble

        reloaded, names = load_model_with_labels(path)
        assert is_ensemble(reloaded) and names == ["a", "b", "c"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_ensemble_exports_with_its_temperature_applied_to_the_log_of_its_mean(ensemble, tmp_path, fmt):
    """An ensemble's temperature is fitted on the logarithm of its averaged probabilities (core.work.trust), as the
    app applies it: every runtime gives softmax(log(mean of the members' probabilities) / T)."""
    model, members = ensemble
    x = _images(4, seed=6)
    mean = np.mean([np.asarray(m(x, training=False), np.float64) for m in members], axis=0)
    z = np.log(mean) / 0.4
    expected = np.exp(z - z.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert np.abs(expected - mean).max() > 0.01  # the temperature changes the probabilities
    path = export_model(model, fmt, tmp_path / "calibrated-ensemble", class_names=["a", "b", "c"], temperature=0.4)
    np.testing.assert_allclose(_run_export(fmt, path, x), expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), mean, atol=1e-6, rtol=0)  # cnndesk's unchanged
    if fmt == "keras":  # cnndesk opens the calibrated export in safe mode too, and gives the same
        reloaded, names = load_model_with_labels(path)
        assert names == ["a", "b", "c"]
        np.testing.assert_allclose(np.asarray(reloaded(x, training=False)), expected, atol=TOLERANCE, rtol=0)


# ---------------------------------------------------------------------------
# a model trained in bfloat16 mixed precision exports as float32

@pytest.fixture(scope="module")
def bfloat16_model(tmp_path_factory):
    """The seed preset trained one epoch forced into bfloat16 (emulated on a CPU without it): float32 when done."""
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset, Preprocessing
    from cnndesk.core.training.fitting import train

    from conftest import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("bf16") / "tiny", per_class=10, size=SIZE)
    data = load_dataset(root, DatasetConfig(Preprocessing((SIZE, SIZE)), val_split=0.2, seed=3))
    settings = TrainingSettings(batch_size=8, epochs=1, patience=0, seed=5, precision="bfloat16")
    return train(data, preset("seed"), settings).model


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_model_trained_in_bfloat16_exports_float32_predictions_every_runtime_agrees_on(bfloat16_model, tmp_path,
                                                                                        fmt):
    x = _images(4, seed=3)
    expected = np.asarray(bfloat16_model(x, training=False))
    assert expected.dtype == np.float32 and np.ptp(expected, axis=0).max() > 1e-4
    float32 = build_model(preset("seed"), (SIZE, SIZE, 3), 3)  # the same weights in a model never near bfloat16
    float32.set_weights(bfloat16_model.get_weights())
    np.testing.assert_allclose(np.asarray(float32(x, training=False)), expected, atol=TOLERANCE, rtol=0)
    path = export_model(bfloat16_model, fmt, tmp_path / "model")
    np.testing.assert_allclose(_run_export(fmt, path, x), expected, atol=TOLERANCE, rtol=0)

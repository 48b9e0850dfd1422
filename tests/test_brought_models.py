"""Models users bring, built in plain Keras as their authors would: logits and single-unit heads, nested
backbones, heat maps with no positive evidence, and the heat-map layer chosen by default."""

from __future__ import annotations

import contextlib
import io

import keras
import numpy as np
import pytest
from PIL import Image

from cnndesk.cli import main
from cnndesk.core.model.inspection import EMPTY_CAM_NOTE, Inspector
from cnndesk.core.model.loading import load_keras_model

from conftest import looked_inside
from test_app import drop_paths

SCORES_NOTE = "This model outputs scores; cnndesk shows softmax probabilities."


@pytest.fixture(scope="module")
def images():
    """Four 32×32 RGB images, as the model sees them (uint8)."""
    return (np.random.default_rng(1).random((4, 32, 32, 3)) * 255).astype(np.uint8)


def _plain(layers, name=None):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((32, 32, 3)), *layers], name=name)


def _conv_head(units, activation=None):
    return [keras.layers.Conv2D(4, 3, activation="relu", name="conv"), keras.layers.MaxPooling2D(name="pool"),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(units, activation=activation, name="head")]


def _raw(model, images):
    return keras.ops.convert_to_numpy(model(images.astype("float32") / 255, training=False))


def _softmax(x):
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _assert_distributions(probs, classes):
    assert probs.shape[-1] == classes
    assert np.all(probs >= 0) and np.all(probs <= 1)
    assert probs.sum(axis=-1) == pytest.approx(np.ones(len(probs)), abs=1e-5)


def _save_and_open(model, tmp_path, name="brought.keras"):
    path = tmp_path / name
    model.save(path)
    return path, Inspector(load_keras_model(path))


# -- logits ---------------------------------------------------------------------------------------------------------
def test_a_logits_head_is_shown_as_softmax_probabilities_with_a_note(images, tmp_path):
    model = _plain(_conv_head(5))
    _, ins = _save_and_open(model, tmp_path)
    assert ins.output_note == SCORES_NOTE  # known from the last layer, before any prediction
    probs = ins.probabilities(images)
    _assert_distributions(probs, 5)
    assert probs == pytest.approx(_softmax(_raw(model, images)), abs=1e-5)
    maps, one = ins.activation_maps(images[0])
    assert one == pytest.approx(probs[0], abs=1e-5)
    top = ins.top_k(probs[0], k=5)
    assert sum(p for _, p in top) == pytest.approx(1, abs=1e-5) and all(0 <= p <= 1 for _, p in top)
    ev = ins.evaluate(images, np.array([0, 1, 2, 3]))
    assert np.all((ev.confidence >= 0) & (ev.confidence <= 1))
    # the heat map explains the score itself (there is no softmax to look behind)
    assert ins.gradcam(images[0], int(np.argmax(probs[0]))).shape == (30, 30)  # at the conv layer


def test_a_softmax_head_is_shown_as_it_is_without_a_note(images):
    model = _plain(_conv_head(3, "softmax"))
    ins = Inspector(model)
    probs = ins.probabilities(images)
    assert ins.output_note == ""
    assert probs == pytest.approx(_raw(model, images), abs=1e-6)


def test_outputs_that_are_no_distribution_on_the_first_prediction_get_a_softmax(images):
    """Three sigmoids claim probabilities, but their rows do not sum to 1: the first prediction tells."""
    model = _plain(_conv_head(3, "sigmoid"))
    ins = Inspector(model)
    assert ins.output_note == ""
    probs = ins.probabilities(images)
    assert ins.output_note == SCORES_NOTE
    _assert_distributions(probs, 3)
    assert probs == pytest.approx(_softmax(_raw(model, images)), abs=1e-5)
    assert ins.probabilities(images[:1]) == pytest.approx(probs[:1], abs=1e-6)  # said once, kept


def test_the_cli_says_once_that_scores_are_shown_as_probabilities(images, tmp_path):
    path, _ = _save_and_open(_plain(_conv_head(4)), tmp_path, "logits.keras")
    files = []
    for i in range(3):
        files.append(tmp_path / f"image_{i}.png")
        Image.fromarray(images[i]).save(files[-1])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["predict", str(path), *map(str, files), "--top-k", "4"]) == 0
    assert err.getvalue().count(SCORES_NOTE) == 1
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "-" not in lines[0].split(":", 1)[1]  # no negative "probability"
    for line in lines:
        shares = [float(part.rsplit(" ", 1)[1].rstrip("%")) for part in line.split(": ", 1)[1].split(", ")]
        assert all(0 <= s <= 100 for s in shares) and sum(shares) == pytest.approx(100, abs=0.3)


# -- one unit: a binary classifier --------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_a_single_unit_head_opens_as_two_classes(images, tmp_path, activation):
    """Dense(1, sigmoid), and Dense(1) as the Keras-io "classification from scratch" tutorial writes it."""
    model = _plain([keras.layers.Rescaling(1.0 / 255), *_conv_head(1, activation)])
    _, ins = _save_and_open(model, tmp_path)
    assert ins.class_names == ["class 0", "class 1"]
    probs = ins.probabilities(images)
    _assert_distributions(probs, 2)
    raw = keras.ops.convert_to_numpy(model(images.astype("float32"), training=False))[:, 0]
    p = raw if activation == "sigmoid" else 1 / (1 + np.exp(-raw))
    assert probs[:, 1] == pytest.approx(p, abs=1e-5) and probs[:, 0] == pytest.approx(1 - p, abs=1e-5)
    if activation == "sigmoid":
        assert ins.output_note == ""
    else:
        assert "outputs a score" in ins.output_note and "sigmoid" in ins.output_note
    named = Inspector(model, ["cat", "dog"], ins.preprocessing)
    assert [c for c, _ in named.top_k(named.probabilities(images[:1])[0])] in (["cat", "dog"], ["dog", "cat"])
    # each class has its heat map: class 0's score is minus class 1's, so what raises one lowers the other
    for c in (0, 1):
        cam = ins.gradcam(images[0], c, "conv", method="gradcam")
        assert cam.shape == (30, 30) and 0 <= cam.min() and cam.max() <= 1


def test_a_single_unit_model_needs_two_class_names(images):
    model = _plain(_conv_head(1, "sigmoid"))
    with pytest.raises(Exception, match="2 outputs but the project names 3 classes"):
        Inspector(model, ["a", "b", "c"])


# -- nested backbones ----------------------------------------------------------------------------------------------
def _backbone():
    """A small branching (Functional) backbone, as keras.applications models are."""
    inp = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="branch")(a)
    x = keras.layers.Add()([a, b])
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="top_conv")(x)
    return keras.Model(inp, x, name="backbone")


def _nested_models():
    keras.utils.set_random_seed(0)
    seq = keras.Sequential([keras.Input((32, 32, 3)), _backbone(), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(3, activation="softmax")], name="in_sequential")
    inp = keras.Input((32, 32, 3))
    inner = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
                              keras.layers.MaxPooling2D(name="p1")], name="features")
    x = keras.layers.Flatten()(inner(inp))
    func = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="in_functional")
    return [seq, func]


@pytest.mark.filterwarnings("error::UserWarning")  # Keras warns of a call that does not match a model's inputs
@pytest.mark.parametrize("index", [0, 1], ids=["functional backbone in a Sequential",
                                               "Sequential backbone in a Functional model"])
@pytest.mark.slow
def test_a_nested_backbone_opens_with_its_layers_in_the_choosers(images, tmp_path, index):
    model = _nested_models()[index]
    for ins in (Inspector(model), _save_and_open(model, tmp_path)[1]):
        backbone = model.layers[0] if index == 0 else model.layers[1]
        expected = {0: ["backbone/stem", "backbone/branch", "backbone/pool", "backbone/top_conv"],
                    1: ["features/c1", "features/p1"]}[index]
        assert ins.layer_names == expected and ins.has_maps
        probs = ins.probabilities(images)
        assert probs == pytest.approx(_raw(model, images), abs=1e-5)
        maps, _ = ins.activation_maps(images[0])
        # each map is what the backbone's own layer computes on this image
        probe = keras.Model(backbone.inputs[0], [backbone.get_layer(n.split("/")[1]).output for n in expected])
        truth = probe(images[:1].astype("float32") / 255)
        for (name, got), want in zip(maps, truth):
            assert got == pytest.approx(keras.ops.convert_to_numpy(want)[0], abs=1e-5), name
        for name in expected:
            cam = ins.gradcam(images[0], int(np.argmax(probs[0])), name)
            assert cam.shape == dict(maps)[name].shape[:2] and np.any(cam), name
        assert ins.first_layer_kernels().shape[:3] == (3, 3, 3)


# -- empty heat maps and the default layer ----------------------------------------------------------------------------
def _no_evidence_model():
    """A model whose last conv map lowers every class's score, and the predicted class's least.

    The conv outputs 1 everywhere (zero kernel, bias 1, ReLU); the head weighs every channel -1 for
    class 0 and -2 for class 1 (scores, no softmax), so class 0 wins and nothing raises its score.
    """
    model = _plain([keras.layers.Conv2D(2, 3, activation="relu", name="early"),
                    keras.layers.Conv2D(3, 3, activation="relu", name="last_conv"),
                    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="scores")])
    conv = model.get_layer("last_conv")
    conv.set_weights([np.zeros_like(conv.get_weights()[0]), np.ones(3, np.float32)])
    model.get_layer("scores").set_weights([np.array([[-1.0, -2.0]] * 3, np.float32), np.zeros(2, np.float32)])
    return model


def test_an_empty_heat_map_is_reported_by_the_cli(images, tmp_path):
    path, ins = _save_and_open(_no_evidence_model(), tmp_path, "empty.keras")
    assert int(np.argmax(ins.probabilities(images[:1])[0])) == 0
    assert not np.any(ins.gradcam(images[0], 0, "last_conv"))
    picture = tmp_path / "image.png"
    Image.fromarray(images[0]).save(picture)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["inspect", str(path), str(picture), "--out", str(tmp_path / "maps")]) == 0
    assert f"the heat map at last_conv is empty. {EMPTY_CAM_NOTE}" in err.getvalue()
    assert err.getvalue().count(SCORES_NOTE) == 1


def test_the_default_heat_map_layer_is_the_last_convolution_larger_than_one_cell():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c6"),  # 6×6
                              keras.layers.MaxPooling2D(name="p3"),  # 3×3
                              keras.layers.Conv2D(4, 3, name="c1"),  # 1×1: says yes or no, not where
                              keras.layers.MaxPooling2D(1, name="p1"), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    ins = Inspector(model)
    assert ins.layer_names == ["c6", "p3", "c1", "p1"]
    assert ins.default_cam_layer == "c6"
    only_pools = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.MaxPooling2D(name="p4"),
                                   keras.layers.MaxPooling2D(4, name="p1"), keras.layers.Flatten(),
                                   keras.layers.Dense(2, activation="softmax")])
    assert Inspector(only_pools).default_cam_layer == "p4"
    tiny = keras.Sequential([keras.Input((3, 3, 3)), keras.layers.Conv2D(4, 3, name="c1"), keras.layers.Flatten(),
                             keras.layers.Dense(2, activation="softmax")])
    assert Inspector(tiny).default_cam_layer == "c1"  # nothing larger: the last there is


# -- in the window ------------------------------------------------------------------------------------------------
def test_the_viewer_says_when_it_shows_scores_as_probabilities_and_when_a_heat_map_is_empty(window, qtbot, tmp_path,
                                                                                              images):
    path = tmp_path / "scores.keras"
    _no_evidence_model().save(path)
    picture = tmp_path / "picture.png"
    Image.fromarray(images[0]).save(picture)
    w = window
    w.open_model(str(path))
    qtbot.waitUntil(lambda: w.state.has_model and w.tabs.currentIndex() == w.TAB_VIEWER, timeout=30000)
    v = w.viewer_panel
    assert v.model_label.text().endswith(f"input 32×32 rgb, pixels 0-1 · confidences not calibrated · {SCORES_NOTE}")
    drop_paths(v, [picture])
    qtbot.waitUntil(lambda: looked_inside(v), timeout=20000)
    assert all(0 <= p <= 1 for _, p in v.current_view.bars.items) and sum(p for _, p in v.current_view.bars.items) == pytest.approx(1, abs=1e-4)
    v.tabs.setCurrentWidget(v.gradcam)
    g = v.gradcam
    assert g.cam_layer.currentText() == "last_conv" and g.cam_method.currentText() == "HiResCAM"
    assert g.cam_note.text() == ("No positive evidence for this class at this layer; try an earlier layer or "
                                 "classic Grad-CAM.")
    old = g.cam
    g.cam_method.setCurrentText("Grad-CAM")  # as a user picks it in the combo
    qtbot.waitUntil(lambda: g.cam is not old, timeout=20000)
    assert g.cam_note.text() == "No positive evidence for this class at this layer; try an earlier layer."
    old = g.cam
    g.cam_layer.setCurrentText("early")
    qtbot.waitUntil(lambda: g.cam is not old, timeout=20000)
    assert "at the layer early" in g.cam_caption.text()

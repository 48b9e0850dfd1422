"""What the viewer shows: top-k, activation maps, Grad-CAM, evaluation, on cnndesk and plain Keras models."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from cnndesk.core.model.architecture import layer_table, preset, TrainingSettings
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.data.images import Preprocessing
from cnndesk.core.errors import ModelFileError, UserError
from cnndesk.core.intervals import proportion_interval
from cnndesk.core.model.inspection import Inspector
from cnndesk.core.training.fitting import train

from conftest import write_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("inspect") / "tiny")
    return load_dataset(root, DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=3))


@pytest.fixture(scope="module")
def model(data):
    settings = TrainingSettings(batch_size=4, learning_rate=3e-3, epochs=2, patience=0, seed=11)
    return train(data, preset("seed"), settings).model


@pytest.fixture(scope="module")
def inspector(model, data):
    return Inspector(model, data.class_names, data.preprocessing)


@pytest.fixture(scope="module")
def reloaded_inspector(model, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model.save(path)
    return Inspector(keras.saving.load_model(path), data.class_names, data.preprocessing)


@pytest.mark.slow
def test_top_k_is_sorted_and_sums_to_at_most_one(inspector, data):
    probs = inspector.probabilities(data.images[:5])
    assert probs.shape == (5, 3)
    for p in probs:
        top = inspector.top_k(p, k=2)
        assert len(top) == 2
        assert top[0][1] >= top[1][1]
        assert sum(v for _, v in top) <= 1 + 1e-6
        assert top[0][0] == data.class_names[int(np.argmax(p))]
    all_classes = inspector.top_k(probs[0], k=10)  # more than there are classes
    assert sorted(c for c, _ in all_classes) == sorted(data.class_names)
    assert sum(v for _, v in all_classes) == pytest.approx(1, abs=1e-5)


def test_a_dropped_file_is_prepared_like_the_training_images(inspector, data):
    i = int(data.val_index[0])
    [pred] = inspector.predict_files([data.paths[i]], k=3)
    np.testing.assert_allclose(pred.probabilities, inspector.probabilities(data.images[i])[0], atol=1e-6)
    assert pred.top[0][0] == data.class_names[data.labels[i]]  # the model learned this easy image
    assert pred.to_json()["path"] == data.paths[i]
    assert [t["class"] for t in pred.to_json()["top"]] == [c for c, _ in pred.top]


def test_predict_files_reports_an_unreadable_file_and_classifies_the_rest(inspector, data, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    paths = [data.paths[0], str(bad), str(tmp_path / "missing.jpg"), data.paths[-1]]
    results = inspector.predict_files(paths, k=2)
    assert len(results) == 4
    assert results[1] == (str(bad), "not a readable image (unknown or damaged format)")
    assert results[2] == (str(tmp_path / "missing.jpg"), "file not found")
    for r, p in ((results[0], paths[0]), (results[3], paths[3])):
        assert r.path == p and len(r.top) == 2


def test_a_prediction_carries_the_decoded_image_and_a_picture_so_nothing_decodes_it_again(inspector, data, tmp_path):
    from cnndesk.core.data.images import decode_image

    Image.new("RGB", (300, 200), (10, 200, 10)).save(tmp_path / "wide.png")
    paths = [data.paths[0], str(tmp_path / "wide.png")]
    small, wide = inspector.predict_files(paths, k=2)
    for pred, path in ((small, paths[0]), (wide, paths[1])):
        np.testing.assert_array_equal(pred.image, decode_image(path, data.preprocessing))
        np.testing.assert_allclose(pred.probabilities, inspector.probabilities(pred.image)[0], atol=1e-6)
    assert small.display.shape == (32, 32, 3) and wide.display.shape == (200, 300, 3)
    assert tuple(wide.display[100, 150]) == (10, 200, 10)
    [bare] = inspector.predict_files(paths[:1], display=False)
    assert bare.display is None and bare.image.shape == (32, 32, 3)


def test_activation_maps_cover_every_conv_and_pool_layer(inspector, data):
    maps, probs = inspector.activation_maps(data.images[0])
    rows = layer_table(preset("seed"), (32, 32, 3), 3)
    expected = [(r.name, r.output_shape) for r in rows if r.kind in ("Conv2D", "MaxPool2D")]
    assert [(name, m.shape) for name, m in maps] == expected
    assert inspector.layer_names == [name for name, _ in expected]
    np.testing.assert_allclose(probs, inspector.probabilities(data.images[0])[0], atol=1e-6)
    # the first map is the first convolution of the rescaled image, computed by hand
    conv = inspector.model.get_layer("conv2d_1")
    x = data.images[0][None].astype(np.float32) / 255
    np.testing.assert_allclose(maps[0][1], np.asarray(conv(x))[0], atol=1e-5)


def test_maps_and_gradcam_are_the_same_after_save_and_reload(inspector, reloaded_inspector, data):
    image = data.images[int(data.val_index[1])]
    maps_a, probs_a = inspector.activation_maps(image)
    maps_b, probs_b = reloaded_inspector.activation_maps(image)
    assert [n for n, _ in maps_a] == [n for n, _ in maps_b]
    for (_, a), (_, b) in zip(maps_a, maps_b):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(probs_a, probs_b, atol=1e-6)
    for c in range(3):
        cam_b = reloaded_inspector.gradcam(image, c)
        assert cam_b is not None and np.isfinite(cam_b).all()
        np.testing.assert_allclose(inspector.gradcam(image, c), cam_b, atol=1e-5)


def test_gradcam_is_a_map_of_the_layer_in_0_1_that_depends_on_the_class(inspector, data):
    x, y = data.subset(data.val_index)
    differs = False
    for image in x[:4]:
        cams = [inspector.gradcam(image, c) for c in range(3)]
        for cam in cams:
            assert cam.shape == (10, 10)  # the last conv layer's 10x10 output
            assert cam.min() >= 0 and cam.max() <= 1 + 1e-6
        assert any(cam.max() == pytest.approx(1) for cam in cams)
        differs |= any(not np.allclose(cams[0], cam) for cam in cams[1:])
    assert differs
    first = inspector.gradcam(x[0], int(y[0]), layer_name="conv2d_1")
    assert first.shape == (30, 30)
    with pytest.raises(UserError, match="No conv/pool layer named 'dense_8'"):
        inspector.gradcam(x[0], 0, layer_name="dense_8")


@pytest.mark.slow
def test_models_images_of_any_size_and_every_heat_map_layer_trace_without_a_retracing_warning(data, caplog):
    """What a viewer session does: models opened or trained one after another, images of several sizes dropped
    one or several at a time, every layer and method of the heat map chosen. Each function of each model is
    traced once, whatever the number of images; TensorFlow has nothing to warn about on the terminal."""
    import logging

    from cnndesk.core.model.architecture import build_model

    caplog.set_level(logging.WARNING, logger="tensorflow")
    rng = np.random.default_rng(0)
    pre = data.preprocessing

    def image(size):
        return rng.integers(0, 256, (size, size + 7, 3), dtype=np.uint8)

    for n, size in enumerate((20, 45, 64, 100, 33)):  # five models, a few images each
        ins = Inspector(build_model(preset("seed"), pre.input_shape, 3), data.class_names, pre)
        ins.warm_up()
        prepared = ins.prepare(image(size))
        ins.activation_maps(prepared)
        ins.gradcam(prepared, 1)
        ins.probabilities(np.stack([ins.prepare(image(size + i)) for i in range(n + 2)]))
    for size in (20, 100):  # the last one looked at closely: every layer, both methods, any number of images
        prepared = ins.prepare(image(size))
        ins.activation_maps(prepared)
        for layer in ins.layer_names:
            for method in ("hirescam", "gradcam"):
                ins.gradcam(prepared, 0, layer, method)
    for n in (1, 64, 65, 130):
        ins.probabilities(np.zeros((n, *pre.input_shape), np.uint8))
    assert [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()] == []
    functions = [ins._predict_fn, ins._maps_fn, *ins._cam_fns.values()]
    assert len(functions) == 2 + 2 * len(ins.layer_names)
    assert [f.experimental_get_tracing_count() for f in functions] == [1] * len(functions)


def _plain_functional(rescaling: bool) -> keras.Model:
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inp) if rescaling else inp
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(3, activation="softmax", name="out")(x)
    keras.utils.set_random_seed(1)
    return keras.Model(inp, out)


@pytest.mark.slow
@pytest.mark.parametrize("rescaling", [False, True])
def test_a_plain_keras_functional_model_can_be_inspected(rescaling, tmp_path):
    model = _plain_functional(rescaling)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    x = image[None].astype(np.float32)
    expected_input = x if rescaling else x / 255  # without Rescaling it expects 0-1 pixels, like most tutorials

    for m in (model, keras.saving.load_model(_saved(model, tmp_path))):
        ins = Inspector(m)
        assert ins.class_names == ["class 0", "class 1", "class 2"]
        assert ins.preprocessing.pixels == ("0-255" if rescaling else "0-1")
        maps, probs = ins.activation_maps(image)
        assert [(n, a.shape) for n, a in maps] == [("c1", (14, 14, 4)), ("p1", (7, 7, 4)), ("c2", (5, 5, 5))]
        np.testing.assert_allclose(probs, np.asarray(model(expected_input))[0], atol=1e-5)
        tap = keras.Model(model.inputs[0], model.get_layer("c2").output)
        np.testing.assert_allclose(maps[2][1], np.asarray(tap(expected_input))[0], atol=1e-5)
        cam = ins.gradcam(image, 1)
        assert cam.shape == (5, 5) and 0 <= cam.min() and cam.max() <= 1 + 1e-6
    # a second inspector on the same model object still works
    assert Inspector(model).activation_maps(image)[1] == pytest.approx(probs, abs=1e-6)


def _saved(model, tmp_path):
    path = tmp_path / "plain.keras"
    model.save(path)
    return path


def test_a_nested_model_is_looked_inside():
    """More nested backbones in tests/test_brought_models.py."""
    inner = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv")], name="backbone")
    seq = keras.Sequential([keras.Input((16, 16, 3)), inner, keras.layers.Flatten(),
                            keras.layers.Dense(3, activation="softmax")])
    ins = Inspector(seq)
    assert ins.layer_names == ["backbone/conv"] and ins.default_cam_layer == "backbone/conv"


def test_a_model_that_is_not_an_image_classifier_is_refused():
    inp = keras.Input((10,))
    with pytest.raises(ModelFileError, match="needs an image input"):
        Inspector(keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp)))
    inp = keras.Input((8, 8, 4))  # RGBA input: cnndesk prepares grayscale or RGB only
    rgba = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp)))
    with pytest.raises(ModelFileError, match="1 or 3 channels"):
        Inspector(rgba)
    inp = keras.Input((8, 8, 3))
    per_pixel = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))  # a segmentation head: one answer per pixel
    with pytest.raises(ModelFileError, match="one probability per class"):
        Inspector(per_pixel)


def test_evaluation_counts_what_the_model_got_right_and_wrong(inspector, data):
    x, y = data.subset(data.val_index)
    paths = [data.paths[i] for i in data.val_index]
    # score against shifted labels so that there is plenty to get wrong
    wrong_labels = (y + 1) % 3
    ev = inspector.evaluate(x, wrong_labels, paths)
    pred = inspector.probabilities(x).argmax(1)
    n = len(y)
    assert ev.accuracy == pytest.approx(float((pred == wrong_labels).mean()))
    assert ev.confusion.sum() == n
    assert ev.confusion.sum(axis=1).tolist() == np.bincount(wrong_labels, minlength=3).tolist()
    assert np.trace(ev.confusion) == round(ev.accuracy * n)
    for i, m in enumerate(ev.per_class):
        col, row = ev.confusion[:, i].sum(), ev.confusion[i].sum()
        assert m.name == data.class_names[i] and m.support == row
        assert m.precision == pytest.approx(ev.confusion[i, i] / col if col else 0)
        assert m.recall == pytest.approx(ev.confusion[i, i] / row if row else 0)
    assert len(ev.misclassified) == n - np.trace(ev.confusion) > 0
    confidences = [m.confidence for m in ev.misclassified]
    assert confidences == sorted(confidences, reverse=True)
    worst = ev.misclassified[0]
    assert worst.path == paths[worst.index]
    assert worst.true_class == data.class_names[wrong_labels[worst.index]] != worst.predicted_class
    assert ev.cell(0, 1) == np.flatnonzero((wrong_labels == 0) & (pred == 1)).tolist()

    right = inspector.evaluate(x, y, paths)
    assert right.accuracy > 0.8
    js = right.to_json()
    assert set(js) == {"accuracy", "accuracy_interval", "images", "classes", "per_class", "confusion_matrix",
                       "misclassified"}
    assert sum(map(sum, js["confusion_matrix"])) == n == js["images"]
    # each accuracy with its 95 % interval: the whole one on the n images, each class's recall on its own images
    assert js["accuracy_interval"] == pytest.approx(list(proportion_interval(round(right.accuracy * n), n)))
    for m in js["per_class"]:
        assert m["recall_interval"] == pytest.approx(list(proportion_interval(round(m["recall"] * m["support"]),
                                                                              m["support"])))


def test_an_inspector_refuses_preprocessing_that_does_not_fit_the_model():
    from cnndesk.core.model.architecture import build_model, preset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.errors import ModelFileError
    from cnndesk.core.model.inspection import Inspector

    model = build_model(preset("seed"), (32, 32, 3), 3)
    with pytest.raises(ModelFileError, match="takes 32x32x3 images but the project prepares 64x64x3"):
        Inspector(model, ["a", "b", "c"], Preprocessing((64, 64), "rgb"))


def _flat_model(size=16, classes=3) -> keras.Model:
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                             keras.layers.Dense(classes, activation="softmax", name="out")])


def test_a_model_without_conv_or_pooling_layers_predicts_and_evaluates_but_shows_no_maps():
    model = _flat_model()
    ins = Inspector(model, ["a", "b", "c"], Preprocessing((16, 16)))
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3)).astype(np.uint8)

    assert not ins.has_maps
    assert ins.layer_names == [] and ins.conv_layer_names == []
    assert ins.default_cam_layer is None and ins.first_layer_kernels() is None
    ins.warm_up()
    probs = ins.probabilities(images)
    np.testing.assert_allclose(probs, np.asarray(model(images.astype(np.float32))), atol=1e-5)
    assert ins.top_k(probs[0], 2)[0] == (["a", "b", "c"][int(np.argmax(probs[0]))], pytest.approx(probs[0].max()))
    maps, one = ins.activation_maps(images[0])
    assert maps == [] and one == pytest.approx(probs[0], abs=1e-6)
    with pytest.raises(UserError, match="no convolution or pooling layer, so there is no heat map"):
        ins.gradcam(images[0], 0)
    result = ins.evaluate(images, np.array([0, 1, 2, 0, 1, 2]))
    assert result.confusion.sum() == 6 and 0 <= result.accuracy <= 1


def test_an_inspector_with_maps_says_so(inspector):
    assert inspector.has_maps and inspector.default_cam_layer == inspector.conv_layer_names[-1]


@pytest.mark.slow
def test_a_trained_flatten_dense_stack_can_be_inspected(data, tmp_path):
    from cnndesk.core.model.architecture import CLASSES, LayerSpec

    flat = [LayerSpec("Flatten"), LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"})]
    settings = TrainingSettings(batch_size=8, epochs=1, patience=0, seed=1)
    model = train(data, flat, settings).model
    ins = Inspector(model, data.class_names, data.preprocessing)
    assert not ins.has_maps
    [pred] = ins.predict_files([data.paths[0]], k=3)
    assert [c for c, _ in pred.top] and pred.probabilities.shape == (3,)
    x, y = data.subset(data.val_index)
    assert ins.evaluate(x, y).confusion.sum() == len(y)


# -- pixel preprocessing -------------------------------------------------------------------

@pytest.mark.parametrize("pixels, keras_module", [("-1-1", "mobilenet_v2"), ("caffe", "resnet50"),
                                                  ("torch", "densenet")])
def test_each_pixel_mode_gives_exactly_what_keras_applications_preprocess_input_gives(pixels, keras_module):
    images = np.random.default_rng(7).integers(0, 256, (3, 9, 11, 3)).astype(np.uint8)
    expected = getattr(keras.applications, keras_module).preprocess_input(images.copy())
    got = Preprocessing((9, 11), "rgb", pixels).pixel_values(images)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(Preprocessing((9, 11), "rgb", pixels).pixel_values(images[0]), expected[0])


def test_the_scaling_pixel_modes_divide_or_keep_the_pixels():
    images = np.random.default_rng(8).integers(0, 256, (2, 5, 5, 1)).astype(np.uint8)
    np.testing.assert_array_equal(Preprocessing((5, 5), "grayscale", "0-1").pixel_values(images),
                                  images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(Preprocessing((5, 5), "grayscale", "0-255").pixel_values(images),
                                  images.astype(np.float32))


def test_a_pixel_mode_that_cannot_apply_is_refused_with_a_reason():
    with pytest.raises(UserError, match="unknown pixel preprocessing 'tf'"):
        Preprocessing((8, 8), "rgb", "tf")
    with pytest.raises(UserError, match="caffe preprocessing works on RGB images only"):
        Preprocessing((8, 8), "grayscale", "caffe")


def _family_layers(name: str):
    """A keras.applications model without weights, as small as the family allows, and its layers."""
    build, side = {"MobileNetV2": (keras.applications.MobileNetV2, 32), "ResNet50": (keras.applications.ResNet50, 32),
                   "DenseNet121": (keras.applications.DenseNet121, 32),
                   "EfficientNetB0": (keras.applications.EfficientNetB0, 32),
                   "VGG16": (keras.applications.VGG16, 32), "ResNet50V2": (keras.applications.ResNet50V2, 32),
                   "MobileNet": (keras.applications.MobileNet, 32), "Xception": (keras.applications.Xception, 71),
                   "InceptionV3": (keras.applications.InceptionV3, 75)}[name]
    return build(input_shape=(side, side, 3), weights=None, classes=3)


@pytest.mark.parametrize("family, pixels", [("MobileNetV2", "-1-1"), ("ResNet50", "caffe"), ("DenseNet121", "torch"),
                                            ("EfficientNetB0", "0-255"), ("VGG16", "caffe"), ("ResNet50V2", "-1-1"),
                                            ("MobileNet", "-1-1"), ("Xception", "-1-1"), ("InceptionV3", "-1-1")])
@pytest.mark.slow
def test_keras_applications_families_are_recognised_by_their_layers(family, pixels):
    from cnndesk.core.model.inspection import preprocessing_for_model

    pre = preprocessing_for_model(_family_layers(family))
    assert pre.pixels == pixels and pre.color_mode == "rgb"


@pytest.mark.slow
def test_a_recognised_model_is_fed_its_familys_numbers():
    keras.utils.set_random_seed(2)
    model = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=3)
    images = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    ins = Inspector(model)
    assert ins.preprocessing.pixels == "caffe"
    expected = np.asarray(model(keras.applications.resnet50.preprocess_input(images.copy()), training=False))
    np.testing.assert_allclose(ins.probabilities(images), expected, rtol=1e-5, atol=1e-6)
    # the same model fed 0-1 pixels answers differently: the mode matters
    ins.preprocessing = Preprocessing((32, 32), "rgb", "0-1")
    assert not np.allclose(ins.probabilities(images), expected, atol=1e-3)

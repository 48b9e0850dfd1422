"""The model panel's table (pure Python) against Keras, refusals that name the layer, JSON round trips."""

from __future__ import annotations

import json

import pytest

from cnndesk.core.model.architecture import (
    build_model, CLASSES, layer_table, LayerSpec, preset, PRESETS, total_params, TrainingSettings,
)
from cnndesk.core.errors import ArchitectureError, UserError


def _assert_table_matches_keras(layers, input_shape, num_classes):
    rows = layer_table(layers, input_shape, num_classes)
    model = build_model(layers, input_shape, num_classes)
    assert len(rows) == len(layers) + 1
    assert rows[0].output_shape == input_shape
    assert total_params(rows) == model.count_params()
    for row in rows[1:]:
        layer = model.get_layer(row.name)
        assert type(layer).__name__ in (row.kind, row.kind.replace("MaxPool2D", "MaxPooling2D"))
        assert tuple(layer.output.shape[1:]) == row.output_shape, row.name
        assert row.params == layer.count_params(), row.name
    return rows


@pytest.mark.parametrize("name", [n for n in PRESETS if preset(n)[0].kind != "Backbone"])  # those: test_transfer.py
@pytest.mark.parametrize("input_shape", [(32, 32, 3), (45, 38, 1), (64, 96, 3)])
def test_every_preset_table_equals_keras(name, input_shape):
    rows = _assert_table_matches_keras(preset(name), input_shape, 4)
    assert rows[-1].output_shape == (4,)


def test_a_custom_stack_with_strides_same_padding_and_batchnorm_equals_keras():
    layers = [
        LayerSpec("Conv2D", {"filters": 6, "kernel_size": 5, "strides": 2, "padding": "same", "activation": "tanh"}),
        LayerSpec("BatchNormalization"),
        LayerSpec("AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "valid"}),
        LayerSpec("MaxPool2D", {"pool_size": 2, "padding": "same"}),
        LayerSpec("Conv2D", {"filters": 3, "kernel_size": 1}),
        LayerSpec("Flatten"),
        LayerSpec("Dense", {"units": 7, "activation": "gelu"}),
        LayerSpec("BatchNormalization"),
        LayerSpec("Dropout", {"rate": 0.5}),
        LayerSpec("Flatten"),
        LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"}),
    ]
    rows = _assert_table_matches_keras(layers, (33, 27, 3), 5)
    assert [r.output_shape for r in rows[1:4]] == [(17, 14, 6), (17, 14, 6), (8, 6, 6)]


def _refusal(layers, input_shape=(32, 32, 3), num_classes=3) -> ArchitectureError:
    with pytest.raises(ArchitectureError) as e:
        layer_table(layers, input_shape, num_classes)
    with pytest.raises(ArchitectureError) as e2:  # build_model refuses the same way
        build_model(layers, input_shape, num_classes)
    assert str(e2.value) == str(e.value) and e2.value.layer_index == e.value.layer_index
    return e.value


def _conv(**p):
    return LayerSpec("Conv2D", {"filters": 4, "kernel_size": 3, **p})


OUT = LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"})


def test_a_stack_that_shrinks_below_one_pixel_names_the_layer():
    err = _refusal(preset("seed"), (8, 8, 3))  # 8 -> 6 -> 4 -> pool 2 -> the 4th layer's 3x3 kernel does not fit
    assert err.layer_index == 3
    assert "Layer 4 (Conv2D)" in str(err) and "smaller than 1 pixel" in str(err)
    err = _refusal([_conv(), LayerSpec("MaxPool2D", {"pool_size": 40}), LayerSpec("Flatten"), OUT])
    assert err.layer_index == 1 and "Layer 2 (MaxPool2D)" in str(err) and "30x30" in str(err)


def test_dense_before_flatten_is_refused():
    err = _refusal([_conv(), LayerSpec("Dense", {"units": 8}), LayerSpec("Flatten"), OUT])
    assert err.layer_index == 1
    assert "Layer 2 (Dense)" in str(err) and "add Flatten" in str(err)


def test_conv_after_flatten_is_refused():
    err = _refusal([_conv(), LayerSpec("Flatten"), _conv(), OUT])
    assert err.layer_index == 2
    assert "Layer 3 (Conv2D)" in str(err) and "Move it before Flatten" in str(err)
    err = _refusal([LayerSpec("GlobalAveragePooling2D"), LayerSpec("MaxPool2D"), OUT])
    assert err.layer_index == 1 and "Layer 2 (MaxPool2D)" in str(err)


@pytest.mark.parametrize("last", [
    LayerSpec("Dense", {"units": 64, "activation": "relu"}),
    LayerSpec("Dense", {"units": 5, "activation": "softmax"}),
    LayerSpec("Dense", {"units": CLASSES, "activation": "sigmoid"}),
    LayerSpec("Dropout", {"rate": 0.2}),
])
def test_a_bad_last_layer_is_refused(last):
    layers = [_conv(), LayerSpec("Flatten"), last]
    err = _refusal(layers)
    assert err.layer_index == 2
    assert "Layer 3" in str(err) and "last layer must be Dense with one unit per class (3)" in str(err)


@pytest.mark.parametrize("spec, words", [
    (LayerSpec("Conv2D", {"filters": 0}), "filters must be a whole number ≥ 1"),
    (LayerSpec("Conv2D", {"filters": "many"}), "filters must be a whole number"),
    (LayerSpec("Conv2D", {"kernel_size": 2.5}), "kernel_size must be a whole number"),
    (LayerSpec("Conv2D", {"padding": "full"}), "padding must be 'valid' or 'same'"),
    (LayerSpec("Conv2D", {"activation": "sparkle"}), "unknown activation 'sparkle'"),
    (LayerSpec("MaxPool2D", {"pool_size": -1}), "pool_size must be a whole number"),
    (LayerSpec("Dropout", {"rate": 1.5}), "rate must be at least 0 and below 1"),
    (LayerSpec("Conv3D", {}), "unknown layer type"),
])
def test_bad_parameter_values_name_the_layer(spec, words):
    err = _refusal([_conv(), spec, LayerSpec("Flatten"), OUT])
    assert err.layer_index == 1
    assert f"Layer 2 ({spec.kind})" in str(err) and words in str(err)


def test_a_bad_dense_is_refused_at_its_index():
    err = _refusal([_conv(), LayerSpec("Flatten"), LayerSpec("Dense", {"units": 0}), OUT])
    assert err.layer_index == 2 and "units must be a whole number ≥ 1" in str(err)


def test_an_empty_stack_or_too_few_classes_is_refused_without_a_layer():
    assert _refusal([]).layer_index is None
    err = _refusal(preset("seed"), num_classes=1)
    assert err.layer_index is None and "at least 2 classes" in str(err)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(UserError, match="choose from seed, tinyvgg, deeper"):
        preset("huge")


def test_presets_are_fresh_copies():
    a = preset("seed")
    a[0].params["filters"] = 99
    assert preset("seed")[0].params["filters"] == 10


@pytest.mark.parametrize("name", list(PRESETS))
def test_layer_specs_round_trip_through_json(name):
    layers = preset(name)
    text = json.dumps([layer.to_json() for layer in layers])
    back = [LayerSpec.from_json(d) for d in json.loads(text)]
    assert back == layers
    assert [b.describe() for b in back] == [layer.describe() for layer in layers]


def test_training_settings_round_trip_through_json():
    s = TrainingSettings(optimizer="sgd", learning_rate=0.01, batch_size=8, epochs=3, patience=0,
                         restore_best=False, device="gpu:0", seed=5)
    back = TrainingSettings.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s
    # keys from another version are ignored, missing ones take defaults
    assert TrainingSettings.from_json({"epochs": 4, "future_option": True}) == TrainingSettings(epochs=4)


@pytest.mark.parametrize("settings, words", [
    (TrainingSettings(optimizer="magic"), "Unknown optimizer 'magic'"),
    (TrainingSettings(learning_rate=0), "learning rate must be a positive number"),
    (TrainingSettings(batch_size=0), "batch size must be at least 1"),
    (TrainingSettings(epochs=0), "at least 1 epoch"),
    (TrainingSettings(patience=-1), "patience cannot be negative"),
])
def test_bad_training_settings_are_refused(settings, words):
    with pytest.raises(UserError, match=words):
        settings.validate()


def test_multiply_adds_count_each_weight_once_per_output_position():
    from cnndesk.core.model.architecture import multiply_adds

    layers = [LayerSpec("Conv2D", {"filters": 4, "kernel_size": 3}), LayerSpec("MaxPool2D"), LayerSpec("Flatten"),
              LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"})]
    rows = layer_table(layers, (10, 10, 3), 2)
    # conv: 8x8 positions x (3x3x3 weights x 4 filters); dense: 4x4x4 inputs x 2 classes
    assert multiply_adds(rows) == 8 * 8 * 3 * 3 * 3 * 4 + 4 * 4 * 4 * 2


def test_preset_summaries_give_size_and_cost_for_the_input_or_say_why_it_does_not_fit():
    from cnndesk.core.model.architecture import preset_summary

    seed = preset_summary("seed", (64, 64, 3), 4)
    assert seed.title == "Seed" and seed.use
    assert seed.params == total_params(layer_table(preset("seed"), (64, 64, 3), 4))
    deeper = preset_summary("deeper", (64, 64, 3), 4)
    assert deeper.multiply_adds > 3 * seed.multiply_adds
    tiny = preset_summary("seed", (8, 8, 3), 4)
    assert tiny.params is None and tiny.multiply_adds is None and "does not fit" in tiny.problem

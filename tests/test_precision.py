"""The precision a run trains in (cnndesk.core.training.precision): chosen per CPU, forced by the settings,
never left behind: what a run returns, saves and exports is float32."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest

from cnndesk.core.data.dataset import DatasetConfig, load_dataset, Preprocessing
from cnndesk.core.errors import UserError
from cnndesk.core.model.architecture import preset, TrainingSettings
from cnndesk.core.training.fitting import train
from cnndesk.core.training.model_pool import ModelPool
from cnndesk.core.training.precision import choose_precision, model_policy
from cnndesk.core.training.progress import TrainingListener

from conftest import write_dataset

AVX2 = frozenset({"sse2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512_vnni", "avx512_bf16"}
AMX = AVX2 | {"avx512f", "amx_tile", "amx_bf16"}


def test_auto_trains_in_bfloat16_only_on_a_cpu_that_computes_it_natively():
    assert choose_precision("auto", "cpu", AVX2).note == "precision: float32 (this CPU has no native bfloat16)"
    native = choose_precision("auto", "cpu", AVX512_BF16)
    assert (native.name, native.policy) == ("bfloat16", "mixed_bfloat16")
    assert native.note == "precision: bfloat16 mixed precision (this CPU computes bfloat16 natively: avx512_bf16)"
    assert choose_precision("auto", "cpu", AMX).name == "bfloat16"
    assert choose_precision("auto", "cpu", None).note == (
        "precision: float32 (this CPU's instruction set could not be read)")
    assert choose_precision("auto", "gpu:0", AVX512_BF16).name == "float32"
    assert choose_precision("auto", "cpu", AVX512_BF16).float32().policy == "float32"


def test_the_settings_turn_it_off_or_force_it():
    assert choose_precision("float32", "cpu", AVX512_BF16).note == "precision: float32 (chosen in the settings)"
    assert choose_precision("bfloat16", "cpu", AVX512_BF16).note == (
        "precision: bfloat16 mixed precision (chosen in the settings)")
    assert choose_precision("bfloat16", "cpu", AVX2).note == (
        "precision: bfloat16 mixed precision (chosen in the settings; this CPU has no native bfloat16, "
        "so it is emulated and slower)")
    with pytest.raises(UserError, match="Unknown precision 'half'"):
        choose_precision("half")
    with pytest.raises(UserError, match="Unknown precision 'half'"):
        TrainingSettings(precision="half").validate()
    assert TrainingSettings.from_json({"epochs": 2}).precision == "auto"


class Notes(TrainingListener):
    def __init__(self):
        self.notes: list[str] = []

    def on_message(self, text):
        self.notes.append(text)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("precision") / "tiny", per_class=12)
    return load_dataset(root, DatasetConfig(Preprocessing((32, 32)), val_split=0.25, seed=3))


SETTINGS = dict(batch_size=9, learning_rate=3e-3, epochs=1, patience=0, seed=5)


@pytest.fixture(scope="module")
def forced(data):
    """A run forced into bfloat16 on whatever CPU runs the tests (emulated on most), with a pool."""
    pool, notes = ModelPool(), Notes()
    result = train(data, preset("seed"), TrainingSettings(**SETTINGS, precision="bfloat16"), notes, pool=pool)
    return result, notes, pool


@pytest.mark.slow
def test_a_run_forced_into_bfloat16_says_so_and_leaves_no_policy_behind(forced):
    result, notes, _ = forced
    assert [n for n in notes.notes if n.startswith("precision:")] == [choose_precision("bfloat16").note]
    assert keras.mixed_precision.global_policy().name == "float32"  # the viewer's jobs compute in float32
    assert model_policy(result.model) == "float32"
    assert {layer.dtype_policy.name for layer in result.model.layers} == {"float32"}
    assert result.history[0]["loss"] > 0 and np.isfinite(result.history[0]["val_loss"])


@pytest.mark.slow
def test_the_model_trained_in_bfloat16_is_saved_as_float32(forced, tmp_path):
    from cnndesk.core.model.export import export_model

    result, _, _ = forced
    path = export_model(result.model, "keras", tmp_path / "model")
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "mixed_bfloat16" not in config and "bfloat16" not in config
    assert json.loads(config)["config"]["dtype"]["config"]["name"] == "float32"
    reloaded = keras.saving.load_model(path)
    assert model_policy(reloaded) == "float32"


@pytest.mark.slow
def test_a_float32_run_on_the_same_seed_is_not_given_the_bfloat16_spare(forced, data):
    result, _, pool = forced
    float32 = TrainingSettings(**SETTINGS, precision="float32")
    bfloat16 = TrainingSettings(**SETTINGS, precision="bfloat16")
    shape = data.preprocessing.input_shape
    assert pool.has_spare(preset("seed"), shape, data.num_classes, bfloat16), "the run's own model came back"
    assert not pool.has_spare(preset("seed"), shape, data.num_classes, float32)
    again = train(data, preset("seed"), bfloat16, pool=pool)
    assert not again.start_times.traced and pool.reused == 1
    assert [r["loss"] for r in again.history] == pytest.approx([r["loss"] for r in result.history], abs=1e-6)


@pytest.mark.slow
def test_continuing_in_bfloat16_trains_the_same_weights_and_hands_back_float32(forced, data):
    result, _, _ = forced
    before = [w.copy() for w in result.model.get_weights()]
    more = train(data, preset("seed"), TrainingSettings(**SETTINGS, precision="bfloat16"), model=result.model,
                 initial_epoch=1)
    assert model_policy(more.model) == "float32" and more.history[0]["epoch"] == 2
    after = more.model.get_weights()
    assert len(after) == len(before) and any(not np.array_equal(a, b) for a, b in zip(after, before))

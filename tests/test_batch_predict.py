"""Putting a trained model to work: a whole folder classified, flagged, written to CSV and sorted (with undo)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cnndesk.core.model.architecture import preset, TrainingSettings
from cnndesk.core.work.classify_folder import (
    add_to_sort_log, classify_files, collect_images, CsvRows, FolderRow, NOT_SURE, read_sort_log, SORT_LOG, sort_row,
    undo_all, undo_sort, UNLIKE,
)
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.errors import Cancelled, UserError
from cnndesk.core.data.images import decode_image, Preprocessing
from cnndesk.core.data.fixes import ChangeLog
from cnndesk.core.tasks import TaskState
from cnndesk.core.training.fitting import train
from cnndesk.core.work.trust import image_statistics, measure_trust, ModelHeads, Trust
from cnndesk.core.work.novelty import NoveltyStats

from conftest import write_dataset

CLASSES = ("left", "top", "centre")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The seed preset trained on 3 generated classes (40 each at 32 px), its trust measured."""
    root = write_dataset(tmp_path_factory.mktemp("train") / "data", CLASSES, per_class=40)
    data = load_dataset(root, DatasetConfig(Preprocessing((32, 32)), val_split=0.3, seed=3))
    result = train(data, preset("seed"), TrainingSettings(epochs=8, batch_size=16, seed=3))
    trust = measure_trust(result.model, data)
    return data, result.model, trust, ModelHeads(result.model, data.preprocessing)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Images the model never saw: 10 more of each class in nested folders, a note, a hidden file, two foreign
    images (uniform noise, a checkerboard) and a damaged one."""
    root = tmp_path_factory.mktemp("unsorted") / "inbox"
    write_dataset(root / "batch1", CLASSES, per_class=10, seed=99)
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "noise.png")
    board = (np.indices((32, 32)).sum(0) // 4 % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([board] * 3, -1)).save(root / "checkerboard.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"")
    return root


def test_a_folder_is_listed_recursively_with_the_dataset_rules(folder):
    files, skipped = collect_images([folder])
    names = {f.name for f in files}
    assert len(files) == 33 and {"noise.png", "checkerboard.png", "broken.jpg"} <= names
    assert ".hidden.png" not in names and "notes.txt" not in names
    assert [s.kind for s in skipped] == ["not an image file type cnndesk reads"]
    assert [str(f) for f in files] == sorted(map(str, files))


@pytest.mark.slow
def test_every_file_gets_a_row_with_calibrated_probabilities_and_foreign_images_are_flagged(trained, folder):
    data, model, trust, heads = trained
    files, _ = collect_images([folder])
    rows = list(classify_files(files, heads, data.class_names, trust, k=3, batch_size=8))
    assert [r.path for r in rows] == [str(f) for f in files]  # in order, across batches
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in rows}
    assert "not a readable image" in by_name["broken.jpg"].error and by_name["broken.jpg"].top == []
    held_out = [r for r in rows if "/batch1/" in r.path]
    right = sum(r.predicted == r.path.split("/")[-2] for r in held_out)
    assert right >= 27  # of 30: the classes are easy
    # the probabilities are the model's logits through the fitted temperature
    _, z = heads(decode_image(held_out[0].path, heads.preprocessing)[None])
    expected = trust.probabilities(z)[0]
    assert held_out[0].top[0][1] == pytest.approx(float(expected.max()), abs=1e-6)
    assert held_out[0].second[0] == data.class_names[int(np.argsort(-expected)[1])]
    # 95 % of the validation images pass the threshold; new images of the same kinds pass too, foreign ones do not
    assert sum(UNLIKE in r.flags for r in held_out) <= 3
    assert UNLIKE in by_name["noise.png"].flags and UNLIKE in by_name["checkerboard.png"].flags
    assert all((NOT_SURE in r.flags) == (r.confidence < 0.5) for r in rows if r.error is None)


@pytest.mark.slow
def test_trust_survives_json_and_measures_what_it_says(trained):
    data, model, trust, heads = trained
    again = Trust.from_json(json.loads(json.dumps(trust.to_json())))
    assert again.temperature == trust.temperature
    x = data.images[data.val_index]
    features, _ = heads(x)
    np.testing.assert_allclose(again.novelty.scores(features), trust.novelty.scores(features), rtol=1e-5)
    # the threshold lets 95 % of the validation images pass
    assert np.mean(trust.novelty.scores(features) <= trust.novelty.threshold) >= 0.95
    assert trust.calibration["images"] == len(data.val_index)
    assert Trust.from_json({"temperature": -1}) is None and Trust.from_json("junk") is None


@pytest.mark.slow
def test_the_csv_holds_path_class_confidence_top_k_and_flags(trained, folder, tmp_path):
    data, model, trust, heads = trained
    files, _ = collect_images([folder])
    rows = list(classify_files(files, heads, data.class_names, trust, k=3))
    out = tmp_path / "out" / "rows.csv"
    with CsvRows(out, k=3) as writer:
        for row in rows:
            writer.write(row)
    with open(out, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["path", "class", "confidence", "class_2", "confidence_2", "class_3", "confidence_3",
                              "flags", "unlikeness", "error"]
    assert [t["path"] for t in table] == [r.path for r in rows]
    for t, r in zip(table, rows):
        if r.error:
            assert t["error"] == r.error and t["class"] == "" and t["confidence"] == ""
            continue
        assert [t["class"], t["class_2"], t["class_3"]] == [c for c, _ in r.top]
        assert float(t["confidence"]) == pytest.approx(r.confidence, abs=1e-6)
        assert float(t["confidence"]) >= float(t["confidence_2"]) >= float(t["confidence_3"])
        assert t["flags"] == "; ".join(r.flags)
    noise = next(t for t in table if t["path"].endswith("noise.png"))
    assert UNLIKE in noise["flags"].split("; ")


@pytest.mark.slow
def test_sorting_copies_into_class_folders_and_every_change_can_be_undone(trained, folder, tmp_path):
    data, model, trust, heads = trained
    files, _ = collect_images([folder])
    before = {f: f.read_bytes() for f in files}
    dest = tmp_path / "sorted"
    log = ChangeLog()
    rows = list(classify_files(files, heads, data.class_names, trust))
    for row in rows:
        sort_row(row, dest, log, flag_folders=True)
    assert len(log.changes) == 32  # every file but the damaged one
    for row, change in zip([r for r in rows if r.error is None], log.changes):
        expected = UNLIKE if UNLIKE in row.flags else NOT_SURE if NOT_SURE in row.flags else row.predicted
        assert change.moved_to.startswith(str(dest / expected) + "/")
    assert (dest / UNLIKE / "noise.png").read_bytes() == before[folder / "noise.png"]
    assert all(f.read_bytes() == b for f, b in before.items())  # copies: the originals stay
    assert undo_all(log) == [] and log.changes == []
    assert not [p for p in dest.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_moving_sorts_the_files_away_and_undo_puts_them_back(trained, folder, tmp_path):
    data, model, trust, heads = trained
    src = tmp_path / "moving"
    write_dataset(src, ("left", "centre"), per_class=3, seed=7)
    files, _ = collect_images([src])
    dest = src / "sorted"  # inside the folder being sorted: never read as input
    log = ChangeLog()
    for row in classify_files(files, heads, data.class_names, trust):
        sort_row(row, dest, log, move=True)
    assert not any(f.exists() for f in files)
    assert sorted(p.name for p in dest.rglob("*.png")) == sorted(f.name for f in files)
    assert {p.parent.name for p in dest.rglob("*.png")} <= set(data.class_names)
    again, skipped = collect_images([src], left_out=[dest])
    assert again == [] and skipped == []
    assert undo_all(log) == []
    assert all(f.exists() for f in files)


@pytest.mark.slow
def test_cancelling_half_way_stops_after_the_batch_and_leaves_no_partial_csv(trained, folder, tmp_path):
    data, model, trust, heads = trained
    files, _ = collect_images([folder])
    state = TaskState()
    out = tmp_path / "rows.csv"
    out.write_text("an earlier export\n")
    seen: list[FolderRow] = []
    with pytest.raises(Cancelled):
        with CsvRows(out) as writer:
            for row in classify_files(files, heads, data.class_names, trust, batch_size=8, state=state):
                seen.append(row)
                writer.write(row)
                if len(seen) == 12:
                    state.request_interruption()
    assert len(seen) == 16  # the batch under way is finished, no new one is started
    assert out.read_text() == "an earlier export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


@pytest.mark.slow
def test_measuring_trust_says_so_reports_progress_and_stops_when_asked(trained):
    data, model, trust, heads = trained

    class Watched(TaskState):
        def __init__(self, stop_at: float | None = None):
            super().__init__(min_interval=0)
            self.stop_at, self.statuses, self.progress = stop_at, [], []

        def set_status(self, text):
            self.statuses.append(text)

        def on_progress(self, percent):
            self.progress.append(percent)
            if self.stop_at is not None and percent >= self.stop_at:
                self.request_interruption()

    watched = Watched()
    again = measure_trust(model, data, watched)
    assert watched.statuses == ["Measuring how far the model's answers can be trusted…"]
    assert watched.progress == sorted(watched.progress) and watched.progress[-1] == pytest.approx(100)
    assert again.temperature == pytest.approx(trust.temperature)
    stopped = Watched(stop_at=1)
    with pytest.raises(Cancelled):
        measure_trust(model, data, stopped)
    assert stopped.progress[-1] < 100  # it stopped at the next chunk


@pytest.mark.slow
def test_novelty_signals_include_the_layers_channel_statistics_and_older_statistics_still_read(trained):
    data, model, trust, heads = trained
    x = data.images[data.val_index]
    signals, _ = heads(x)
    assert heads.signal_names[0] == "penultimate" and len(heads.signal_names) == len(signals) > 1
    assert [g.source for g in trust.novelty.signals] == heads.signal_names
    # a layer's signal is the mean and standard deviation of each of its channels over the map
    assert signals[1].shape == (len(x), 2 * model.get_layer(heads.signal_names[1]).filters)
    # statistics saved before the layers were signals: one Gaussian of the penultimate features and its threshold
    first = trust.novelty.signals[0].to_json()
    del first["scale"], first["source"], first["tail"]
    old = NoveltyStats.from_json({**first, "method": "mahalanobis-shared-covariance", "threshold": 3.0})
    assert len(old.signals) == 1 and old.threshold == 3.0
    np.testing.assert_allclose(old.scores(signals), trust.novelty.signals[0].scores(signals[0]), rtol=1e-5)
    # statistics saved with several signals but before the tails: each score over its scale, the largest of them
    saved = trust.novelty.to_json()
    for g in saved["signals"]:
        del g["tail"]
    older = NoveltyStats.from_json(json.loads(json.dumps({**saved, "method": "mahalanobis-signals"})))
    assert not older.has_tails and len(older.signals) == len(trust.novelty.signals)
    expected = np.max([g.scores(s) / g.scale for g, s in zip(older.signals, signals)], axis=0)
    np.testing.assert_allclose(older.scores(signals), expected, rtol=1e-6)
    # a file with some signals' tails and not others' is damaged
    saved["signals"][0]["tail"] = [1.0, 0.5]
    with pytest.raises(ValueError):
        NoveltyStats.from_json(saved)


@pytest.mark.slow
def test_grey_copies_are_unlike_a_model_of_colour_images_while_new_colour_ones_pass(trained, tmp_path):
    """The model learnt colour images; the same shapes in grey are another kind of picture. The signals' tails are
    measured on the validation images and the training images out of fold, and the pixels are a signal: before
    both, 3 of these 30 grey images were flagged."""
    data, model, trust, heads = trained
    new = write_dataset(tmp_path / "new", CLASSES, per_class=10, seed=99)
    files, _ = collect_images([new])
    grey = tmp_path / "grey"
    grey.mkdir()
    for f in files:
        Image.open(f).convert("L").save(grey / f.name)
    rows = list(classify_files(files, heads, data.class_names, trust))
    grey_rows = list(classify_files(collect_images([grey])[0], heads, data.class_names, trust))
    assert sum(UNLIKE in r.flags for r in rows) <= 2  # of 30 new images of the training kind
    assert sum(UNLIKE in r.flags for r in grey_rows) >= 27  # of their 30 grey copies
    assert [g.source for g in trust.novelty.signals][-2:] == ["pixels", "colour"] and trust.novelty.has_tails


def test_a_sort_is_listed_in_its_destination_and_undone_from_that_list_alone(tmp_path):
    src = write_dataset(tmp_path / "in", ("left", "top"), per_class=2)
    files, _ = collect_images([src])
    dest = tmp_path / "out"
    first, second = ChangeLog(), ChangeLog()
    sort_row(FolderRow(str(files[0]), [("top", 0.9), ("left", 0.1)]), dest, first)
    sort_row(FolderRow(str(files[1]), [("left", 0.4), ("top", 0.3)], (NOT_SURE,)), dest, first, flag_folders=True)
    add_to_sort_log(dest, first.changes)
    sort_row(FolderRow(str(files[2]), [("top", 0.8), ("left", 0.2)]), dest, second, move=True)
    add_to_sort_log(dest, second.changes)  # a second sort into the same folder adds to the list
    assert read_sort_log(dest) == first.changes + second.changes
    assert not files[2].exists() and (dest / NOT_SURE / files[1].name).is_file()
    collected, _ = collect_images([dest])
    assert len(collected) == 3  # the list is hidden: never read as an image
    assert undo_sort(dest) == (3, [])
    assert files[2].is_file() and not (dest / SORT_LOG).exists()
    assert not [p for p in dest.rglob("*")]  # the class folders the sort made went with their files
    with pytest.raises(UserError, match="nothing to undo"):
        undo_sort(dest)
    (dest / SORT_LOG).write_text("{not json")
    with pytest.raises(UserError, match="not a list of sorted files"):
        undo_sort(dest)


def test_the_heads_of_many_models_never_make_tensorflow_warn_of_retracing(caplog):
    """Every run gets its own ModelHeads; TensorFlow must not count them as one function traced again and again
    (its warning reached the terminal after the sixth training of a session)."""
    import logging

    import keras

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for _ in range(7):
            model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                      keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
            heads = ModelHeads(model)
            for n in (5, 7, 3):
                signals, logits = heads(np.zeros((n, 16, 16, 1), np.uint8))
                assert logits.shape == (n, 3)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_the_pixel_signals_are_the_images_tones_grain_and_colourfulness():
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    flat = np.full((16, 16, 3), 128, np.uint8)
    grey_ramp = np.repeat(np.repeat(np.linspace(0, 255, 16).astype(np.uint8)[None, :, None], 16, 0), 3, 2)
    images = np.stack([noise, flat, grey_ramp])
    tones, colour = (t.numpy() for t in image_statistics(images))
    x = images / 255.0
    assert tones.shape == (3, 8) and colour.shape == (3, 1)
    np.testing.assert_allclose(tones[:, :3], x.mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(tones[:, 3:6], np.log(x.std(axis=(1, 2)) + 1 / 255), atol=1e-4)
    assert abs(tones[0, 6]) < 0.2 and abs(tones[0, 7]) < 0.2  # pixel noise: neighbours do not agree
    assert tones[1, 6] == pytest.approx(1.0) and tones[1, 7] == pytest.approx(1.0)  # a flat image agrees
    assert tones[2, 6] > 0.9 and tones[2, 7] == pytest.approx(1.0)  # a smooth ramp across, constant down
    np.testing.assert_allclose(colour[:, 0], np.log((x.max(-1) - x.min(-1)).mean(axis=(1, 2)) + 2 / 255),
                               atol=1e-5)
    assert colour[1, 0] == colour[2, 0] < colour[0, 0]  # grey pictures have no colour; noise has
    (grey_tones,) = image_statistics(images[..., :1])
    assert grey_tones.shape == (3, 4)

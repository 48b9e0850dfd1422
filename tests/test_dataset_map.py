"""The map of the dataset: every image placed by what the model sees, its highlights, the Map tab, the CLI."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from cnndesk.core.data.dataset import DatasetConfig, load_dataset, resplit
from cnndesk.core.data.images import Preprocessing
from cnndesk.core.errors import Cancelled
from cnndesk.core.model.architecture import preset, TrainingSettings
from cnndesk.core.tasks import TaskState
from cnndesk.core.training.fitting import train
from cnndesk.core.work.dataset_map import (
    COPY, DOUBT, EXCLUDED, LEAK, TRAINING, VALIDATION, WRONG, dataset_map, embed,
)

from conftest import write_dataset
from test_app import set_epochs

CLASSES = ("left", "top", "centre")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """3 generated classes (16 each at 32 px), one file copied byte for byte into its own class, one image of
    "left" filed under "top" (a wrong label); the seed preset trained on it."""
    root = write_dataset(tmp_path_factory.mktemp("map") / "data", CLASSES, per_class=16)
    copy = root / "centre" / "centre_copy.png"
    copy.write_bytes((root / "centre" / "centre_03.png").read_bytes())
    wrong = root / "top" / "really_left.png"
    Image.open(root / "left" / "left_15.png").save(wrong)
    (root / "left" / "left_15.png").unlink()
    data = load_dataset(root, DatasetConfig(Preprocessing((32, 32)), val_split=0.25, seed=3))
    model = train(data, preset("seed"), TrainingSettings(epochs=10, batch_size=8, seed=3)).model
    return data, model, str(copy), str(wrong)


def test_every_image_is_placed_and_the_planted_copy_and_wrong_label_are_highlighted(planted):
    data, model, copy, wrong = planted
    original = str(Path(copy).with_name("centre_03.png"))
    wrong_row, copy_rows = data.paths.index(wrong), [data.paths.index(copy), data.paths.index(original)]
    m = dataset_map(model, data, doubtful_rows=[wrong_row])
    assert m.xy.shape == (len(data.paths), 2) and np.isfinite(m.xy).all()
    assert np.ptp(m.xy, axis=0).min() > 0  # spread on both axes, not a line
    assert sorted(m.rows_with(COPY).tolist()) == sorted(copy_rows)  # the copy and its original, nothing else
    assert not m.rows_with(LEAK).size  # the split keeps the two on one side
    assert m.rows_with(DOUBT).tolist() == [wrong_row]
    assert wrong_row in m.rows_with(WRONG)  # the model sees a "left" image filed under "top"
    assert data.class_names[m.predicted[wrong_row]] == "left"
    assert set(m.rows_with(WRONG).tolist()) == set(np.flatnonzero(m.predicted != data.labels).tolist())
    assert (m.sides[data.train_index] == TRAINING).all() and (m.sides[data.val_index] == VALIDATION).all()
    # the same image's neighbours on the map are mostly of its class (what the model sees, not noise)
    d = ((m.xy[:, None] - m.xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    assert np.mean(data.labels[nearest] == data.labels) > 0.8


def test_a_copy_across_the_split_is_a_leak_and_an_excluded_image_stays_on_the_map(planted):
    data, model, copy, _ = planted
    a, b = data.paths.index(copy), data.paths.index(str(Path(copy).with_name("centre_03.png")))
    train_rows = np.setdiff1d(np.asarray(data.train_index), [a, b])
    val_rows = np.setdiff1d(np.asarray(data.val_index), [a, b])
    straddled = dataclasses.replace(data, train_index=np.append(train_rows, a), val_index=np.append(val_rows, b))
    m = dataset_map(model, straddled)
    assert sorted(m.rows_with(LEAK).tolist()) == sorted([a, b])
    gone = resplit(data, DatasetConfig(Preprocessing((32, 32)), val_split=0.25, seed=3), [0])
    m = dataset_map(model, gone)
    assert len(m) == len(data.paths) and m.sides[0] == EXCLUDED and not m.flags[0] & COPY


def test_a_dataset_kept_on_disk_is_read_a_chunk_at_a_time_and_mapped_as_in_memory(planted, tmp_path, monkeypatch):
    import cnndesk.core.model.inspection as inspection
    from cnndesk.core.data.cache_plan import CacheSettings

    data, model, _, _ = planted
    monkeypatch.setattr(inspection, "EVALUATION_CHUNK", 16)  # chunks smaller than the 48 images
    on_disk = load_dataset(data.root, DatasetConfig(Preprocessing((32, 32)), val_split=0.25, seed=3),
                           cache=CacheSettings(memory_limit=0, folder=tmp_path / "cache"))
    assert on_disk.on_disk and on_disk.paths == data.paths
    reads = []
    images = on_disk.images

    class Counted:  # the on-disk images, counting the rows of each read
        shape = images.shape

        def __len__(self):
            return len(images)

        def __getitem__(self, rows):
            reads.append(len(np.atleast_1d(np.arange(len(images))[rows])))
            return images[rows]

    m = dataset_map(model, dataclasses.replace(on_disk, images=Counted()))
    assert sum(reads) >= len(data.paths) and max(reads) <= 16
    np.testing.assert_allclose(m.xy, dataset_map(model, data).xy, atol=1e-3)


def test_placing_stops_when_cancelled():
    state = TaskState()
    state.request_interruption()
    with pytest.raises(Cancelled):
        embed(np.random.default_rng(0).normal(size=(300, 20)), state)


def test_the_csv_has_a_row_per_image_and_the_png_is_drawn(planted, tmp_path):
    from cnndesk.core.work.dataset_map import write_png

    data, model, _, _ = planted
    m = dataset_map(model, data)
    m.write_csv(tmp_path / "map.csv", data.paths, data.class_names)
    with open(tmp_path / "map.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data.paths) and [r["path"] for r in rows] == data.paths
    assert {r["split"] for r in rows} == {"training", "validation"}
    assert sum(int(r["copy"]) for r in rows) == 2
    write_png(m, data.class_names, tmp_path / "map.png")
    with Image.open(tmp_path / "map.png") as im:
        assert im.size[1] == 1000 and len(set(im.convert("RGB").getdata())) > 10


def test_the_cli_writes_the_map_as_a_png_and_a_csv_row_per_image(planted, tmp_path):
    import contextlib
    import io

    from cnndesk.cli import main

    data, model, copy, _ = planted
    model.save(tmp_path / "model.keras")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["map", str(tmp_path / "model.keras"), str(data.root), "--png", str(tmp_path / "map.png"),
                     "--csv", str(tmp_path / "map.csv")])
    assert code == 0, err.getvalue()
    assert out.getvalue().startswith(f"{len(data.paths)} images: 2 copy")
    with open(tmp_path / "map.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(data.paths)
    assert {r["path"] for r in rows if r["copy"] == "1"} == {copy, str(Path(copy).with_name("centre_03.png"))}
    with Image.open(tmp_path / "map.png") as im:
        assert im.format == "PNG" and im.size[1] == 1000
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err := io.StringIO()):
        assert main(["map", str(tmp_path / "model.keras"), str(data.root)]) == 2
    assert "--png" in err.getvalue()


# ---------------------------------------------------------------------------
# the Map tab

def _counts(panel) -> tuple[int, int, int]:
    head = re.fullmatch(r"(\d+) images in \d+ classes: (\d+) for training, (\d+) for validation(?:, (\d+) excluded)?",
                        panel.totals.text())
    assert head, panel.totals.text()
    return int(head.group(2)), int(head.group(3)), int(head.group(4) or 0)


def test_the_map_tab_hovers_opens_lassoes_excludes_and_undoes(window, qtbot, tmp_path):
    w = window
    root = write_dataset(tmp_path / "shapes", CLASSES, per_class=12)
    w.dataset_panel.load_folder(str(root))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == root, timeout=30000)
    set_epochs(w, qtbot, 3)
    w.model_panel.batch_size.setValue(8)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.has_model and not w.state.training, timeout=120000)

    w.map_action.trigger()  # Training → Dataset Map
    view = w.viewer_panel.map_view
    assert w.tabs.currentIndex() == w.TAB_VIEWER and w.viewer_panel.tabs.currentWidget() is view
    qtbot.waitUntil(view.isVisible)
    assert view.compute_button.isEnabled()
    qtbot.mouseClick(view.compute_button, Qt.LeftButton)
    assert view.cancel_button.isVisible()
    qtbot.waitUntil(lambda: view.compute_button.isEnabled(), timeout=120000)
    data = w.state.data
    assert view.note.text().startswith(f"{len(data.paths)} images:"), view.note.text()
    canvas = view.canvas

    # hover: the image and its name are shown beside the map
    row = 5
    qtbot.mouseMove(canvas, canvas.screen_point(row).toPoint())
    qtbot.waitUntil(lambda: view.hover_name.text() != "")
    hovered = canvas.row_at(*canvas.screen_point(row).toTuple())  # the nearest point (another may lie on it)
    assert view.hover_name.text().startswith(Path(data.paths[hovered]).name)
    assert not view.preview.pixmap().isNull()
    assert canvas.toolTip() == view.hover_name.text()

    # click: the viewer shows that image
    qtbot.mouseClick(canvas, Qt.LeftButton, pos=canvas.screen_point(hovered).toPoint())
    qtbot.waitUntil(lambda: w.viewer_panel.current is not None and w.viewer_panel.current.path == data.paths[hovered],
                    timeout=30000)
    assert w.viewer_panel.current_view.isVisible()

    # lasso around the points of the left half of the map
    xs = np.array([canvas.screen_point(r).x() for r in range(len(data.paths))])
    cut = float(np.median(xs))
    top, bottom, left = 2, canvas.height() - 2, 2
    qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(left, top))
    for p in (QPoint(int(cut), top), QPoint(int(cut), bottom), QPoint(left, bottom), QPoint(left, top + 1)):
        qtbot.mouseMove(canvas, p)
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(left, top + 1))
    picked = set(np.flatnonzero(xs < int(cut)).tolist())
    assert set(canvas.selected.tolist()) == picked and picked
    assert view.selection.text() == f"{len(picked)} image(s) picked."
    train_before, val_before, excluded_before = _counts(w.dataset_panel)
    assert excluded_before == 0

    qtbot.mouseClick(view.exclude_button, Qt.LeftButton)
    assert _counts(w.dataset_panel)[2] == len(picked)
    assert w.state.excluded == {data.paths[r] for r in picked}
    assert view.changes.list.count() == len(picked)
    assert (view.canvas.map.sides[sorted(picked)] == EXCLUDED).all()  # the map stays, the points turn grey
    assert "excluded" in view.legend.text()

    for _ in range(len(picked)):
        qtbot.mouseClick(view.changes.undo_button, Qt.LeftButton)
    assert _counts(w.dataset_panel) == (train_before, val_before, 0)
    assert not w.state.excluded and view.changes.list.count() == 0
    assert not (view.canvas.map.sides == EXCLUDED).any()


def test_the_map_can_be_cancelled_in_the_window(window, qtbot):
    """The sample dataset with a model from one epoch: Cancel stops the job and says so."""
    w = window
    set_epochs(w, qtbot, 1)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.has_model and not w.state.training, timeout=120000)
    w.map_action.trigger()
    view = w.viewer_panel.map_view
    qtbot.mouseClick(view.compute_button, Qt.LeftButton)
    qtbot.mouseClick(view.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.compute_button.isEnabled(), timeout=60000)
    assert view.note.text() == "Map cancelled."
    assert view.canvas.map is None


def test_beyond_the_sample_t_sne_places_the_others_beside_their_nearest(monkeypatch):
    """Two far clusters of 120 images, 40 of them placed by t-SNE: every other image lands in its own cluster."""
    import cnndesk.core.work.dataset_map as module

    monkeypatch.setattr(module, "TSNE_MOST", 40)
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(0, 1, (60, 12)), rng.normal(20, 1, (60, 12))])
    xy = embed(features)
    assert xy.shape == (120, 2) and np.isfinite(xy).all()
    a, b = xy[:60].mean(axis=0), xy[60:].mean(axis=0)
    own = np.linalg.norm(xy[:60] - a, axis=1) < np.linalg.norm(xy[:60] - b, axis=1)
    assert own.all() and (np.linalg.norm(xy[60:] - b, axis=1) < np.linalg.norm(xy[60:] - a, axis=1)).all()

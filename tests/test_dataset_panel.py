"""The dataset panel as a person sees it: every class row, readable skipped files, a grayscale hint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QLabel, QStyleOptionViewItem

from conftest import shown, write_dataset
from cnndesk.core.data import color_hint
from cnndesk.core.data.color_hint import ColorSample, sample_colors, spread
from cnndesk.core.project.session import SessionState
from cnndesk.ui.bindings import DatasetReading
from cnndesk.ui.dataset_panel import DatasetPanel
from cnndesk.ui.dataset_tables import relative_path


@pytest.fixture
def state():
    return SessionState()


@pytest.fixture
def reading(qtbot, state):
    """The panel at about the size a 1024x700 window gives it, bound to ``state`` as in the window."""
    r = DatasetReading(state, shown(qtbot, DatasetPanel(), 1000, 600))
    yield r
    r.shutdown()


@pytest.fixture
def panel(reading):
    return reading.panel


def pick_folder(panel, qtbot, monkeypatch, folder: Path) -> None:
    """Pick ``folder`` in the folder dialog (reading it starts)."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    qtbot.mouseClick(panel.choose_button, Qt.LeftButton)


def choose(state, panel, qtbot, monkeypatch, folder: Path) -> None:
    """Pick ``folder`` in the folder dialog and wait until it is read."""
    pick_folder(panel, qtbot, monkeypatch, folder)
    wait_loaded(state, panel, qtbot, folder)


def loaded(state, panel, folder: Path, color_mode: str | None = None) -> bool:
    """Whether ``folder`` is read into ``state`` (in ``color_mode``, if given), the panel says so and nothing else
    is being read."""
    return (state.data is not None and state.data.root == folder
            and not panel.progress.isVisible() and not panel._reload_timer.isActive()
            and (color_mode is None or state.data.preprocessing.color_mode == color_mode))


def wait_loaded(state, panel, qtbot, folder: Path, color_mode: str | None = None) -> None:
    qtbot.waitUntil(lambda: loaded(state, panel, folder, color_mode), timeout=20000)


def write_gray_dataset(root: Path, classes=("dark", "light"), per_class=6) -> Path:
    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8), "L").save(root / c / f"{c}_{i}.png")
    return root


def rows_in_view(table) -> list[bool]:
    view = table.viewport().rect()
    return [view.contains(table.visualRect(table.model().index(r, 0))) for r in range(table.rowCount())]


# -- the class table --------------------------------------------------------

def test_six_classes_are_all_in_sight_without_scrolling(panel, qtbot, monkeypatch, tmp_path, state):
    classes = ("left", "top", "centre", "stripes", "dots", "rings")
    folder = write_dataset(tmp_path / "six", classes=classes, per_class=4, size=16)
    choose(state, panel, qtbot, monkeypatch, folder)
    table = panel.class_table
    assert table.rowCount() == 6
    qtbot.waitUntil(lambda: all(rows_in_view(table)))
    assert table.verticalScrollBar().maximum() == 0
    # the thumbnails below still get at least a full row of room, and all of it with no skipped file to list
    assert panel.thumbs.height() >= panel.thumbs.gridSize().height()
    assert panel.skipped_label.text() == "Skipped files: none" and not panel.skipped_table.isVisible()
    assert panel.skipped_box.height() <= panel.skipped_label.sizeHint().height()


def test_many_classes_fill_twelve_rows_and_scroll_the_rest(panel, qtbot, monkeypatch, tmp_path, state):
    panel.resize(1580, 900)
    folder = write_dataset(tmp_path / "many", classes=tuple(f"class_{i:02d}" for i in range(14)), per_class=2,
                           size=12)
    choose(state, panel, qtbot, monkeypatch, folder)
    table = panel.class_table
    qtbot.waitUntil(lambda: table.height() == table.height_for_rows(12))
    assert rows_in_view(table)[:12] == [True] * 12
    assert table.verticalScrollBar().maximum() > 0  # the last two are a scroll away


# -- skipped files ----------------------------------------------------------

def test_skipped_files_show_their_path_in_the_dataset_with_the_full_path_as_tooltip(panel, qtbot, monkeypatch,
                                                                                   tmp_path, state):
    folder = write_dataset(tmp_path / "a folder" / "deep" / "down" / "pictures", classes=("left", "top"),
                           per_class=4, size=16)
    notes = folder / "left" / "scans from the old camera" / "notes about these photographs.txt"
    notes.parent.mkdir()
    notes.write_text("not a picture")
    (folder / "top" / "broken.png").write_text("not a picture either")
    choose(state, panel, qtbot, monkeypatch, folder)

    model = panel.skipped_table.model()
    rows = {model.index(r, 0).data(): r for r in range(model.rowCount())}
    shown = os.path.join("left", "scans from the old camera", "notes about these photographs.txt")
    assert set(rows) == {shown, os.path.join("top", "broken.png")}
    assert model.index(rows[shown], 0).data(Qt.ToolTipRole) == str(notes)
    assert model.index(rows[shown], 1).data() == "not an image file type cnndesk reads (.txt)"

    # too long for its column, the path loses its middle: the class folder and the file name stay
    index = model.index(rows[shown], 0)
    option = QStyleOptionViewItem()
    panel.skipped_table.itemDelegateForColumn(0).initStyleOption(option, index)
    elided = option.fontMetrics.elidedText(option.text, option.textElideMode, 200)
    assert elided.startswith("left") and elided.endswith("photographs.txt") and "…" in elided


def test_a_path_outside_the_dataset_folder_is_shown_whole():
    root = Path("/data/flowers")
    assert relative_path(str(root / "rose" / "a.txt"), root) == os.path.join("rose", "a.txt")
    assert relative_path("/data/flowers-old/rose/a.txt", root) == "/data/flowers-old/rose/a.txt"
    assert relative_path("/elsewhere/a.txt", root) == "/elsewhere/a.txt"
    assert relative_path("/data/flowers/a.txt", None) == "/data/flowers/a.txt"


# -- a refused folder ---------------------------------------------------------

def lines(panel) -> dict:
    """Everything the panel shows about the dataset it holds."""
    t = panel.class_table
    return {"folder": panel.path_edit.text(), "totals": panel.totals.text(), "split": panel.split_note.text(),
            "memory": panel.cache_estimate.text(), "warnings": panel.imbalance.text(),
            "classes": [(t.item(r, 0).text(), t.item(r, 1).text()) for r in range(t.rowCount())],
            "thumbnails": panel.thumbs.count(), "skipped": panel.skipped_label.text(),
            "hint": panel.color_hint.isVisible(), "scaled up": (panel.scale_note.isVisible(), panel.scale_note.text())}


def test_a_refused_folder_leaves_the_dataset_read_before_shown_whole_and_says_so(panel, qtbot, monkeypatch,
                                                                                 tmp_path, state):
    first = write_gray_dataset(tmp_path / "gray")
    choose(state, panel, qtbot, monkeypatch, first)
    before = lines(panel)
    assert before["hint"] and before["split"] and before["scaled up"][0]
    refused = write_dataset(tmp_path / "refused", classes=("left", "top"), per_class=4, size=16)
    (refused / "empty").mkdir()
    changed = []
    state.observe(changed.append, "data", "dataset_path")
    pick_folder(panel, qtbot, monkeypatch, refused)
    qtbot.waitUntil(lambda: "refused" in panel.status_label.text() and not panel.progress.isVisible(),
                    timeout=20000)
    assert lines(panel) == before  # every line still describes the dataset read before
    status = panel.status_label.text()
    assert status.startswith(f"The folder {refused} was refused: ") and "'empty'" in status
    assert status.endswith(f"Still using {first}.")
    assert changed == [] and state.data.root == first


def test_a_refused_first_folder_shows_no_dataset_and_why(panel, qtbot, monkeypatch, tmp_path):
    refused = write_dataset(tmp_path / "refused", classes=("left", "top"), per_class=4, size=16)
    (refused / "empty").mkdir()
    pick_folder(panel, qtbot, monkeypatch, refused)
    qtbot.waitUntil(lambda: panel.totals.text() == "No usable dataset", timeout=20000)
    assert "'empty'" in panel.imbalance.text() and panel.imbalance.isVisible()
    assert panel.split_note.text() == "" and "follows once a folder is read" in panel.cache_estimate.text()
    assert panel.class_table.rowCount() == 0 and panel.path_edit.text() == str(refused)


# -- images smaller than the image size ---------------------------------------

def test_images_smaller_than_the_image_size_are_said_to_be_scaled_up(panel, qtbot, monkeypatch, tmp_path, state):
    folder = write_dataset(tmp_path / "small", classes=("left", "top"), per_class=4, size=25)
    choose(state, panel, qtbot, monkeypatch, folder)
    note = panel.findChild(QLabel, "scaleNote")
    assert note.isVisible()
    assert note.text() == "Images are 25×25 px; they are scaled up to 64×64 for training."
    panel.image_size.setCurrentText("24")  # read at 24 px they are scaled down: nothing to say
    qtbot.waitUntil(lambda: loaded(state, panel, folder) and state.data.preprocessing.image_size == (24, 24),
                    timeout=20000)
    assert not note.isVisible()


# -- the grayscale hint -----------------------------------------------------

def test_a_grayscale_dataset_read_as_rgb_gets_a_hint_and_one_click_reads_it_as_grayscale(panel, qtbot, monkeypatch,
                                                                                         tmp_path, state):
    folder = write_gray_dataset(tmp_path / "gray")
    assert panel.color_mode.currentText() == "RGB"
    choose(state, panel, qtbot, monkeypatch, folder)
    assert state.data.preprocessing.color_mode == "rgb"  # nothing switched behind the user's back
    assert panel.color_hint.isVisible()
    assert panel.color_hint_label.text() == ("All 12 images are grayscale: read as RGB, the model gets "
                                             "three copies of one channel.")

    changed = []
    panel.config_changed.connect(lambda: changed.append(True))
    qtbot.mouseClick(panel.use_grayscale_button, Qt.LeftButton)
    assert panel.color_mode.currentText() == "Grayscale" and changed
    wait_loaded(state, panel, qtbot, folder, "grayscale")
    assert state.data.images.shape[-1] == 1
    assert panel.config().preprocessing.color_mode == "grayscale"
    assert not panel.color_hint.isVisible()


def test_once_the_user_picks_rgb_for_a_grayscale_folder_the_hint_stays_away(panel, qtbot, monkeypatch, tmp_path,
                                                                            state):
    folder = write_gray_dataset(tmp_path / "gray")
    choose(state, panel, qtbot, monkeypatch, folder)
    qtbot.mouseClick(panel.use_grayscale_button, Qt.LeftButton)
    wait_loaded(state, panel, qtbot, folder, "grayscale")

    panel.color_mode.setFocus()
    qtbot.keyClick(panel.color_mode, Qt.Key_Up)  # back to RGB, on purpose
    assert panel.color_mode.currentText() == "RGB"
    wait_loaded(state, panel, qtbot, folder, "rgb")
    assert not panel.color_hint.isVisible()


def test_a_colour_dataset_gets_no_hint(panel, qtbot, monkeypatch, tmp_path, state):
    folder = write_dataset(tmp_path / "colour", classes=("left", "top"), per_class=4, size=16)
    choose(state, panel, qtbot, monkeypatch, folder)
    assert state.color_sample == ColorSample(8, 0)
    assert not panel.color_hint.isVisible()


def test_while_training_the_hint_cannot_switch_the_colour_mode(panel, qtbot, monkeypatch, tmp_path, state):
    choose(state, panel, qtbot, monkeypatch, write_gray_dataset(tmp_path / "gray"))
    panel.set_busy(True)
    assert panel.color_hint.isVisible() and not panel.use_grayscale_button.isEnabled()
    panel.set_busy(False)
    assert panel.use_grayscale_button.isEnabled()


# -- the colour sample (core, no Qt) ---------------------------------------

def test_the_sample_reaches_across_the_whole_list():
    assert spread(list(range(100)), 5) == [0, 25, 50, 74, 99]
    assert spread([1, 2, 3], 5) == [1, 2, 3]


def test_only_a_bounded_sample_of_a_large_folder_is_opened(monkeypatch):
    opened = []
    monkeypatch.setattr(color_hint, "file_is_gray", lambda p: opened.append(p) or True)
    sample = sample_colors([f"/data/{i}.png" for i in range(20_000)])
    assert sample == ColorSample(color_hint.SAMPLE_SIZE, color_hint.SAMPLE_SIZE)
    assert len(opened) == color_hint.SAMPLE_SIZE and opened[0] == "/data/0.png" and opened[-1] == "/data/19999.png"


@pytest.mark.parametrize("kind, gray", [
    ("L", True), ("1", True), ("LA", True), ("I;16", True), ("RGB", False), ("RGBA", False),
    ("gray palette", True), ("colour palette", False),
])
def test_grayscale_is_told_from_the_file_header(tmp_path, kind, gray):
    path = tmp_path / "img.png"
    if kind == "gray palette":
        Image.new("L", (8, 8), 90).convert("P").save(path)
    elif kind == "colour palette":
        Image.new("RGB", (8, 8), (200, 30, 30)).convert("P").save(path)
    else:
        Image.new(kind, (8, 8)).save(path)
    assert color_hint.file_is_gray(path) is gray


def test_grey_pixels_stored_as_rgb_count_as_grayscale_and_unreadable_files_are_left_out(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (8, 8), (40 * i, 40 * i, 40 * i)).save(paths[-1])
    (tmp_path / "gone.png").write_text("no image")
    paths.append(tmp_path / "gone.png")
    grey = np.full((4, 8, 8, 3), 77, np.uint8)
    grey[2, 0, 0] = (78, 76, 77)  # a lossy format rounds a little
    assert sample_colors(paths) == ColorSample(3, 0)  # from the headers alone: RGB
    assert sample_colors(paths, grey) == ColorSample(3, 3)
    assert sample_colors(paths, grey).suggestion("rgb") == "grayscale"
    colour = grey.copy()
    colour[1, 4, 4] = (200, 10, 10)
    assert sample_colors(paths, colour).suggestion("rgb") is None
    assert ColorSample(3, 3).suggestion("grayscale") is None
    assert ColorSample(0, 0).suggestion("rgb") is None

"""The Viewer's Folder tab, driven through the real window: a folder dropped or chosen is classified off the GUI
thread into a table that sorts, filters, opens an image, exports CSV, sorts into class folders with undo, and
cancels half-way."""

from __future__ import annotations

import csv
import errno
import gc
import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PIL import Image
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from cnndesk.core import fsutil
from cnndesk.core.work.classify_folder import SORT_LOG

from conftest import child_env, looked_inside, make_image, write_dataset
from test_app import drop_paths, set_epochs

CLASSES = ("left", "top", "centre")


@pytest.fixture
def trained(window, qtbot, tiny_dataset):
    """The window after training the seed model for 3 epochs on the tiny dataset."""
    w = window
    w.dataset_panel.load_folder(str(tiny_dataset))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == tiny_dataset, timeout=20000)
    set_epochs(w, qtbot, 3)
    w.model_panel.batch_size.setValue(4)
    w.model_panel.learning_rate.setValue(0.003)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.has_model and not w.state.training, timeout=120000)
    return w


@pytest.fixture
def inbox(tmp_path):
    """New images in subfolders (4 of each class), a file that is not a picture, and a text file (skipped)."""
    rng = np.random.default_rng(11)
    root = tmp_path / "inbox"
    for c in CLASSES:
        (root / "batch" / c).mkdir(parents=True)
        for i in range(4):
            make_image(c, rng).save(root / "batch" / c / f"{c}_{i}.png")
    (root / "broken.png").write_text("not a picture")
    (root / "notes.txt").write_text("not an image file type")
    return root


def cells(view) -> list[list[str]]:
    """The table as a person reads it: the text of every cell shown, row by row."""
    model = view.table.model()
    return [[model.index(r, c).data() or "" for c in range(model.columnCount())] for r in range(model.rowCount())]


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def wait_done(qtbot, view, timeout=60000):
    qtbot.waitUntil(lambda: not view.cancel_button.isVisible() and view.classify_button.isEnabled(), timeout=timeout)


def test_a_folder_dropped_on_the_viewer_is_classified_then_sorted_filtered_exported_sorted_into_folders_and_undone(
        trained, qtbot, inbox, tmp_path):
    w = trained
    view, work = w.viewer_panel.folder_view, w.folder_work
    drop_paths(w.viewer_panel, [inbox])
    assert w.tabs.currentIndex() == w.TAB_VIEWER and w.viewer_panel.tabs.currentWidget() is view
    assert view.isVisible()
    wait_done(qtbot, view)
    assert view.counts.text().startswith("13 of 13 images · ") and view.counts.text().endswith(" images/s")
    assert view.note.text().startswith(f"Classified {inbox}: ")
    assert "1 unreadable" in view.note.text() and "1 not an image file type" in view.note.text()
    table = cells(view)
    files = sorted(f"batch/{c}/{c}_{i}.png" for c in CLASSES for i in range(4)) + ["broken.png"]
    assert [r[1] for r in table] == sorted(files)  # the files' order
    good = [r for r in table if r[1] != "broken.png"]
    assert all(r[2] in CLASSES and r[4].split(" ")[0] in CLASSES and r[4].split(" ")[0] != r[2] for r in good)
    assert all(0 < percent(r[3]) <= 1 for r in good)
    assert next(r for r in table if r[1] == "broken.png")[5].startswith("not read: ")
    qtbot.waitUntil(lambda: view.table.model().index(0, 0).data(Qt.DecorationRole) is not None,
                    timeout=10000)  # a thumbnail, decoded when its row is shown
    assert w.state.folder_result.rows[0].path == str(inbox / files[0])  # the rows live in the state

    # sort: a click on the Confidence header orders the rows by it
    header = view.table.horizontalHeader()
    qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=QPoint(header.sectionViewportPosition(3) + 5, 5))
    shown = [percent(r[3]) for r in cells(view) if r[3]]
    assert shown == sorted(shown) or shown == sorted(shown, reverse=True)
    assert len(shown) == 12

    # filter: one class, then "not sure"
    predicted = {r[1]: r[2] for r in good}
    view.filter.setCurrentText("left")
    assert sorted(r[1] for r in cells(view)) == sorted(f for f, c in predicted.items() if c == "left")
    unsure = [r for r in w.state.folder_result.rows if r.confidence is not None and r.confidence < 0.5]
    view.filter.setCurrentText("Not sure")
    assert len(cells(view)) == len(unsure)
    assert all("not sure" in r[5] for r in cells(view))
    view.filter.setCurrentText("left")

    # a click opens the image in the viewer, with its maps
    first = view.table.model().index(0, 1)
    qtbot.mouseClick(view.table.viewport(), Qt.LeftButton, pos=view.table.visualRect(first).center())
    opened = str(inbox / cells(view)[0][1])
    qtbot.waitUntil(lambda: w.viewer_panel.current is not None and w.viewer_panel.current.path == opened,
                    timeout=30000)
    qtbot.waitUntil(lambda: looked_inside(w.viewer_panel), timeout=30000)
    assert w.viewer_panel.current_view.isVisible() and view.isVisible()
    # Enter opens the row selected
    view.filter.setCurrentText("All images")
    view.table.setCurrentIndex(view.table.model().index(0, 1))
    qtbot.keyClick(view.table, Qt.Key_Down)
    qtbot.keyClick(view.table, Qt.Key_Return)
    second = str(inbox / cells(view)[1][1])
    qtbot.waitUntil(lambda: w.viewer_panel.current is not None and w.viewer_panel.current.path == second,
                    timeout=30000)
    view.filter.setCurrentText("left")

    # export the rows shown (class "left") as CSV
    out = tmp_path / "left.csv"
    qtbot.mouseClick(view.export_button, Qt.LeftButton)
    dialog = work.dialog
    assert dialog.isVisible() and dialog.windowModality() == Qt.WindowModal
    dialog.selectFile(str(out))
    dialog.accept()
    qtbot.waitUntil(lambda: view.note.text().endswith(" rows written to " + str(out) + "."), timeout=30000)
    with open(out, newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    lefts = [r for r in w.state.folder_result.rows if r.predicted == "left"]
    assert [r["path"] for r in written] == [r.path for r in lefts]
    assert [r["class"] for r in written] == ["left"] * len(lefts)
    assert [float(r["confidence"]) for r in written] == pytest.approx([r.confidence for r in lefts], abs=1e-6)
    assert [r["class_2"] for r in written] == [r.second[0] for r in lefts]
    assert set(written[0]) >= {"path", "class", "confidence", "class_2", "confidence_3", "flags"}
    assert view.note.text() == f"{len(lefts)} rows written to {out}."

    # sort every image into class folders (copies), "not sure" ones in a folder of that name
    view.filter.setCurrentText("All images")
    dest = tmp_path / "sorted"
    qtbot.mouseClick(view.sort_button, Qt.LeftButton)
    dialog = work.dialog
    assert dialog.isVisible() and dialog.copy.isChecked()
    dialog.destination.setText(str(dest))
    dialog.flag_folders.setChecked(True)
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok), Qt.LeftButton)
    qtbot.waitUntil(lambda: view.changes.list.count() == 12, timeout=30000)
    for row in w.state.folder_result.rows:
        if row.error is None:
            folder = "not sure" if "not sure" in row.flags else row.predicted
            assert (dest / folder / Path(row.path).name).read_bytes() == Path(row.path).read_bytes()
    assert (dest / SORT_LOG).is_file()
    assert len(list(inbox.rglob("*.png"))) == 13  # copies: the originals stay
    assert view.changes.title.text() == "Changes: 12"

    # undo: the copies are gone, and so is the list in the destination
    qtbot.mouseClick(view.undo_all_button, Qt.LeftButton)
    assert not [p for p in dest.rglob("*") if p.is_file()]
    assert view.changes.list.count() == 0 and not view.undo_all_button.isEnabled()
    assert view.note.text() == "Undid 12 changes."

    # moving asks first; Yes moves the files, one Undo puts the last one back
    view.filter.setCurrentText("top")
    tops = [r for r in w.state.folder_result.rows if r.predicted == "top"]
    qtbot.mouseClick(view.sort_button, Qt.LeftButton)
    dialog = work.dialog
    dialog.destination.setText(str(dest))
    dialog.move.setChecked(True)
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok), Qt.LeftButton)
    box = work.dialog
    assert isinstance(box, QMessageBox) and box.isVisible() and box.objectName() == "confirmMove"
    assert box.defaultButton() is box.button(QMessageBox.No)
    qtbot.mouseClick(box.button(QMessageBox.Yes), Qt.LeftButton)
    qtbot.waitUntil(lambda: view.changes.list.count() == len(tops), timeout=30000)
    assert not any(Path(r.path).exists() for r in tops)
    assert all((dest / "top" / Path(r.path).name).is_file() for r in tops)
    qtbot.mouseClick(view.changes.undo_button, Qt.LeftButton)
    assert Path(tops[-1].path).is_file() and view.changes.list.count() == len(tops) - 1
    qtbot.mouseClick(view.undo_all_button, Qt.LeftButton)
    assert all(Path(r.path).is_file() for r in tops) and not (dest / SORT_LOG).exists()

    # another model: the rows stay, saying they no longer hold
    w.viewer_panel.rename_classes(["a", "b", "c"])
    qtbot.waitUntil(lambda: "no longer the current model" in view.note.text(), timeout=30000)
    assert len(cells(view)) == len(tops)


def test_classify_folder_from_the_menu_and_cancel_half_way(trained, qtbot, inbox, tmp_path):
    w = trained
    view, work = w.viewer_panel.folder_view, w.folder_work
    many = tmp_path / "many"
    many.mkdir()
    source = inbox / "batch" / "top" / "top_0.png"
    for i in range(3000):  # links to one picture: each is decoded on its own
        os.link(source, many / f"{i:04d}.png")
    assert w.classify_folder_action.isEnabled() and w.classify_folder_action.shortcut().toString() == "Ctrl+Shift+F"
    w.classify_folder_action.trigger()  # File → Classify Folder…
    assert w.viewer_panel.tabs.currentWidget() is view
    dialog = work.dialog
    assert dialog.isVisible() and dialog.windowModality() == Qt.WindowModal
    dialog.selectFile(str(many))
    dialog.accept()
    assert view.cancel_button.isVisible() and not view.classify_button.isEnabled()
    model = view.table.model()
    qtbot.waitUntil(lambda: model.rowCount() > 0, timeout=60000)
    qtbot.mouseClick(view.cancel_button, Qt.LeftButton)
    wait_done(qtbot, view)
    kept = len(w.state.folder_result.rows)
    assert 0 < kept < 3000 and model.rowCount() == kept
    assert view.note.text().startswith(f"Cancelled: {kept:,} of 3,000 images of {many} classified (kept below).")
    assert view.counts.text().startswith(f"{kept:,} of 3,000 images")
    # no job left running (after training, the engine traces spare models for the next Train when idle: waited for)
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=60000)
    assert view.export_button.isEnabled() and view.sort_button.isEnabled()
    # a folder without images says so
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    drop_paths(w.viewer_panel, [empty])
    qtbot.waitUntil(lambda: view.note.text().startswith(f"No image files were found in {empty}."), timeout=30000)
    assert "1 not an image file type" in view.note.text() and model.rowCount() == 0


@pytest.fixture(scope="module")
def project_with_trust(tmp_path_factory):
    """A project trained by ``cnndesk-cli train`` (in a child, as a user would), whose run keeps its temperature and
    novelty statistics."""
    base = tmp_path_factory.mktemp("trusted")
    data = write_dataset(base / "shapes", CLASSES, per_class=30, seed=3)
    project = base / "project"
    done = subprocess.run([sys.executable, "-m", "cnndesk.cli", "train", str(data), "--project", str(project),
                           "--image-size", "32", "--epochs", "4", "--batch-size", "8", "--seed", "1"],
                          capture_output=True, text=True, env=child_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    return project


def test_images_unlike_the_training_images_are_flagged_in_the_table_and_filtered(make_window, qtbot,
                                                                                 project_with_trust, tmp_path):
    w = make_window()
    qtbot.waitUntil(lambda: w.engine.is_ready, timeout=60000)
    w.open_project(str(project_with_trust), confirm=False)
    qtbot.waitUntil(lambda: w.state.has_model and not w.state.busy, timeout=60000)
    run = next(r for r in w.state.runs if r.id == w.state.model.run)
    assert run.trust["novelty"] is not None
    folder = tmp_path / "new"
    write_dataset(folder / "shapes", CLASSES, per_class=2, seed=99)
    rng = np.random.default_rng(4)
    (folder / "noise").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "noise" / f"n{i}.png")
    view = w.viewer_panel.folder_view
    drop_paths(w.viewer_panel, [folder])
    wait_done(qtbot, view)
    assert "carries no statistics" not in view.note.text()
    table = cells(view)
    assert len(table) == 12
    flagged_noise = [r for r in table if r[1].startswith("noise/") and "unlike training" in r[5]]
    flagged_shapes = [r for r in table if r[1].startswith("shapes/") and "unlike training" in r[5]]
    assert len(flagged_noise) >= 5 and len(flagged_shapes) <= 1
    view.filter.setCurrentText("Unlike training")
    assert sorted(r[1] for r in cells(view)) == sorted(r[1] for r in flagged_noise + flagged_shapes)
    result = w.state.folder_result
    assert view.note.text().startswith(f"Classified {folder}: {result.not_sure} not sure, "
                                       f"{len(flagged_noise) + len(flagged_shapes)} unlike training, 0 unreadable.")


def linked_folder(folder: Path, sources: list[Path], count: int) -> Path:
    """``folder`` of ``count`` hard links to ``sources`` in turn: each is a file of its own to decode."""
    folder.mkdir()
    for i in range(count):
        os.link(sources[i % len(sources)], folder / f"{i:04d}.png")
    return folder


def test_a_large_folder_keeps_a_few_hundred_bytes_a_row_and_still_sorts_filters_and_shows_thumbnails(
        trained, qtbot, inbox, tmp_path):
    w = trained
    view = w.viewer_panel.folder_view
    sources = sorted((inbox / "batch").rglob("*.png"))
    drop_paths(w.viewer_panel, [inbox])  # the model's heads traced for one batch size, then for any
    wait_done(qtbot, view)
    drop_paths(w.viewer_panel, [linked_folder(tmp_path / "warm", sources, 70)])
    wait_done(qtbot, view)
    many = linked_folder(tmp_path / "many", sources, 2000)
    gc.collect()
    tracemalloc.start()
    try:
        drop_paths(w.viewer_panel, [many])
        wait_done(qtbot, view)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]  # what was made since the drop and is still held
    finally:
        tracemalloc.stop()
    model = view.table.model()
    assert model.rowCount() == 2000 and view.counts.text().startswith("2,000 of 2,000 images")
    # a thumbnail is 32 x 32 x 3 bytes: the rows keep none, only their file, classes, confidences and flags
    assert kept / 2000 < 600, f"{kept / 2000:.0f} bytes kept a row"

    # the thumbnails of the rows shown are decoded as they come into view, at the top and at the bottom
    qtbot.waitUntil(lambda: model.index(0, 0).data(Qt.DecorationRole) is not None, timeout=10000)
    view.table.scrollToBottom()
    qtbot.waitUntil(lambda: model.index(1999, 0).data(Qt.DecorationRole) is not None, timeout=10000)

    # sorting by confidence and filtering act on all 2,000 rows
    header = view.table.horizontalHeader()
    qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=QPoint(header.sectionViewportPosition(3) + 5, 5))
    shown = [percent(model.index(r, 3).data()) for r in range(model.rowCount())]
    assert len(shown) == 2000 and (shown == sorted(shown) or shown == sorted(shown, reverse=True))
    rows = w.state.folder_result.rows
    by_class = {c: sum(r.predicted == c for r in rows) for c in CLASSES}
    busiest = max(by_class, key=by_class.get)
    view.filter.setCurrentText(busiest)
    assert model.rowCount() == by_class[busiest]
    assert {model.index(r, 2).data() for r in range(model.rowCount())} == {busiest}
    shown = [percent(model.index(r, 3).data()) for r in range(model.rowCount())]
    assert shown == sorted(shown) or shown == sorted(shown, reverse=True)  # still sorted
    assert view.shown_label.text().startswith(f"{by_class[busiest]:,} of 2,000")


def full_disk_after(monkeypatch, chars: int) -> None:
    """Files that ``core.fsutil`` writes take ``chars`` characters, then fail as on a full disk."""
    def opened(path, mode="r", **kwargs):
        f = open(path, mode, **kwargs)
        real = f.write
        left = [chars]

        def write(text):
            if left[0] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            left[0] -= len(text)
            return real(text)

        f.write = write
        return f

    monkeypatch.setattr(fsutil, "open", opened, raising=False)


def test_export_csv_is_a_job_with_progress_and_a_full_disk_leaves_no_file(trained, qtbot, inbox, tmp_path,
                                                                          monkeypatch):
    w = trained
    view, work = w.viewer_panel.folder_view, w.folder_work
    drop_paths(w.viewer_panel, [inbox])
    wait_done(qtbot, view)
    out = tmp_path / "out" / "rows.csv"
    out.parent.mkdir()

    def export_to(path):
        qtbot.mouseClick(view.export_button, Qt.LeftButton)
        work.dialog.selectFile(str(path))
        work.dialog.accept()

    # the engine is busy with another job: the export waits for it, and the window shows it under way
    gate = threading.Event()
    w.engine.submit(lambda _worker: gate.wait(60))
    try:
        export_to(out)
        assert view.progress.isVisible() and view.cancel_button.isVisible()
        assert not view.export_button.isEnabled() and not view.classify_button.isEnabled()
        assert not out.exists()  # written off the window's thread, once its turn comes
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not view.cancel_button.isVisible(), timeout=30000)
    assert view.note.text() == f"13 rows written to {out}."
    with open(out, newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 13
    assert view.export_button.isEnabled()

    # a full disk half-way: a message says so, and no partial file is left
    full = out.parent / "full.csv"
    full_disk_after(monkeypatch, 200)
    export_to(full)
    qtbot.waitUntil(lambda: w.findChild(QMessageBox, "folderError") is not None
                    and w.findChild(QMessageBox, "folderError").isVisible(), timeout=30000)
    box = w.findChild(QMessageBox, "folderError")
    assert box.windowTitle() == "The CSV file could not be written"
    assert box.text() == f"Cannot write {full}: the disk is full."
    assert os.listdir(out.parent) == ["rows.csv"]
    assert view.note.text() == f"No CSV file was written to {full}."
    assert not view.cancel_button.isVisible() and view.export_button.isEnabled()


def test_a_garbage_collection_walks_no_tensorflow_objects_so_it_cannot_stall_the_window(window, qtbot):
    # a full collection holds the interpreter's lock for as long as it walks the objects: with TensorFlow and Keras
    # walked (about 400,000 objects) that was 0.5 s, every thread stopped, the window too, whenever one came
    qtbot.waitUntil(lambda: window.engine.is_ready, timeout=120000)
    walked = len(gc.get_objects())  # the objects a full collection walks (those frozen after start-up are not)
    assert walked < 150_000, f"a full garbage collection walks {walked:,} objects"

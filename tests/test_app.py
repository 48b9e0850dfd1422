"""The desktop app driven as a person would: clicks, typed values, drops (issue: GUI training)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QSpinBox

from cnndesk.core.cpu_kernels import ENGINE_NICENESS
from cnndesk.core.intervals import with_interval
from cnndesk.ui.runs_view import BEST_ACC
from conftest import kept_epoch, looked_inside, strict_json, write_dataset


def save_as(w, qtbot, monkeypatch, folder):
    """File > Save Project As… into ``folder`` (the dialog answered), waiting until the save has ended."""
    from cnndesk.ui import file_dialogs

    monkeypatch.setattr(file_dialogs, "ask_folder_for_writing", lambda *a, **k: str(folder))
    w.save_as_action.trigger()
    qtbot.waitUntil(lambda: not w.state.busy, timeout=30000)


def drop_paths(widget, paths):
    """Send a real drag-enter and drop carrying file URLs to ``widget``."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = widget.rect().center()
    enter = QDragEnterEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the widget refused the drag"
    drop = QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, drop)


def question_after(w, press, name: str) -> QMessageBox:
    """Do ``press`` (a click); the question box called ``name`` is shown and the press has returned: nothing waits
    for the answer in a nested event loop. The box is window-modal: the window waits, the event loop does not."""
    returned = []

    def give_up():  # a question that waited in a nested loop would hold the press until closed: close it
        if not returned:
            for box in w.findChildren(QMessageBox, name):
                box.reject()

    QTimer.singleShot(5000, give_up)
    press()
    returned.append(True)
    boxes = [b for b in w.findChildren(QMessageBox, name) if b.isVisible()]
    assert len(boxes) == 1, f"no question {name} is shown once the press has returned"
    assert boxes[0].windowModality() == Qt.WindowModal
    return boxes[0]


def saved_model_file(folder: Path) -> Path | None:
    """The model file a saved project's project.json names (None: saved without a model)."""
    import json

    ref = json.loads((folder / "project.json").read_text())["model"]
    return None if ref is None else folder / ref["file"]


def class_rows(panel):
    t = panel.class_table
    return {t.item(r, 0).text(): int(t.item(r, 1).text()) for r in range(t.rowCount())}


def layer_row_text(window, row):
    t = window.model_panel.table
    return [t.item(row, c).text() for c in range(t.columnCount())]


def set_epochs(window, qtbot, n):
    type_into(qtbot, window.model_panel.epochs, n)


def type_into(qtbot, spin, n):
    spin.selectAll()
    qtbot.keyClicks(spin, str(n))
    qtbot.keyClick(spin, Qt.Key_Return)  # a number applies when it is finished
    assert spin.value() == n


@pytest.fixture
def tiny_window(window, qtbot, tiny_dataset):
    window.dataset_panel.load_folder(str(tiny_dataset))
    qtbot.waitUntil(lambda: window.state.data is not None
                    and window.state.data.root == Path(tiny_dataset), timeout=20000)
    return window


def test_window_opens_at_once_with_tensorflow_loading_then_the_sample(make_window, qtbot, sample_dir):
    start = time.perf_counter()
    w = make_window()
    opened = time.perf_counter() - start
    print(f"\nwindow shown after {opened * 1000:.0f} ms")
    # the engine answers through the event loop, so right after opening it cannot be ready yet:
    # the user sees why Train is disabled
    assert not w.engine.is_ready
    assert w.engine_label.text() == "Loading TensorFlow…"
    assert not w.training_panel.train_button.isEnabled()
    qtbot.waitUntil(lambda: w.engine.is_ready and w.state.data is not None, timeout=60000)
    assert w.engine_label.text().startswith("TensorFlow ")
    assert not w.windowIcon().isNull()  # the app icon from resources/ loaded
    assert w.dataset_panel.path_edit.text() == str(sample_dir)
    assert class_rows(w.dataset_panel) == {"circle": 30, "cross": 30, "square": 30, "triangle": 30}
    assert w.dataset_panel.thumbs.count() > 0
    assert "120 images in 4 classes" in w.dataset_panel.totals.text()
    assert w.training_panel.train_button.isEnabled()


def test_choosing_a_folder_shows_its_classes_thumbnails_and_skipped_files(window, qtbot, tiny_dataset, monkeypatch):
    (tiny_dataset / "left" / "broken.png").write_text("this is not an image")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tiny_dataset))
    qtbot.mouseClick(window.dataset_panel.choose_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.state.data is not None
                    and window.state.data.root == tiny_dataset, timeout=20000)
    panel = window.dataset_panel
    assert class_rows(panel) == {"centre": 20, "left": 20, "top": 20}
    assert panel.thumbs.count() == 3 * 6
    skipped = panel.skipped_table.model()
    assert skipped.rowCount() == 1
    assert skipped.index(0, 0).data().endswith("broken.png")
    assert "not a readable image" in skipped.index(0, 1).data()
    assert panel.skipped_label.text() == "Skipped files (1): 1 not a readable image"
    assert "12 for validation" in panel.totals.text()
    # the model follows the dataset: 3 classes at 64x64 (the default size)
    assert "Dense(3 classes" in layer_row_text(window, window.model_panel.table.rowCount() - 1)[0]


def test_dropping_a_folder_on_the_window_reads_it(window, qtbot, tmp_path):
    folder = write_dataset(tmp_path / "dropped", classes=("left", "top"), per_class=8)
    drop_paths(window, [folder])
    qtbot.waitUntil(lambda: window.state.data is not None
                    and window.state.data.root == folder, timeout=20000)
    assert class_rows(window.dataset_panel) == {"left": 8, "top": 8}
    assert window.tabs.currentIndex() == window.TAB_DATASET


def test_a_wrong_folder_gets_a_clear_message_and_the_dataset_read_before_stays(window, qtbot, tmp_path):
    panel = window.dataset_panel
    sample, path = window.state.data, window.state.dataset_path
    empty = tmp_path / "nothing"
    empty.mkdir()
    panel.load_folder(str(empty))
    qtbot.waitUntil(lambda: "no class subfolders" in panel.status_label.text(), timeout=20000)
    assert panel.status_label.text().startswith(f"The folder {empty} was refused: ")
    assert panel.status_label.text().endswith(f"Still using {sample.root}.")
    assert panel.path_edit.text() == str(sample.root) and "no class subfolders" not in panel.imbalance.text()
    assert window.state.data is sample and window.state.dataset_path == path
    assert window.training_panel.train_button.isEnabled()  # it trains on the dataset still shown


def test_a_project_whose_dataset_is_refused_shows_no_dataset_and_why(window, qtbot, tmp_path):
    from cnndesk.core.project.store import save_project

    empty = tmp_path / "nothing"
    empty.mkdir()
    project = window.state.current_project()
    project.dataset_path = str(empty)
    save_project(tmp_path / "project", project)
    panel = window.dataset_panel
    window.open_project(str(tmp_path / "project"), confirm=False)
    qtbot.waitUntil(lambda: "no class subfolders" in panel.imbalance.text(), timeout=20000)
    # nothing of the dataset read before is left: the window has none, nor does the panel show one
    assert window.state.data is None and panel.totals.text() == "No usable dataset"
    assert panel.class_table.rowCount() == 0 and panel.split_note.text() == ""
    assert "follows once a folder is read" in panel.cache_estimate.text()
    assert panel.path_edit.text() == str(empty)
    assert not window.training_panel.train_button.isEnabled()
    assert "Choose a dataset folder" in window.training_panel.reason.text()


def test_changing_image_size_and_a_layer_parameter_updates_the_shape_table(tiny_window, qtbot):
    w = tiny_window
    size = w.dataset_panel.image_size
    size.setCurrentText("")
    qtbot.keyClicks(size, "32")
    qtbot.waitUntil(lambda: w.state.data.preprocessing.image_size == (32, 32), timeout=20000)
    assert layer_row_text(w, 0)[0].startswith("Input 32×32×3")
    assert layer_row_text(w, 1)[1] == "30 × 30 × 10"

    w.tabs.setCurrentIndex(w.TAB_MODEL)
    w.model_panel.table.selectRow(1)  # the first Conv2D
    filters = w.model_panel.editor_box.findChild(QSpinBox, "param_filters")
    before = w.model_panel.total_label.text()
    filters.selectAll()
    qtbot.keyClicks(filters, "16")
    qtbot.keyClick(filters, Qt.Key_Return)  # a number applies when it is finished
    assert layer_row_text(w, 1)[1] == "30 × 30 × 16"
    assert layer_row_text(w, 1)[2] == f"{3 * 3 * 3 * 16 + 16:,}"
    assert w.model_panel.total_label.text() != before
    assert w.model_panel.preset_combo.currentData() == "custom"


def test_an_impossible_stack_is_shown_on_the_layer_and_blocks_training(tiny_window, qtbot):
    w = tiny_window
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    w.model_panel.table.selectRow(1)
    kernel = w.model_panel.editor_box.findChild(QSpinBox, "param_kernel_size")
    kernel.selectAll()
    # 64 px input: a 60x60 kernel leaves 5, the next conv 3, the pool 1: layer 4's 3x3 kernel cannot fit
    qtbot.keyClicks(kernel, "60")
    qtbot.keyClick(kernel, Qt.Key_Return)
    assert w.model_panel.error is not None
    message = w.model_panel.error_label.text()
    assert w.model_panel.error_label.isVisible()
    bad = w.model_panel.error.layer_index
    assert message.startswith(f"Layer {bad + 1} (")
    assert layer_row_text(w, bad + 1)[3] == "⚠"
    assert layer_row_text(w, bad + 1)[1] == "—"
    assert layer_row_text(w, 1)[1] == "5 × 5 × 10"  # the layers before it still show their shapes
    assert not w.training_panel.train_button.isEnabled()
    assert not w.train_action.isEnabled()
    assert "cannot be built" in w.training_panel.reason.text()
    # fixing it enables training again
    kernel.selectAll()
    qtbot.keyClicks(kernel, "3")
    qtbot.keyClick(kernel, Qt.Key_Return)
    assert w.model_panel.error is None
    assert w.training_panel.train_button.isEnabled()


def test_training_two_epochs_draws_the_chart_and_logs_each_epoch(tiny_window, qtbot):
    w = tiny_window
    set_epochs(w, qtbot, 2)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    assert w.tabs.currentIndex() == w.TAB_TRAIN
    assert w.training_panel.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    chart = w.training_panel.chart
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert chart.point_count(key) == 2, key
    assert chart.point_count("batch_loss") >= 2
    epochs = [line for line in w.training_panel.log.toPlainText().splitlines() if line.startswith("Epoch ")]
    assert len(epochs) == 2
    assert w.training_panel.progress.format().startswith("Done")
    assert w.isWindowModified()
    assert w.state.has_model and w.export_actions["keras"].isEnabled()


def test_stop_ends_a_long_run_within_seconds_and_keeps_the_model(tiny_window, qtbot):
    w = tiny_window
    set_epochs(w, qtbot, 500)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training_panel.chart.point_count("loss") >= 1, timeout=60000)
    pressed = time.perf_counter()
    qtbot.mouseClick(w.training_panel.stop_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=10000)
    print(f"\nstopped {time.perf_counter() - pressed:.2f} s after Stop")
    assert "Stopped by you" in w.training_panel.log.toPlainText()
    assert w.training_panel.chart.point_count("loss") < 500
    assert w.state.has_model
    # the kept model classifies
    path = w.state.data.paths[0]
    w.viewer_panel.classify_paths([path])
    qtbot.waitUntil(lambda: w.viewer_panel.strip.count() == 1, timeout=20000)
    assert "%" in w.viewer_panel.strip_labels()[0]


def test_saving_and_reopening_restores_settings_and_history(tiny_window, qtbot, make_window, tmp_path, monkeypatch):
    w = tiny_window
    set_epochs(w, qtbot, 2)
    w.model_panel.learning_rate.setValue(0.002)
    w.dataset_panel.augment_checks["flip"].setChecked(True)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    folder = tmp_path / "my-project"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    assert saved_model_file(folder).is_file()
    assert not w.isWindowModified()
    assert w.windowTitle().startswith("my-project")
    history = list(w.state.history)

    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder), timeout=30000)
    assert w2.model_panel.epochs.value() == 2
    assert w2.model_panel.learning_rate.value() == pytest.approx(0.002)
    assert w2.dataset_panel.augment_checks["flip"].isChecked()
    assert w2.state.history == history
    assert w2.training_panel.chart.point_count("loss") == 2
    assert w2.state.has_model
    # the recent-projects menu remembers it
    assert any(str(folder) in a.text() for a in w2.recent_menu.actions())


def test_the_precision_chosen_in_the_window_trains_is_logged_and_remembered(tiny_window, qtbot, make_window):
    w = tiny_window
    box = w.model_panel.precision
    assert box.currentText() == "Automatic (bfloat16 where the CPU has it)"
    set_epochs(w, qtbot, 1)
    box.setFocus()
    qtbot.keyClick(box, Qt.Key_Down)  # the next row: float32
    assert box.currentText() == "float32"
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    assert "precision: float32 (chosen in the settings)" in w.training_panel.log.toPlainText()
    w.state.modified = False
    w.close()

    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    assert w2.model_panel.precision.currentText() == "float32"


def test_the_gui_stays_responsive_while_training(tiny_window, qtbot):
    """Benchmark figure (printed, not asserted): the longest gap of a 10 ms timer during training."""
    w = tiny_window
    set_epochs(w, qtbot, 4)
    gaps = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer(interval=10)
    timer.timeout.connect(tick)
    timer.start()
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    pressed = len(gaps)  # the next gap holds the press itself: the window's own work to start a run, and its repaint
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    timer.stop()
    press = gaps[pressed] if len(gaps) > pressed else float("nan")
    gaps = sorted(gaps[pressed + 1:])
    print(f"\n10 ms timer during training: {len(gaps)} ticks, median gap {gaps[len(gaps) // 2] * 1000:.1f} ms, "
          f"longest {gaps[-1] * 1000:.1f} ms, next longest {', '.join(f'{g * 1000:.0f}' for g in gaps[-5:-1])} ms; "
          f"the press of Train itself {press * 1000:.1f} ms")
    assert len(gaps) > 10  # the timer ran while training did
    if sys.platform.startswith("linux"):  # the engine thread, and so the threads TensorFlow starts from it, yields
        engine = os.getpriority(os.PRIO_PROCESS, w.engine.worker_thread.native_id)
        assert engine == min(19, os.getpriority(os.PRIO_PROCESS, 0) + ENGINE_NICENESS)


def test_closing_during_training_asks_then_stops_cleanly(tiny_window, qtbot, monkeypatch):
    w = tiny_window
    set_epochs(w, qtbot, 500)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training_panel.chart.point_count("batch_loss") >= 1, timeout=60000)
    asked = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(title)
        return QMessageBox.Yes if title == "Training is running" else QMessageBox.Discard

    monkeypatch.setattr(QMessageBox, "question", question)
    w.close()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=15000)
    assert asked[0] == "Training is running"
    assert "Unsaved changes" in asked  # the trained model is unsaved work
    assert not w.engine.worker_thread.isRunning()


def test_an_engine_error_is_a_readable_message_and_the_app_goes_on(window, qtbot, tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    window.open_model(str(bad))
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None, timeout=20000)
    box = window.findChild(QMessageBox, "errorBox")
    assert "not a readable .keras model" in box.text()
    assert "Traceback" not in box.text()
    box.close()
    # still usable: training works afterwards
    assert window.training_panel.train_button.isEnabled()


def test_an_unexpected_engine_error_goes_to_the_log_file_that_the_dialog_names(window, qtbot, tmp_path,
                                                                                  monkeypatch):
    from cnndesk.core.model import loading as model_loading
    from cnndesk.core.app_log import log_path

    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(model_loading, "load_model_with_labels", broken)
    model = tmp_path / "any.keras"
    model.write_bytes(b"PK")
    window.open_model(str(model))
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None, timeout=20000)
    box = window.findChild(QMessageBox, "errorBox")
    assert "a bug of ours" in box.text() and "Traceback" not in box.text()
    assert str(log_path()) in box.informativeText()
    logged = log_path().read_text(encoding="utf-8")
    assert "Traceback" in logged and "RuntimeError: a bug of ours" in logged
    box.close()


def test_about_names_the_versions_and_devices(window, qtbot):
    from cnndesk.core.app_log import log_path

    window.findChild(type(window.new_action), "aboutAction").trigger()
    box = window.findChild(QMessageBox, "aboutBox")
    assert box is not None
    text = box.text()
    assert "TensorFlow 2." in text and "Keras 3." in text and "Qt 6." in text and "CPU" in text
    assert f"Log file: {log_path()}" in text
    box.close()


def _shortcuts_box(window, qtbot) -> QMessageBox:
    """Press F1; the list of shortcuts it opens."""
    def shown():
        return [b for b in window.findChildren(QMessageBox) if b.windowTitle() == "Keyboard shortcuts" and b.isVisible()]

    qtbot.keyClick(window, Qt.Key_F1)
    qtbot.waitUntil(lambda: len(shown()) == 1, timeout=5000)
    return shown()[0]


def test_f1_lists_every_shortcut_the_window_has(window, qtbot):
    from PySide6.QtGui import QAction, QKeySequence, QShortcut

    box = _shortcuts_box(window, qtbot)
    text = box.text()
    box.close()
    for keys in ("Ctrl+Z", "Ctrl+Shift+Z", "Ctrl+Q", "Ctrl+N", "Ctrl+Shift+S", "F5", "Esc", "Ctrl+1", "F1"):
        assert f"<b>{keys}" in text or f", {keys}" in text, f"{keys} is not listed"
    everything = [k for a in window.findChildren(QAction) for k in a.shortcuts()]
    everything += [k for s in window.findChildren(QShortcut) for k in s.keys()]
    assert len(everything) > 20
    for keys in everything:
        assert keys.toString(QKeySequence.NativeText) in text
    assert "&amp;" not in text  # menu mnemonics are not shown
    # a shortcut added to the window later is listed too, with what it does
    added = QShortcut(QKeySequence("Ctrl+Alt+J"), window)
    added.setWhatsThis("Jump somewhere")
    box = _shortcuts_box(window, qtbot)
    assert "<b>Ctrl+Alt+J</b>" in box.text() and "Jump somewhere" in box.text()
    box.close()


def test_settings_are_remembered_between_sessions(make_window, qtbot, settings, tiny_dataset):
    w = make_window()
    qtbot.waitUntil(lambda: w.engine.is_ready and w.state.data is not None, timeout=60000)
    w.dataset_panel.load_folder(str(tiny_dataset))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == tiny_dataset,
                    timeout=20000)
    w.model_panel.batch_size.setValue(8)
    w.model_panel.preset_combo.setCurrentIndex(w.model_panel.preset_combo.findData("tinyvgg"))
    w.state.modified = False
    w.close()
    w2 = make_window()
    qtbot.waitUntil(lambda: w2.state.data is not None, timeout=20000)
    assert w2.state.dataset_path == str(tiny_dataset)
    assert w2.dataset_panel.path_edit.text() == str(tiny_dataset)
    assert w2.model_panel.batch_size.value() == 8
    assert w2.model_panel.preset_combo.currentData() == "tinyvgg"


def test_reading_a_big_folder_shows_progress_and_can_be_cancelled(window, qtbot, tmp_path):
    big = write_dataset(tmp_path / "big", classes=("left", "top"), per_class=1500, size=96, fmt="jpg")
    panel = window.dataset_panel
    before = window.state.data
    panel.load_folder(str(big))
    qtbot.waitUntil(lambda: panel.progress.isVisible() and panel.progress.value() > 0, timeout=20000)
    assert panel.cancel_button.isVisible()
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    assert not panel.progress.isVisible()
    assert "Reading cancelled" in panel.status_label.text()
    # the previous dataset stays selected, and a stale result never replaces it: once the cancelled read's thread
    # has finished (its finished signal comes after any result it sent), whatever it sent has arrived
    qtbot.waitUntil(lambda: not window.dataset_reading.loader._threads, timeout=60000)
    assert window.state.data is before
    assert panel.path_edit.text() == str(before.root)
    assert window.training_panel.train_button.isEnabled()


def train_now(w, qtbot, epochs=1):
    set_epochs(w, qtbot, epochs)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)


def test_a_fresh_window_has_no_unsaved_changes(window):
    assert not window.isWindowModified()


def test_a_project_keeps_the_image_size_its_model_was_trained_at(tiny_window, qtbot, tmp_path, monkeypatch):
    import json

    w = tiny_window
    train_now(w, qtbot)
    w.dataset_panel.image_size.setCurrentText("48")  # changed after training
    qtbot.waitUntil(lambda: w.state.data.preprocessing.image_size == (48, 48), timeout=20000)
    folder = tmp_path / "p"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    saved = json.loads((folder / "project.json").read_text())
    assert saved["dataset"]["preprocessing"]["image_size"] == [64, 64]
    # evaluating or continuing with images the model cannot take is refused in words
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    w.viewer_panel.evaluate()
    assert "The model takes 64×64 rgb images" in w.viewer_panel.evaluation_view.accuracy_label.text()


def test_f5_continues_when_continue_is_ticked(tiny_window, qtbot):
    w = tiny_window
    train_now(w, qtbot, epochs=1)
    w.training_panel.continue_check.setChecked(True)
    qtbot.keyClick(w, Qt.Key_F5)
    qtbot.waitUntil(lambda: not w.state.training and len(w.state.history) == 2, timeout=60000)
    assert [h["epoch"] for h in w.state.history] == [1, 2]


def test_retraining_another_architecture_refreshes_the_viewer(tiny_window, qtbot, tiny_dataset):
    w = tiny_window
    train_now(w, qtbot)
    v = w.viewer_panel
    v.classify_paths([str(next((tiny_dataset / "left").iterdir()))])
    qtbot.waitUntil(lambda: looked_inside(v), timeout=20000)
    w.model_panel.preset_combo.setCurrentIndex(w.model_panel.preset_combo.findData("deeper"))
    train_now(w, qtbot)
    # the strip is classified again by the new model and its layers are shown
    qtbot.waitUntil(lambda: looked_inside(v) and v.strip.count() == 1, timeout=20000)
    layers = [v.activations.layer_combo.itemText(i) for i in range(1, v.activations.layer_combo.count())]
    assert layers[0] == "conv2d_1" and "batchnormalization_2" not in layers and len(layers) == 6
    assert v.gradcam.cam_layer.currentText() == "conv2d_7"


def test_a_project_saved_before_training_reopens_without_a_model(window, qtbot, make_window, tmp_path, monkeypatch):
    folder = tmp_path / "untrained"
    folder.mkdir()
    save_as(window, qtbot, monkeypatch, folder)
    assert saved_model_file(folder) is None and not (folder / "versions").exists()
    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder), timeout=30000)
    assert not w2.state.has_model
    assert not w2.export_actions["keras"].isEnabled()
    assert not w2.viewer_panel.open_button.isEnabled()


def test_new_project_forgets_the_trained_model(tiny_window, qtbot, tmp_path, monkeypatch):
    w = tiny_window
    train_now(w, qtbot)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Discard)
    w.new_action.trigger()
    assert not w.state.has_model and w.state.history == []
    folder = tmp_path / "fresh"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    assert saved_model_file(folder) is None and not (folder / "versions").exists()


def test_while_training_the_dataset_and_layers_cannot_change(tiny_window, qtbot, tmp_path):
    w = tiny_window
    set_epochs(w, qtbot, 500)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training_panel.chart.point_count("batch_loss") >= 1, timeout=60000)
    assert not w.choose_dataset_action.isEnabled()
    assert not any(a.isEnabled() for a in w.layer_actions)
    assert not w.save_action.isEnabled() and not w.open_action.isEnabled()
    root = w.state.data.root
    other = write_dataset(tmp_path / "other", classes=("left", "top"), per_class=4)
    drop_paths(w, [other])  # refused at once, while the drop is handled: no read is started
    assert w.dataset_panel.path_edit.text() == str(root)  # a read started would show its folder here at once
    assert w.state.data.root == root
    assert "stop it before" in w.statusBar().currentMessage()
    qtbot.mouseClick(w.training_panel.stop_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=10000)
    assert w.choose_dataset_action.isEnabled()


# ---------------------------------------------------------------------------
# retraining never discards a trained model; the destination is checked first (issue 12)

def test_training_again_keeps_the_previous_model_which_can_be_brought_back(tiny_window, qtbot, tmp_path,
                                                                           monkeypatch):
    w = tiny_window
    panel = w.training_panel
    assert not panel.previous_button.isVisible() and not w.previous_action.isEnabled()
    train_now(w, qtbot, epochs=2)
    first_model, first_run, first_history = w.engine.worker.model, w.state.model.run, list(w.state.history)
    assert first_run and len(first_history) == 2
    assert not panel.previous_button.isVisible()  # nothing to bring back after the first run

    # Train again without Continue, over the unsaved model: it is not lost
    train_now(w, qtbot, epochs=1)
    assert panel.chart.point_count("loss") == 1 and len(w.state.history) == 1
    assert w.engine.worker.model is not first_model and w.state.model.run != first_run
    assert panel.previous_button.isVisible() and panel.previous_button.isEnabled()
    assert w.previous_action.isEnabled()
    assert "Bring Back Previous Model" in w.statusBar().currentMessage()
    assert "previous run (2 epochs" in panel.previous_button.toolTip()

    qtbot.mouseClick(panel.previous_button, Qt.LeftButton)
    assert not panel.train_button.isEnabled()  # a run started now would start from the wrong model
    qtbot.waitUntil(lambda: w.engine.worker.model is first_model, timeout=20000)
    qtbot.waitUntil(lambda: w.state.history == first_history, timeout=5000)
    assert panel.train_button.isEnabled()
    assert panel.chart.point_count("loss") == 2 and w.state.model.run == first_run
    assert w.model_panel.epochs.value() == 2  # the settings it was trained with come back with it
    assert w.isWindowModified()
    assert "previous run (1 epoch" in panel.previous_button.toolTip()  # and the newer one can come back in turn

    # the project remembers which run its model came from
    folder = tmp_path / "kept"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    import json

    assert json.loads((folder / "project.json").read_text())["run"] == first_run


def test_a_run_stopped_at_once_does_not_lose_the_model_before_it(tiny_window, qtbot):
    w = tiny_window
    train_now(w, qtbot, epochs=1)
    first_model = w.engine.worker.model
    set_epochs(w, qtbot, 500)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training_panel.chart.point_count("batch_loss") >= 1, timeout=60000)
    qtbot.mouseClick(w.training_panel.stop_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=20000)
    assert w.training_panel.progress.format() == "Stopped; the model trained so far is kept"
    assert w.engine.worker.model is not first_model  # the barely trained model is current, as Stop says...
    w.previous_action.trigger()  # ...and the one before it comes back from the Training menu
    qtbot.waitUntil(lambda: w.engine.worker.model is first_model and len(w.state.history) == 1, timeout=20000)
    qtbot.waitUntil(lambda: w.training_panel.chart.point_count("loss") == 1, timeout=5000)
    assert w.training_panel.progress.format() == ""  # what the stopped run kept is no longer shown
    assert "Stopped" not in w.training_panel.log.toPlainText()


def test_training_for_a_project_folder_that_cannot_be_written_asks_first(tiny_window, qtbot, tmp_path, monkeypatch):
    import errno
    import os
    import tempfile

    w = tiny_window
    ro = tmp_path / "ro-project"
    ro.mkdir()
    w.state.project_path = str(ro)
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # the folder refuses new files as a read-only disk does (even for root)
        if dir is not None and Path(dir) == ro:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    set_epochs(w, qtbot, 1)

    def ask():
        box = question_after(w, lambda: qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton),
                             "destinationBox")
        assert box.defaultButton() is box.button(QMessageBox.Cancel)
        assert box.escapeButton() is box.button(QMessageBox.Cancel)
        assert box.text().startswith(f"Cannot save the project in {ro}: the disk is read-only")
        assert "Save Project As" in box.text()
        return box

    box = ask()
    qtbot.mouseClick(box.button(QMessageBox.Cancel), Qt.LeftButton)
    assert not w.state.training and not w.state.has_model  # Cancel: nothing started

    box = ask()
    assert not w.state.training
    # an answer that arrives while the question is shown (another dataset read) is what Train Anyway trains on
    other = write_dataset(tmp_path / "other", classes=("left", "top"), per_class=6)
    w.dataset_panel.load_folder(str(other))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == other, timeout=20000)
    assert box.isVisible()
    qtbot.mouseClick(box.button(QMessageBox.Yes), Qt.LeftButton)  # Train Anyway
    assert w.state.training
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    assert w.state.has_model and w.state.model.class_names == ("left", "top")
    assert w.engine.worker.model.outputs[0].shape[-1] == 2
    assert os.listdir(ro) == []


def test_the_dataset_panel_lists_tens_of_thousands_of_skipped_files_at_once_and_shows_odd_names_escaped(qtbot):
    import numpy as np

    from cnndesk.core.data.dataset import LoadedDataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.data.scanning import SkippedFile
    from cnndesk.core.project.session import SessionState
    from cnndesk.ui.bindings import DatasetReading
    from cnndesk.ui.dataset_panel import DatasetPanel

    panel = DatasetPanel()
    qtbot.addWidget(panel)
    reading = DatasetReading(SessionState(), panel)
    skipped = [SkippedFile(f"/data/share/f{i}.txt", "not an image file type cnndesk reads (.txt)")
               for i in range(47_000)]
    skipped.append(SkippedFile("/data/odd\nname/x.png", "damaged image: broken"))
    labels = np.array([0] * 12 + [1] * 3, dtype=np.int32)
    data = LoadedDataset(Path("/data"), ["caf\udce9", "two\nlines"], Preprocessing((8, 8)),
                         np.zeros((15, 8, 8, 3), np.uint8), labels, [f"/data/{i}.png" for i in range(15)], skipped,
                         np.arange(12), np.arange(12, 15), ["3 of the 18 image files (16.7%) could not be read."])
    t = time.perf_counter()
    reading.loader.loaded.emit(data, None)  # what the loader hands over from its thread
    assert time.perf_counter() - t < 1.0
    model = panel.skipped_table.model()
    assert model.rowCount() == 47_001
    assert model.index(47_000, 0).data() == "odd\\nname/x.png"  # in the dataset folder /data
    assert model.index(47_000, 0).data(Qt.ToolTipRole) == "/data/odd\\nname/x.png"
    assert panel.skipped_label.text() == ("Skipped files (47,001): 47,000 not an image file type cnndesk reads, "
                                          "1 damaged image")
    assert class_rows(panel) == {"caf\\xe9": 12, "two\\nlines": 3}
    warnings = panel.imbalance.text()
    assert "could not be read" in warnings and "Few images: two\\nlines (3)" in warnings
    assert "Classes are imbalanced: two\\nlines (3)" in warnings

def test_a_small_folder_trains_the_epochs_of_the_minimum_of_steps_the_model_panel_asks(tiny_window, qtbot):
    w = tiny_window
    set_epochs(w, qtbot, 2)  # 48 training images at batch 32: 2 steps per epoch, so 2 epochs are 4 steps
    type_into(qtbot, w.model_panel.min_steps, 10)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    log = w.training_panel.log.toPlainText().splitlines()
    assert ("48 training images make 2 steps per epoch, so 2 epochs would be only 4 steps, too few for a new model to "
            "get past its random start: this run trains 5 epochs (10 steps, at least 10; set the minimum steps to 0 "
            "to train exactly the epochs asked).") in log
    assert "Trained all 5 epochs." in log
    assert [r["epoch"] for r in w.state.history] == [1, 2, 3, 4, 5]


def test_the_log_says_why_training_stopped_and_which_epoch_was_kept(tiny_window, qtbot):
    w = tiny_window
    set_epochs(w, qtbot, 10)  # 2 batches per epoch: 3 epochs left this set at chance
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    log = w.training_panel.log.toPlainText().splitlines()
    assert log[1] == ("Validation set of 12 images: early stopping is off (it needs at least 50 to tell an "
                      "improvement from noise); all epochs will run.")
    assert "Trained all 10 epochs." in log
    assert w.training_panel.progress.format() == "Done"
    best = w.state.history[kept_epoch(w.state.history, n_val=12) - 1]
    kept = [line for line in log if line.startswith("Kept epoch ")]
    assert len(kept) == 1
    assert kept[0].startswith(f"Kept epoch {best['epoch']}'s weights: ")
    assert f"validation accuracy {with_interval(best['val_accuracy'], 12)}" in kept[0]
    assert w.state.best_epoch == best["epoch"]
    # the chart marks the same epoch, on its validation accuracy
    points = w.training_panel.chart.best.points()
    assert [(p.x(), round(p.y(), 6)) for p in points] == [(best["epoch"], round(best["val_accuracy"], 6))]
    assert not w.training_panel.verdict.isVisible(), "\n".join(log)  # well above chance: no warning


def test_every_accuracy_a_trained_model_shows_says_how_sure_it_is(tiny_window, qtbot):
    """The log's epoch lines, the chart's hover label, the runs list and the Evaluation tab give each validation
    accuracy with its 95 % interval and the number of validation images (12 here) it was measured on."""
    w = tiny_window
    train_now(w, qtbot, epochs=2)
    history = w.state.history
    lines = [line for line in w.training_panel.log.toPlainText().splitlines() if line.startswith("Epoch ")]
    assert [line.split("  val_acc ")[1].split("  (")[0] for line in lines] == [
        with_interval(r["val_accuracy"], 12) for r in history]
    assert all(", 12 images)" in line for line in lines)
    assert f"Validation accuracy: {with_interval(history[1]['val_accuracy'], 12)}" in \
        w.training_panel.chart.values_text(2).splitlines()
    runs = w.training_panel.runs_view.table
    best = max(r["val_accuracy"] for r in history)
    assert runs.item(0, BEST_ACC).toolTip().startswith(f"Best validation accuracy {with_interval(best, 12)}")
    viewer = w.viewer_panel
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    viewer.tabs.setCurrentWidget(viewer.evaluation_view)
    label = viewer.evaluation_view.accuracy_label
    qtbot.waitUntil(lambda: label.text().startswith("Accuracy"), timeout=20000)
    accuracy = viewer.evaluation_view.evaluation.accuracy
    assert accuracy == pytest.approx(history[w.state.best_epoch - 1]["val_accuracy"], abs=1e-6)
    assert label.text().startswith(f"Accuracy {with_interval(accuracy, 12)} on the validation images (4 per class")


def test_a_model_at_chance_is_called_so_in_the_training_panel(window, qtbot, tmp_path):
    from PIL import Image

    for c in ("a", "b"):  # the same pictures in both classes (the split keeps each pair together): nothing to learn
        (tmp_path / "same" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16, 16), (40 + 12 * i,) * 3).save(tmp_path / "same" / c / f"{i}.png")
    w = window
    w.dataset_panel.load_folder(str(tmp_path / "same"))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == tmp_path / "same",
                    timeout=20000)
    set_epochs(w, qtbot, 1)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    verdict = w.training_panel.verdict
    assert verdict.isVisible()
    assert verdict.text().startswith("Validation accuracy 0.500 (95 % interval 0.150–0.850, 4 images) is at or "
                                     "near chance (0.500 with 2 classes; its interval reaches down to chance)")
    assert "What usually helps: more epochs, augmentation" in verdict.text()
    assert f"Warning: {verdict.text()}" in w.training_panel.log.toPlainText().splitlines()
    # training again clears the warning until that run has earned it too
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    assert w.state.training and not verdict.isVisible()
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    assert verdict.isVisible()


def test_a_failed_run_keeps_the_model_before_it_and_the_edits_the_user_tried(tiny_window, qtbot, monkeypatch,
                                                                             tmp_path):
    from cnndesk.core.model.architecture import CLASSES, LayerSpec
    from cnndesk.core.errors import UserError

    w = tiny_window
    panel = w.training_panel
    train_now(w, qtbot, epochs=2)
    model, history = w.engine.worker.model, list(w.state.history)
    errors = []
    monkeypatch.setattr(w, "show_error", lambda title, message: errors.append((title, message)))
    # a stack that trains, then a model the viewer refuses
    w.model_panel.set_layers([LayerSpec("Flatten"), LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"})],
                             "custom")
    w.model_panel.batch_size.setValue(4)

    def refuse(model, class_names, preprocessing):
        raise UserError("The viewer cannot open this model.")

    monkeypatch.setattr(w.engine.worker, "_inspector_for", refuse)
    train_now(w, qtbot, epochs=1)
    assert errors and errors[0][0] == "Training failed" and "cannot open this model" in errors[0][1]
    assert w.engine.worker.model is model and w.state.history == history  # the model before it is still current
    # the chart and the log show the run that failed, ending with why
    assert panel.chart.point_count("loss") == 1
    log = panel.log.toPlainText().splitlines()
    assert log[0] == "Training for 1 epochs…" and any(line.startswith("Epoch 1/1  loss ") for line in log)
    assert log[-1] == "Training failed: The viewer cannot open this model."
    assert panel.progress.format() == "Training failed"
    assert [l.kind for l in w.model_panel.layers] == ["Flatten", "Dense"]  # what the user tried is still there
    assert w.model_panel.batch_size.value() == 4

    # the next action, here another dataset chosen from the Train tab, clears the failed run's chart and progress
    other = write_dataset(tmp_path / "other", classes=("left", "top"), per_class=6)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(other))
    w.tabs.setCurrentIndex(w.TAB_TRAIN)
    w.choose_dataset_action.trigger()
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == other, timeout=20000)
    assert panel.chart.point_count("loss") == 0 and panel.chart.point_count("batch_loss") == 0
    assert panel.log.toPlainText() == "" and panel.progress.format() == ""


def test_units_and_filters_stop_at_what_cnndesk_can_open_again(tiny_window, qtbot):
    from cnndesk.core.model.config_checks import LIMITS

    w = tiny_window
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    w.model_panel.table.selectRow(1)  # the first Conv2D
    filters = w.model_panel.editor_box.findChild(QSpinBox, "param_filters")
    filters.selectAll()
    qtbot.keyClicks(filters, "70000")
    assert filters.value() <= LIMITS.dimension
    assert layer_row_text(w, 1)[1].endswith(f"× {filters.value()}")



# -- numbers are applied when finished, and an out-of-range one is refused out loud --------------------

def _cache_limit(w) -> str:
    """The limit the Dataset tab's memory line says the decoded images may take ("1.5 GB")."""
    import re

    return re.search(r" of (.+) allowed", w.dataset_panel.cache_estimate.text()).group(1)


SETTING_BOXES = {  # box: (tab, what the window applies, typed, applied then, refused number, its refusal)
    "valSplit": (0, lambda w: w.state.dataset_config.val_split, "35", 0.35, "95",
                 "Validation split goes from 0 to 90: 95 is refused, and it stays 35."),
    "splitSeed": (0, lambda w: w.state.dataset_config.seed, "42", 42, "3000000000",
                  "Split seed goes from 0 to 2,147,483,647: 3000000000 is refused, and it stays 42."),
    "memoryLimit": (0, _cache_limit, "1500", "1.5 GB", "20000000",
                    "Memory for images goes from 0 to 10,000,000: 20000000 is refused, and it stays 1,500."),
    "learningRate": (1, lambda w: w.state.settings.learning_rate, "0.25", 0.25, "2",
                     "Learning rate goes from 0.00001 to 1: 2 is refused, and it stays 0.25."),
    "batchSize": (1, lambda w: w.state.settings.batch_size, "128", 128, "5000",
                  "Batch size goes from 1 to 4,096: 5000 is refused, and it stays 128."),
    "epochs": (1, lambda w: w.state.settings.epochs, "25", 25, "20000",
               "Epochs goes from 1 to 10,000: 20000 is refused, and it stays 25."),
    "patience": (1, lambda w: w.state.settings.patience, "15", 15, "2000",
                 "Early stopping patience goes from 0 to 1,000: 2000 is refused, and it stays 15."),
}


@pytest.mark.parametrize("name", SETTING_BOXES)
def test_a_setting_is_applied_when_typed_to_the_end_and_a_number_out_of_range_is_refused_out_loud(make_window,
                                                                                                  qtbot, name):
    """Typing 25 epochs passes 2 on the way, and 1500 MB passes 1 MB (which would move the images to disk):
    nothing typed half-way is applied, only the number Enter (or leaving the box) finishes."""
    from PySide6.QtWidgets import QAbstractSpinBox, QLabel

    tab, applied, typed, then, refused, refusal = SETTING_BOXES[name]
    w = make_window(start_engine=False)
    qtbot.waitUntil(lambda: w.state.data is not None, timeout=30000)
    w.tabs.setCurrentIndex(tab)
    spin = w.findChild(QAbstractSpinBox, name)
    note = w.tabs.widget(tab).findChild(QLabel, "settingRefused")
    before = applied(w)
    spin.selectAll()
    qtbot.keyClicks(spin, typed)
    assert applied(w) == before and not note.isVisible()
    qtbot.keyClick(spin, Qt.Key_Return)
    assert applied(w) == then

    spin.selectAll()
    qtbot.keyClicks(spin, refused)
    assert spin.text().replace(",", "").startswith(refused)  # shown as typed, no keystroke dropped
    assert note.isVisible() and note.text() == refusal
    qtbot.keyClick(spin, Qt.Key_Return)
    assert note.isVisible() and note.text() == refusal  # the kept value is back, the reason still in sight
    assert applied(w) == then
    assert not w.dataset_panel.progress.isVisible()  # nothing was read again


def test_a_number_below_the_minimum_is_refused_when_finished_not_while_it_is_typed(make_window, qtbot):
    """0.0005 starts with 0, below the learning rate's minimum: no refusal flashes on the way."""
    from PySide6.QtWidgets import QLabel

    w = make_window(start_engine=False)
    qtbot.waitUntil(lambda: w.state.data is not None, timeout=30000)
    w.activateWindow()
    qtbot.waitActive(w)
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    spin, note = w.model_panel.learning_rate, w.model_panel.findChild(QLabel, "settingRefused")
    qtbot.mouseClick(spin.lineEdit(), Qt.LeftButton)
    spin.selectAll()
    for key in "0.0005":
        qtbot.keyClicks(spin, key)
        assert not note.isVisible(), spin.text()
    qtbot.keyClick(spin, Qt.Key_Return)
    assert w.state.settings.learning_rate == pytest.approx(0.0005) and not note.isVisible()
    spin.selectAll()
    qtbot.keyClicks(spin, "0")
    assert not note.isVisible()
    qtbot.keyClick(spin, Qt.Key_Tab)  # leaving the box finishes the number
    assert note.isVisible()
    assert note.text() == "Learning rate goes from 0.00001 to 1: 0 is refused, and it stays 0.0005."
    assert w.state.settings.learning_rate == pytest.approx(0.0005)



def test_ctrl_z_pressed_again_and_again_in_the_layer_editor_undoes_one_edit_after_another(make_window, qtbot):
    """Undo rebuilds the layer editor; the cursor goes to the same parameter's new box (or, with none, to the
    layer list), so the next Ctrl+Z is not lost on a box that no longer exists."""
    from PySide6.QtWidgets import QDoubleSpinBox

    w = make_window(start_engine=False)
    qtbot.waitUntil(lambda: w.state.data is not None, timeout=30000)  # its shapes rebuild the editor too
    w.activateWindow()
    qtbot.waitActive(w)
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    panel, table = w.model_panel, w.model_panel.table
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=table.visualRect(table.model().index(1, 0)).center())

    def box(kind, key):
        found = panel.editor_box.findChild(kind, f"param_{key}")
        qtbot.waitUntil(found.isVisible)  # the editor's rows show once the event loop runs
        return found

    def press(keys=Qt.ControlModifier):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Z, keys)  # where the cursor is

    for key, text in (("filters", "16"), ("kernel_size", "5")):
        qtbot.mouseClick(box(QSpinBox, key).lineEdit(), Qt.LeftButton)
        box(QSpinBox, key).selectAll()
        qtbot.keyClicks(box(QSpinBox, key), text)
        qtbot.keyClick(box(QSpinBox, key), Qt.Key_Return)
    assert layer_row_text(w, 1)[0] == "1. Conv2D(16, 5, relu)"
    press()
    assert layer_row_text(w, 1)[0] == "1. Conv2D(16, 3, relu)"
    assert QApplication.focusWidget() is box(QSpinBox, "kernel_size")  # the rebuilt box, showing 3
    press()
    assert layer_row_text(w, 1)[0] == "1. Conv2D(10, 3, relu)"
    press(Qt.ControlModifier | Qt.ShiftModifier)
    assert layer_row_text(w, 1)[0] == "1. Conv2D(16, 3, relu)"

    next(a for a in panel.add_button.menu().actions() if a.text() == "Dropout").trigger()
    assert layer_row_text(w, 2)[0] == "2. Dropout(0.25)"
    qtbot.mouseClick(box(QDoubleSpinBox, "rate").lineEdit(), Qt.LeftButton)
    press()
    assert layer_row_text(w, 2)[0] != "2. Dropout(0.25)"
    assert QApplication.focusWidget() is table  # no rate box left: the cursor is in the layer list
    press()
    assert layer_row_text(w, 1)[0] == "1. Conv2D(10, 3, relu)"


# -- saving is a continuation, not a nested event loop ----------------------------------------

def test_closing_while_the_project_is_saved_waits_for_the_save_then_closes(tiny_window, qtbot, tmp_path,
                                                                          monkeypatch):
    from cnndesk.core.project.store import is_project

    w = tiny_window
    train_now(w, qtbot)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[1]) or QMessageBox.Cancel)
    folder = tmp_path / "saved-on-close"
    w.projects.save_to(str(folder))
    assert w.state.busy and not w.save_action.isEnabled()  # Save returned at once; the engine is writing
    w.close()
    assert w.isVisible() and "Saving the project… The window closes when it is done." in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=30000)
    assert is_project(folder) and asked == []  # saved, so nothing was left to ask about


def test_save_as_takes_the_name_of_a_new_folder(window, qtbot, tmp_path):
    from PySide6.QtWidgets import QLineEdit

    from cnndesk.core.project.store import is_project
    from cnndesk.ui.file_dialogs import NewFolderDialog

    window.settings.setValue("folders/project", str(tmp_path))

    def answer():
        dialog = next(d for d in QApplication.topLevelWidgets() if isinstance(d, NewFolderDialog) and d.isVisible())
        qtbot.keyClicks(dialog.findChild(QLineEdit, "fileNameEdit"), "brand new project")
        qtbot.keyClick(dialog.findChild(QLineEdit, "fileNameEdit"), Qt.Key_Return)

    QTimer.singleShot(300, answer)
    window.save_as_action.trigger()
    qtbot.waitUntil(lambda: not window.state.busy, timeout=30000)
    assert is_project(tmp_path / "brand new project")
    assert window.windowTitle().startswith("brand new project")


def test_reopening_a_project_brings_back_the_whole_working_state(tiny_window, qtbot, make_window, tmp_path,
                                                                 monkeypatch, tiny_dataset):
    w = tiny_window
    train_now(w, qtbot, epochs=1)
    train_now(w, qtbot, epochs=2)
    batches = w.training_panel.chart.point_count("batch_loss")
    kept = [line for line in w.training_panel.log.toPlainText().splitlines() if line.startswith("Kept ")]
    assert len(kept) == 1 and ": " in kept[0]  # the trainer's explanation of the weights kept
    offer = w.training_panel.previous_button.toolTip()
    images = sorted(str(p) for p in (tiny_dataset / "left").iterdir())[:2]
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    w.viewer_panel.classify_paths(images)
    qtbot.waitUntil(lambda: w.viewer_panel.strip.count() == 2, timeout=20000)
    qtbot.mouseClick(w.viewer_panel.tabs.tabBar(), Qt.LeftButton,
                     pos=w.viewer_panel.tabs.tabBar().tabRect(w.viewer_panel.tabs.indexOf(w.viewer_panel.gradcam)).center())
    assert w.viewer_panel.tabs.currentWidget() is w.viewer_panel.gradcam
    folder = tmp_path / "whole"
    save_as(w, qtbot, monkeypatch, folder)

    w2 = make_window()
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder) and w2.state.data is not None, timeout=60000)
    panel = w2.training_panel
    assert panel.chart.point_count("batch_loss") == batches  # the batch-loss line, as it was drawn
    assert panel.chart.best.count() == 1  # the kept epoch's marker
    log = panel.log.toPlainText().splitlines()
    epochs = [line for line in log if line.startswith("Epoch ")]
    assert len(epochs) == 2 and all(" s, " in line for line in epochs)  # each epoch's time and speed
    assert log[-1] == kept[0]  # the same explanation, not a shorter one made up again
    viewer = w2.viewer_panel
    assert viewer.tabs.currentWidget() is viewer.gradcam  # the tab it showed
    qtbot.waitUntil(lambda: viewer.strip.count() == 2, timeout=20000)  # the images the viewer showed
    w2.tabs.setCurrentIndex(w2.TAB_VIEWER)
    viewer.tabs.setCurrentWidget(viewer.evaluation_view)  # the evaluation is computed when it is looked at
    qtbot.waitUntil(lambda: viewer.evaluation_view.accuracy_label.text().startswith("Accuracy"), timeout=20000)
    assert not w2.isWindowModified()
    # the run before can still be brought back, now from the project's folder
    assert panel.previous_button.isEnabled() and w2.previous_action.isEnabled()
    assert panel.previous_button.toolTip() == offer
    w2.tabs.setCurrentIndex(w2.TAB_TRAIN)
    assert panel.previous_button.isVisible()
    qtbot.mouseClick(panel.previous_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: len(w2.state.history) == 1 and not w2.state.busy, timeout=30000)
    assert w2.state.model.run == w2.state.runs[0].id and panel.chart.point_count("loss") == 1
    assert "previous run (2 epochs" in panel.previous_button.toolTip()  # and back again, in one click


def test_a_run_whose_loss_became_nan_is_saved_as_strict_json_and_reopens_with_the_same_chart(
        tiny_window, qtbot, make_window, tmp_path, monkeypatch):
    import math

    from cnndesk.core.training import progress

    def diverging(report):  # epoch 2's losses are not a number, as in a run whose weights blew up
        def make(**values):
            if values["epoch"] == 2:
                values.update({key: math.nan for key in ("loss", "val_loss") if key in values})
            return report(**values)
        return make

    monkeypatch.setattr(progress, "EpochReport", diverging(progress.EpochReport))
    monkeypatch.setattr(progress, "BatchReport", diverging(progress.BatchReport))
    w = tiny_window
    train_now(w, qtbot, epochs=3)
    assert math.isnan(w.state.history[1]["loss"])

    def drawn(window):
        chart = window.training_panel.chart
        lines = {key: [v for p in s.points() for v in (p.x(), p.y())] for key, s in chart.series.items()}
        lines["kept"] = [v for p in chart.best.points() for v in (p.x(), p.y())]
        epochs = [line.replace("/3  ", "  ") for line in window.training_panel.log.toPlainText().splitlines()
                  if line.startswith("Epoch ")]
        return lines, epochs

    before, log = drawn(w)
    assert log[1].startswith("Epoch 2  loss nan  acc ") and "val_loss nan" in log[1]
    assert len(before["loss"]) == 2 * 2 and len(before["val_loss"]) == 2 * 2 and len(before["accuracy"]) == 3 * 2
    folder = tmp_path / "diverged"
    save_as(w, qtbot, monkeypatch, folder)
    strict_json((folder / "project.json").read_text())

    w2 = make_window()
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder), timeout=60000)
    after, reopened_log = drawn(w2)
    assert reopened_log == log
    for key, points in before.items():  # the batch losses are saved to 5 significant digits
        assert len(after[key]) == len(points), key
        assert after[key] == pytest.approx(points, rel=1e-4), key


def test_f5_from_any_tab_shows_the_training_as_it_starts(tiny_window, qtbot):
    w = tiny_window
    set_epochs(w, qtbot, 1)
    w.tabs.setCurrentIndex(w.TAB_DATASET)
    qtbot.keyClick(w, Qt.Key_F5)
    assert w.tabs.currentIndex() == w.TAB_TRAIN
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)


def test_while_idle_the_engine_traces_a_spare_so_the_next_train_traces_nothing(tiny_window, qtbot):
    w = tiny_window
    set_epochs(w, qtbot, 1)
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=60000)  # the spare for the dataset just read
    state, data = w.state, w.state.data
    pool = w.engine.worker._pool
    assert pool is not None and pool.has_spare(state.layers, data.preprocessing.input_shape, data.num_classes,
                                               state.settings)
    results = []
    finished = w.training._on_trained
    w.training._on_trained = lambda answer: (results.append(answer.result), finished(answer))
    qtbot.keyClick(w, Qt.Key_F5)
    qtbot.waitUntil(lambda: bool(results), timeout=60000)
    assert results[0].start_times.traced is False  # the press found the spare: no trace before its first batch
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=60000)  # and a spare for the next press
    assert pool.has_spare(state.layers, data.preprocessing.input_shape, data.num_classes, state.settings)


def test_presses_right_after_each_run_find_a_traced_model_and_wait_for_no_spare_being_traced(tiny_window, qtbot):
    from PySide6.QtCore import QTimer

    w = tiny_window
    set_epochs(w, qtbot, 1)
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=120000)  # the spares for the dataset just read
    pool = w.engine.worker._pool
    traced_spares = []  # spares traced between the first press and the end of the last run
    stock = pool.stock
    pool.stock = lambda *a, **k: (lambda made: (traced_spares.append(made) if made else None, made)[1])(
        stock(*a, **k))
    results = []
    finished = w.training._on_trained

    def on_trained(answer):
        results.append(answer.result)
        finished(answer)
        if len(results) < 3:
            QTimer.singleShot(0, w.train_action.trigger)  # Train again as soon as the window shows the run ended

    w.training._on_trained = on_trained
    qtbot.keyClick(w, Qt.Key_F5)
    qtbot.waitUntil(lambda: len(results) == 3 and not w.state.training, timeout=120000)
    assert [r.start_times.traced for r in results] == [False, False, False]
    assert traced_spares == [], "a press waited for a spare traced after the run before it"
    assert len(w.state.runs) == 3


# -- review fixes: the state stays true while the engine works -----------------------------------

def test_an_edit_made_while_the_project_is_saved_stays_unsaved(tiny_window, qtbot, tmp_path):
    w = tiny_window
    train_now(w, qtbot)
    w.projects.save_to(str(tmp_path / "p"))
    w.model_panel.learning_rate.setValue(0.0123)  # typed while the engine writes the project
    qtbot.waitUntil(lambda: not w.state.busy, timeout=30000)
    assert w.state.project_path == str(tmp_path / "p")
    assert w.isWindowModified()  # the new learning rate is not in the file


def test_choosing_where_to_train_is_not_an_unsaved_change(window):
    window.model_panel.set_devices([("cpu", "CPU"), ("gpu:0", "GPU 0: test")])
    window.state.modified = False
    window.model_panel.device.set_value("gpu:0")
    assert window.state.settings.device == "gpu:0"
    assert not window.isWindowModified()


def test_opening_a_model_file_clears_the_previous_runs_chart_and_bring_back_offers_the_run_before(tiny_window, qtbot, tmp_path):
    from test_viewer import _plain_keras_model

    w = tiny_window
    train_now(w, qtbot)
    assert w.training_panel.chart.point_count("loss") == 1
    path = _plain_keras_model(tmp_path / "other.keras")
    w.state.modified = False
    w.open_model(str(path))
    qtbot.waitUntil(lambda: w.state.model is not None and w.state.model.source == "file", timeout=30000)
    assert w.training_panel.chart.point_count("loss") == 0
    assert w.training_panel.chart.point_count("batch_loss") == 0
    # a model from a file is no run: after a run trained next, Bring Back offers the run before (Run 1), which the
    # runs list holds, not "a run of 0 epochs"
    train_now(w, qtbot)
    assert w.statusBar().currentMessage().startswith("The model of the previous run (1 epoch, validation accuracy ")
    assert w.statusBar().currentMessage().endswith(" is kept: Training > Bring Back Previous Model makes it current "
                                                   "again.")
    assert w.training_panel.previous_button.toolTip().startswith("Make the model of the previous run (1 epoch,")


def test_class_names_cannot_be_edited_while_training(tiny_window, qtbot, tmp_path):
    from test_viewer import _plain_keras_model

    w = tiny_window
    w.open_model(str(_plain_keras_model(tmp_path / "m.keras")))
    qtbot.waitUntil(lambda: w.state.model is not None and w.state.model.source == "file", timeout=30000)
    assert w.viewer_panel.names_button.isVisible() and w.viewer_panel.names_button.isEnabled()
    set_epochs(w, qtbot, 500)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.training, timeout=10000)
    assert not w.viewer_panel.names_button.isEnabled()
    w.training.stop()
    qtbot.waitUntil(lambda: not w.state.training, timeout=30000)


def test_the_evaluation_is_computed_when_the_viewer_is_shown_with_its_evaluation_tab(tiny_window, qtbot):
    w = tiny_window
    train_now(w, qtbot)
    viewer = w.viewer_panel
    viewer.tabs.setCurrentWidget(viewer.evaluation_view)  # chosen earlier, while another main tab was shown
    assert viewer.evaluation_view.evaluation is None
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    qtbot.waitUntil(lambda: viewer.evaluation_view.evaluation is not None, timeout=30000)


def test_after_an_edit_of_the_stack_settles_the_engine_traces_a_spare_for_it(tiny_window, qtbot):
    from cnndesk.core.model.architecture import LayerSpec

    w = tiny_window
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=60000)
    w.model_panel.add_layer("Dropout")
    state, data = w.state, w.state.data
    assert any(l.kind == "Dropout" for l in state.layers)
    qtbot.waitUntil(lambda: w.engine.worker._pool.has_spare(state.layers, data.preprocessing.input_shape,
                                                            data.num_classes, state.settings), timeout=60000)
    assert isinstance(state.layers[0], LayerSpec)


# -- signals from other threads (docs/tensorflow-notes.md: they must land in @Slot methods) -----------------------
def signal_receivers(sender) -> dict[str, list[str]]:
    """What each signal of ``sender`` is connected to, as Qt lists it (``QObject.dumpObjectInfo``): a slot as
    "Class::name slot(args)", a plain callable (a lambda, a function) as "<functor or function pointer>"."""
    import re

    from PySide6.QtCore import qInstallMessageHandler

    lines: list[str] = []
    before = qInstallMessageHandler(lambda mode, context, text: lines.extend(text.splitlines()))
    try:
        sender.dumpObjectInfo()
    finally:
        qInstallMessageHandler(before)
    receivers: dict[str, list[str]] = {}
    signal = None
    for line in lines:
        line = line.strip()
        if line == "SIGNALS IN":
            break
        if line.startswith("signal: "):
            signal = receivers.setdefault(line[len("signal: "):].split("(")[0], [])
        elif signal is not None and (line.startswith("--> ") or line.startswith("<functor")):
            signal.append(re.sub(r"^--> (\w+)::\S* ", r"\1::", line))
    return receivers


def own_signals(cls) -> list[str]:
    """The names of the signals ``cls`` declares itself (not its Qt base class's)."""
    from PySide6.QtCore import QMetaMethod

    meta = cls.staticMetaObject
    methods = [meta.method(i) for i in range(meta.superClass().methodCount(), meta.methodCount())]
    return [m.name().data().decode() for m in methods if m.methodType() == QMetaMethod.Signal]


def declared_slots(cls) -> set[str]:
    """``cls``'s @Slot methods as "Class::name(args)" (a plain method connected to a signal becomes a slot of its
    object's own meta-object only: that is the receiver PySide6 crashed with)."""
    from PySide6.QtCore import QMetaMethod

    meta = cls.staticMetaObject
    return {f"{meta.className()}::{meta.method(i).methodSignature().data().decode()}"
            for i in range(meta.methodCount()) if meta.method(i).methodType() == QMetaMethod.Slot}


def test_every_signal_sent_from_another_thread_lands_in_a_slot(window, monkeypatch, tmp_path):
    from cnndesk.ui.engine import Engine
    from cnndesk.ui.engine_worker import EngineWorker
    from cnndesk.ui.loading import DatasetLoader, _LoadThread
    from cnndesk.ui.weights_download import WeightsGate

    # the engine worker's signals reach the window only through the engine, whose slots drop them after shutdown
    worker = signal_receivers(window.engine.worker)
    for signal in own_signals(EngineWorker):
        assert worker.get(signal), f"EngineWorker.{signal} is not forwarded by the engine"
        assert set(worker[signal]) <= declared_slots(Engine), f"EngineWorker.{signal} reaches {worker[signal]}"

    # the weights download thread's signals land in the gate's slots
    gate = signal_receivers(window.training.weights)
    for signal in ("_status", "_progress", "_finished"):
        assert gate.get(signal) and set(gate[signal]) <= declared_slots(WeightsGate), f"{signal}: {gate[signal]}"

    # and a dataset load's thread's in the loader's
    monkeypatch.setattr(_LoadThread, "start", lambda self: None)
    loader = DatasetLoader()
    loader.load(tmp_path, window.state.dataset_config)
    thread = signal_receivers(loader._current)
    for signal in own_signals(_LoadThread):
        assert thread.get(signal) and set(thread[signal]) <= declared_slots(DatasetLoader), thread[signal]

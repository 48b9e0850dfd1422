"""Probe images: marked in the GUI, recorded while training, scrubbed, exported, saved and reopened; the CLI's
``--probe``; the recording's budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from cnndesk.core.errors import UserError
from cnndesk.core.training.probes import MAX_PROBES, Probe, ProbeFrame, ProbeRecording, shrink

from conftest import write_dataset
from test_cli import run as run_cli
from test_app import drop_paths, save_as, set_epochs, tiny_window, train_now  # noqa: F401 (tiny_window is a fixture)


# -- the recording's budget -------------------------------------------------------------------
def _frame(epoch: float, layers=("a", "b")) -> ProbeFrame:
    rng = np.random.default_rng(int(epoch * 100))
    maps = {l: rng.integers(0, 255, (2, 8, 32, 32), dtype=np.uint8) for l in layers}
    ranges = {l: np.zeros((2, 8, 2), np.float32) for l in layers}
    return ProbeFrame(epoch, np.zeros((2, 3), np.int16), np.zeros((2, 3), np.float32), maps, ranges,
                      rng.integers(0, 255, (2, 10, 10), dtype=np.uint8), None)


def _recording(budget: int) -> ProbeRecording:
    probes = [Probe(f"p{i}", np.zeros((32, 32, 3), np.uint8), i) for i in range(2)]
    rec = ProbeRecording(probes, ["a", "b", "c"], budget=budget)
    rec.layers = ["a", "b"]
    return rec


def test_thinning_keeps_the_budget_the_whole_span_and_an_even_step():
    per_frame = _frame(1).nbytes
    rec = _recording(budget=10 * per_frame)
    for epoch in range(1, 101):
        rec.add(_frame(epoch))
        assert rec.frames_nbytes() <= rec.budget
    epochs = rec.epochs()
    assert epochs[0] == 1 and epochs[-1] == 100  # the first and the newest are never dropped
    assert len(epochs) >= 5  # thinned, not emptied
    steps = np.diff(epochs[:-1])
    assert len(set(steps.tolist())) == 1  # the older frames keep an even step: every 2nd, 4th, …, never at random


def test_a_recording_saves_to_a_folder_and_loads_back_the_same(tmp_path):
    rec = _recording(budget=10 ** 7)
    for epoch in (1, 1.5, 2):
        rec.add(_frame(epoch))
    rec.save(tmp_path / "rec")
    back = ProbeRecording.load(tmp_path / "rec")
    assert back.epochs() == [1, 1.5, 2]
    assert back.layers == ["a", "b"] and [p.true_class for p in back.probes] == [0, 1]
    for a, b in zip(rec.frames, back.frames):
        assert np.array_equal(a.maps["b"], b.maps["b"]) and np.array_equal(a.cams, b.cams)
    (tmp_path / "rec" / "frames.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot be read"):
        ProbeRecording.load(tmp_path / "rec")


def test_a_recording_from_before_heat_maps_were_smoothed_opens_smoothed_as_the_viewer_draws_them(tmp_path):
    from cnndesk.core.model.pictures import CAM_SMOOTH_SIGMA, smooth_map

    rec = _recording(budget=10 ** 7)
    rec.add(_frame(1))
    raw = rec.frames[0].cams
    rec.save(tmp_path / "rec")
    meta = json.loads((tmp_path / "rec" / "recording.json").read_text())
    assert meta.pop("cam_sigma") == CAM_SMOOTH_SIGMA  # what a recording says now
    (tmp_path / "rec" / "recording.json").write_text(json.dumps(meta))  # as an older cnndesk wrote it
    back = ProbeRecording.load(tmp_path / "rec")
    assert back.cam_sigma == CAM_SMOOTH_SIGMA
    for got, cam in zip(back.frames[0].cams, raw):
        expected = smooth_map(cam / 255.0, CAM_SMOOTH_SIGMA)
        assert np.abs(got / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
        assert np.abs(got.astype(int) - cam).max() > 20  # the speckled test map did change

def test_more_than_four_probes_are_refused_with_a_message():
    probes = [Probe(f"p{i}", np.zeros((8, 8, 3), np.uint8)) for i in range(MAX_PROBES + 1)]
    with pytest.raises(UserError, match="At most 4"):
        ProbeRecording(probes, ["a", "b"])


def test_large_maps_are_shrunk_by_averaging_to_at_most_32_cells():
    m = np.arange(100 * 64 * 2, dtype=np.float32).reshape(100, 64, 2)
    small = shrink(m)
    assert max(small.shape[:2]) <= 32 and small.shape[2] == 2
    assert small[0, 0, 0] == pytest.approx(m[:4, :2, 0].mean())


def test_a_project_saves_the_recording_with_its_model_and_a_damaged_one_is_refused(tmp_path):
    from cnndesk.core.model.architecture import build_model, preset
    from cnndesk.core.errors import ProjectError
    from cnndesk.core.project.store import open_probes, save_project
    from test_project import _project

    model = build_model(preset("tinyvgg"), (24, 20, 3), 3)
    rec = _recording(budget=10 ** 7)
    rec.add(_frame(1))
    folder = tmp_path / "proj"
    save_project(folder, _project(), model, probes=rec)
    assert open_probes(folder).epochs() == [1]
    rec.add(_frame(2))
    save_project(folder, _project(), model, probes=rec)
    assert open_probes(folder).epochs() == [1, 2]
    save_project(folder, _project(), model)  # a model trained without probes: no recording
    assert open_probes(folder) is None
    save_project(folder, _project(), model, probes=rec)
    ref = json.loads((folder / "project.json").read_text())["probes"]
    (folder / ref / "recording.json").write_text("{")
    with pytest.raises(ProjectError, match="damaged"):
        open_probes(folder)


# -- the GUI ---------------------------------------------------------------------------------------
def _show_training_tab(w):
    w.tabs.setCurrentIndex(w.TAB_TRAIN)


def test_a_probe_marked_in_the_gui_is_recorded_scrubbed_exported_and_reopened(tiny_window, qtbot, make_window,
                                                                             tmp_path, monkeypatch, tiny_dataset):
    w = tiny_window
    view = w.probe_view
    _show_training_tab(w)
    probe_a = tiny_dataset / "left" / "left_03.png"
    probe_b = tiny_dataset / "top" / "top_05.png"
    drop_paths(view, [probe_a])  # dropped on the probe view
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(probe_b)], ""))
    qtbot.mouseClick(view.add_button, Qt.LeftButton)  # and chosen with Add image…
    assert [view.probe_list.item(i).text() for i in range(view.probe_list.count())] == ["left_03.png", "top_05.png"]

    set_epochs(w, qtbot, 3)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=300000)
    qtbot.waitUntil(lambda: view.recording is not None and view.recording.probes[0].true_class is not None,
                    timeout=120000)  # the engine's own recording, with the true classes
    assert view.slider.maximum() == 2 and view.slider.isEnabled()
    assert view.epoch_label.text() == "Epoch 3 of 3"
    assert w.training_panel.chart.marked_epoch() == 3

    # scrub back to the first epoch: the label, the chart's marker, the maps and the predictions follow
    last_maps = view.maps[0].pixmap().toImage()
    last_heat = view.heats[0].pixmap().toImage()
    last_top = view.top_text(0), view.top_text(1)
    view.slider.setFocus()
    qtbot.keyClick(view.slider, Qt.Key_Home)
    assert view.slider.value() == 0
    assert view.epoch_label.text() == "Epoch 1 of 3"
    assert w.training_panel.chart.marked_epoch() == 1
    assert view.maps[0].pixmap().toImage() != last_maps
    assert view.heats[0].pixmap().toImage() != last_heat
    assert (view.top_text(0), view.top_text(1)) != last_top
    qtbot.keyClick(view.slider, Qt.Key_Right)
    assert view.epoch_label.text() == "Epoch 2 of 3" and w.training_panel.chart.marked_epoch() == 2

    # play runs to the last epoch and stops there
    qtbot.mouseClick(view.play_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not view.play_button.isChecked(), timeout=10000)
    assert view.slider.value() == 2 and view.epoch_label.text() == "Epoch 3 of 3"

    # export the sequence as a GIF: one frame per epoch
    gif = tmp_path / "probes.gif"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(gif), ""))
    qtbot.mouseClick(view.export_animation_button, Qt.LeftButton)
    with Image.open(gif) as im:
        assert im.n_frames == 3
    strip = tmp_path / "probes.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(strip), ""))
    qtbot.mouseClick(view.export_strip_button, Qt.LeftButton)
    with Image.open(strip) as im:
        assert im.width > im.height  # three frames side by side

    # continuing the run adds its epochs to the same recording
    set_epochs(w, qtbot, 1)
    qtbot.mouseClick(w.training_panel.continue_check, Qt.LeftButton)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=300000)
    qtbot.waitUntil(lambda: view.slider.maximum() == 3 and view.recording.probes[0].true_class is not None,
                    timeout=120000)
    assert view.recording.epochs() == [1, 2, 3, 4]
    assert view.epoch_label.text() == "Epoch 4 of 4" and w.training_panel.chart.marked_epoch() == 4

    # saved with the project, and there again when it is reopened
    folder = tmp_path / "probe-project"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    saved = json.loads((folder / "project.json").read_text())["probes"]
    assert (folder / saved / "recording.json").is_file()
    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.probe_view.recording is not None, timeout=30000)
    v2 = w2.probe_view
    assert v2.slider.maximum() == 3 and v2.epoch_label.text() == "Epoch 4 of 4"
    assert [p.name for p in v2.recording.probes] == ["left_03.png", "top_05.png"]
    assert w2.state.probe_images == w.state.probe_images  # training again records the same images
    assert v2.top_text(0) == view.top_text(0)


def test_an_image_in_the_viewer_can_be_marked_as_a_probe(tiny_window, qtbot, tiny_dataset):
    w = tiny_window
    set_epochs(w, qtbot, 1)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=300000)
    path = tiny_dataset / "centre" / "centre_02.png"
    w.viewer_panel.classify_paths([str(path)])
    qtbot.waitUntil(lambda: w.viewer_panel.current is not None, timeout=120000)
    qtbot.mouseClick(w.viewer_panel.probe_button, Qt.LeftButton)
    assert w.state.probe_images == [str(path.resolve())]
    assert w.probe_view.probe_list.item(0).text() == "centre_02.png"


def test_a_file_that_is_not_an_image_is_not_a_probe_and_says_why(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    said = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text: said.append(text))
    window.probe_view.add_probes([str(bad)])
    assert window.state.probe_images == []
    assert "notes.png is not an image" in said[0]



def test_a_run_on_other_classes_shows_its_own_class_names_live_and_no_true_class_it_lacks(
        tiny_window, qtbot, tmp_path, monkeypatch, tiny_dataset):
    from test_dataset_panel import choose

    w, view = tiny_window, tiny_window.probe_view
    _show_training_tab(w)
    drop_paths(view, [tiny_dataset / "left" / "left_03.png", tiny_dataset / "top" / "top_05.png"])
    train_now(w, qtbot, epochs=1)
    qtbot.waitUntil(lambda: view.recording is not None and view.recording.probes[0].true_class is not None,
                    timeout=120000)
    assert set(_bar_names(view, 0)) <= {"left", "top", "centre"}

    # the same probes, another dataset with more classes and other names: the live bars name its classes
    other = ("b_one", "b_two", "b_three", "b_four", "b_five")
    choose(w.state, w.dataset_panel, qtbot, monkeypatch,
           write_dataset(tmp_path / "other", classes=other, per_class=8))
    set_epochs(w, qtbot, 500)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: len(w.state.history) >= 2, timeout=120000)  # its first frames have been shown
    assert w.state.training
    for probe in (0, 1):
        assert len(_bar_names(view, probe)) == 3 and set(_bar_names(view, probe)) <= set(other)
        assert view.recording.probes[probe].true_class is None  # "left" and "top" are no classes of this dataset
    w.training.stop()
    qtbot.waitUntil(lambda: not w.state.training, timeout=30000)
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=30000)  # the engine's recording of the run is shown
    assert set(_bar_names(view, 0)) <= set(other) and view.recording.probes[0].true_class is None


def _bar_names(view, probe: int) -> list[str]:
    """The class names the bars of ``probe`` show."""
    return [name for name, _ in view.bars[probe].items]


def test_a_probes_heat_map_looks_as_the_viewer_shows_it_for_the_same_image_and_model(tiny_window, qtbot, tmp_path,
                                                                                     monkeypatch, tiny_dataset):
    from cnndesk.core.model.pictures import gradcam_overlay
    from cnndesk.ui.current_image import qimage_to_array
    from test_gradcam_view import click_box

    w, view = tiny_window, tiny_window.probe_view
    _show_training_tab(w)
    probe = tiny_dataset / "left" / "left_03.png"
    drop_paths(view, [probe])
    train_now(w, qtbot, epochs=1)  # one epoch: its frame is of the model the viewer then asks
    qtbot.waitUntil(lambda: view.recording is not None and view.recording.probes[0].true_class is not None,
                    timeout=120000)
    in_probe_view = qimage_to_array(view.heats[0].pixmap().toImage()).astype(int)
    strip = tmp_path / "probes.png"  # the export draws the same heat map (the PNG strip: lossless, unlike a GIF)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(strip), ""))
    qtbot.mouseClick(view.export_strip_button, Qt.LeftButton)
    exported = np.asarray(Image.open(strip).convert("RGB")).astype(int)
    side = in_probe_view.shape[0]
    assert any(np.array_equal(exported[y:y + side, x:x + side], in_probe_view)
               for y in range(exported.shape[0] - side) for x in range(exported.shape[1] - side))

    # the viewer: the same image, the heat map of the probe's true class at the layer it starts with
    viewer, cam = w.viewer_panel, w.viewer_panel.gradcam
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    viewer.tabs.setCurrentWidget(cam)
    viewer.classify_paths([str(probe)])
    qtbot.waitUntil(lambda: cam.cam is not None, timeout=60000)
    cam.cam_class.setCurrentIndex(cam.cam_class.findText("left"))
    qtbot.waitUntil(lambda: "“left”" in cam.cam_caption.text() and w.engine.pending() == 0, timeout=60000)

    def as_drawn_in_the_probe_view() -> np.ndarray:
        size = in_probe_view.shape[:2]
        return gradcam_overlay(cam.image, cam.shown_map(), cam.opacity.value() / 100, size=size).astype(int)

    assert cam.smooth.isChecked()  # the viewer's default
    smoothed = as_drawn_in_the_probe_view()
    click_box(qtbot, cam.smooth)
    raw = as_drawn_in_the_probe_view()
    assert np.abs(raw - smoothed).mean() > 4, "the raw and the smoothed map look alike here: nothing to compare"
    off = np.abs(in_probe_view - smoothed)
    assert off.mean() < 0.5 and off.max() <= 8, (off.mean(), off.max(), np.abs(raw - smoothed).mean())


def _probe_names(view) -> list[str]:
    return [view.probe_list.item(i).text() for i in range(view.probe_list.count())]


def test_new_and_open_start_without_the_probe_images_of_the_work_before(window, qtbot, tmp_path, monkeypatch,
                                                                       tiny_dataset):
    w, view = window, window.probe_view
    _show_training_tab(w)
    folder = tmp_path / "without-probes"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)  # a project B, saved before any probe was chosen

    drop_paths(view, [tiny_dataset / "left" / "left_03.png"])  # project A's probe
    assert _probe_names(view) == ["left_03.png"]
    w.new_action.trigger()
    assert _probe_names(view) == [] and w.state.probe_images == []
    assert view.add_button.isEnabled() and not view.remove_button.isEnabled()

    drop_paths(view, [tiny_dataset / "top" / "top_05.png"])
    assert _probe_names(view) == ["top_05.png"]
    w.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w.state.project_path == str(folder) and not w.state.busy, timeout=30000)
    assert _probe_names(view) == [] and w.state.probe_images == []  # B's next training records no probe of A

# -- the CLI ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_train_with_probes_records_them_into_the_project(tmp_path):
    data = write_dataset(tmp_path / "tiny", per_class=12)
    probe = data / "top" / "top_01.png"
    project = tmp_path / "proj"
    code, out, err = run_cli(["train", data, "--project", project, "--epochs", 2, "--batch-size", 8,
                              "--image-size", 32, "--probe", probe, "--probe", data / "left" / "left_00.png"])
    assert code == 0, err
    from cnndesk.core.project.store import open_probes

    rec = open_probes(project)
    assert rec.epochs() == [1, 2]
    assert [p.name for p in rec.probes] == ["top_01.png", "left_00.png"]
    assert rec.class_names[rec.probes[0].true_class] == "top"
    assert f"probe recording (2 frames of 2 images) saved in {project}" in out


def test_cli_train_repeats_with_probes_records_them_in_each_model_and_saves_the_kept_ones(tmp_path):
    from cnndesk.core.project.store import open_probes, open_project

    data = write_dataset(tmp_path / "tiny", per_class=12)
    project = tmp_path / "proj"
    code, out, err = run_cli(["train", data, "--project", project, "--epochs", 2, "--batch-size", 8,
                              "--image-size", 32, "--repeats", 2, "--probe", data / "top" / "top_01.png"])
    assert code == 0, err
    assert open_probes(project).epochs() == [1, 2]  # the best kept, with its own recording
    assert f"probe recording (2 frames of 1 images) saved in {project}" in out
    proj = open_project(project, load_model=False)[0]
    assert [r.probe_frames for r in proj.runs] == [2, 2]
    recordings = [ProbeRecording.load(r.probe_dir) for r in proj.runs]  # each run's own, in the project
    assert all(r.epochs() == [1, 2] for r in recordings)
    assert not np.array_equal(recordings[0].frames[-1].top_p, recordings[1].frames[-1].top_p)


def test_cli_refuses_a_probe_that_is_not_an_image(tmp_path):
    data = write_dataset(tmp_path / "tiny", per_class=6)
    bad = tmp_path / "x.png"
    bad.write_text("no")
    code, _, err = run_cli(["train", data, "--project", tmp_path / "p", "--epochs", 1, "--image-size", 32,
                            "--probe", bad])
    assert code != 0
    assert "x.png" in err and "Traceback" not in err
    assert not (tmp_path / "p" / "project.json").exists()  # refused before any training


def test_without_probes_the_view_is_two_rows_of_controls_and_the_chart_has_the_room(window, qtbot, tiny_dataset):
    w = window
    w.tabs.setCurrentIndex(w.TAB_TRAIN)
    view, panel = w.probe_view, w.training_panel
    qtbot.waitUntil(lambda: panel.split.sizes()[0] > 0, timeout=10000)
    assert not view.frames_area.isVisible()
    chart_alone = panel.split.sizes()[0]
    drop_paths(view, [str(next(tiny_dataset.rglob("*.png")))])  # a probe: its rows get room to show frames
    qtbot.waitUntil(lambda: view.frames_area.isVisible(), timeout=10000)
    assert panel.split.sizes()[0] < chart_alone and panel.split.sizes()[2] > view.minimumSizeHint().height()
    view.probe_list.setCurrentRow(0)
    qtbot.mouseClick(view.remove_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not view.frames_area.isVisible(), timeout=10000)
    assert panel.split.sizes()[0] >= chart_alone - 5


def test_probe_bars_show_probabilities_calibrated_with_the_models_temperature():
    from cnndesk.core.model.calibration import softmax
    from cnndesk.core.training.probe_pictures import top_predictions
    from cnndesk.core.training.probes import Probe, ProbeFrame, ProbeRecording

    names = ["a", "b", "c"]
    logits = np.array([2.0, 0.5, -1.0])
    p = softmax(logits[None])[0]
    rec = ProbeRecording([Probe("x", np.zeros((8, 8, 3), np.uint8))], names)
    frame = ProbeFrame(1.0, np.array([[0, 1, 2]]), p[None].astype(np.float32))
    assert [v for _, v in top_predictions(rec, frame, 0)] == pytest.approx(p.tolist())
    shown = top_predictions(rec, frame, 0, temperature=2.5)
    assert [n for n, _ in shown] == names
    assert [v for _, v in shown] == pytest.approx(softmax(logits[None], 2.5)[0].tolist(), abs=1e-6)

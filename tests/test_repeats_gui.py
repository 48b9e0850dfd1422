"""Train ×N in the window: the choice beside Stop, "Model 2 of 3" while it trains, Stop stops them all, the runs of
one group with their spread, and an ensemble in the viewer with a member chooser."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from cnndesk.ui.runs_view import GROUP

from conftest import make_image, write_dataset
from test_app import drop_paths, set_epochs
from test_runs import select_cell


def choose_repeats(w, qtbot, count: int, keep: str) -> None:
    choice = w.repeats.choice
    choice.count.selectAll()
    qtbot.keyClicks(choice.count, str(count))
    qtbot.keyClick(choice.count, Qt.Key_Return)
    assert choice.count.value() == count
    combo = choice.keep
    combo.setCurrentIndex(combo.findText(f"keep {'the best' if keep == 'best' else 'an ensemble'}"))


def test_train_x3_keeps_an_ensemble_lists_three_runs_with_their_spread_and_shows_a_members_maps(
        window, qtbot, tmp_path):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=12)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    set_epochs(w, qtbot, 1)
    choice = w.repeats.choice
    assert not choice.keep.isEnabled()  # with ×1 there is nothing to choose from
    choose_repeats(w, qtbot, 3, "ensemble")
    assert choice.keep.isEnabled() and choice.keep.currentText() == "keep an ensemble"
    assert w.training_panel.train_button.text() == "▶  Train ×3"
    assert w.settings.value("training/repeats") in (3, "3")  # remembered

    stages = []
    w.training_panel.progress.valueChanged.connect(lambda _v: stages.append(w.training_panel.progress.format()))
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=120000)
    assert any(s.startswith("Model 2 of 3 · Epoch") for s in stages)
    assert w.training_panel.progress.format() == "Done: 3 models"

    view = w.training_panel.runs_view
    assert view.run_names() == ["Run 1", "Run 2", "Run 3", "Run 4"]
    table = view.table
    group = [table.item(i, GROUP).text() for i in range(4)]
    assert all(g.startswith("one of ×3 · mean ") for g in group[:3]) and group[3].startswith("ensemble of 3 · mean ")
    runs = w.state.runs
    assert [r.settings.seed for r in runs[:3]] == [runs[0].settings.seed + i for i in range(3)]
    assert w.state.model.run == runs[3].id and w.state.model.is_ensemble
    log = w.training_panel.log.toPlainText()
    assert "Validation accuracy of 3 models: mean " in log and "Kept an ensemble of 3 models" in log
    qtbot.waitUntil(lambda: all(r.file for r in w.state.runs), timeout=20000)

    # the viewer says it is an ensemble and shows the maps of the member chosen
    picture = tmp_path / "centre.png"
    make_image("centre", np.random.default_rng(3)).save(picture)
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    viewer = w.viewer_panel
    assert viewer.member_combo.isVisible() and viewer.member_combo.count() == 3
    assert "an ensemble of 3 models" in viewer.model_label.text()
    drop_paths(viewer, [picture])
    layers = viewer.activations.layer_combo  # the input's own channels first, then each layer's maps
    qtbot.waitUntil(lambda: layers.count() > 1 and layers.itemText(1).startswith("member_1/"), timeout=30000)
    viewer.member_combo.setFocus()
    qtbot.keyClick(viewer.member_combo, Qt.Key_Down)  # the next model, chosen from the keyboard
    assert viewer.member_combo.currentIndex() == 1
    qtbot.waitUntil(lambda: layers.itemText(1).startswith("member_2/"), timeout=30000)
    assert all(layers.itemText(i).startswith("member_2/") for i in range(1, layers.count()))
    assert "maps of model 2" in viewer.model_label.text()


def test_stop_during_train_x3_stops_them_all_and_keeps_what_was_trained(window, qtbot, tmp_path):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=12)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    set_epochs(w, qtbot, 3)
    w.model_panel.batch_size.setValue(4)
    choose_repeats(w, qtbot, 3, "best")
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training_panel.progress.format().startswith("Model 1 of 3 · Epoch"), timeout=60000)
    qtbot.mouseClick(w.training_panel.stop_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    assert w.training_panel.runs_view.run_names() == ["Run 1"]  # no second model was started
    assert w.training_panel.progress.format() == "Stopped"
    assert not w.viewer_panel.member_combo.isVisibleTo(w.viewer_panel)  # one model: no member to choose


def test_train_x2_keeping_the_best_calibrates_it_as_one_training_does(window, qtbot, tmp_path):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=12)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    set_epochs(w, qtbot, 1)
    choose_repeats(w, qtbot, 2, "best")
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=120000)
    kept = next(r for r in w.state.runs if r.id == w.state.model.run)
    assert kept.trust is not None and kept.trust.get("temperature")  # kept with the run, saved with the project
    assert "confidences calibrated, T = " in w.viewer_panel.model_label.text()
    assert all(r.trust is None for r in w.state.runs if r.id != kept.id)


def test_train_x2_with_a_probe_shows_the_kept_models_epochs_and_each_run_keeps_its_recording(window, qtbot, tmp_path):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=12)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    w.tabs.setCurrentIndex(w.TAB_TRAIN)
    view = w.probe_view
    drop_paths(view, [data / "left" / "left_03.png"])
    assert [view.probe_list.item(i).text() for i in range(view.probe_list.count())] == ["left_03.png"]
    set_epochs(w, qtbot, 2)
    choose_repeats(w, qtbot, 2, "best")
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.recording is not None and bool(view.recording.frames), timeout=120000)  # live
    qtbot.waitUntil(lambda: not w.state.training, timeout=120000)
    kept = w.state.model.run
    # the engine's recording of the kept model, with the probe's true class
    qtbot.waitUntil(lambda: view.recording is not None and view.recording.probes[0].true_class is not None,
                    timeout=30000)
    assert view.slider.maximum() == 1 and view.epoch_label.text() == "Epoch 2 of 2"
    table = w.training_panel.runs_view.table
    assert all("a probe recording of 2 frames" in table.item(i, 0).toolTip() for i in range(2))
    shown = view.top_text(0)

    # the other model's run brings back its own recording
    other = next(i for i, r in enumerate(w.state.runs) if r.id != kept)
    select_cell(w, qtbot, w.state.runs[other].name, 1)
    qtbot.mouseClick(w.training_panel.runs_view.restore_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.model.run == w.state.runs[other].id and not w.state.busy, timeout=60000)
    qtbot.waitUntil(lambda: view.epoch_label.text() == "Epoch 2 of 2" and view.top_text(0) != shown, timeout=30000)

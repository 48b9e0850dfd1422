"""Every training kept as a run: listed, compared, renamed, noted, deleted and restored (issue 18, runs).

In the app as a person uses it (train twice, tick, type, click), on the command line, and in the project
folder (each run's weights written once, older projects opening with one run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QLineEdit, QMessageBox

from cnndesk.cli import main
from cnndesk.core.project.store import open_project, Project, save_project
from cnndesk.core.training.runs import find_run, new_run, next_run_name, Run, run_before
from cnndesk.core.errors import UserError
from cnndesk.core.intervals import interval_range, proportion_interval, with_interval
from cnndesk.ui.runs_view import BEST_ACC, DATASET, FINAL, NOTE

from conftest import make_image, write_dataset
from test_app import drop_paths, layer_row_text, question_after, save_as, set_epochs, train_now

FIXTURES = Path(__file__).parent / "fixtures"


def cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


class FakeModel:
    """Stands in for a Keras model in saves that never load it: ``save`` writes the given bytes."""

    def __init__(self, content: bytes):
        self.content = content

    def save(self, path):
        Path(path).write_bytes(self.content)


def row(epoch, val_acc, val_loss):
    return {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.5, "val_loss": val_loss, "val_accuracy": val_acc}


# -- the project folder ------------------------------------------------------------------------------

def test_each_run_is_written_once_and_a_deleted_run_leaves_the_folder_at_the_next_save(tmp_path, monkeypatch):
    import cnndesk.core.project.store as P

    monkeypatch.setattr(P, "load_keras_model", lambda path: Path(path).read_bytes())
    scratch = tmp_path / "scratch" / "model.keras"
    scratch.parent.mkdir()
    scratch.write_bytes(b"weights of run a")
    history = (row(1, 0.6, 0.9), row(2, 0.8, 0.7), row(3, 0.7, 0.8))
    project = Project(class_names=["x", "y"], run="b", runs=[
        Run("a", "Run 1", history=history, best_epoch=2, file=str(scratch), note="first", probes={"kept": "as is"},
            dataset_path="/data/faces"),
        Run("b", "Run 2", history=history[:1])])
    folder = tmp_path / "p"
    save_project(folder, project, FakeModel(b"weights of run b"))
    assert (folder / "runs/a/model.keras").read_bytes() == b"weights of run a"
    assert (folder / "runs/b/model.keras").read_bytes() == b"weights of run b"  # the current model's
    written = {r: (folder / f"runs/{r}/model.keras").stat().st_mtime_ns for r in "ab"}

    opened, model = open_project(folder)
    assert model == b"weights of run b" and opened.run == "b"
    a, b = opened.runs
    assert (a.name, a.note, a.best_epoch, a.probes, a.epochs) == ("Run 1", "first", 2, {"kept": "as is"}, 3)
    assert (a.dataset_path, b.dataset_path) == ("/data/faces", None)  # (b: as a run of an older cnndesk)
    assert a.best("val_accuracy") == 0.8 and a.best("val_loss") == 0.7 and a.final["val_accuracy"] == 0.7
    assert a.file == str(folder / "runs/a/model.keras") and b.file == str(folder / "runs/b/model.keras")

    opened.runs = [a.renamed("baseline")]  # run b deleted, a renamed: its weights are not written again
    save_project(folder, opened, FakeModel(b"weights of run b"))
    assert (folder / "runs/a/model.keras").stat().st_mtime_ns == written["a"]
    assert not (folder / "runs/b").exists()
    assert [r.name for r in open_project(folder)[0].runs] == ["baseline"]


def test_a_run_with_probe_files_carries_them_into_the_project(tmp_path, monkeypatch):
    probes = tmp_path / "recording"
    (probes / "frames").mkdir(parents=True)
    (probes / "frames" / "epoch-1.npz").write_bytes(b"frame")
    save_project(tmp_path / "p", Project(run="r", runs=[Run("r", "Run 1", probes=[1, 2], probe_dir=str(probes))]),
                 FakeModel(b"w"))
    run = open_project(tmp_path / "p", load_model=False)[0].runs[0]
    assert run.probes == [1, 2]
    assert (Path(run.probe_dir) / "frames" / "epoch-1.npz").read_bytes() == b"frame"


def test_the_current_runs_recording_goes_into_its_folder_also_for_a_project_saved_before_runs_kept_them(tmp_path):
    from test_probes import _frame, _recording

    rec = _recording(budget=10 ** 7)
    rec.add(_frame(1))
    rec.add(_frame(2))
    folder = tmp_path / "p"
    save_project(folder, Project(run="r", runs=[Run("r", "Run 1")]), FakeModel(b"w"), probes=rec)
    [run] = open_project(folder, load_model=False)[0].runs
    assert run.probe_frames == 2 and run.probe_dir == str(folder / "runs/r/probes")
    assert (folder / "runs/r/probes/frames.npz").read_bytes() == (folder / "versions/1/probes/frames.npz").read_bytes()

    # as a save before runs kept recordings left it: the run's entry names none
    d = json.loads((folder / "project.json").read_text())
    d["runs"][0]["probes"] = d["runs"][0]["probe_files"] = None
    (folder / "project.json").write_text(json.dumps(d))
    shutil.rmtree(folder / "runs/r/probes")
    project = open_project(folder, load_model=False)[0]
    assert project.runs[0].probe_frames is None and project.runs[0].probe_dir is None
    save_project(folder, project, FakeModel(b"w"), probes=rec)  # the app passes the recording it opened
    [run] = open_project(folder, load_model=False)[0].runs
    assert run.probe_frames == 2 and Path(run.probe_dir, "recording.json").is_file()


def test_a_project_json_naming_a_run_file_outside_its_folder_is_refused(tmp_path):
    from cnndesk.core.errors import ProjectError

    folder = tmp_path / "p"
    save_project(folder, Project(run="r", runs=[Run("r", "Run 1")]), FakeModel(b"w"))
    d = json.loads((folder / "project.json").read_text())
    d["runs"][0]["weights"]["file"] = "../../elsewhere/model.keras"
    (folder / "project.json").write_text(json.dumps(d))
    with pytest.raises(ProjectError, match="damaged"):
        open_project(folder, load_model=False)


def test_an_old_format_project_opens_with_one_run_made_from_its_model(tmp_path):
    folder = shutil.copytree(FIXTURES / "project_v1_model", tmp_path / "old")
    project, model = open_project(folder)
    assert model is not None
    [run] = project.runs
    assert run.id == project.run and run.name == "Run 1"
    assert run.history == tuple(project.history) and run.file == str(folder / "model.keras")
    # saved again, the run gets its own folder and the schema-1 model file goes
    save_project(folder, project, model)
    again = open_project(folder, load_model=False)[0]
    assert again.runs[0].file == str(folder / "runs" / run.id / "model.keras")
    assert not (folder / "model.keras").exists()


def test_runs_are_named_in_turn_and_found_by_name_or_id():
    runs = [Run("a1", "Run 1"), Run("b2", "baseline"), Run("c3", "Run 3")]
    assert next_run_name(runs) == "Run 4" and next_run_name([]) == "Run 1"
    assert find_run(runs, "baseline").id == "b2" and find_run(runs, "c3").name == "Run 3"
    with pytest.raises(UserError, match="no run called 'nope'.*'Run 1', 'baseline', 'Run 3'"):
        find_run(runs, "nope")
    with pytest.raises(UserError, match="Several runs"):
        find_run([Run("a1", "x"), Run("b2", "x")], "x")


def test_bring_back_offers_the_run_the_current_one_replaced_else_the_latest_other_whose_weights_were_kept():
    history = ({"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75})
    runs = [Run("a", "Run 1", history=history, best_epoch=2, file="a.keras"), Run("b", "Run 2", file="b.keras"),
            Run("c", "Run 3", file="c.keras"), Run("d", "Run 4")]
    assert run_before(runs, "c", before="a").name == "Run 1"  # the run Run 3 replaced (its model is held)
    assert run_before(runs, "c").name == "Run 2"  # none held (a reopened project): the latest other run
    assert run_before(runs, "c", before="deleted").name == "Run 2"
    assert run_before(runs, "b", before="d").name == "Run 3"  # Run 4's weights were not kept
    assert run_before(runs[:1], "a") is None
    assert runs[0].described() == ("the model of the previous run (2 epochs, validation accuracy 0.750 (number of "
                                   "images unknown))")  # an older cnndesk's run: its rows did not record it
    counted = Run("e", "Run 5", history=tuple(dict(r, val_images=20) for r in history), best_epoch=2)
    assert counted.described() == ("the model of the previous run (2 epochs, validation accuracy 0.750 (95 % interval "
                                   "0.531–0.888, 20 images))")


def test_a_run_knows_its_validation_images_and_a_run_of_an_older_cnndesk_says_they_are_unknown():
    rows = (dict(row(1, 0.5, 0.9), val_images=39), dict(row(2, 37 / 39, 0.2), val_images=39),
            dict(row(3, 0.9, 0.3), val_images=39))
    run = Run.from_json(Run("a1", "Run 1", history=rows, best_epoch=2).to_json())  # as project.json keeps it
    assert run.val_images == 39 and run.best_accuracy_text() == "0.949 (95 % interval 0.831–0.986, 39 images)"
    summary = run.summary()
    assert summary["best_val_accuracy"] == 37 / 39 and summary["val_images"] == 39
    assert summary["best_val_accuracy_interval"] == pytest.approx(list(proportion_interval(37, 39)))
    assert summary["final"]["val_images"] == 39
    assert summary["final"]["val_accuracy_interval"] == pytest.approx(list(proportion_interval(35.1, 39)))
    old = Run.from_json(Run("b2", "Run 2", history=(row(1, 0.5, 0.9), row(2, 0.75, 0.6))).to_json())
    assert old.val_images is None and old.best_accuracy_text() == "0.750 (number of images unknown)"
    assert old.summary()["best_val_accuracy_interval"] is None and old.summary()["val_images"] is None
    assert Run("c3", "Run 3").summary()["best_val_accuracy_interval"] is None  # no epochs at all


def test_a_finished_training_is_recorded_as_the_next_run_with_its_dataset_folder_resolved(tmp_path, monkeypatch):
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.data.dataset import DatasetConfig

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    kept = [Run("a1", "Run 1"), Run("b2", "baseline")]
    history = [row(1, 0.5, 0.9), row(2, 0.75, 0.6)]
    run = new_run(kept, "c3", class_names=["cat", "dog"], dataset=DatasetConfig(), dataset_path="data",
                  preset="tinyvgg", layers=preset("tinyvgg"), settings=TrainingSettings(epochs=2), history=history,
                  best_epoch=2, kept_message="Kept epoch 2.", batch_loss=[(0.5, 0.9), (1.0, 0.7)], parent="b2",
                  trust={"temperature": 1.2})
    assert (run.id, run.name, run.dataset_path) == ("c3", "Run 2", str(tmp_path / "data"))
    assert run.class_names == ("cat", "dog") and run.history == tuple(history) and run.epochs == 2
    assert run.layers == tuple(preset("tinyvgg")) and run.batch_loss == ((0.5, 0.9), (1.0, 0.7))
    assert (run.best_epoch, run.kept_message, run.parent, run.trust) == (2, "Kept epoch 2.", "b2", {"temperature": 1.2})
    assert run.file is None and run.note == "" and abs(run.created - time.time()) < 60
    history.append(row(3, 0.8, 0.5))  # the run is a record: later changes to what it was made from do not reach it
    assert run.epochs == 2
    assert Run.from_json(run.to_json()).to_json() == run.to_json()


# -- the command line ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A project trained twice by ``cnndesk-cli train`` (2 epochs, then 1)."""
    root = tmp_path_factory.mktemp("runs")
    data = write_dataset(root / "data", per_class=12)
    project = root / "proj"
    for epochs in (2, 1):
        code, _, err = cli(["train", data, "--project", project, "--epochs", epochs, "--image-size", 32,
                            "--batch-size", 8, "--preset", "tinyvgg"])
        assert code == 0, err
    return project, data


@pytest.mark.slow
def test_cli_train_into_a_project_adds_a_run_and_runs_lists_them(two_runs):
    project, _ = two_runs
    code, out, _ = cli(["runs", project, "--json"])
    assert code == 0
    runs = [json.loads(line) for line in out.splitlines()]
    assert [(r["name"], r["epochs"], r["current"]) for r in runs] == [("Run 1", 2, False), ("Run 2", 1, True)]
    assert all(r["has_weights"] and r["best_val_accuracy"] is not None for r in runs)
    n_val = runs[0]["val_images"]
    assert n_val > 0 and all(r["val_images"] == r["final"]["val_images"] == n_val for r in runs)
    for r in runs:  # each accuracy with its 95 % interval on the run's validation images
        assert r["best_val_accuracy_interval"] == pytest.approx(
            list(proportion_interval(r["best_val_accuracy"] * n_val, n_val)))
        assert r["final"]["val_accuracy_interval"] == pytest.approx(
            list(proportion_interval(r["final"]["val_accuracy"] * n_val, n_val)))
    code, out, _ = cli(["runs", project])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "id", "date"]
    assert lines[1].startswith("   Run 1") and lines[2].startswith("*  Run 2") and lines[-1] == "* the current model"
    for line, r in zip(lines[1:3], runs):
        assert with_interval(r["best_val_accuracy"], n_val) in line


@pytest.mark.slow
def test_cli_evaluate_export_and_predict_use_the_named_run(two_runs, tmp_path):
    project, data = two_runs
    picture = next((data / "left").iterdir())
    code, first, err = cli(["predict", project, picture, "--run", "Run 1", "--json"])
    assert code == 0, err
    code, current, _ = cli(["predict", project, picture, "--json"])
    code2, second, _ = cli(["predict", project, picture, "--run", "Run 2", "--json"])
    assert code == code2 == 0
    assert json.loads(current)["top"] == json.loads(second)["top"]  # Run 2 is the current model
    assert json.loads(first)["top"] != json.loads(second)["top"]

    code, out, err = cli(["evaluate", project, "--run", "Run 1", "--json"])
    assert code == 0, err
    assert 0 <= json.loads(out)["accuracy"] <= 1

    code, out, err = cli(["export", project, "--format", "keras", "--out", tmp_path / "run1.keras", "--run", "Run 1"])
    assert code == 0, err
    run1 = find_run(open_project(project, load_model=False)[0].runs, "Run 1")
    assert (tmp_path / "run1.keras").is_file() and Path(run1.file).is_file()

    code, _, err = cli(["predict", project, picture, "--run", "Run 9"])
    assert code == 2 and "no run called 'Run 9'" in err and "Traceback" not in err


# -- the app ---------------------------------------------------------------------------------------------

def runs_table(w):
    return w.training_panel.runs_view.table


def select_cell(w, qtbot, name: str, column: int):
    """Click the cell of ``column`` in the row of the run called ``name``."""
    view = w.training_panel.runs_view
    table = view.table
    r = view.row_of(name)
    assert r >= 0, f"no run called {name!r} in {view.run_names()}"
    table.scrollToItem(table.item(r, column))
    rect = table.visualItemRect(table.item(r, column))
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=rect.center())
    assert table.currentRow() == r and table.currentColumn() == column


def type_into_cell(w, qtbot, name: str, column: int, text: str):
    """Select a cell, press F2, type ``text`` over what it held and press Enter."""
    view = w.training_panel.runs_view
    table = view.table
    select_cell(w, qtbot, name, column)
    qtbot.keyClick(table, Qt.Key_F2)
    editors = [e for e in table.viewport().findChildren(QLineEdit) if e.isVisible()]
    assert len(editors) == 1, "F2 did not open an editor"
    editors[0].selectAll()
    qtbot.keyClicks(editors[0], text)
    qtbot.keyClick(editors[0], Qt.Key_Return)  # the delegate commits from the event loop
    row = view.row_of(name) if column != 0 else None
    qtbot.waitUntil(lambda: (text in view.run_names()) if column == 0 else table.item(row, column).text() == text,
                    timeout=5000)


def tick(w, qtbot, name: str):
    """Tick a run's box with the keyboard: its name cell selected, Space."""
    select_cell(w, qtbot, name, 0)
    qtbot.keyClick(runs_table(w), Qt.Key_Space)


def bars(w):
    return dict(w.viewer_panel.current_view.bars.items)


def test_one_press_of_train_is_one_training_job_and_its_run_is_listed_with_its_weights_as_it_ends(window, qtbot,
                                                                                                    monkeypatch):
    """The Train flow as docs/architecture.md draws it: one job trains and keeps the run's weights; the state is
    written when it starts, with each epoch, and once when it ends: the model, its run (weights on disk) and idle
    together, so that no observer has to finish the run."""
    w = window
    set_epochs(w, qtbot, 2)
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=60000)  # the spare for the sample's first run
    jobs = []
    submit = w.engine.submit
    monkeypatch.setattr(w.engine, "submit", lambda method, *a, **k: (jobs.append(method.__name__),
                                                                      submit(method, *a, **k))[1])
    rounds = []
    w.state.observe(lambda names: rounds.append((names, w.state.activity, w.state.model, list(w.state.runs))))
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    qtbot.waitUntil(lambda: w.engine.pending() == 0, timeout=60000)
    # after the one training job only the probe view's look at the new model's recording and the spare for the
    # next press follow, once each
    assert jobs[0] == "train" and set(jobs[1:]) <= {"probe_recording", "stock_pool"} and len(set(jobs)) == len(jobs)
    model = w.state.model
    ends = [i for i, (names, _, m, _) in enumerate(rounds) if "model" in names and m is model]
    assert len(ends) == 1
    names, activity, _, runs = rounds[ends[0]]
    assert activity == "idle" and [r.id for r in runs] == [model.run] and runs[0].file is not None
    assert rounds[ends[0] + 1:] == []  # nothing to finish after it
    assert sum("activity" in names for names, *_ in rounds[:ends[0]]) == 1  # one write starts it
    assert w.training_panel.runs_view.run_names() == ["Run 1"]


def test_runs_are_kept_compared_restored_and_reopened_in_the_app(window, qtbot, tmp_path, make_window, monkeypatch):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=12)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    w.model_panel.batch_size.setValue(8)
    view, chart = w.training_panel.runs_view, w.training_panel.chart

    train_now(w, qtbot, epochs=2)
    assert view.run_names() == ["Run 1"]
    first = w.state.model.run
    # a picture in the viewer, classified by the first run
    picture = tmp_path / "centre.png"
    make_image("centre", np.random.default_rng(3)).save(picture)
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    drop_paths(w.viewer_panel, [picture])
    qtbot.waitUntil(lambda: bool(w.viewer_panel.current_view.bars.items), timeout=20000)
    by_first = bars(w)

    w.tabs.setCurrentIndex(w.TAB_TRAIN)
    train_now(w, qtbot, epochs=1)
    assert view.run_names() == ["Run 1", "Run 2"]
    table = runs_table(w)
    assert "(current)" in table.item(1, 1).text() and "(current)" not in table.item(0, 1).text()
    assert [table.item(i, 2).text() for i in range(2)] == ["2", "1"]  # epochs
    # each run's best validation accuracy says how sure it is, on the validation images it was measured on
    n_val = len(w.state.data.val_index)
    for i, run in enumerate(w.state.runs):
        best = max(r["val_accuracy"] for r in run.history)
        assert table.item(i, BEST_ACC).text() == f"{best:.3f} ({interval_range(best, n_val, 2)})"
        assert table.item(i, BEST_ACC).toolTip().startswith(f"Best validation accuracy {with_interval(best, n_val)}")
        final = run.history[-1]["val_accuracy"]
        assert table.item(i, FINAL).text().endswith(f" / {final:.3f} ({interval_range(final, n_val, 2)})")
        assert f"validation accuracy {with_interval(final, n_val)}" in table.item(i, FINAL).toolTip()
    qtbot.waitUntil(lambda: all(r.file for r in w.state.runs), timeout=20000)  # weights kept on disk

    # both ticked: both drawn on the chart beside the current run
    w.training_panel.lower_tabs.setCurrentWidget(view)
    tick(w, qtbot, "Run 1")
    tick(w, qtbot, "Run 2")
    names = chart.overlay_names()
    assert len(names) == 4 and names[:2] == ["Run 1: val loss", "Run 1: val acc"] and names[2].startswith("Run 2:")
    assert [s.count() for s in chart.overlay_series] == [2, 2, 1, 1]

    # renamed and noted by typing into the list; the chart follows the name
    type_into_cell(w, qtbot, "Run 1", 0, "baseline")
    type_into_cell(w, qtbot, "baseline", NOTE, "two epochs, batch 8")
    assert [r.name for r in w.state.runs] == ["baseline", "Run 2"] and w.state.runs[0].note == "two epochs, batch 8"
    assert chart.overlay_names()[0].startswith("baseline: ")
    assert w.isWindowModified()

    # the current run cannot be deleted: its Delete is disabled and says why
    select_cell(w, qtbot, "Run 2", 1)
    assert not view.restore_button.isEnabled()  # it is current already
    assert not view.delete_button.isEnabled()
    assert view.delete_button.toolTip() == ("Run 2 is the current model's run, so it cannot be deleted. Restore "
                                            "another run first, then delete this one.")
    select_cell(w, qtbot, "baseline", 1)
    assert view.delete_button.isEnabled() and "current model" not in view.delete_button.toolTip()
    assert len(w.state.runs) == 2

    # restoring the first run brings back its model, layers and settings; the viewer predicts with it
    set_epochs(w, qtbot, 7)
    select_cell(w, qtbot, "baseline", 1)
    qtbot.mouseClick(view.restore_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.model.run == first and not w.state.busy, timeout=60000)
    assert w.model_panel.epochs.value() == 2 and len(w.state.history) == 2
    assert "(current)" in table.item(0, 1).text()
    assert chart.point_count("loss") == 2
    qtbot.waitUntil(lambda: bars(w).keys() == by_first.keys() and all(
        abs(bars(w)[k] - by_first[k]) < 1e-5 for k in by_first), timeout=20000)
    assert "previous run (1 epoch" in w.training_panel.previous_button.toolTip()  # Run 2, one click away

    folder = tmp_path / "with-runs"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    assert sorted(p.name for p in (folder / "runs").iterdir()) == sorted(r.id for r in w.state.runs)

    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder), timeout=30000)
    view2 = w2.training_panel.runs_view
    assert view2.run_names() == ["baseline", "Run 2"]
    assert view2.table.item(0, NOTE).text() == "two epochs, batch 8" and "(current)" in view2.table.item(0, 1).text()
    assert w2.state.model.run == first
    # and the run that is not current can be restored from the reopened project
    w2.tabs.setCurrentIndex(w2.TAB_TRAIN)
    w2.training_panel.lower_tabs.setCurrentWidget(view2)
    select_cell(w2, qtbot, "Run 2", 1)
    qtbot.mouseClick(view2.restore_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w2.state.model.run == w.state.runs[1].id and not w2.state.busy, timeout=20000)
    assert w2.model_panel.epochs.value() == 1 and len(w2.state.history) == 1


def filled(run: Run) -> set[str]:
    """The fields of ``run`` that hold something."""
    return {f.name for f in dataclasses.fields(run) if getattr(run, f.name) not in (None, (), "", 0.0)}


@pytest.mark.slow
def test_the_cli_and_the_app_record_a_training_run_alike(window, qtbot, tmp_path, monkeypatch):
    """One training of the same folder on the command line and in the window: the two runs saved in their projects
    hold the same things, the trust measured after training included."""
    data = write_dataset(tmp_path / "tiny", per_class=8)
    code, _, err = cli(["train", data, "--project", tmp_path / "by-cli", "--epochs", 1, "--batch-size", 8])
    assert code == 0, err
    w = window
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    w.model_panel.batch_size.setValue(8)
    train_now(w, qtbot, epochs=1)
    qtbot.waitUntil(lambda: w.training_panel.runs_view.run_names() == ["Run 1"], timeout=20000)
    (tmp_path / "by-app").mkdir()
    save_as(w, qtbot, monkeypatch, tmp_path / "by-app")

    [by_cli] = open_project(tmp_path / "by-cli", load_model=False)[0].runs
    [by_app] = open_project(tmp_path / "by-app", load_model=False)[0].runs
    assert filled(by_cli) == filled(by_app) and "trust" in filled(by_app)
    assert {"batch_loss", "kept_message", "dataset_path", "file", "history", "best_epoch"} <= filled(by_app)
    assert by_cli.name == by_app.name == "Run 1" and by_cli.dataset_path == by_app.dataset_path == str(data)
    assert by_cli.class_names == by_app.class_names and by_cli.epochs == by_app.epochs == 1


def test_a_continued_run_is_a_run_and_an_older_run_comes_back_from_disk_then_deleting_asks(window, qtbot, tmp_path,
                                                                                           monkeypatch):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=8)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    view = w.training_panel.runs_view
    train_now(w, qtbot, epochs=1)
    first_model = w.engine.worker.model
    w.training_panel.continue_check.setChecked(True)  # Continue: a run of its own, continued from Run 1
    train_now(w, qtbot, epochs=1)
    w.training_panel.continue_check.setChecked(False)
    train_now(w, qtbot, epochs=1)
    assert view.run_names() == ["Run 1", "Run 2", "Run 3"]
    assert [r.epochs for r in w.state.runs] == [1, 2, 1]
    assert w.state.runs[1].parent == w.state.runs[0].id and "continued from Run 1" in view.table.item(1, 0).toolTip()
    qtbot.waitUntil(lambda: all(r.file for r in w.state.runs), timeout=20000)

    # Run 1 is neither the current model nor the previous: its weights come back from disk
    w.training_panel.lower_tabs.setCurrentWidget(view)
    select_cell(w, qtbot, "Run 1", 1)
    qtbot.mouseClick(view.restore_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.model.run == w.state.runs[0].id and not w.state.busy, timeout=60000)
    assert w.engine.worker.model is not first_model  # (that model object was trained on as Run 2)
    # the model it replaced (Run 3) is the one before now
    assert "previous run (1 epoch," in w.training_panel.previous_button.toolTip()

    select_cell(w, qtbot, "Run 3", 1)
    box = question_after(w, lambda: qtbot.mouseClick(view.delete_button, Qt.LeftButton), "deleteRunBox")
    assert box.text().startswith("Delete Run 3 (1 epoch)?") and box.defaultButton() is box.button(QMessageBox.Cancel)
    qtbot.mouseClick(box.button(QMessageBox.Cancel), Qt.LeftButton)
    assert view.run_names() == ["Run 1", "Run 2", "Run 3"]
    box = question_after(w, lambda: qtbot.mouseClick(view.delete_button, Qt.LeftButton), "deleteRunBox")
    qtbot.mouseClick(box.button(QMessageBox.Yes), Qt.LeftButton)
    assert view.run_names() == ["Run 1", "Run 2"]
    # the deleted run was the one before: Bring Back offers the latest run left instead (Run 2, from disk)
    assert "previous run (2 epochs" in w.training_panel.previous_button.toolTip()


def current_run_name(w) -> str:
    """The run the runs list marks as the current model's."""
    table = runs_table(w)
    marked = [table.item(r, 0).text() for r in range(table.rowCount()) if "(current)" in table.item(r, 1).text()]
    assert len(marked) == 1, marked
    return marked[0]


def test_bring_back_restores_the_run_before_and_the_list_viewer_and_chart_agree_through_a_reopen(
        window, qtbot, tmp_path, make_window, monkeypatch):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=8)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    panel = w.training_panel
    train_now(w, qtbot, epochs=2)
    train_now(w, qtbot, epochs=1)
    assert current_run_name(w) == "Run 2"
    assert "previous run (2 epochs," in panel.previous_button.toolTip()

    qtbot.mouseClick(panel.previous_button, Qt.LeftButton)  # Bring Back: Run 1
    qtbot.waitUntil(lambda: not w.state.busy and current_run_name(w) == "Run 1", timeout=30000)
    assert w.viewer_panel.model_label.text().startswith("Model: Run 1 ·")  # the viewer names the run the list marks
    assert panel.chart.point_count("loss") == 2 and w.model_panel.epochs.value() == 2
    assert "previous run (1 epoch," in panel.previous_button.toolTip()  # Run 2, back in one click

    # a run trained from Run 1 replaces Run 1: Bring Back makes Run 1 current again, not Run 2
    train_now(w, qtbot, epochs=3)
    assert current_run_name(w) == "Run 3"
    assert "previous run (2 epochs," in panel.previous_button.toolTip()
    assert w.statusBar().currentMessage().startswith("The model of the previous run (2 epochs")
    w.previous_action.trigger()
    qtbot.waitUntil(lambda: not w.state.busy and current_run_name(w) == "Run 1", timeout=30000)
    assert w.viewer_panel.model_label.text().startswith("Model: Run 1 ·")
    assert panel.chart.point_count("loss") == 2
    assert "previous run (3 epochs," in panel.previous_button.toolTip()

    folder = tmp_path / "brought-back"
    save_as(w, qtbot, monkeypatch, folder)
    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder) and not w2.state.busy, timeout=30000)
    assert w2.training_panel.runs_view.run_names() == ["Run 1", "Run 2", "Run 3"] and current_run_name(w2) == "Run 1"
    assert w2.training_panel.chart.point_count("loss") == 2 and w2.model_panel.epochs.value() == 2
    assert "previous run (3 epochs," in w2.training_panel.previous_button.toolTip()  # the latest other run
    w2.previous_action.trigger()
    qtbot.waitUntil(lambda: not w2.state.busy and current_run_name(w2) == "Run 3", timeout=30000)
    assert w2.viewer_panel.model_label.text().startswith("Model: Run 3 ·")
    assert w2.training_panel.chart.point_count("loss") == 3
    assert "previous run (2 epochs" in w2.training_panel.previous_button.toolTip()


def test_a_run_that_ends_while_a_name_is_being_typed_neither_closes_the_editor_nor_renames_another_run(qtbot):
    from conftest import shown
    from cnndesk.ui.runs_view import RunsView

    view = shown(qtbot, RunsView(), 900, 300)
    renamed = []
    view.rename_requested.connect(lambda run_id, name: renamed.append((run_id, name)))
    view.set_runs([Run("a", "Run 1"), Run("b", "Run 2")], "b")
    r = view.row_of("Run 1")
    qtbot.mouseClick(view.table.viewport(), Qt.LeftButton, pos=view.table.visualItemRect(view.table.item(r, 0)).center())
    qtbot.keyClick(view.table, Qt.Key_F2)
    [editor] = [e for e in view.table.viewport().findChildren(QLineEdit) if e.isVisible()]
    view.set_runs([Run("c", "Run 0"), Run("a", "Run 1"), Run("b", "Run 2")], "b")  # a training ended meanwhile
    assert editor.isVisible()
    editor.selectAll()
    qtbot.keyClicks(editor, "baseline")
    qtbot.keyClick(editor, Qt.Key_Return)
    qtbot.waitUntil(lambda: view.run_names() == ["Run 0", "Run 1", "Run 2"], timeout=5000)  # shown once it closed
    assert renamed == [("a", "baseline")]


def _group_of_runs(folder: str) -> list:
    """A single run and a Train ×3 that kept an ensemble, as the runs list gets them, on ``folder``."""
    import time

    from cnndesk.core.intervals import Spread

    def row(epoch, acc):
        return {"epoch": epoch, "loss": 1.0532, "accuracy": 0.8, "val_loss": 0.6331, "val_accuracy": acc,
                "val_images": 39}

    spread = Spread((0.513, 0.949, 0.897), 39).to_json()
    names = ("brick", "grass", "gravel")
    runs = [Run("a", "Run 1", time.time(), names, dataset_path=folder, history=(row(1, 0.5), row(2, 0.949)))]
    runs += [Run(i, f"Run {n}", time.time(), names, dataset_path=folder, history=(row(1, acc),), group="b",
                 spread=spread) for n, (i, acc) in enumerate((("b", 0.513), ("c", 0.949), ("d", 0.897)), 2)]
    runs.append(Run("e", "Run 5", time.time(), names, dataset_path=folder, history=(row(1, 0.923),), group="b",
                    spread=spread, members=("b", "c", "d")))
    return runs


@pytest.mark.parametrize("width,whole", [(1240, False), (1560, True)])  # in a window 1280 and 1600 pixels wide
def test_every_column_of_the_runs_list_is_in_sight_at_1280_to_1600_pixels_with_its_intervals_short(qtbot, width,
                                                                                                     whole):
    from conftest import shown
    from cnndesk.ui.runs_view import GROUP, RunsView

    view = shown(qtbot, RunsView(), width, 300)
    folder = "/data/textures-photographed-in-the-garden-and-on-the-street"
    view.set_runs(_group_of_runs(folder), "e")
    table = view.table
    header = table.horizontalHeader()
    for column in range(table.columnCount()):  # each in sight without scrolling sideways, its header readable
        left, wide = table.columnViewportPosition(column), table.columnWidth(column)
        said = table.horizontalHeaderItem(column).text()
        assert wide >= header.sectionSizeHint(column), said
        assert 0 <= left and left + wide <= table.viewport().width(), said
    group = table.columnViewportPosition(GROUP) + table.columnWidth(GROUP)
    assert group <= table.viewport().width() and table.horizontalScrollBar().maximum() == 0
    # the interval in short, the whole sentence on hover
    assert table.item(1, BEST_ACC).text() == "0.513 (0.36–0.66)"
    assert f"Best validation accuracy {with_interval(0.513, 39)}" in table.item(1, BEST_ACC).toolTip()
    assert table.item(0, FINAL).text() == "1.053 / 0.800 / 0.633 / 0.949 (0.83–0.99)"
    assert (f"validation loss 0.633, validation accuracy {with_interval(0.949, 39)}"
            in table.item(0, FINAL).toolTip())
    assert table.item(4, GROUP).text() == "ensemble of 3 · mean 0.79, 0.51–0.95"
    assert "lowest 0.513, highest 0.949" in table.item(4, GROUP).toolTip()
    # a long folder name is whole where there is room, else elided in the middle (it keeps its end, the class
    # count); the whole path is on hover
    cell = table.item(0, DATASET)
    assert (table.columnWidth(DATASET) > table.fontMetrics().horizontalAdvance(cell.text())) == whole
    assert folder in cell.toolTip()


def test_runs_of_two_datasets_say_which_and_a_restored_run_keeps_its_own_classes(window, qtbot, tmp_path):
    w = window
    two = write_dataset(tmp_path / "two", classes=("left", "top"), per_class=8)
    six = write_dataset(tmp_path / "six", classes=("left", "top", "centre", "a", "b", "c"), per_class=4)
    w.dataset_panel.image_size.setCurrentText("32")
    for folder in (two, six):
        drop_paths(w, [folder])
        qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == folder
                        and w.state.data.preprocessing.image_size == (32, 32), timeout=20000)
        w.tabs.setCurrentIndex(w.TAB_TRAIN)
        train_now(w, qtbot, epochs=1)
    view = w.training_panel.runs_view
    assert view.run_names() == ["Run 1", "Run 2"]
    table = view.table
    assert table.horizontalHeaderItem(DATASET).text() == "Dataset"
    cells = [table.item(r, DATASET) for r in range(2)]
    assert [c.text() for c in cells] == ["two · 2 classes", "six · 6 classes"]
    assert str(two) in cells[0].toolTip() and str(six) in cells[1].toolTip()
    qtbot.waitUntil(lambda: all(r.file for r in w.state.runs), timeout=20000)

    # Run 1 restored while the six-class folder is loaded: its own two classes, and the difference said
    restore_from_list(w, qtbot, "Run 1")
    qtbot.waitUntil(lambda: w.state.data is not None and not w.dataset_panel.progress.isVisible(),
                    timeout=20000)
    last = w.model_panel.table.rowCount() - 1
    assert "Dense(2 classes, softmax)" in layer_row_text(w, last)[0]
    note = w.model_panel.findChild(QLabel, "modelClassesNote")
    assert note.isVisibleTo(w.model_panel)
    assert "Run 1 was trained on 2 classes (left, top)" in note.text() and "has 6" in note.text()
    # training now is a new model, for the dataset loaded
    train_now(w, qtbot, epochs=1)
    assert "Dense(6 classes, softmax)" in layer_row_text(w, last)[0] and not note.isVisibleTo(w.model_panel)


def test_an_old_format_project_shows_its_one_run_in_the_app(window, qtbot, tmp_path):
    folder = shutil.copytree(FIXTURES / "project_v1_model", tmp_path / "old")
    window.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: window.state.project_path == str(folder), timeout=30000)
    view = window.training_panel.runs_view
    assert view.run_names() == ["Run 1"] and "(current)" in view.table.item(0, 1).text()
    # its epochs did not record their validation images: the plain figure, and the reason on hover
    assert view.table.item(0, BEST_ACC).text() == "0.500"
    assert "was not recorded with this run" in view.table.item(0, BEST_ACC).toolTip()
    assert view.table.item(0, FINAL).text() == "0.690 / 0.500 / 0.700 / 0.500"


# -- each run keeps its probe recording ----------------------------------------------------------------

def shows_frames(w, n: int) -> bool:
    """The probe view shows a recording of ``n`` epoch frames, from its last one."""
    view = w.probe_view
    return view.slider.isEnabled() and view.slider.maximum() == n - 1 and view.epoch_label.text() == f"Epoch {n} of {n}"


def restore_from_list(w, qtbot, name: str):
    view = w.training_panel.runs_view
    w.training_panel.lower_tabs.setCurrentWidget(view)
    select_cell(w, qtbot, name, 1)
    qtbot.mouseClick(view.restore_button, Qt.LeftButton)
    run_id = next(r.id for r in w.state.runs if r.name == name)
    qtbot.waitUntil(lambda: w.state.model.run == run_id and not w.state.busy, timeout=60000)


def test_each_run_keeps_its_probe_recording_through_restore_save_and_reopen(window, qtbot, tmp_path, make_window,
                                                                          monkeypatch):
    w = window
    data = write_dataset(tmp_path / "tiny", per_class=8)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    w.model_panel.batch_size.setValue(8)
    w.tabs.setCurrentIndex(w.TAB_TRAIN)
    drop_paths(w.probe_view, [data / "left" / "left_01.png"])  # the probe image

    train_now(w, qtbot, epochs=2)
    qtbot.waitUntil(lambda: shows_frames(w, 2), timeout=30000)
    train_now(w, qtbot, epochs=3)  # again, from scratch
    qtbot.waitUntil(lambda: shows_frames(w, 3), timeout=30000)
    assert w.training_panel.runs_view.run_names() == ["Run 1", "Run 2"]
    qtbot.waitUntil(lambda: all(r.probe_dir for r in w.state.runs), timeout=20000)  # kept on disk
    assert "a probe recording of 2 frames" in runs_table(w).item(0, 0).toolTip()

    restore_from_list(w, qtbot, "Run 1")
    qtbot.waitUntil(lambda: shows_frames(w, 2), timeout=30000)
    qtbot.mouseClick(w.training_panel.previous_button, Qt.LeftButton)  # Bring Back: Run 2 again
    qtbot.waitUntil(lambda: w.state.model.run == w.state.runs[1].id and shows_frames(w, 3), timeout=30000)

    folder = tmp_path / "with-recordings"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    assert all((folder / "runs" / r.id / "probes" / "recording.json").is_file() for r in w.state.runs)

    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder) and shows_frames(w2, 3), timeout=30000)
    w2.tabs.setCurrentIndex(w2.TAB_TRAIN)
    restore_from_list(w2, qtbot, "Run 1")  # from the project folder: neither current nor previous
    qtbot.waitUntil(lambda: shows_frames(w2, 2), timeout=30000)
    assert w2.probe_view.top_text(0)

    # a run trained without probes shows none, not the frames of the run before it
    view2 = w2.probe_view
    view2.probe_list.setCurrentRow(0)
    qtbot.mouseClick(view2.remove_button, Qt.LeftButton)
    assert w2.state.probe_images == []
    w2.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w2.state.data is not None and w2.state.data.root == data, timeout=20000)
    train_now(w2, qtbot, epochs=1)
    qtbot.waitUntil(lambda: "Run 3 has no probe recording" in view2.note.text(), timeout=30000)
    assert not view2.slider.isEnabled() and view2.epoch_label.text() == "No recording"
    assert not view2.images[0].isVisible()
    restore_from_list(w2, qtbot, "Run 1")
    qtbot.waitUntil(lambda: shows_frames(w2, 2), timeout=30000)
    restore_from_list(w2, qtbot, "Run 3")
    qtbot.waitUntil(lambda: "Run 3 has no probe recording" in view2.note.text(), timeout=30000)
    assert not view2.slider.isEnabled() and view2.epoch_label.text() == "No recording"


@pytest.mark.slow
def test_cli_runs_report_each_runs_probe_recording(tmp_path):
    data = write_dataset(tmp_path / "data", per_class=8)
    project = tmp_path / "proj"
    for epochs in (2, 3):
        code, _, err = cli(["train", data, "--project", project, "--epochs", epochs, "--image-size", 32,
                            "--batch-size", 8, "--preset", "tinyvgg", "--probe", data / "top" / "top_01.png"])
        assert code == 0, err
    code, out, _ = cli(["runs", project, "--json"])
    assert code == 0
    runs = [json.loads(line) for line in out.splitlines()]
    assert [(r["name"], r["probe_frames"]) for r in runs] == [("Run 1", 2), ("Run 2", 3)]
    code, out, _ = cli(["runs", project])
    header, first, second = out.splitlines()[:3]
    column = header.index("probe frames")
    assert first[column:].split()[0] == "2" and second[column:].split()[0] == "3"
    # each run's folder holds its own recording
    from cnndesk.core.training.probes import ProbeRecording

    for run in open_project(project, load_model=False)[0].runs:
        assert len(ProbeRecording.load(run.probe_dir).frames) == run.probe_frames


def test_at_1200x800_with_probes_the_train_tab_shows_three_runs_a_whole_legend_and_a_chart_that_stays(window, qtbot):
    from PySide6.QtCore import QPoint
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from conftest import rows_in_sight

    w = window
    w.resize(1200, 800)
    w.tabs.setCurrentIndex(w.TAB_TRAIN)
    panel = w.training_panel
    drop_paths(w.probe_view, [str(next(w.sample_dir.rglob("*.png")))])  # a probe: its frames want room
    qtbot.waitUntil(lambda: w.probe_view.frames_area.isVisible(), timeout=10000)
    history = tuple({"epoch": e, "loss": 1 / e, "accuracy": 0.5, "val_loss": 1.2 / e, "val_accuracy": 0.4}
                    for e in (1, 2, 3))
    w.state.runs = [Run(f"r{i}", f"Run {i}", history=history) for i in (1, 2, 3)]  # as a reopened project has them
    tabs = panel.lower_tabs
    qtbot.mouseClick(tabs.tabBar(), Qt.LeftButton, pos=tabs.tabBar().tabRect(tabs.indexOf(panel.runs_view)).center())
    for name in ("Run 1", "Run 2", "Run 3"):
        tick(w, qtbot, name)
    qtbot.waitUntil(lambda: len(panel.chart.overlay_names()) == 6, timeout=5000)
    QApplication.processEvents()
    assert rows_in_sight(runs_table(w)) >= 3
    # the legend names every line in full: the current run's and the overlaid runs'
    legend = panel.chart.legend_label
    assert legend.isVisible() and legend.height() >= legend.heightForWidth(legend.width())
    for name in ("Training loss", "Validation loss", "Training accuracy", "Validation accuracy", "Kept epoch",
                 *panel.chart.overlay_names()):
        assert name in legend.text()
    # dragging the splitter up as far as it goes leaves the chart its room
    handle = panel.split.handle(1)
    QTest.mousePress(handle, Qt.LeftButton, pos=handle.rect().center())
    QTest.mouseMove(handle, handle.rect().center() - QPoint(0, 2000))
    QTest.mouseRelease(handle, Qt.LeftButton, pos=handle.rect().center() - QPoint(0, 2000))
    assert panel.split.sizes()[0] > 0  # the handle moved, and the chart was not folded away
    assert panel.chart.height() >= panel.chart.minimumHeight() > 150

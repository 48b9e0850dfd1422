"""The session state (Qt-free) and the engine's typed jobs."""

from __future__ import annotations

import pytest

from cnndesk.core.model.architecture import LayerSpec, TrainingSettings
from cnndesk.core.data.dataset import DatasetConfig
from cnndesk.core.data.images import Preprocessing
import numpy as np

from cnndesk.core.project.session import Classified, IDLE, ModelInfo, SAVING, SessionState


def model(names=("a", "b"), **kw) -> ModelInfo:
    return ModelInfo(tuple(names), Preprocessing((32, 32), "rgb"), **kw)


def test_observers_hear_the_fields_they_asked_for_once_per_group_of_changes():
    state = SessionState()
    heard, everything = [], []
    state.observe(heard.append, "model", "history")
    state.observe(everything.append)
    state.activity = SAVING
    assert heard == [] and everything == [frozenset({"activity"})]
    with state.changes():
        state.model = model()
        state.history = [{"epoch": 1}]
        assert heard == []  # nothing is announced half-way
    assert heard == [frozenset({"model", "history", "modified"})]
    state.history = [{"epoch": 1}]  # the same value again is no change
    assert len(heard) == 1


def test_what_the_viewer_shows_is_relabeled_by_a_rename_and_dropped_by_another_model():
    state = SessionState()
    first = model(("cat", "dog", "fox"), run="r1")
    seen = Classified("a.png", "/x/a.png", first, top=(("dog", 0.7), ("cat", 0.2)),
                      probabilities=np.array([0.2, 0.7, 0.1]), true_class="dog")
    state.update(model=first, classified=(seen,))
    renamed = first.renamed(["Cat", "Dog", "Fox"])
    again = seen.relabeled(renamed)  # the same model with new names: the same numbers, the new names
    assert again.top == (("Dog", 0.7), ("Cat", 0.2)) and again.model == renamed
    assert again.path == seen.path and again.true_class == "dog" and again.probabilities is seen.probabilities
    # another model (another run, the same names) or a model from a file is not a rename: classify again
    assert seen.relabeled(model(("cat", "dog", "fox"), run="r2")) is None
    assert seen.relabeled(model(("Cat", "Dog", "Fox"), run="r2")) is None
    assert seen.relabeled(model(("cat", "dog", "fox"), source="file", label="m.keras", file="m.keras")) is None
    unreadable = Classified("b.png", "/x/b.png", first, error="not an image")
    assert unreadable.relabeled(renamed).error == "not an image"
    # a new piece of work shows nothing of the last
    state.reset()
    assert state.classified == ()


def test_edits_mark_the_session_modified_and_opening_does_not():
    state = SessionState()
    with state.not_an_edit():
        state.update(layers=[LayerSpec("Flatten")], settings=TrainingSettings(epochs=3), project_path="/p")
    assert not state.modified
    state.dataset_config = DatasetConfig(val_split=0.3)
    assert state.modified
    state.modified = False
    state.activity = SAVING  # what the app is doing is not part of the work
    assert not state.modified


def test_unknown_fields_are_refused():
    state = SessionState()
    with pytest.raises(AttributeError):
        state.has_modle = True
    with pytest.raises(AttributeError):
        state.observe(print, "modle")


def test_the_project_to_save_comes_from_the_state_with_the_models_own_preprocessing():
    state = SessionState()
    state.update(dataset_path="/data", dataset_config=DatasetConfig(preprocessing=Preprocessing((48, 48), "rgb")),
                 model=model(("cat", "dog"), run="r1"), history=[{"epoch": 1, "loss": 0.5}], best_epoch=1)
    project = state.current_project()
    assert project.class_names == ["cat", "dog"] and project.run == "r1" and project.best_epoch == 1
    assert project.dataset.preprocessing.image_size == (32, 32)  # what the model was trained with
    assert project.dataset_path == "/data" and project.history == [{"epoch": 1, "loss": 0.5}]


def test_a_model_info_says_whose_names_the_user_may_edit():
    assert model(source="file").editable_names and not model().editable_names
    assert SessionState().activity == IDLE



def _a_state_at_work() -> SessionState:
    """A state whose every field of the work differs from a fresh state's (the fields of the session itself:
    ``SessionState.SESSION``, are left)."""
    state = SessionState()
    work = dict(project_path="/p/a", dataset_path="/data/a", data=object(), dataset_config=DatasetConfig(val_split=0.3),
                layers=[LayerSpec("Flatten")], preset="custom", settings=TrainingSettings(epochs=3, device="gpu:1"),
                model=model(), history=[{"epoch": 1}], best_epoch=1, batch_loss=[(0.5, 1.0)],
                viewed_images=["/data/a/x.png"], classified=(Classified("x.png", "/data/a/x.png", model()),),
                viewer_tab="evaluation", charted=model(), folder_result=object(), runs=["run"],
                probe_images=["/data/a/probe.png"], excluded=frozenset({"/data/a/y.png"}), color_sample=object(),
                modified=True)
    assert set(work) | SessionState.SESSION == set(SessionState.field_names()), "a field is missing from this test"
    state.update(**work)
    fresh = SessionState()
    assert [n for n in work if getattr(state, n) == getattr(fresh, n)] == []
    return state


def test_reset_puts_every_field_of_the_work_back_as_a_fresh_session_has_it():
    state = _a_state_at_work()
    state.update(activity=SAVING, engine_ready=True)
    heard = []
    state.observe(heard.append)
    state.reset()
    fresh = SessionState()
    for name in state.field_names():
        if name == "settings":  # where to train is a preference of this machine, not of the work
            assert state.settings == TrainingSettings(device="gpu:1")
        elif name not in SessionState.SESSION:
            assert getattr(state, name) == getattr(fresh, name), name
    assert state.activity == SAVING and state.engine_ready  # what the application is doing stays
    assert len(heard) == 1 and not state.modified  # told once; starting anew is not an edit


def test_load_takes_what_a_project_holds_and_nothing_from_the_work_before():
    from cnndesk.core.project.store import Project

    state = _a_state_at_work()
    project = Project(dataset_path="/data/b", class_names=["a", "b"], dataset=DatasetConfig(val_split=0.4),
                      preset="deeper", layers=[LayerSpec("Dense", {"units": 4})], settings=TrainingSettings(epochs=7),
                      history=[{"epoch": 1}, {"epoch": 2}], best_epoch=2, batch_loss=[[0.5, 2.0]],
                      viewer_images=["/data/b/v.png"], viewer_tab="gradcam", runs=["run b"],
                      excluded_files=["/data/b/e.png"])
    opened = model(source="project")
    state.activity = "opening"
    state.load("/p/b", project, opened)
    assert (state.project_path, state.dataset_path, state.model) == ("/p/b", "/data/b", opened)
    assert (state.dataset_config, state.preset, state.layers, state.settings) == (
        project.dataset, "deeper", project.layers, project.settings)
    assert (state.history, state.best_epoch, state.batch_loss) == (project.history, 2, [(0.5, 2.0)])
    assert (state.viewed_images, state.viewer_tab, state.runs, state.excluded) == (
        ["/data/b/v.png"], "gradcam", ["run b"], frozenset({"/data/b/e.png"}))
    # what the project does not hold starts empty: nothing of project A's work is left for B
    assert state.data is None and state.probe_images == []
    assert state.activity == IDLE and not state.modified

# -- the engine: typed jobs, cancel with the job ------------------------------------------

def test_jobs_are_worker_methods_and_answers_come_back_in_order(qtbot):
    from cnndesk.ui.engine import Engine
    from cnndesk.ui.engine_worker import EngineWorker

    class Worker(EngineWorker):
        def echo(self, value, *, times=1):
            return value * times

    engine = Engine()
    engine.worker_thread.start()
    try:
        answers = []
        engine.submit(Worker.echo, "a", times=2, on_done=answers.append)
        engine.submit(Worker.echo, "b", on_done=answers.append)
        qtbot.waitUntil(lambda: len(answers) == 2, timeout=10000)
        assert answers == ["aa", "b"]
        errors = []
        engine.submit(Worker.echo, on_error=errors.append)  # a missing argument: a message, not a dead thread
        qtbot.waitUntil(lambda: bool(errors), timeout=10000)
        assert errors[0].startswith("Unexpected error: TypeError")
        assert engine.pending() == 0
    finally:
        assert engine.shutdown() is True
    assert engine.submit(Worker.echo, "late") is None  # after shutdown nothing runs


def test_a_partial_answer_comes_before_the_whole_and_not_once_a_newer_job_is_asked(qtbot):
    import threading

    from cnndesk.ui.engine import Engine
    from cnndesk.ui.engine_worker import EngineWorker

    release = threading.Event()

    class Worker(EngineWorker):
        def two_parts(self, name):
            self.send_partial(f"{name} first")
            release.wait(10)  # the rest takes a while: the first part is already with the GUI
            return f"{name} whole"

    engine = Engine()
    engine.worker_thread.start()
    try:
        got = []
        engine.submit(Worker.two_parts, "a", on_partial=got.append, on_done=got.append)
        qtbot.waitUntil(lambda: got == ["a first"], timeout=10000)
        release.set()
        qtbot.waitUntil(lambda: len(got) == 2, timeout=10000)
        assert got == ["a first", "a whole"]

        # a job without on_partial just answers; a stale latest_only job's first part is dropped like its whole
        release.clear()
        got.clear()
        engine.submit(Worker.two_parts, "b", on_done=got.append)
        stale = engine.submit(Worker.two_parts, "c", latest_only=True, on_partial=got.append, on_done=got.append)
        engine.submit(Worker.two_parts, "d", latest_only=True, on_partial=got.append, on_done=got.append)
        release.set()
        qtbot.waitUntil(lambda: engine.pending() == 0, timeout=10000)
        assert got == ["b whole", "d first", "d whole"] and stale is not None
    finally:
        release.set()
        engine.shutdown()


def test_cancel_reaches_only_the_job_it_was_asked_of(qtbot):
    import threading

    from cnndesk.ui.engine import Engine
    from cnndesk.ui.engine_worker import EngineWorker, cancellable

    started = threading.Event()

    class Worker(EngineWorker):
        @cancellable
        def wait_for_cancel(self, *, task):
            started.set()
            while not task.is_interruption_requested():
                threading.Event().wait(0.01)
            return "stopped"

        def plain(self):
            return "ran"

    engine = Engine()
    engine.worker_thread.start()
    try:
        answers = []
        first = engine.submit(Worker.wait_for_cancel, on_done=answers.append)
        second = engine.submit(Worker.plain, on_done=answers.append)
        assert started.wait(10)
        engine.cancel(first)
        qtbot.waitUntil(lambda: len(answers) == 2, timeout=10000)
        assert answers == ["stopped", "ran"]
        assert not second.task.is_interruption_requested()
    finally:
        engine.shutdown()


def test_what_a_job_reports_through_its_task_reaches_that_jobs_callbacks_only(qtbot):
    import threading

    from cnndesk.ui.engine import Engine
    from cnndesk.ui.engine_worker import EngineWorker, cancellable

    release = threading.Event()

    class Worker(EngineWorker):
        @cancellable
        def count(self, name, *, task):
            task.set_status(f"{name} counting")
            for i in range(1, 4):
                task.report((name, i))
            task.set_progress_value(100.0)
            release.wait(10)
            return f"{name} done"

    engine = Engine()
    engine.worker_thread.start()
    try:
        heard = {"a": [], "b": []}
        for name in heard:
            engine.submit(Worker.count, name, on_done=heard[name].append, on_report=heard[name].append,
                          on_status=heard[name].append, on_progress=heard[name].append)
        qtbot.waitUntil(lambda: len(heard["a"]) == 5, timeout=10000)
        assert heard["a"] == ["a counting", ("a", 1), ("a", 2), ("a", 3), 100.0]  # in order, on the GUI thread
        release.set()
        qtbot.waitUntil(lambda: engine.pending() == 0, timeout=10000)
        assert heard["a"][-1] == "a done" and heard["b"] == ["b counting", ("b", 1), ("b", 2), ("b", 3), 100.0,
                                                              "b done"]
        # a job whose answer is no longer wanted (a newer one of its kind came) reports to no one either
        release.clear()
        stale, fresh = [], []
        engine.submit(Worker.count, "c", latest_only=True, on_report=stale.append, on_done=stale.append)
        engine.submit(Worker.count, "d", latest_only=True, on_report=fresh.append, on_done=fresh.append)
        release.set()
        qtbot.waitUntil(lambda: engine.pending() == 0, timeout=10000)
        assert stale == [] and fresh == [("d", 1), ("d", 2), ("d", 3), "d done"]
    finally:
        release.set()
        engine.shutdown()


def test_a_dataset_read_again_or_in_grayscale_is_a_change_found_without_comparing_pixels():
    """Datasets compare by identity: comparing their pixels made an array the size of the image cache."""
    import dataclasses
    import tracemalloc
    from pathlib import Path

    import numpy as np

    from cnndesk.core.data.dataset import LoadedDataset

    n = 400
    labels = np.arange(n, dtype=np.int32) % 2
    first = LoadedDataset(Path("/data"), ["a", "b"], Preprocessing((64, 64)), np.zeros((n, 64, 64, 3), np.uint8),
                          labels, [f"/data/{i}.png" for i in range(n)], [], np.arange(n), np.zeros(0, np.int64))
    again = dataclasses.replace(first, images=first.images.copy())  # the same folder read again: the same pixels
    gray = dataclasses.replace(first, preprocessing=Preprocessing((64, 64), "grayscale"),
                               images=np.zeros((n, 64, 64, 1), np.uint8))
    state = SessionState(data=first)
    heard = []
    state.observe(heard.append, "data")
    tracemalloc.start()
    try:
        state.data = again
        state.data = gray
        state.data = gray  # the same dataset again is no change
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert heard == [frozenset({"data"})] * 2
    assert state.data is gray
    assert peak < 256 * 1024, f"setting the dataset took {peak / 2**20:.1f} MB"

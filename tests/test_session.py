"""The session state (Qt-free) and the engine's typed jobs."""

from __future__ import annotations

import pytest

from cnndesk.core.architecture import LayerSpec, TrainingSettings
from cnndesk.core.dataset import DatasetConfig
from cnndesk.core.images import Preprocessing
from cnndesk.core.session import IDLE, SAVING, ModelInfo, RunRecord, SessionState


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


def test_a_run_record_describes_itself_by_its_kept_epoch():
    run = RunRecord(model(), ({"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75}), best_epoch=2)
    assert run.describe() == "the model of the previous run (2 epochs, validation accuracy 0.750)"
    opened = RunRecord(model(source="file", file="resnet50.keras"))  # no run of this project, no epochs
    assert opened.describe() == "the model opened from resnet50.keras"
    assert SessionState(model=None).current_run() is None
    assert model(source="file").editable_names and not model().editable_names
    assert SessionState().activity == IDLE


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

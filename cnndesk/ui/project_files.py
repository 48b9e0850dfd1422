"""New, Open, Save and Save As for projects.

``ProjectFiles`` asks the questions (unsaved changes, a non-empty folder),
sends the work to the engine (which holds the model) and writes what came
back into the ``SessionState``. Nothing here waits: saving is a job whose
answer continues the flow (``then``), so menus, drops and shortcuts never run
inside a half-finished save, and closing during a save waits for it with the
status bar saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from ..core.project.store import is_project, Project
from ..core.training.runs import saved_in
from ..core.project.session import IDLE, OPENING, ProjectOpened, SAVING, SessionState
from . import file_dialogs
from .engine import Engine
from .engine_worker import EngineWorker
from .recent import RecentProjects


Then = Callable[[bool], None]


class ProjectFiles(QObject):
    """The binding of the File menu's project actions and of File → Open Recent (``recent``).

    Args:
        read_dataset: reads a dataset folder (an opened project's).
        start_fresh: reads the dataset that new work starts with (the built-in sample).

    Signals:
        status(str, int): a message for the status bar and how long to show it (ms; 0 = until replaced).
        error(str, str): a title and message for an error box.
    """

    status = Signal(str, int)
    error = Signal(str, str)

    def __init__(self, state: SessionState, engine: Engine, settings: QSettings, recent: RecentProjects,
                 read_dataset: Callable[[str], None], start_fresh: Callable[[], None], dialog_parent: QWidget):
        super().__init__(dialog_parent)
        self.state, self.engine, self.settings = state, engine, settings
        self.recent = recent
        self._read_dataset, self._start_fresh, self._parent = read_dataset, start_fresh, dialog_parent
        recent.open_requested.connect(self.open)

    # -- new ----------------------------------------------------------------------
    def new_project(self) -> None:
        self.confirm_discard(lambda go: go and self._clear())

    def _clear(self) -> None:
        state = self.state
        self.engine.submit(EngineWorker.clear_model)
        state.reset()
        self._start_fresh()
        state.modified = False

    # -- open -----------------------------------------------------------------------
    def open_dialog(self) -> None:
        def pick(go: bool) -> None:
            if not go:
                return
            start = self.settings.value("folders/project", str(Path.home()))
            folder = QFileDialog.getExistingDirectory(self._parent, "Open a cnndesk project folder", start)
            if folder:
                self.open(folder, confirm=False)

        self.confirm_discard(pick)

    def open(self, folder: str, confirm: bool = True) -> None:
        """Open the project in ``folder`` (asking first about unsaved changes when ``confirm``)."""
        if confirm:
            self.confirm_discard(lambda go: go and self.open(folder, confirm=False))
            return
        if self.state.busy:
            self.status.emit("Wait until the current work ends before opening a project.", 6000)
            return
        self.state.activity = OPENING
        self.status.emit(f"Opening {folder}…", 0)
        self.engine.submit(EngineWorker.open_project, folder,
                           on_done=lambda r: self._on_opened(folder, r), on_error=self._on_open_failed)

    def _on_open_failed(self, message: str) -> None:
        self.state.activity = IDLE
        self.error.emit("Could not open the project", message)

    def _on_opened(self, folder: str, answer: ProjectOpened) -> None:
        project: Project = answer.project
        state = self.state
        # the dataset read before is not this project's: nothing trains or evaluates on it until its own is read
        state.load(folder, project, answer.model)
        if project.dataset_path and Path(project.dataset_path).is_dir():
            self._read_dataset(project.dataset_path)
        self.recent.add(state.project_path)
        state.modified = False
        if project.dataset_path and not Path(project.dataset_path).is_dir():
            self.status.emit(f"The project's dataset folder {project.dataset_path} is missing; "
                             "choose it again to train or evaluate.", 10000)
        else:
            self.status.emit(f"Opened {folder}", 4000)

    # -- save -----------------------------------------------------------------------
    def save(self, then: Then | None = None) -> None:
        if not self.state.project_path:
            self.save_as(then)
        else:
            self.save_to(self.state.project_path, then)

    def save_as(self, then: Then | None = None) -> None:
        start = self.settings.value("folders/project", str(Path.home()))
        folder = file_dialogs.ask_folder_for_writing(self._parent, "Save the project in a folder (a new name makes "
                                                     "a new folder)", start)
        if not folder:
            _call(then, False)
            return
        p = Path(folder)
        if p.is_dir() and any(p.iterdir()) and not is_project(p):
            answer = QMessageBox.question(self._parent, "Folder not empty",
                                          f"{p} already holds other files. Save the project into it anyway?")
            if answer != QMessageBox.Yes:
                _call(then, False)
                return
        self.save_to(folder, then)

    def save_to(self, folder: str, then: Then | None = None) -> None:
        """Save through the engine (the model lives there); ``then(ok)`` runs when it is written or failed."""
        state = self.state
        if state.busy:
            self.status.emit("Wait until the current work ends before saving.", 6000)
            _call(then, False)
            return
        edits = state.edits
        job = self.engine.submit(EngineWorker.save_project, folder, state.current_project(),
                                 on_done=lambda _: self._on_saved(folder, edits, then),
                                 on_error=lambda m: self._on_save_failed(m, then))
        if job is None:  # the engine has shut down
            _call(then, False)
            return
        state.activity = SAVING
        self.status.emit("Saving…", 0)

    def _on_saved(self, folder: str, edits: int, then: Then | None) -> None:
        state = self.state
        # an edit made while the project was being written is not in it: it stays unsaved
        state.update(project_path=str(Path(folder)), activity=IDLE, modified=state.edits != edits)
        with state.not_an_edit():  # the runs' weights are read from the project from now on
            state.runs = saved_in(state.runs, folder)
        self.recent.add(state.project_path)
        self.settings.setValue("folders/project", str(Path(folder).parent))
        self.status.emit(f"Saved {folder}", 4000)
        _call(then, True)

    def _on_save_failed(self, message: str, then: Then | None) -> None:
        self.state.activity = IDLE
        self.error.emit("Could not save the project", message)
        _call(then, False)

    # -- unsaved work ------------------------------------------------------------------
    def confirm_discard(self, then: Then) -> None:
        """Ask before unsaved work is lost, then ``then(go_on)``: after saving, discarding, or never (cancel)."""
        state = self.state
        if not state.modified or not state.has_model:
            then(True)
            return
        answer = QMessageBox.question(
            self._parent, "Unsaved changes", "The current project has unsaved changes. Save them first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            self.save(then)
        elif answer == QMessageBox.Discard:
            state.modified = False  # the user gave it up: nothing is left to ask about
            then(True)
        else:
            then(False)


def _call(then: Then | None, ok: bool) -> None:
    if then is not None:
        then(ok)

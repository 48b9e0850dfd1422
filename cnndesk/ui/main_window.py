"""The main window: Dataset → Model → Train → Viewer, menus, projects, settings."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import QEventLoop, QSettings, QStandardPaths, QTimer, qVersion
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QMainWindow, QMessageBox, QTabWidget

from .. import __version__
from ..core.architecture import LayerSpec, TrainingSettings, layer_table, total_params

from ..core.dataset import DatasetConfig
from ..core.export import FORMATS, SUFFIX
from ..core.errors import ArchitectureError, ProjectError
from ..core.project import Project, check_destination, estimate_model_bytes, is_project, new_run_id
from .dataset_panel import DatasetPanel
from .engine import Engine
from .model_panel import ModelPanel
from .resources import app_icon
from .training_panel import TrainingPanel
from .viewer_panel import ViewerPanel

MAX_RECENT = 8
EXPORT_LABELS = {"keras": "Keras model (.keras)…", "saved_model": "TensorFlow SavedModel (folder)…",
                 "litert": "LiteRT / TensorFlow Lite (.tflite)…", "onnx": "ONNX (.onnx)…"}


def default_data_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.GenericDataLocation)
    return Path(base) / "cnndesk" if base else Path.home() / ".cnndesk"


class MainWindow(QMainWindow):
    """The cnndesk window.

    Args:
        settings: where to remember geometry, folders and options. Defaults to
            the user's QSettings for cnndesk.
        sample_dir: where the built-in sample dataset lives (written on first use).
        start_engine: start the TensorFlow engine thread at once.
    """

    TAB_DATASET, TAB_MODEL, TAB_TRAIN, TAB_VIEWER = range(4)

    def __init__(self, settings: QSettings | None = None, sample_dir: str | Path | None = None,
                 start_engine: bool = True):
        super().__init__()
        self.settings = settings or QSettings()
        self.sample_dir = Path(sample_dir) if sample_dir else default_data_dir() / "sample-shapes"
        self.project_path: str | None = None
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.has_model = False
        self.modified = False
        self._closing = False
        self._bringing_back = False  # a Bring Back job is on its way to the engine
        self._model_classes: list[str] = []
        self._model_preprocessing = None  # how the engine's model prepares images
        self.run_id: str | None = None  # the training run the current model came from
        self._model_spec = None  # (layers, preset, settings) the current model was trained with, if known
        self._previous: dict | None = None  # the run before it, which the engine keeps: see bring_back_previous
        self._replaced: dict | None = None  # the run a training now running would make the previous one

        self.setWindowTitle("cnndesk")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1200, 800)

        self.engine = Engine(self)
        self.tabs = QTabWidget(objectName="mainTabs")
        self.dataset_panel = DatasetPanel()
        self.model_panel = ModelPanel()
        self.training_panel = TrainingPanel()
        self.viewer_panel = ViewerPanel(self.engine)
        self.tabs.addTab(self.dataset_panel, "1  Dataset")
        self.tabs.addTab(self.model_panel, "2  Model")
        self.tabs.addTab(self.training_panel, "3  Train")
        self.tabs.addTab(self.viewer_panel, "4  Viewer")
        self.setCentralWidget(self.tabs)

        self.engine_label = QLabel("Loading TensorFlow…", objectName="engineStatus")
        self.statusBar().addPermanentWidget(self.engine_label)

        self._make_actions()
        self._connect()
        self._restore_settings()
        self._update_title()
        self._update_actions()
        self.modified = False  # restoring settings is not an edit
        self._update_title()
        if start_engine:
            self.engine.start()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # -- actions and menus ---------------------------------------------------
    def _action(self, text: str, slot, shortcut=None, tip: str | None = None, name: str | None = None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
        if name:
            act.setObjectName(name)
        act.triggered.connect(slot)
        return act

    def _make_actions(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.new_action = self._action("&New Project", self.new_project, QKeySequence.New, name="newProject")
        self.open_action = self._action("&Open Project…", self.open_project_dialog, QKeySequence.Open, name="openProject")
        self.save_action = self._action("&Save Project", self.save_project, QKeySequence.Save, name="saveProject")
        self.save_as_action = self._action("Save Project &As…", self.save_project_as, QKeySequence.SaveAs,
                                           name="saveProjectAs")
        self.choose_dataset_action = self._action("Choose &Dataset Folder…", self.dataset_panel.choose_folder,
                                                  "Ctrl+Shift+O")
        self.open_model_action = self._action("Open &Model (.keras)…", self.open_model_dialog, "Ctrl+Shift+M",
                                              name="openModel")
        self.open_image_action = self._action("Open &Image…", self.viewer_panel.open_images_dialog, "Ctrl+I",
                                              name="openImage")
        for a in (self.new_action, self.open_action):
            f.addAction(a)
        self.recent_menu = f.addMenu("Open &Recent")
        f.addSeparator()
        f.addAction(self.save_action)
        f.addAction(self.save_as_action)
        f.addSeparator()
        f.addAction(self.choose_dataset_action)
        f.addAction(self.open_model_action)
        f.addAction(self.open_image_action)
        self.export_menu = f.addMenu("&Export Model")
        self.export_actions = {}
        for fmt in FORMATS:
            act = self._action(EXPORT_LABELS[fmt], lambda _=False, fm=fmt: self.export_dialog(fm), name=f"export_{fmt}")
            self.export_menu.addAction(act)
            self.export_actions[fmt] = act
        f.addSeparator()
        f.addAction(self._action("&Quit", self.close, QKeySequence.Quit))

        e = mb.addMenu("&Edit")
        self.paste_action = self._action("&Paste Image", self.viewer_panel.paste_image, QKeySequence.Paste,
                                         name="pasteImage")
        e.addAction(self.paste_action)
        e.addSeparator()
        self.layer_actions = [
            self._action("Add &Conv2D Layer", lambda: self._add_layer("Conv2D")),
            self._action("Add &Dense Layer", lambda: self._add_layer("Dense")),
            self._action("&Remove Selected Layer", self.model_panel.remove_selected, "Ctrl+Delete"),
        ]
        for act in self.layer_actions:
            e.addAction(act)
        e.addSeparator()
        e.addAction(self._action("Reset Window &Layout", self._reset_layout))

        v = mb.addMenu("&View")
        for i, title in enumerate(["&Dataset", "&Model", "&Train", "&Viewer"]):
            v.addAction(self._action(title, lambda _=False, i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}"))
        v.addSeparator()
        v.addAction(self._action("&Full Screen", self._toggle_full_screen, QKeySequence.FullScreen))

        t = mb.addMenu("&Training")
        self.train_action = self._action("&Train", lambda: self.start_training(self.training_panel.continue_check.isChecked()),
                                         "F5", name="trainAction")
        self.stop_action = self._action("&Stop", self.stop_training, "Esc", name="stopAction")
        self.evaluate_action = self._action("&Evaluate on Validation Set", self.viewer_panel.evaluate, "F6",
                                            name="evaluateAction")
        self.previous_action = self._action("Bring Back &Previous Model", self.bring_back_previous,
                                            tip="Make the model of the previous training run current again",
                                            name="previousRunAction")
        t.addAction(self.train_action)
        t.addAction(self.stop_action)
        t.addAction(self.evaluate_action)
        t.addSeparator()
        t.addAction(self.previous_action)

        h = mb.addMenu("&Help")
        h.addAction(self._action("&Keyboard Shortcuts", self.show_shortcuts, QKeySequence.HelpContents))
        h.addAction(self._action("&About cnndesk", self.show_about, name="aboutAction"))

    def _add_layer(self, kind: str) -> None:
        self.tabs.setCurrentIndex(self.TAB_MODEL)
        self.model_panel.add_layer(kind)

    def _toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def _reset_layout(self) -> None:
        self.resize(1200, 800)
        self.tabs.setCurrentIndex(0)

    # -- wiring --------------------------------------------------------------
    def _connect(self) -> None:
        self.engine.ready.connect(self._on_engine_ready)
        self.engine.failed.connect(lambda name, msg: self.show_error(f"{name.replace('_', ' ').capitalize()} failed",
                                                                     msg))
        self.engine.warned.connect(lambda text: self.statusBar().showMessage(text[:200], 8000))
        self.engine.batch.connect(self.training_panel.on_batch)
        self.engine.epoch.connect(self._on_epoch)
        self.engine.message.connect(self.training_panel.add_note)
        self.dataset_panel.dataset_changed.connect(self._on_dataset)
        self.dataset_panel.config_changed.connect(self._mark_modified)
        self.dataset_panel.sample_button.clicked.connect(self.use_sample)
        self.model_panel.changed.connect(self._mark_modified)
        self.model_panel.validity_changed.connect(lambda *_: self._update_actions())
        self.training_panel.train_requested.connect(self.start_training)
        self.training_panel.stop_requested.connect(self.stop_training)
        self.training_panel.previous_requested.connect(self.bring_back_previous)
        self.viewer_panel.status.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.viewer_panel.class_names_changed.connect(self._on_classes_renamed)
        self.viewer_panel.paths_dropped.connect(self.handle_dropped_paths)

    def _on_classes_renamed(self) -> None:
        self._model_classes = list(self.viewer_panel.class_names)
        self._mark_modified()

    def _on_engine_ready(self, info: dict) -> None:
        devices = info.get("devices", [])
        gpu = sum(1 for d, _ in devices if d.startswith("gpu"))
        self.engine_label.setText(f"TensorFlow {info.get('tensorflow')} · {'%d GPU(s)' % gpu if gpu else 'CPU'}")
        self.model_panel.set_devices(devices)
        saved = self.settings.value("model/device", "cpu")
        i = self.model_panel.device.findData(saved)
        if i >= 0:
            self.model_panel.device.setCurrentIndex(i)
        self.statusBar().showMessage("Ready", 3000)
        self._update_actions()

    def _on_dataset(self, data) -> None:
        if data is not None:
            self.model_panel.set_input(data.preprocessing.input_shape, data.num_classes)
            self.viewer_panel.set_dataset(data)
        self._update_actions()

    def _update_actions(self) -> None:
        ready = self.engine.is_ready
        training = self.training_panel.running
        data = self.dataset_panel.data
        if not ready:
            ok, reason = False, "Loading TensorFlow…"
        elif data is None:
            ok, reason = False, "Choose a dataset folder first (Dataset tab)."
        elif not self.model_panel.is_valid():
            ok, reason = False, f"The model cannot be built: {self.model_panel.error}"
        elif self._bringing_back:
            ok, reason = False, "Bringing back the previous model…"
        else:
            ok, reason = True, ""
        self.training_panel.set_can_train(ok, reason)
        self.training_panel.set_has_model(self.has_model and not training)
        self.train_action.setEnabled(ok and not training)
        self.stop_action.setEnabled(training)
        for act in self.export_actions.values():
            act.setEnabled(ready and self.has_model and not training)
        self.open_model_action.setEnabled(ready and not training)
        self.open_action.setEnabled(not training)
        self.new_action.setEnabled(not training)
        self.save_action.setEnabled(ready and not training)  # the model is saved by the (busy) engine
        self.save_as_action.setEnabled(ready and not training)
        self.evaluate_action.setEnabled(ready and self.has_model and data is not None and not training)
        self.previous_action.setEnabled(ready and self._previous is not None and not training)
        self.training_panel.set_previous(self._describe_run(self._previous) if self._previous else None,
                                         enabled=ready and not training)
        self.viewer_panel.set_enabled_state(ready and self.has_model, training)
        self.dataset_panel.set_busy(training)
        self.model_panel.setEnabled(not training)
        self.choose_dataset_action.setEnabled(not training)
        self.recent_menu.setEnabled(not training and bool(self._recent()))
        for act in self.layer_actions:
            act.setEnabled(not training)

    # -- training ------------------------------------------------------------
    def start_training(self, continuing: bool = False) -> None:
        if self.training_panel.running or not self.train_action.isEnabled():
            return
        data = self.dataset_panel.data
        settings = self.model_panel.settings()
        config = self.dataset_panel.config()
        if continuing and self._model_classes != data.class_names:
            self.show_error("Cannot continue", "The current model was trained on other classes; train a new model.")
            return
        if continuing and self._model_preprocessing != data.preprocessing:
            self.show_error("Cannot continue", "The current model takes other images "
                            f"({self._describe(self._model_preprocessing)}) than the dataset panel now prepares "
                            f"({self._describe(data.preprocessing)}); set them back or train a new model.")
            return
        if self.project_path and not self._destination_ok(data):
            return
        initial = len(self.history) if continuing else 0
        if not continuing:
            # the engine keeps the current model when the new one arrives: remember what goes with it
            self._replaced = self._run_state() if self.has_model else None
            self._training_run = new_run_id()
            self.history = []
            self.best_epoch = None
        else:
            self._replaced = None
            self._training_run = self.run_id or new_run_id()
        self.training_panel.training_started(settings.epochs, continuing, initial)
        self.tabs.setCurrentIndex(self.TAB_TRAIN)
        self.engine.submit("train", self._on_trained, self._on_train_failed, data=data,
                           layers=list(self.model_panel.layers), settings=settings, augment=config.augment,
                           class_weights=config.class_weights, continue_training=continuing, initial_epoch=initial)
        self._training_classes = list(data.class_names)
        self._training_spec = (list(self.model_panel.layers), self.model_panel.preset_name, settings)
        self._training_preprocessing = data.preprocessing
        self._update_actions()

    def stop_training(self) -> None:
        if self.training_panel.running:
            self.training_panel.stop_button.setEnabled(False)
            self.engine.cancel_training()

    def _on_epoch(self, report) -> None:
        self.training_panel.on_epoch(report)
        self.history.append(report.to_json())

    def _on_trained(self, result) -> None:
        # the epochs themselves arrived one by one through _on_epoch
        self.best_epoch = result.best_epoch
        self.has_model = True
        self._model_classes = self._training_classes
        self._model_preprocessing = self._training_preprocessing
        self.run_id = self._training_run
        self._model_spec = self._training_spec
        if self._replaced is not None:
            self._previous, self._replaced = self._replaced, None
        self.training_panel.training_finished(result)
        self._mark_modified()
        self._update_actions()
        self.viewer_panel.model_changed(list(self._training_classes), self._training_preprocessing)
        if self._previous is not None and not self._closing:
            self.statusBar().showMessage(f"The model of {self._describe_run(self._previous)} is kept: "
                                         "Training > Bring Back Previous Model makes it current again.", 15000)
        if self._closing:
            self.close()

    def _on_train_failed(self, message: str) -> None:
        self.training_panel.training_finished(error=message)
        if self._replaced is not None:  # the engine still holds the model it had: show its run again,
            self._apply_run_state(self._replaced, with_spec=False)  # keeping the edits the user tried to train
            self._replaced = None
        self._update_actions()
        if self._closing:
            self.close()
            return
        self.show_error("Training failed", message)

    # -- dataset ---------------------------------------------------------------
    def use_sample(self) -> None:
        self.dataset_panel.load_folder(str(self.sample_dir), make_sample=True)

    # -- projects --------------------------------------------------------------
    def current_project(self) -> Project:
        data = self.dataset_panel.data
        config = self.dataset_panel.config()
        if self.has_model and self._model_preprocessing is not None:
            # the project must reopen its model with the preprocessing the model was trained with
            config = dataclasses.replace(config, preprocessing=self._model_preprocessing)
        return Project(
            dataset_path=self.dataset_panel.folder,
            class_names=self._model_classes if self.has_model else (data.class_names if data else []),
            dataset=config,
            preset=self.model_panel.preset_name,
            layers=list(self.model_panel.layers),
            settings=self.model_panel.settings(),
            history=list(self.history),
            best_epoch=self.best_epoch,
            run=self.run_id if self.has_model else None,
        )

    # -- runs: the previous model can be brought back ---------------------------------
    def _run_state(self) -> dict:
        """What the window shows of the current model's run."""
        return {"history": list(self.history), "best_epoch": self.best_epoch, "classes": list(self._model_classes),
                "preprocessing": self._model_preprocessing, "run": self.run_id, "spec": self._model_spec}

    def _apply_run_state(self, state: dict, with_spec: bool = True) -> None:
        """Show ``state``'s run; ``with_spec``: also put back the layers and settings it was trained with."""
        self.history, self.best_epoch = list(state["history"]), state["best_epoch"]
        self._model_classes, self._model_preprocessing = list(state["classes"]), state["preprocessing"]
        self.run_id, self._model_spec = state["run"], state["spec"]
        self.has_model = True
        if with_spec and self._model_spec is not None:  # the layers and settings that go with the model
            layers, preset_name, settings = self._model_spec
            self.model_panel.set_layers(list(layers), preset_name)
            self.model_panel.set_settings(settings)
        self.training_panel.show_history(self.history, self.best_epoch)
        self.viewer_panel.model_changed(list(self._model_classes), self._model_preprocessing)

    @staticmethod
    def _describe_run(state: dict) -> str:
        history = state["history"]
        rows = [r for r in history if r.get("epoch") == state["best_epoch"]] or history[-1:]
        acc = rows[0].get("val_accuracy") if rows else None
        epochs = f"{len(history)} epoch{'s' if len(history) != 1 else ''}"
        return f"the previous run ({epochs}{f', validation accuracy {acc:.3f}' if acc is not None else ''})"

    def bring_back_previous(self) -> None:
        """Make the previous run's model current; the current one becomes the previous (so this undoes itself)."""
        if self._previous is None or self.training_panel.running or self._bringing_back:
            return

        def swapped(_):
            self._bringing_back = False
            current = self._run_state()
            self._apply_run_state(self._previous)
            self._previous = current
            self._mark_modified()
            self._update_actions()
            self.statusBar().showMessage("The previous model is current again; the one trained after it can be "
                                         "brought back the same way.", 10000)

        def failed(message):
            self._bringing_back = False
            self._update_actions()
            self.show_error("Could not bring back the model", message)

        # until the engine has swapped the models, a new run would start from the wrong one: Train waits
        self._bringing_back = True
        self._update_actions()
        self.engine.submit("restore_previous", swapped, failed)

    def _destination_ok(self, data) -> bool:
        """Before training: can the project folder take the trained model? Ask when it cannot."""
        try:
            rows = layer_table(list(self.model_panel.layers), data.preprocessing.input_shape, data.num_classes)
            check_destination(self.project_path, estimate_model_bytes(total_params(rows)))
        except ArchitectureError:
            return True  # training reports it
        except ProjectError as e:
            box = QMessageBox(QMessageBox.Warning, "The project cannot be saved there",
                              f"{e}\n\nTrain anyway? You can save the result elsewhere with Save Project As.",
                              QMessageBox.Yes | QMessageBox.Cancel, self)
            box.setObjectName("destinationBox")
            box.button(QMessageBox.Yes).setText("Train Anyway")
            box.setDefaultButton(QMessageBox.Cancel)
            box.setEscapeButton(QMessageBox.Cancel)
            return box.exec() == QMessageBox.Yes
        return True

    def _mark_modified(self, *_) -> None:
        self.modified = True
        self._update_title()

    def _update_title(self) -> None:
        name = Path(self.project_path).name if self.project_path else "Untitled"
        self.setWindowTitle(f"{name}[*] — cnndesk")
        self.setWindowModified(self.modified)

    def new_project(self) -> None:
        if not self._confirm_discard():
            return
        self.project_path = None
        self.history, self.best_epoch, self.has_model, self._model_classes = [], None, False, []
        self._model_preprocessing = None
        self.run_id = self._previous = self._model_spec = None
        self.engine.submit("clear_model")
        self.model_panel.set_layers(Project().layers, "seed")
        self.model_panel.set_settings(TrainingSettings(device=self.model_panel.device.currentData() or "cpu"))
        self.dataset_panel.set_config(DatasetConfig())
        self.training_panel.show_history([], None)
        self.viewer_panel.clear_model()
        self.use_sample()
        self.modified = False
        self._update_title()
        self._update_actions()

    def save_project(self) -> bool:
        if not self.project_path:
            return self.save_project_as()
        return self._save_to(self.project_path)

    def save_project_as(self) -> bool:
        start = self.settings.value("folders/project", str(Path.home()))
        folder = QFileDialog.getExistingDirectory(self, "Choose or create a folder for the project", start)
        if not folder:
            return False
        p = Path(folder)
        if any(p.iterdir()) and not is_project(p):
            if QMessageBox.question(self, "Folder not empty",
                                    f"{p} already holds other files. Save the project into it anyway?") != QMessageBox.Yes:
                return False
        return self._save_to(folder)

    def _save_to(self, folder: str) -> bool:
        """Save through the engine (the model lives there); waits for the answer."""
        if not self.engine.is_ready:
            self.show_error("Please wait", "TensorFlow is still loading; try again in a moment.")
            return False
        project = self.current_project()
        outcome: dict = {}
        job = self.engine.submit("save_project", lambda r: outcome.setdefault("ok", r),
                                 lambda m: outcome.setdefault("error", m), folder=folder, project=project)
        if job < 0:
            return False  # the engine has shut down
        self.statusBar().showMessage("Saving…")
        loop = QEventLoop()
        timer = QTimer(interval=20)
        timer.timeout.connect(lambda: loop.quit() if outcome else None)
        timer.start()
        loop.exec()
        timer.stop()
        if "error" in outcome:
            self.show_error("Could not save the project", outcome["error"])
            return False
        self.project_path = str(Path(folder))
        self.modified = False
        self._update_title()
        self._add_recent(self.project_path)
        self.settings.setValue("folders/project", str(Path(folder).parent))
        self.statusBar().showMessage(f"Saved {folder}", 4000)
        return True

    def open_project_dialog(self) -> None:
        if not self._confirm_discard():
            return
        start = self.settings.value("folders/project", str(Path.home()))
        folder = QFileDialog.getExistingDirectory(self, "Open a cnndesk project folder", start)
        if folder:
            self.open_project(folder, confirm=False)

    def open_project(self, folder: str, confirm: bool = True) -> None:
        if confirm and not self._confirm_discard():
            return
        if not self.engine.is_ready:
            QTimer.singleShot(200, lambda: self.open_project(folder, confirm=False))
            return
        self.statusBar().showMessage(f"Opening {folder}…")
        self.engine.submit("open_project", lambda r: self._on_project_opened(folder, r["project"], r["has_model"]),
                           lambda m: self.show_error("Could not open the project", m), folder=folder)

    def _on_project_opened(self, folder: str, project: Project, has_model: bool) -> None:
        self.project_path = str(Path(folder))
        self.dataset_panel.set_config(project.dataset)
        self.model_panel.set_layers(project.layers, project.preset)
        self.model_panel.set_settings(project.settings)
        self.history = list(project.history)
        self.best_epoch = project.best_epoch
        self.run_id = project.run
        self._previous = None
        self._model_spec = (list(project.layers), project.preset, project.settings) if has_model else None
        self.training_panel.show_history(self.history, self.best_epoch)
        self.has_model = has_model
        self._model_classes = list(project.class_names) if has_model else []
        self._model_preprocessing = project.preprocessing if has_model else None
        if has_model:
            self.viewer_panel.model_changed(list(project.class_names), project.preprocessing,
                                            source=Path(folder).name)
        else:
            self.viewer_panel.clear_model()
        if project.dataset_path and Path(project.dataset_path).is_dir():
            self.dataset_panel.load_folder(project.dataset_path)
        elif project.dataset_path:
            self.statusBar().showMessage(f"The project's dataset folder {project.dataset_path} is missing; "
                                         "choose it again to train or evaluate.", 10000)
        self._add_recent(self.project_path)
        self.modified = False
        self._update_title()
        self._update_actions()
        self.statusBar().showMessage(f"Opened {folder}", 4000)

    def _confirm_discard(self) -> bool:
        """Ask before unsaved work is lost. True: go on."""
        if not self.modified or not self.has_model:
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", "The current project has unsaved changes. Save them first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save_project()
        return answer == QMessageBox.Discard

    def _add_recent(self, folder: str) -> None:
        recent = [r for r in self._recent() if r != folder]
        recent.insert(0, folder)
        self.settings.setValue("recentProjects", json.dumps(recent[:MAX_RECENT]))
        self._fill_recent_menu()

    def _recent(self) -> list[str]:
        try:
            value = json.loads(self.settings.value("recentProjects", "[]"))
            return [str(v) for v in value if isinstance(v, str)]
        except (TypeError, ValueError):
            return []

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self._recent()
        for i, folder in enumerate(recent):
            act = self.recent_menu.addAction(f"&{i + 1} {folder}")
            act.triggered.connect(lambda _=False, f=folder: self.open_project(f))
        self.recent_menu.setEnabled(bool(recent))

    # -- models and export ---------------------------------------------------------
    def open_model_dialog(self) -> None:
        start = self.settings.value("folders/model", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open a Keras model", start, "Keras models (*.keras)")
        if path:
            self.settings.setValue("folders/model", str(Path(path).parent))
            self.open_model(path)

    def open_model(self, path: str) -> None:
        """Open any .keras image classifier for the viewer (safe mode)."""
        self.engine.submit("open_model", lambda info: self._on_model_opened(path, info),
                           lambda m: self.show_error("Could not open the model", m), path=path)

    def _on_model_opened(self, path: str, info: dict) -> None:
        self.has_model = True
        self._model_classes = list(info["class_names"])
        self._model_preprocessing = info["preprocessing"]
        self.history, self.best_epoch = [], None
        self.run_id = self._previous = self._model_spec = None
        self.viewer_panel.model_changed(list(info["class_names"]), info["preprocessing"], editable_names=True,
                                        source=Path(path).name)
        self.tabs.setCurrentIndex(self.TAB_VIEWER)
        self._update_actions()

    def export_dialog(self, fmt: str) -> None:
        start = self.settings.value("folders/export", str(Path.home()))
        name = Path(self.project_path).name if self.project_path else "model"
        if fmt == "saved_model":
            parent = QFileDialog.getExistingDirectory(self, "Choose where to write the SavedModel folder", start)
            if not parent:
                return
            out = str(Path(parent) / f"{name}_saved_model")
        else:
            out, _ = QFileDialog.getSaveFileName(self, "Export model", str(Path(start) / f"{name}{SUFFIX[fmt]}"),
                                                 f"*{SUFFIX[fmt]}")
            if not out:
                return
        self.settings.setValue("folders/export", str(Path(out).parent))
        self.export(fmt, out)

    def export(self, fmt: str, out: str) -> None:
        self.statusBar().showMessage(f"Exporting to {out}…")
        self.engine.submit("export", lambda p: self.statusBar().showMessage(f"Exported {p}", 6000),
                           lambda m: self.show_error("Export failed", m), fmt=fmt, out=out)

    # -- drops -----------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.handle_dropped_paths(paths)

    def handle_dropped_paths(self, paths: list[str]) -> None:
        """A folder: a project opens, a dataset is read. Files: .keras opens, images go to the viewer."""
        if self.training_panel.running:
            self.statusBar().showMessage("Training is running: stop it before opening something else.", 6000)
            return
        first = Path(paths[0])
        if first.is_dir():
            if is_project(first):
                self.open_project(str(first))
            else:
                self.tabs.setCurrentIndex(self.TAB_DATASET)
                self.dataset_panel.load_folder(str(first))
                self.settings.setValue("folders/dataset", str(first))
            return
        if first.suffix.lower() == ".keras":
            self.open_model(str(first))
            return
        self.tabs.setCurrentIndex(self.TAB_VIEWER)
        self.viewer_panel.classify_paths([p for p in paths if Path(p).is_file()])

    # -- messages ------------------------------------------------------------------
    def show_error(self, title: str, message: str) -> None:
        """A readable message; never a traceback."""
        self.statusBar().showMessage(message[:200], 10000)
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self)
        box.setObjectName("errorBox")
        box.open()

    @staticmethod
    def _describe(pre) -> str:
        if pre is None:
            return "unknown"
        h, w = pre.image_size
        return f"{h}×{w} {pre.color_mode}"

    def show_about(self) -> None:
        info = self.engine.info
        devices = ", ".join(desc for _, desc in info.get("devices", [])) or "(TensorFlow is still loading)"
        text = (f"<h3>cnndesk {__version__}</h3>"
                "<p>Train a convolutional image classifier by pointing and clicking, then see inside it.</p>"
                f"<p>TensorFlow {info.get('tensorflow', '…')} · Keras {info.get('keras', '…')}<br>"
                f"Qt {qVersion()} · PySide6 {PYSIDE_VERSION} · Python {platform.python_version()}<br>"
                f"Devices: {devices}</p>")
        box = QMessageBox(QMessageBox.Information, "About cnndesk", text, QMessageBox.Ok, self)
        box.setObjectName("aboutBox")
        box.setIconPixmap(app_icon().pixmap(64, 64))
        box.open()

    def show_shortcuts(self) -> None:
        rows = [("Ctrl+1 … Ctrl+4", "Dataset, Model, Train, Viewer"), ("F5", "Train"), ("Esc", "Stop training"),
                ("F6", "Evaluate"), ("Ctrl+O / Ctrl+S", "Open / save project"),
                ("Ctrl+Shift+O", "Choose dataset folder"), ("Ctrl+Shift+M", "Open a .keras model"),
                ("Ctrl+I", "Open images to classify"), ("Ctrl+V", "Paste an image to classify")]
        html = "<table>" + "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in rows) + "</table>"
        box = QMessageBox(QMessageBox.NoIcon, "Keyboard shortcuts", html, QMessageBox.Ok, self)
        box.open()

    # -- settings and shutdown ---------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        geom = s.value("window/geometry")
        if geom is not None:
            self.restoreGeometry(geom)
        self.tabs.setCurrentIndex(int(s.value("window/tab", 0)))
        cfg = self._setting_json("dataset/config", DatasetConfig.from_json)
        if cfg is not None:
            self.dataset_panel.set_config(cfg)
        training = self._setting_json("model/settings", TrainingSettings.from_json)
        if training is not None:
            self.model_panel.set_settings(training)
        layers = self._setting_json("model/layers", lambda v: [LayerSpec.from_json(l) for l in v])
        if layers:
            self.model_panel.set_layers(layers, s.value("model/preset", "custom"))
        self._fill_recent_menu()
        folder = s.value("folders/dataset")
        if folder and Path(folder).is_dir():
            self.dataset_panel.load_folder(folder)
        else:
            self.use_sample()

    def _setting_json(self, key: str, parse):
        """A JSON setting parsed with ``parse``; None when absent or unreadable (old/damaged settings)."""
        raw = self.settings.value(key)
        if raw is None:
            return None
        try:
            return parse(json.loads(raw))
        except (TypeError, ValueError, KeyError, AttributeError):
            return None

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/tab", self.tabs.currentIndex())
        s.setValue("dataset/config", json.dumps(self.dataset_panel.config().to_json()))
        s.setValue("model/settings", json.dumps(self.model_panel.settings().to_json()))
        s.setValue("model/layers", json.dumps([l.to_json() for l in self.model_panel.layers]))
        s.setValue("model/preset", self.model_panel.preset_name)
        s.setValue("model/device", self.model_panel.device.currentData() or "cpu")
        folder = self.dataset_panel.folder
        if folder and Path(folder) != self.sample_dir:
            s.setValue("folders/dataset", folder)
        else:
            s.remove("folders/dataset")
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.training_panel.running:
            if not self._closing:
                answer = QMessageBox.question(self, "Training is running",
                                              "Training is still running. Stop it and quit?")
                if answer != QMessageBox.Yes:
                    event.ignore()
                    return
                self._closing = True
                self.engine.cancel_training()
            event.ignore()  # close again when training has stopped (_on_trained)
            return
        if not self._confirm_discard():
            self._closing = False
            event.ignore()
            return
        self._save_settings()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every thread; safe to call more than once."""
        self.dataset_panel.loader.shutdown()
        self.engine.shutdown()

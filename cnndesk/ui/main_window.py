"""The main window: the four panels in tabs, menus, drops, window settings and closing.

The session lives in ``self.state`` (``core.project.session.SessionState``). The
panels are views; ``bindings.bind_window`` builds their bindings (``DatasetReading``,
``ModelBinding``, ``TrainingControl``, ``RunsControl``, ``ViewerBinding``,
``ProbeBinding``, ``ProjectFiles``, ``ModelFiles``…), which turn the requests into
engine jobs and write the answers into the state, and connects them. The window
enables its actions from the state alone (``update_actions``).
"""

from __future__ import annotations

import html
import json
import platform
from pathlib import Path

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import QSettings, QStandardPaths, QTimer, qVersion
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QMessageBox, QTabWidget

from .. import __version__
from ..core.app_log import log, log_path, where_the_log_is
from ..core.model.architecture import LayerSpec, TrainingSettings
from ..core.data.dataset import DatasetConfig
from ..core.model.export import FORMATS
from ..core.model.keras_file import MODEL_SUFFIXES
from ..core.project.store import is_project
from ..core.project.session import EXPORTING, IDLE, OPENING, Runtime, SAVING, SessionState, SWAPPING
from .bindings import bind_window
from .dataset_panel import DatasetPanel
from .engine import Engine
from .model_io import EXPORT_LABELS
from .model_panel import ModelPanel
from .probe_view import ProbeView
from .resources import app_icon
from .training_panel import TrainingPanel
from .viewer_panel import ViewerPanel


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
        self.state = SessionState()
        self._closing = False  # close again when the running training or save has ended

        self.setWindowTitle("cnndesk")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1200, 800)

        self.engine = Engine(self)
        self.tabs = QTabWidget(objectName="mainTabs")
        self.dataset_panel = DatasetPanel()
        self.model_panel = ModelPanel()
        self.training_panel = TrainingPanel()
        self.viewer_panel = ViewerPanel()
        self.probe_view = ProbeView()
        self.training_panel.add_view(self.probe_view)
        self.training_panel.give_view_room(self.probe_view.frames_area.isVisibleTo(self.probe_view))
        self.tabs.addTab(self.dataset_panel, "1  Dataset")
        self.tabs.addTab(self.model_panel, "2  Model")
        self.tabs.addTab(self.training_panel, "3  Train")
        self.tabs.addTab(self.viewer_panel, "4  Viewer")
        self.setCentralWidget(self.tabs)

        self.engine_label = QLabel("Loading TensorFlow…", objectName="engineStatus")
        self.statusBar().addPermanentWidget(self.engine_label)

        self._make_actions()
        bind_window(self)  # the bindings: self.viewer, .probes, .training, .runs, .models, .projects…
        self._restore_settings()
        self.state.modified = False  # restoring settings is not an edit
        self.update_title()
        self.update_actions()
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
        self.new_action = self._action("&New Project", lambda: self.projects.new_project(), QKeySequence.New, name="newProject")
        self.open_action = self._action("&Open Project…", lambda: self.projects.open_dialog(), QKeySequence.Open, name="openProject")
        self.save_action = self._action("&Save Project", lambda: self.projects.save(), QKeySequence.Save, name="saveProject")
        self.save_as_action = self._action("Save Project &As…", lambda: self.projects.save_as(), QKeySequence.SaveAs,
                                           name="saveProjectAs")
        self.choose_dataset_action = self._action("Choose &Dataset Folder…", self.dataset_panel.choose_folder,
                                                  "Ctrl+Shift+O")
        self.open_model_action = self._action("Open &Model (.keras, .h5)…", lambda: self.models.open_dialog(),
                                              "Ctrl+Shift+M", name="openModel")
        self.open_image_action = self._action("Open &Image…", self.viewer_panel.open_images_dialog, "Ctrl+I",
                                              name="openImage")
        self.classify_folder_action = self._action("&Classify Folder…", lambda: self.folder_work.choose_folder(),
                                                   "Ctrl+Shift+F", name="classifyFolderAction",
                                                   tip="Classify every image of a folder (Viewer, Folder)")
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
        f.addAction(self.classify_folder_action)
        self.export_menu = f.addMenu("&Export Model")
        self.export_actions = {}
        for fmt in FORMATS:
            act = self._action(EXPORT_LABELS[fmt], lambda _=False, fm=fmt: self.models.export_dialog(fm), name=f"export_{fmt}")
            self.export_menu.addAction(act)
            self.export_actions[fmt] = act
        f.addSeparator()
        quit_action = self._action("&Quit", self.close)
        # the platform's Quit keys (none on Windows and without a desktop), and Ctrl+Q everywhere
        quit_action.setShortcuts(list(dict.fromkeys(QKeySequence.keyBindings(QKeySequence.Quit)
                                                    + [QKeySequence("Ctrl+Q")])))
        f.addAction(quit_action)

        e = mb.addMenu("&Edit")
        e.addAction(self.model_panel.undo_action)  # the layer stack's undo history (Model tab)
        e.addAction(self.model_panel.redo_action)
        e.addSeparator()
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
            v.addAction(self._action(title, lambda _=False, i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}",
                                     tip=f"Show the {title.strip('&')} tab"))
        v.addSeparator()
        v.addAction(self._action("&Full Screen", self._toggle_full_screen, QKeySequence.FullScreen))

        t = mb.addMenu("&Training")
        self.train_action = self._action("&Train", lambda: self.train(self.training_panel.continue_check.isChecked()),
                                         "F5", name="trainAction")
        self.stop_action = self._action("&Stop", lambda: self.training.stop(), "Esc", tip="Stop training",
                                        name="stopAction")
        self.evaluate_action = self._action("&Evaluate on Validation Set", self.viewer_panel.evaluate, "F6",
                                            name="evaluateAction")
        self.map_action = self._action("Dataset &Map", self._show_map, "Ctrl+M", name="mapAction",
                                       tip="Every image of the dataset placed by what the model sees (Viewer, Map)")
        self.previous_action = self._action("Bring Back &Previous Model", lambda: self.runs.bring_back(),
                                            tip="Make the model of the previous training run current again",
                                            name="previousRunAction")
        t.addAction(self.train_action)
        t.addAction(self.stop_action)
        t.addAction(self.evaluate_action)
        t.addAction(self.map_action)
        t.addSeparator()
        t.addAction(self.previous_action)

        h = mb.addMenu("&Help")
        h.addAction(self._action("&Keyboard Shortcuts", self.show_shortcuts, QKeySequence.HelpContents))
        h.addAction(self._action("&About cnndesk", self.show_about, name="aboutAction"))

    def _add_layer(self, kind: str) -> None:
        self.tabs.setCurrentIndex(self.TAB_MODEL)
        self.model_panel.add_layer(kind)

    def _show_map(self) -> None:
        self.show_viewer_tab(self.viewer_panel.map_view)

    def show_viewer_tab(self, view) -> None:
        """Bring the Viewer and its tab ``view`` (the Map, the Folder tab) to the front."""
        self.tabs.setCurrentIndex(self.TAB_VIEWER)
        self.viewer_panel.show_map(view)

    def _toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def _reset_layout(self) -> None:
        self.resize(1200, 800)
        self.tabs.setCurrentIndex(0)

    def train(self, continuing: bool = False) -> None:
        if self.train_action.isEnabled() and self.repeats.wanted and not continuing:
            self.repeats.start()  # Train ×N: several models, one kept
        elif self.train_action.isEnabled():
            self.training.start(continuing)  # the Train tab shows the run when it starts (training.started)

    def on_engine_ready(self, info: Runtime) -> None:
        devices = list(info.devices)
        gpu = sum(1 for d, _ in devices if d.startswith("gpu"))
        self.engine_label.setText(f"TensorFlow {info.tensorflow} · {'%d GPU(s)' % gpu if gpu else 'CPU'}")
        self.model_panel.set_devices(devices)
        self.model_panel.device.set_value(self.settings.value("model/device", "cpu"))
        self.model_panel.set_precision(str(self.settings.value("model/precision", "auto")))
        self.state.engine_ready = True
        self.statusBar().showMessage("Ready", 3000)

    def can_train(self) -> tuple[bool, str]:
        """Whether a run could be trained (or is training) now; if not, why, in a sentence for the Train tab."""
        state = self.state
        if not state.engine_ready:
            return False, "Loading TensorFlow…"
        if state.data is None:
            return False, "Choose a dataset folder first (Dataset tab)."
        if not self.model_panel.is_valid():
            return False, f"The model cannot be built: {self.model_panel.error} Fix it on the Model tab."
        if state.busy and not state.training:
            return False, BUSY_REASONS.get(state.activity, "Please wait…")
        return True, ""

    def update_actions(self) -> None:
        """Enable the window's actions from what the state allows (the Train tab's buttons: bind_training_panel)."""
        state = self.state
        ready, busy, training = state.engine_ready, state.busy, state.training
        has_model = ready and state.has_model
        ok, _reason = self.can_train()
        self.train_action.setEnabled(ok and not busy)
        self.stop_action.setEnabled(training)
        for act in self.export_actions.values():
            act.setEnabled(has_model and not busy)
        for act in (self.open_model_action, self.open_action, self.new_action, self.save_action,
                    self.save_as_action):
            act.setEnabled(ready and not busy)  # the model is saved and opened by the (busy) engine
        self.evaluate_action.setEnabled(has_model and state.data is not None and not busy)
        self.map_action.setEnabled(has_model and state.data is not None and not busy)
        self.classify_folder_action.setEnabled(has_model and not busy)
        self.previous_action.setEnabled(ready and self.runs.previous_offer() is not None and not busy)
        self.choose_dataset_action.setEnabled(not training)
        self.recent_menu.setEnabled(not busy and bool(self.projects.recent.folders()))
        for act in self.layer_actions:
            act.setEnabled(not training)

    def update_title(self) -> None:
        path = self.state.project_path
        self.setWindowTitle(f"{Path(path).name if path else 'Untitled'}[*] — cnndesk")
        self.setWindowModified(self.state.modified)

    # -- entry points for drops, the selftest and scripts ---------------------------------
    def use_sample(self) -> None:
        self.dataset_panel.load_folder(str(self.sample_dir), make_sample=True)

    def open_project(self, folder: str, confirm: bool = True) -> None:
        self.projects.open(folder, confirm)

    def reread_dataset(self) -> None:
        """Read the dataset folder again with the settings the state now holds (a restored run's, or the image
        size a pretrained preset proposed)."""
        folder = self.state.dataset_path
        if folder and Path(folder).is_dir():
            self.dataset_panel.load_folder(folder)

    def open_model(self, path: str) -> None:
        self.models.open(path)

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
        """A folder: a project opens, a dataset is read. Files: .keras/.h5 open, images go to the viewer."""
        if self.state.training:
            self.statusBar().showMessage("Training is running: stop it before opening something else.", 6000)
            return
        first = Path(paths[0])
        if first.is_dir():
            if is_project(first):
                self.projects.open(str(first))
            elif (first / "saved_model.pb").is_file():
                self.models.open(str(first))  # refused, with how to convert it
            else:
                self.tabs.setCurrentIndex(self.TAB_DATASET)
                self.dataset_panel.load_folder(str(first))
                self.settings.setValue("folders/dataset", str(first))
            return
        if first.suffix.lower() in MODEL_SUFFIXES:
            self.models.open(str(first))
            return
        self.tabs.setCurrentIndex(self.TAB_VIEWER)
        self.viewer.classify_paths([p for p in paths if Path(p).is_file()])

    # -- messages ------------------------------------------------------------------
    def show_error(self, title: str, message: str) -> None:
        """A readable message; never a traceback."""
        self.statusBar().showMessage(message[:200], 10000)
        log.info("%s: %s", title, message)
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self)
        box.setInformativeText(where_the_log_is())
        box.setObjectName("errorBox")
        box.open()

    def show_about(self) -> None:
        info = self.engine.info
        devices = ", ".join(desc for _, desc in info.devices) if info is not None else ""
        devices = devices or "(TensorFlow is still loading)"
        text = (f"<h3>cnndesk {__version__}</h3>"
                "<p>Train a convolutional image classifier by pointing and clicking, then see inside it.</p>"
                f"<p>TensorFlow {info.tensorflow if info else '…'} · Keras {info.keras if info else '…'}<br>"
                f"Qt {qVersion()} · PySide6 {PYSIDE_VERSION} · Python {platform.python_version()}<br>"
                f"Devices: {devices}</p>"
                f"<p>Log file: {html.escape(str(log_path() or 'none (its folder could not be written)'))}</p>")
        box = QMessageBox(QMessageBox.Information, "About cnndesk", text, QMessageBox.Ok, self)
        box.setObjectName("aboutBox")
        box.setIconPixmap(app_icon().pixmap(64, 64))
        box.open()

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every action and shortcut of the window that has keys, menus first, in their
        order: what Help → Keyboard Shortcuts lists, read from the window itself so that it never leaves one out."""
        rows, seen = [], []
        for action in _menu_actions(self.menuBar()) + self.findChildren(QAction):
            if action.shortcuts() and not any(action is a for a in seen):
                seen.append(action)
                rows.append((_keys_text(action.shortcuts()), action.statusTip() or _plain_text(action.text())))
        for shortcut in self.findChildren(QShortcut):
            if shortcut.keys():
                rows.append((_keys_text(shortcut.keys()), shortcut.whatsThis() or shortcut.objectName()))
        return rows

    def show_shortcuts(self) -> None:
        table = "".join(f"<tr><td><b>{html.escape(keys)}</b>&nbsp;&nbsp;</td><td>{html.escape(what)}</td></tr>"
                        for keys, what in self.shortcut_rows())
        box = QMessageBox(QMessageBox.NoIcon, "Keyboard shortcuts", f"<table>{table}</table>", QMessageBox.Ok, self)
        box.setObjectName("shortcutsBox")
        box.open()

    def show_status(self, text: str, timeout_ms: int = 0) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    # -- settings and shutdown ---------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        geom = s.value("window/geometry")
        if geom is not None:
            self.restoreGeometry(geom)
        self.tabs.setCurrentIndex(int(s.value("window/tab", 0)))
        restored = {}
        cfg = self._setting_json("dataset/config", DatasetConfig.from_json)
        if cfg is not None:
            restored["dataset_config"] = cfg
        training = self._setting_json("model/settings", TrainingSettings.from_json)
        if training is not None:
            restored["settings"] = training
        layers = self._setting_json("model/layers", lambda v: [LayerSpec.from_json(l) for l in v])
        if layers:
            restored.update(layers=layers, preset=s.value("model/preset", "custom"))
        with self.state.not_an_edit():
            self.state.update(**restored)
        self._restore_memory_limit()
        folder = s.value("folders/dataset")
        if folder and Path(folder).is_dir():
            self.dataset_panel.load_folder(folder)
        else:
            self.use_sample()

    def _restore_memory_limit(self) -> None:
        """The dataset panel's memory limit for decoded images belongs to this computer, not to a project."""
        try:
            self.dataset_panel.set_memory_limit(int(self.settings.value("dataset/memoryLimitMB", 0)))
        except (TypeError, ValueError):
            pass
        self.dataset_panel.memory_limit.valueChanged.connect(
            lambda megabytes: self.settings.setValue("dataset/memoryLimitMB", megabytes))

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
        s, state = self.settings, self.state
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/tab", self.tabs.currentIndex())
        s.setValue("dataset/config", json.dumps(state.dataset_config.to_json()))
        s.setValue("model/settings", json.dumps(state.settings.to_json()))
        s.setValue("model/layers", json.dumps([l.to_json() for l in state.layers]))
        s.setValue("model/preset", state.preset)
        s.setValue("model/device", state.settings.device or "cpu")
        s.setValue("model/precision", state.settings.precision)
        folder = state.dataset_path
        if folder and Path(folder) != self.sample_dir:
            s.setValue("folders/dataset", folder)
        else:
            s.remove("folders/dataset")
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        state = self.state
        if state.training:
            if not self._closing:
                answer = QMessageBox.question(self, "Training is running",
                                              "Training is still running. Stop it and quit?")
                if answer != QMessageBox.Yes:
                    event.ignore()
                    return
                self._closing = True
                self.training.stop()
            event.ignore()  # close again when training has stopped (close_if_asked)
            return
        if state.busy:  # saving, opening, exporting, swapping runs: wait for it, saying so
            self._closing = True
            self.show_status(f"{BUSY_REASONS.get(state.activity, 'Finishing…')} The window closes when it is done.")
            event.ignore()  # close again when it has ended (close_if_asked)
            return
        self._closing = False
        if state.modified and state.has_model:
            event.ignore()  # ask, maybe save (a job), then close again
            self.projects.confirm_discard(self._close_after_question)
            return
        self._save_settings()
        self.shutdown()
        event.accept()

    def _close_after_question(self, go: bool) -> None:
        """Saved or discarded: close again (an edit made during the save asks once more)."""
        if go:
            QTimer.singleShot(0, self.close)  # not from inside closeEvent, where Qt ignores close()

    def close_if_asked(self, _names=None) -> None:
        """After the training or save that a close waited for has ended, close again (from the event loop)."""
        if self._closing and self.state.activity == IDLE:
            self._closing = False
            QTimer.singleShot(0, self.close)

    def shutdown(self) -> None:
        """Stop every thread; safe to call more than once."""
        self.dataset_reading.shutdown()
        self.engine.shutdown()


def _menu_actions(menu) -> list[QAction]:
    """The actions of a menu bar or menu and of its submenus, in menu order."""
    actions = []
    for action in menu.actions():
        actions.append(action)
        if action.menu() is not None:
            actions += _menu_actions(action.menu())
    return actions


def _keys_text(keys: list[QKeySequence]) -> str:
    """"Ctrl+Z, Alt+Backspace": an action's keys as the platform writes them."""
    return ", ".join(k.toString(QKeySequence.NativeText) for k in keys)


def _plain_text(text: str) -> str:
    """A menu text without its mnemonic marks: "Save Project &As…" -> "Save Project As…"."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


BUSY_REASONS = {SAVING: "Saving the project…", OPENING: "Opening…", SWAPPING: "Bringing back the previous model…",
                EXPORTING: "Exporting the model…"}

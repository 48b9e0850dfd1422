"""Two-way wiring between the ``SessionState`` and the panels that edit or show it (dataset, model, training,
the Viewer's Folder tab).

A panel is a view with setters and signals; it does not know the state and
holds none of it. Each ``bind_*`` function writes the panel's user edits and
requests into the state and shows the state's changes in the panel. A change
the binding itself pushes into a panel is not written back (the guard), so an
update never echoes.

Dropping a dataset folder, read from the drop (docs/architecture.md, "Flows")::

    MainWindow.handle_dropped_paths -> DatasetPanel.load_folder -> folder_requested -> DatasetReading.read
        the loader thread reads and decodes the folder, samples its colours            (GUI -> loader)
        DatasetLoader.loaded(data, colours)                                            (loader -> GUI)
    DatasetReading._on_loaded: the exclusions applied (core.data.dataset.split_excluding), then one state write:
        data, dataset_path, color_sample; the panel shows it (the observer of "data")
        the engine's spare for the next Train (TrainingControl._stock_when_idle)       (GUI -> engine -> GUI)
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Slot

from ..core.data.dataset import split_excluding
from ..core.data.scanning import printable
from ..core.model.architecture import default_image_size, has_backbone
from ..core.project.session import STOPPING, SessionState
from .dataset_panel import DatasetPanel
from .folder_view import FolderView, FolderWork
from .loading import DatasetLoader
from .model_panel import ModelPanel
from .training_panel import TrainingPanel


class _Guard:
    """True while the binding is pushing the state into its panel."""

    def __init__(self):
        self.active = False

    @contextmanager
    def pushing(self):
        self.active, before = True, self.active
        try:
            yield
        finally:
            self.active = before


class DatasetReading(QObject):
    """Reads the folders the dataset panel asks for (off the GUI thread) and writes what was read into the state.

    What is being read is the loader's; what was read, its split, its folder and the exclusions are the
    state's. A split setting or an exclusion changed splits ``state.data`` again (``split_excluding``).
    """

    def __init__(self, state: SessionState, panel: DatasetPanel):
        super().__init__(panel)
        self.state, self.panel = state, panel
        self.loader = DatasetLoader(self)
        self._reading: str | None = None  # the folder asked for, until its answer (or a refusal) came
        self.loader.progress.connect(panel.show_progress)
        self.loader.status.connect(panel.show_status)
        self.loader.running_changed.connect(panel.show_running)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.loader.cancelled.connect(self._on_cancelled)
        panel.folder_requested.connect(self.read)
        panel.reload_requested.connect(self.reload)
        panel.cancel_requested.connect(self.loader.cancel)

    @Slot(str, bool)
    def read(self, folder: str, make_sample: bool = False) -> None:
        """Read ``folder`` with the state's settings; the dataset read before stays until it is there."""
        self._reading = str(folder)
        self.panel.show_reading(self._reading)
        self.loader.load(self._reading, self.state.dataset_config, make_sample=make_sample,
                         cache=self.panel.cache_settings())

    @Slot()
    def reload(self) -> None:
        """Read again the folder being read, else the state's (a project's missing folder is not tried)."""
        folder = self._reading or self.state.dataset_path
        if folder and (self.state.data is not None or Path(folder).is_dir()):
            self.read(folder)

    def split_again(self) -> None:
        """Split the dataset read with the state's settings and exclusions (not an edit: the settings were)."""
        state = self.state
        if state.data is not None:
            with state.not_an_edit():
                state.data = split_excluding(state.data, state.dataset_config, state.excluded)

    @Slot(object, object)
    def _on_loaded(self, data, colors) -> None:
        state = self.state
        folder, self._reading = self._reading, None
        if state.excluded:
            data = split_excluding(data, state.dataset_config, state.excluded)
        with state.not_an_edit():  # reading a folder is not an edit of the project; its settings are
            state.update(data=data, dataset_path=folder, color_sample=colors)
        self.panel.show_read(data)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        """A refused folder: the dataset read before stays, saying so; with none before, nothing is shown but why."""
        state, folder = self.state, self._reading
        self._reading = None
        data = state.data
        if data is not None:
            if folder == str(data.root):
                self._keep(f"{folder} could not be read again: {message} Still using the images read before.")
            else:
                self._keep(f"The folder {folder} was refused: {message} Still using {data.root}.")
            return
        with state.not_an_edit():
            state.dataset_path = folder
        self.panel.show_status("")
        self.panel.show_no_dataset(message)

    @Slot()
    def _on_cancelled(self) -> None:
        """Keep what was read before: the previous dataset stays selected."""
        self._reading = None
        if self.state.data is not None:
            self._keep(f"Reading cancelled; still using {self.state.data.root}.")
        else:
            self.panel.show_status("Reading cancelled.")

    def _keep(self, status: str) -> None:
        """The folder just read is not used: the dataset shown before stays, and every line still describes it."""
        self.panel.show_folder(str(self.state.data.root))
        self.panel.show_status(status)

    def shutdown(self) -> None:
        self.loader.shutdown()


def bind_dataset_panel(state: SessionState, panel: DatasetPanel) -> DatasetReading:
    """Wire the dataset panel to the state; returns what reads its folders (the window shuts it down)."""
    guard = _Guard()
    reading = DatasetReading(state, panel)

    def derived():  # what follows from the settings shown and the dataset read; the cache plan
        plan = panel.show_cache_estimate(state.data)
        panel.show_color_hint(state.data, state.color_sample)
        return plan

    def edited() -> None:
        if guard.active:
            return
        before = state.dataset_config
        config = panel.config(before.preprocessing.image_size)
        split = (config.val_split, config.seed, config.duplicate_distance)
        with state.changes():  # the settings and the split they make, announced once
            state.dataset_config = config
            if split != (before.val_split, before.seed, before.duplicate_distance):
                reading.split_again()
        derived()

    def memory_limit() -> None:
        """Say what the new limit means; read the dataset again when it moves it into or out of memory."""
        plan = derived()
        if plan is not None and plan.on_disk != state.data.on_disk:
            panel.start_reload_timer()

    def show_config(_names) -> None:
        if panel.config(state.dataset_config.preprocessing.image_size) != state.dataset_config:
            with guard.pushing():
                panel.set_config(state.dataset_config)
        derived()

    def show_data(_names) -> None:
        if state.data is None:  # a project opened or New dropped the dataset: the panel shows none either
            panel.show_folder(None)
            panel.show_status("")
            panel.show_no_dataset()
        else:
            panel.show_dataset(state.data, state.excluded)
        derived()

    panel.config_changed.connect(edited)
    panel.memory_limit_changed.connect(memory_limit)
    state.observe(show_config, "dataset_config")
    state.observe(show_data, "data", "color_sample")
    state.observe(lambda _: reading.split_again(), "excluded")
    state.observe(lambda _: panel.set_busy(state.training), "activity")
    show_config(None)
    return reading


def bind_model_panel(state: SessionState, panel: ModelPanel, reread: Callable[[], None] | None = None) -> None:
    """Wire the model panel to the state.

    Args:
        reread: reads the dataset folder again with the state's settings; called when choosing or leaving a
            pretrained preset changes the image size, so that what the Model tab describes is what trains.
    """
    guard = _Guard()
    sizes = _ProposedSize()

    def edited() -> None:
        if guard.active:
            return
        layers, settings = list(panel.layers), panel.settings()
        only_device = (layers == state.layers and panel.preset_name == state.preset
                       and dataclasses.replace(settings, device=state.settings.device) == state.settings)
        if only_device:  # where to train is a preference of this machine, not an edit of the project
            with state.not_an_edit():
                state.settings = settings
        else:
            before = state.layers
            state.update(layers=layers, preset=panel.preset_name, settings=settings)
            said = sizes.follow(state, before, layers)
            if said:
                panel.add_notice(said)
                if reread is not None:
                    reread()

    def show(names) -> None:
        with guard.pushing():
            if {"layers", "preset"} & names and (panel.layers != state.layers or panel.preset_name != state.preset):
                if state.loading:  # another piece of work: its own undo history, and its own image size
                    sizes.forget()
                    panel.set_layers(list(state.layers), state.preset)
                else:  # an edit made elsewhere (a weights file chosen, a run restored): one more undo step
                    panel.take_layers(list(state.layers), state.preset)
            if "settings" in names and panel.settings() != state.settings:
                panel.set_settings(state.settings)

    def described(_names) -> None:
        classes, note = _classes_described(state)
        panel.set_input(state.dataset_config.preprocessing.input_shape, classes or panel.num_classes)
        panel.set_classes_note(note)

    panel.changed.connect(edited)
    state.observe(show, "layers", "preset", "settings")
    state.observe(described, "data", "dataset_config", "model", "layers")
    state.observe(lambda _: panel.setEnabled(not state.training), "activity")
    show(frozenset({"layers", "preset", "settings"}))
    described(None)


def bind_training_panel(state: SessionState, panel: TrainingPanel,
                        can_train: Callable[[], tuple[bool, str]]) -> Callable[[], None]:
    """Show in the training panel what the state allows: Train, Continue, Stop, "Stopping…".

    Args:
        can_train: whether a run could be trained now and, if not, why (the window's answer, which also asks
            the model panel whether its stack can be built).

    Returns: the function that shows it again, for changes outside the state (the stack's validity).
    """
    def show(_names=None) -> None:
        ok, reason = can_train()
        panel.show_state(ok, reason, has_model=state.has_model, training=state.training,
                         stopping=state.activity == STOPPING)

    state.observe(show)
    show()
    return show


def bind_folder_view(state: SessionState, engine, view: FolderView, viewer, show_view: Callable[[], None],
                     dialog_parent) -> FolderWork:
    """Wire the Folder tab: its requests to ``FolderWork`` (the engine jobs, the files), ``state.folder_result`` to
    the table, and a click on a row to the viewer (``viewer.classify_paths``: the image with its maps).

    A new model or dataset makes the rows stale: they stay, saying which model they came from. Returns the
    ``FolderWork`` (the window's menu action and the viewer's drops go to it).
    """
    work = FolderWork(state, engine, view, show_view, dialog_parent)
    view.classify_requested.connect(work.choose_folder)
    view.cancel_requested.connect(work.cancel)
    view.export_requested.connect(work.export)
    view.sort_requested.connect(work.ask_sort)
    view.undo_all_requested.connect(work.undo_all)
    view.changes.undo_requested.connect(work.undo)
    view.open_requested.connect(lambda path: viewer.classify_paths([path]))

    def show(_names=None) -> None:
        result = state.folder_result
        model = result.model if result is not None and result.model is not None else state.model
        view.show_result(result, tuple(model.class_names) if model is not None else (), work.note)

    def stale(names) -> None:
        result = state.folder_result
        if result is None or result.stale or state.loading:
            return
        if "model" in names and state.model is not result.model:
            why = (f"These rows came from {result.model.label}, which is no longer the current model: classify "
                   "the folder again for the current one's answers.")
        elif "data" in names:
            why = ("Another dataset was read since these rows were made (the model's training images may differ "
                   "from it): classify the folder again if the model changed.")
        else:
            return
        with state.not_an_edit():
            state.folder_result = result.made_stale(why)

    state.observe(show, "folder_result")
    state.observe(stale, "model", "data")
    state.observe(lambda _: view.set_can_classify(work.usable), "model", "activity", "engine_ready")
    view.set_can_classify(work.usable)
    show()
    return work


def _classes_described(state: SessionState) -> tuple[int | None, str]:
    """How many classes the Model tab counts, and a sentence when the loaded dataset has others.

    The stack the current model was trained with describes that model, with its own classes (a run restored
    while another dataset is loaded); any other stack is the next model, for the loaded dataset's classes.
    """
    data, model = state.data, state.model
    if model is None or model.spec is None or list(model.spec[0]) != list(state.layers):
        return (data.num_classes if data is not None else None), ""
    names = list(model.class_names)
    if data is None or list(data.class_names) == names:
        return len(names), ""
    run = next((r for r in state.runs if r.id == model.run), None) if model.run else None
    who = run.name if run is not None else "The current model"
    loaded = list(data.class_names)
    return len(names), (f"{who} was trained on {len(names)} classes ({_listed(names)}); the dataset loaded now has "
                        f"{len(loaded)} ({_listed(loaded)}). Train builds a new model for the loaded dataset's "
                        "classes.")


def _listed(names: list[str], most: int = 6) -> str:
    shown = [printable(n) for n in names[:most]]
    return ", ".join(shown) + (f" and {len(names) - most} more" if len(names) > most else "")


class _ProposedSize:
    """The image size a pretrained preset proposed, and the user's own that it replaced.

    Choosing a backbone (a preset, or another family) reads the images at the size it was trained at, in
    colour; leaving the backbones puts the user's size back, unless they chose another meanwhile. Undo
    and redo are such switches too, so they take the size along.
    """

    def __init__(self):
        self.own = self.proposed = None  # Preprocessing

    def forget(self) -> None:
        self.own = self.proposed = None

    def follow(self, state: SessionState, before: list, after: list) -> str | None:
        """Propose or give back the size for a stack that went from ``before`` to ``after``; what to say."""
        family, was = _family(after), _family(before)
        config = state.dataset_config
        current = config.preprocessing
        if family is not None and family != was:
            side = default_image_size(after)
            wanted = dataclasses.replace(current, image_size=(side, side), color_mode="rgb")
            if wanted != current:
                if current != self.proposed:
                    self.own = current
                self.proposed = wanted
                state.dataset_config = dataclasses.replace(config, preprocessing=wanted)
            if self.proposed != wanted:
                return None  # the user's own size was this one already
            return (f"{family} was trained on {side}×{side} colour photos, so the Dataset tab reads your images "
                    f"at {side}×{side} now (you had {_size_words(self.own)}). Choosing a preset without a "
                    f"backbone puts {_size_words(self.own)} back.")
        if family is None and self.proposed is not None:
            own, proposed = self.own, self.proposed
            self.forget()
            if current == proposed:
                state.dataset_config = dataclasses.replace(config, preprocessing=own)
                return (f"The Dataset tab reads your images at {_size_words(own)} again, the size you had before "
                        f"the pretrained backbone's {_size_words(proposed)}.")
        return None


def _family(layers) -> str | None:
    return layers[0].full_params()["family"] if has_backbone(layers) else None


def _size_words(pre) -> str:
    h, w = pre.image_size
    return f"{h}×{w}" + (" grayscale" if pre.color_mode == "grayscale" else "")

"""The app's wiring: every view's binding, built and connected in one place (``bind_window``).

A panel is a view with setters and signals; it does not know the state or the
engine and holds none of the state. Its binding, a ``QObject`` built as
``Binding(state, engine, view, …, parent)``, turns the view's requests into state
writes and engine jobs, writes the jobs' typed answers into the state, and shows
the state's changes in the view; it says what happened through ``status(str, int)``
(and ``error(str, str)``). The small bindings are here (``DatasetReading``,
``ModelBinding``, ``ViewerBinding``, ``ProbeBinding``); the larger ones have a
module each (``training_control``, ``repeats_control``, ``runs_control``, ``project_files``,
``model_io``, and ``MapControl`` / ``DataQuality`` / ``FolderWork`` beside their views). A change a
binding itself pushes into a panel is not written back (the guard), so an update
never echoes.

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
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal, Slot

from ..core.data.dataset import split_excluding
from ..core.errors import UserError
from ..core.data.scanning import printable
from ..core.model.architecture import default_image_size, has_backbone
from ..core.project.session import Classified, ModelInfo, SessionState
from ..core.training.probes import known_labels, load_probes, ProbeRecording
from .data_quality_view import DataQuality
from .dataset_map_view import MapControl
from .dataset_panel import DatasetPanel
from .engine_worker import EngineWorker
from .folder_view import FolderWork
from .loading import DatasetLoader
from .model_io import ModelFiles
from .model_panel import ModelPanel
from .probe_view import ProbeView
from .project_files import ProjectFiles
from .recent import RecentProjects
from .repeats_control import RepeatsControl
from .runs_control import RunsControl
from .training_control import TrainingControl
from .viewer_panel import ViewerPanel


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
    """The dataset panel's binding: reads the folders it asks for (off the GUI thread), writes what was read and
    the settings edited into the state, and shows the state in it.

    What is being read is the loader's; what was read, its split, its folder and the exclusions are the
    state's. A split setting or an exclusion changed splits ``state.data`` again (``split_excluding``). A change
    the binding itself pushes into the panel is not written back (the guard), so an update never echoes.
    """

    def __init__(self, state: SessionState, panel: DatasetPanel, parent: QObject | None = None):
        super().__init__(parent or panel)
        self.state, self.panel = state, panel
        self._guard = _Guard()
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
        panel.config_changed.connect(self._edited)
        panel.memory_limit_changed.connect(self._memory_limit)
        state.observe(self._show_config, "dataset_config")
        state.observe(self._show_data, "data", "color_sample")
        state.observe(lambda _: self.split_again(), "excluded")
        state.observe(lambda _: panel.set_busy(state.training), "activity")
        self._show_config(None)

    # -- the settings ------------------------------------------------------------------------
    def _derived(self):
        """What follows from the settings shown and the dataset read; the cache plan."""
        plan = self.panel.show_cache_estimate(self.state.data)
        self.panel.show_color_hint(self.state.data, self.state.color_sample)
        return plan

    def _edited(self) -> None:
        if self._guard.active:
            return
        state = self.state
        before = state.dataset_config
        config = self.panel.config(before.preprocessing.image_size)
        split = (config.val_split, config.seed, config.duplicate_distance)
        with state.changes():  # the settings and the split they make, announced once
            state.dataset_config = config
            if split != (before.val_split, before.seed, before.duplicate_distance):
                self.split_again()
        self._derived()

    def _memory_limit(self) -> None:
        """Say what the new limit means; read the dataset again when it moves it into or out of memory."""
        plan = self._derived()
        if plan is not None and plan.on_disk != self.state.data.on_disk:
            self.panel.start_reload_timer()

    def _show_config(self, _names) -> None:
        state, panel = self.state, self.panel
        if panel.config(state.dataset_config.preprocessing.image_size) != state.dataset_config:
            with self._guard.pushing():
                panel.set_config(state.dataset_config)
        self._derived()

    def _show_data(self, _names) -> None:
        state, panel = self.state, self.panel
        if state.data is None:  # a project opened or New dropped the dataset: the panel shows none either
            panel.show_folder(None)
            panel.show_status("")
            panel.show_no_dataset()
        else:
            panel.show_dataset(state.data, state.excluded)
        self._derived()

    # -- reading -------------------------------------------------------------------------------
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


class ModelBinding(QObject):
    """The model panel's binding: its edits written into the state, the state shown in it.

    Args:
        reread: reads the dataset folder again with the state's settings; called when choosing or leaving a
            pretrained preset changes the image size, so that what the Model tab describes is what trains.
    """

    def __init__(self, state: SessionState, panel: ModelPanel, reread: Callable[[], None] | None = None,
                 parent: QObject | None = None):
        super().__init__(parent or panel)
        self.state, self.panel, self._reread = state, panel, reread
        self._guard = _Guard()
        self._sizes = _ProposedSize()
        panel.changed.connect(self._edited)
        state.observe(self._show, "layers", "preset", "settings")
        state.observe(self._described, "data", "dataset_config", "model", "layers")
        state.observe(lambda _: panel.setEnabled(not state.training), "activity")
        self._show(frozenset({"layers", "preset", "settings"}))
        self._described(None)

    def _edited(self) -> None:
        if self._guard.active:
            return
        state, panel = self.state, self.panel
        layers, settings = list(panel.layers), panel.settings()
        only_device = (layers == state.layers and panel.preset_name == state.preset
                       and dataclasses.replace(settings, device=state.settings.device,
                                               precision=state.settings.precision) == state.settings)
        if only_device:  # where to train and in what precision are this machine's preferences, not project edits
            with state.not_an_edit():
                state.settings = settings
        else:
            before = state.layers
            state.update(layers=layers, preset=panel.preset_name, settings=settings)
            said = self._sizes.follow(state, before, layers)
            if said:
                panel.add_notice(said)
                if self._reread is not None:
                    self._reread()

    def _show(self, names) -> None:
        state, panel = self.state, self.panel
        with self._guard.pushing():
            if {"layers", "preset"} & names and (panel.layers != state.layers or panel.preset_name != state.preset):
                if state.loading:  # another piece of work: its own undo history, and its own image size
                    self._sizes.forget()
                    panel.set_layers(list(state.layers), state.preset)
                else:  # an edit made elsewhere (a weights file chosen, a run restored): one more undo step
                    panel.take_layers(list(state.layers), state.preset)
            if "settings" in names and panel.settings() != state.settings:
                panel.set_settings(state.settings)

    def _described(self, _names) -> None:
        state, panel = self.state, self.panel
        classes, note = _classes_described(state)
        panel.set_input(state.dataset_config.preprocessing.input_shape, classes or panel.num_classes)
        panel.set_classes_note(note)


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


class ViewerBinding(QObject):
    """The viewer's requests as engine jobs, and the state shown in it.

    The viewer (``viewer_panel.ViewerPanel``) asks; this classifies images (``EngineWorker.predict_files`` /
    ``predict_arrays``), looks inside the one selected (``inspect``, then ``gradcam``), evaluates the model
    (``evaluate``) and renames its classes (``set_class_names``). What the strip shows is ``state.classified``:
    a new model classifies the images again, a rename relabels them (``Classified.relabeled``). It keeps only the
    answers on their way (maps that came with a prediction, an evaluation being made).

    Signals:
        status(str, int): a short message for the status bar, and how long to show it (ms).
    """

    status = Signal(str, int)

    def __init__(self, state: SessionState, engine, panel: ViewerPanel, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.engine, self.panel = state, engine, panel
        self._came_with: dict[Classified, Any] = {}  # maps (model.inspection.Inspection) that came with a prediction
        self._maps_coming: set[Classified] = set()  # images shown whose maps are still on the way in the same job
        self.inspection = None  # the selected image's Inspection with its heat map, once all are shown
        self._inspecting = None  # its maps, shown, while the heat map is being computed
        self._known_classes: dict[str, str] = {}  # file -> true class, for images opened from the evaluation or map
        self._evaluating = False  # an evaluation job is on its way
        panel.status.connect(self._say)
        panel.classify_requested.connect(self.classify_paths)
        panel.open_requested.connect(self.open_known)
        panel.map_view.open_requested.connect(self._open_mapped)
        panel.image_given.connect(self.classify_image)
        panel.image_selected.connect(self._on_selected)
        panel.gradcam_requested.connect(self._request_gradcam)
        panel.evaluate_requested.connect(self.evaluate)
        panel.evaluation_wanted.connect(self._evaluate_on_demand)
        panel.names_given.connect(self.rename_classes)
        panel.tab_chosen.connect(self._on_tab)
        panel.member_chosen.connect(self._on_member_chosen)
        state.observe(self._on_model, "model")
        state.observe(self._show_strip, "classified")
        state.observe(self._show_availability, "model", "activity", "engine_ready", "data", "classified")
        state.observe(self._on_data, "data")
        state.observe(self._evaluate_on_demand, "activity")
        state.observe(lambda _: panel.show_tab(state.viewer_tab), "viewer_tab")
        self._show_availability()

    def _say(self, text: str) -> None:
        self.status.emit(text, 5000)

    @property
    def usable(self) -> bool:
        """A model is there and nothing (training, saving) holds the engine."""
        state = self.state
        return state.engine_ready and state.has_model and not state.busy

    def _show_availability(self, _names=None) -> None:
        state = self.state
        self.panel.show_availability(self.usable, has_model=state.has_model, training=state.training,
                                     has_data=state.data is not None)

    def _on_tab(self, key: str) -> None:
        """The tab shown is part of the project (saved with it, not an edit of it)."""
        self.state.viewer_tab = key

    # -- the model -----------------------------------------------------------------------------
    def _on_model(self, _names=None) -> None:
        """A new model (or new names for it): forget what the old one showed, classify the strip again."""
        state, panel = self.state, self.panel
        model, shown = state.model, state.classified
        panel.show_model(model)
        if model is None:
            state.classified = ()
            self._forget()
            return
        relabeled = [im.relabeled(model) for im in shown]
        if shown and None not in relabeled:
            state.classified = tuple(relabeled)  # the same model, new names: no need to ask the engine again
            return
        # the images shown (or, for a reopened project, the ones it showed) are classified again by the new model
        self._known_classes.update({im.path: im.true_class for im in shown if im.path and im.true_class})
        paths = [p for p in state.viewed_images if Path(p).is_file()]
        self._forget()
        state.classified = ()
        if paths:
            self.classify_paths(paths)
        self._evaluate_on_demand()

    def _forget(self) -> None:
        """Clear what the previous model computed (maps, heat map, evaluation)."""
        self._evaluating = False
        self.inspection = self._inspecting = None
        self.panel.reset_views()

    def _show_strip(self, _names=None) -> None:
        shown = self.state.classified
        kept = set(shown)
        self._came_with = {im: maps for im, maps in self._came_with.items() if im in kept}
        self._maps_coming &= kept
        self.panel.show_classified(shown)

    def rename_classes(self, names: list[str]) -> None:
        model = self.state.model
        self.engine.submit(EngineWorker.set_class_names, names, on_done=lambda n: self._on_renamed(model, n),
                           on_error=self._say)

    def _on_renamed(self, model: ModelInfo, names: list[str]) -> None:
        if self.state.model is model:  # still the model the names were given for
            self.state.model = model.renamed(names)

    # -- classifying ---------------------------------------------------------------------------
    def classify_paths(self, paths: list[str]) -> None:
        """Classify image files in the engine thread; unreadable files get a message."""
        if not self.usable:
            self._say("Train or open a model first." if not self.state.has_model else
                             "Wait until the current work (training, saving) ends.")
            return
        if not paths:
            return
        # one file (a drop, a click in the evaluation): its maps come in the same pass as its prediction
        # (only the selected layer coloured there: "All layers" colours its rows as they come into view, so the
        # prediction does not wait for every layer's pictures)
        k = min(5, len(self.state.model.class_names))
        if len(paths) != 1 or not self.state.model.has_maps:
            self.engine.submit(EngineWorker.predict_files, list(paths), k=k, on_done=self._on_predicted,
                               on_error=self._say)
            return
        # the prediction is shown as soon as the forward pass has run (a partial answer); the maps follow
        shown: list[Classified] = []

        def whole(results: list) -> None:
            if shown:
                self._on_looked(shown[0], results[0].inspection)
            else:  # the file could not be read: no partial answer came
                self._on_predicted(results)

        def failed(message: str) -> None:
            if shown:
                self._on_looked(shown[0], None)
            self._say(message)

        self.engine.submit(EngineWorker.predict_files, list(paths), k=k,
                           look_inside=dict(self.panel.inspect_arguments(), first_channels=0),
                           on_partial=lambda results: shown.extend(self._on_predicted(results, maps_coming=True)),
                           on_done=whole, on_error=failed)

    def open_known(self, path: str, true_class: str | None) -> None:
        """Classify one image file, showing ``true_class`` (when known) beside the verdict."""
        if true_class is not None:
            self._known_classes[path] = true_class
        self.classify_paths([path])

    def _open_mapped(self, path: str) -> None:
        """An image clicked on the map, with its class (its folder's name) beside the verdict."""
        data = self.state.data
        known = data.class_names[int(data.labels[data.paths.index(path)])] \
            if data is not None and path in data.paths else None
        self.open_known(path, known)

    def classify_image(self, array, label: str) -> None:
        """Classify an in-memory image (pasted or dropped as image data)."""
        if not self.usable:
            return
        self.engine.submit(EngineWorker.predict_arrays, [array], labels=[label],
                           k=min(5, len(self.state.model.class_names)), on_done=self._on_predicted,
                           on_error=self._say)

    def _on_predicted(self, results: list, maps_coming: bool = False) -> tuple[Classified, ...]:
        """Add the classified images to the state's and select the first; returns them.

        ``maps_coming``: their maps are on the way in the same job (``_on_looked`` receives them), so none are
        asked for when they are shown.
        """
        model, new = self.state.model, []
        for r in results:  # core.model.inspection.Seen
            is_file = bool(r.path) and Path(r.path).exists()
            path = r.path if is_file else None
            label = Path(r.path).name if is_file else (r.path or "image")
            true_class = self._known_classes.pop(path, None) if path else None
            if r.error is not None:
                new.append(Classified(label, path, model, error=r.error, true_class=true_class))
                continue
            # the picture is decoded once in the engine, with the model's input
            im = Classified(label, path, model, top=tuple(tuple(t) for t in r.top), probabilities=r.probabilities,
                            prepared=r.image, display=r.display, true_class=true_class, unlike=r.unlike,
                            unlike_reason=r.unlike_reason)
            if r.inspection is not None:
                self._came_with[im] = r.inspection
            if maps_coming:
                self._maps_coming.add(im)
            new.append(im)
        shown = self.state.classified + tuple(new)
        # what the viewer shows is part of the working state a project brings back (not an edit of it)
        self.state.update(classified=shown, viewed_images=list(dict.fromkeys(im.path for im in shown if im.path)))
        self.panel.show_content()
        errors = [im for im in new if im.error]
        if errors:
            self._say("; ".join(f"{e.label}: {e.error}" for e in errors))
        first_new = len(shown) - len(new)
        good = [i for i in range(first_new, len(shown)) if not shown[i].error]
        self.panel.show_classified(shown, select=good[0] if good else len(shown) - 1)
        return tuple(new)

    # -- inside the network --------------------------------------------------------------------
    def _on_looked(self, im: Classified, inspection) -> None:
        """The maps of ``im``, whose prediction is already shown, have come (``inspection`` None: they failed)."""
        self._maps_coming.discard(im)
        if inspection is not None and im in self.state.classified:
            self._came_with[im] = inspection
        if self.panel.current is im and not im.error and self.state.model.has_maps:
            self._look_inside(im)

    def _on_selected(self, im: Classified) -> None:
        """The viewer shows ``im``: its maps, unless they are on their way with its prediction."""
        if self.state.model is None or not self.state.model.has_maps:
            return  # a model without conv or pooling layers: its prediction is all there is to show
        if im not in self._maps_coming:
            self._look_inside(im)

    def _on_member_chosen(self, _index: int) -> None:
        """Another member of the ensemble: its maps of the image shown (``panel.inspect_arguments`` names it)."""
        im = self.panel.current
        if im is not None and im.prepared is not None and not im.error:
            self._on_selected(im)

    def _look_inside(self, im: Classified) -> None:
        """Show the maps of ``im``: those that came with its prediction, else ask the engine for them."""
        inspection = self._came_with.pop(im, None)
        if inspection is not None:  # came with the prediction
            self._on_inspected(inspection)
            return
        self.engine.submit(EngineWorker.inspect, im.prepared, class_index=self.panel.gradcam.class_index(),
                           **self.panel.inspect_arguments(), with_cam=False, latest_only=True,
                           on_done=self._on_inspected, on_error=self._say)

    def _on_inspected(self, result) -> None:
        """Show the maps (a ``core.model.inspection.Inspection``), then ask for the heat map: ``inspection`` is set
        once the heat map is shown too."""
        im = self.panel.current
        if im is None or im.prepared is None:  # the model changed while it ran
            return
        self.panel.show_maps(im.prepared, result)
        if result.cam_layer is None:
            self.inspection = result
            return
        # the heat map (a forward and a backward pass) is a job of its own, so the maps do not wait for it
        self._inspecting = result
        self._submit_gradcam(im, result.class_index, result.cam_layer)

    def _request_gradcam(self) -> None:
        im, model, cam = self.panel.current, self.state.model, self.panel.gradcam
        if im is None or im.prepared is None or cam.class_index() < 0 or model is None or not model.has_maps:
            return
        self._submit_gradcam(im, cam.class_index(), cam.layer())

    def _submit_gradcam(self, im: Classified, class_index: int, layer: str | None) -> None:
        self.engine.submit(EngineWorker.gradcam, im.prepared, class_index, layer=layer,
                           cam_method=self.panel.gradcam.method(), latest_only=True,
                           on_done=lambda result: self._on_gradcam(im, result), on_error=self._say)

    def _on_gradcam(self, im: Classified, result) -> None:
        if self.panel.current is not im or im.prepared is None:  # another image or model since it was asked for
            return
        self.panel.show_cam(im.prepared, result.cam)
        if self._inspecting is not None:  # the heat map (a HeatMap) that completes the selected image's inspection
            self.inspection = dataclasses.replace(self._inspecting, cam=result.cam, cam_layer=result.cam_layer)
            self._inspecting = None

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self) -> None:
        state, panel = self.state, self.panel
        data, model = state.data, state.model
        if data is None or not self.usable:
            self._say("Evaluation needs a trained model and the dataset it was trained on.")
            return
        if data.preprocessing.input_shape != model.preprocessing.input_shape:
            h, w = model.preprocessing.image_size
            message = (f"The model takes {h}×{w} {model.preprocessing.color_mode} images; set the dataset's image "
                       "size and colour back to that to evaluate it.")
            panel.evaluation_view.show_message(message)
            self._say(message)
            return
        panel.show_evaluating()
        self._evaluating = True
        self.engine.submit(EngineWorker.evaluate, data, latest_only=True,
                           on_done=lambda ev: self._on_evaluated(ev, data, model),
                           on_error=self._on_evaluate_failed)

    def _on_evaluated(self, ev, data, model) -> None:
        self._evaluating = False
        if data is self.state.data and model is self.state.model:  # neither replaced while it ran
            self.panel.evaluation_view.show_result(ev, data)

    def _on_evaluate_failed(self, message: str) -> None:
        self._evaluating = False
        self.panel.evaluation_view.show_message(message)

    def _on_data(self, _names=None) -> None:
        """Another dataset (or split): an evaluation of the one before no longer holds."""
        self.panel.evaluation_view.clear()
        self._evaluating = False
        self._evaluate_on_demand()

    def _evaluate_on_demand(self, _names=None) -> None:
        """Showing the Evaluation tab computes it, once per model and dataset (e.g. after reopening a project)."""
        if self.panel.wants_evaluation() and self.usable and self.state.data is not None and not self._evaluating:
            self.evaluate()


class ProbeBinding(QObject):
    """The probe view's requests written into the state, and the recording it shows.

    While a run trains, the view shows its frames as they come (``show_live_frame``, fed by the training job's
    reports); after it, and whenever the model changes, the engine's recording of the current model
    (``EngineWorker.probe_recording``).

    Signals:
        status(str, int): a short message for the status bar, and how long to show it (ms).
    """

    status = Signal(str, int)

    def __init__(self, state: SessionState, engine, view: ProbeView, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.engine, self.view = state, engine, view
        self._live = False  # frames are arriving from a run
        self._asked_for = None  # the model whose recording was last asked of the engine
        view.probes_chosen.connect(self._on_chosen)
        view.status.connect(lambda text: self.status.emit(text, 8000))
        state.observe(lambda _: view.show_probes(state.probe_images), "probe_images")
        state.observe(self._show_start_folder, "dataset_path")
        state.observe(self._on_model_or_activity, "model", "activity", "engine_ready")
        view.show_probes(state.probe_images)
        self._show_start_folder()

    def _on_chosen(self, paths: list) -> None:
        self.state.probe_images = list(paths)

    def _show_start_folder(self, _names=None) -> None:
        self.view.start_folder = self.state.dataset_path or str(Path.home())

    def _on_model_or_activity(self, _names) -> None:
        """Follow a run live; after it, and whenever the model changes, show the engine's recording."""
        state = self.state
        if state.training:
            if not self._live:
                self._start_live()
            return
        if not state.engine_ready or (not self._live and state.model is self._asked_for):
            return  # a save or an export changes the activity, not the recording: the frame shown stays
        self._live = False
        self._asked_for = model = state.model
        if model is None:
            self.view.show_recording(None)
        else:
            self.engine.submit(EngineWorker.probe_recording,
                               on_done=lambda recording: self._show_model_recording(model, recording),
                               on_error=self.view.show_note)

    def _show_model_recording(self, model: ModelInfo, recording: ProbeRecording | None) -> None:
        """Show the engine's recording of ``model``; with no probes chosen, its images (still there) become them,
        so that a reopened project records the same images when trained again."""
        if recording is not None and not self.state.probe_images:
            paths = [p.path for p in recording.probes if p.path and Path(p.path).is_file()]
            if paths:
                self.state.probe_images = paths
        self.view.set_calibration(model.temperature, model.calibration_note)
        self.view.show_recording(recording, none_for=self._model_name(model))

    def _model_name(self, model: ModelInfo) -> str:
        """What the user calls ``model``: its run's name, else the current model."""
        run = next((r for r in self.state.runs if model.run is not None and r.id == model.run), None)
        return run.name if run is not None else "The current model"

    def _start_live(self) -> None:
        """A run starts: show its frames as they come, with the run's class names and the probes as the engine
        reads them (the true class only when this dataset gives one)."""
        data, paths = self.state.data, list(self.state.probe_images)
        self._live = bool(paths) and data is not None
        if not self._live:
            return
        self.view.set_calibration(None)  # the run's model is calibrated after its last epoch
        try:
            probes = load_probes(paths, data.preprocessing, data.class_names, known_labels(data))
        except UserError as e:
            self.view.show_note(str(e))
            self._live = False
            return
        shown = self.view.recording
        if shown is not None and shown.follows(probes, data.class_names):
            live = shown.copy()  # a continued run adds to it; a new one replaces its frames
        else:
            live = ProbeRecording(probes, data.class_names)
        self.view.show_recording(live)

    def show_live_frame(self, frame) -> None:
        """A frame of the running training's recording (``TrainingControl.probe_frame``)."""
        if self._live:
            self.view.add_frame(frame)


def bind_window(window) -> None:
    """Build every binding of ``window`` (a ``main_window.MainWindow`` with its state, engine, settings, panels
    and menus made) and connect them to the window and to one another: the one place the app is wired.

    Each binding is kept on the window under the name the window's actions use (``window.training``…).
    """
    state, engine = window.state, window.engine
    status = window.show_status
    window.viewer = ViewerBinding(state, engine, window.viewer_panel, window)
    window.probes = ProbeBinding(state, engine, window.probe_view, window)
    window.training = TrainingControl(state, engine, window.training_panel, window.can_train, window)
    window.repeats = RepeatsControl(state, engine, window.training_panel, window.settings, window)
    window.runs = RunsControl(state, engine, window.training_panel.runs_view, window.training_panel,
                              window.reread_dataset, window)
    window.models = ModelFiles(state, engine, window.settings, window)
    window.data_quality = DataQuality(state, engine, window.dataset_panel,
                                      window.viewer_panel.evaluation_view.label_doubts, window,
                                      more_views=(window.viewer_panel.map_view,))
    window.dataset_map = MapControl(state, engine, window.viewer_panel.map_view, window.data_quality,
                                    window.dataset_panel.duplicates.distance.value, window)
    window.folder_work = FolderWork(state, engine, window.viewer_panel.folder_view,
                                    lambda: window.show_viewer_tab(window.viewer_panel.folder_view), window)
    window.projects = ProjectFiles(state, engine, window.settings, RecentProjects(window.settings, window.recent_menu),
                                   window.dataset_panel.load_folder, window.use_sample, window)
    window.dataset_reading = DatasetReading(state, window.dataset_panel, window)
    ModelBinding(state, window.model_panel, window.reread_dataset, window)

    # what the bindings say, in the status bar and in error boxes
    for binding in (window.viewer, window.probes, window.training, window.repeats, window.runs, window.projects,
                    window.models):
        binding.status.connect(status)
    for binding in (window.training, window.repeats, window.runs, window.projects, window.models):
        binding.error.connect(window.show_error)
    engine.ready.connect(window.on_engine_ready)
    engine.failed.connect(lambda name, msg: window.show_error(f"{name.replace('_', ' ').capitalize()} failed", msg))
    engine.warned.connect(lambda text: status(text[:200], 8000))

    # the window follows the state: its actions, its title, a close that waited for work to end
    state.observe(lambda _: window.update_actions())
    state.observe(lambda _: window.update_title(), "modified", "project_path")
    state.observe(window.close_if_asked, "activity")

    # requests that cross panels
    window.model_panel.validity_changed.connect(lambda *_: window.training.show_buttons())
    window.model_panel.validity_changed.connect(lambda *_: window.update_actions())
    window.dataset_panel.sample_button.clicked.connect(window.use_sample)
    window.training_panel.train_requested.connect(window.train)
    window.training_panel.previous_requested.connect(window.runs.bring_back)
    window.training.started.connect(lambda: window.tabs.setCurrentIndex(window.TAB_TRAIN))
    window.training.probe_frame.connect(window.probes.show_live_frame)
    window.repeats.probe_frame.connect(window.probes.show_live_frame)
    window.models.opened.connect(lambda: window.tabs.setCurrentIndex(window.TAB_VIEWER))
    window.viewer_panel.paths_dropped.connect(
        lambda paths: window.folder_work.dropped_on_viewer(paths, window.handle_dropped_paths))
    window.viewer_panel.folder_view.open_requested.connect(lambda path: window.viewer.classify_paths([path]))
    window.viewer_panel.pixels_chosen.connect(window.models.set_pixels)
    window.viewer_panel.probe_marked.connect(lambda path: window.probe_view.add_probes([path]))
    window.probe_view.epoch_shown.connect(window.training_panel.chart.mark_epoch)
    window.probe_view.wants_room.connect(window.training_panel.give_view_room)

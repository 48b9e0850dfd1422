"""The state of one working session, observable without Qt.

``SessionState`` is the one place that says what the user is working on: the
project folder, the dataset and how it is prepared, the layer stack and
training settings, which model the engine holds (``ModelInfo``) with its
training history, the project's training runs (the one history: Bring Back Previous Model restores the run
before the current one, ``training.runs.run_before``), what the application is busy with, and whether
there are unsaved changes.

Only two things write to it: user edits and requests (the panels, through
their bindings, ``ui.bindings``) and answers of other threads (a folder read;
engine results, written by the controllers that submitted the job). Everything else
observes it: ``state.observe(callback, "model", "history")`` calls
``callback(changed_names)`` after any of those fields changed. It is plain
Python with change callbacks, in the style of napari's ``EventedModel`` or
glue's callback properties, so the CLI and tests can use it without a window.

Changes made together (``with state.changes():`` or ``state.update(...)``)
are announced once, after the last one; an observer always sees a consistent
state, never a half-applied one.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ..model.architecture import LayerSpec, preset, TrainingSettings
from ..data.dataset import DatasetConfig
from ..data.images import Preprocessing
from .store import Project

if TYPE_CHECKING:  # core.work.trust imports TensorFlow; ModelInfo is built in the engine thread, which has it
    from ..work.trust import Trust

Observer = Callable[[frozenset[str]], None]

#: What the application is doing; the window enables and disables its actions from it.
IDLE, TRAINING, STOPPING, SAVING, OPENING, SWAPPING, EXPORTING = (
    "idle", "training", "stopping", "saving", "opening", "swapping", "exporting")


@dataclass(frozen=True)
class ModelInfo:
    """What the model the engine holds means; the engine holds its weights.

    Attributes:
        class_names: the names of the model's outputs, in order.
        preprocessing: how images are prepared for it (size, colour, scale).
        source: ``"trained"`` (in this session), ``"project"`` (opened with a project), ``"run"`` (a run of the
            project restored from the runs list) or ``"file"`` (a .keras file the user brought, also when it comes
            back with a project it was saved in).
        label: a few words for the viewer ("trained in this session", the project or file name).
        file: the name of the file a model the user brought was opened from (None for cnndesk's own).
        run: the id of the training run it came from (None for a model from a file).
        spec: ``(layers, preset name, settings)`` it was trained with, when known.
        has_maps: it has conv or pooling layers to look inside; without, the viewer shows predictions only.
        output_note: a sentence when cnndesk turns the model's outputs into probabilities (a model that
            outputs scores), shown on the viewer's model line; "" when they are shown as they are.
        before: the run whose model the engine holds beside this one: the run this one replaced (a continued
            run keeps its model's), which Bring Back Previous Model makes current at once
            (``training.runs.run_before``); None when the engine holds none.
        temperature: the temperature its probabilities are calibrated with (``core.work.trust.Trust``), None when
            they are not calibrated (a model from a file, a run without a validation split or stopped first).
        flags_unlike: whether it keeps the statistics that flag an image "unlike training".
        members: an ensemble's members ("member_1", …: ``core.model.ensemble``), whose maps the viewer shows one
            at a time; empty for a single model.
    """

    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    source: str = "trained"
    label: str = "trained in this session"
    run: str | None = None
    spec: tuple | None = None
    has_maps: bool = True
    output_note: str = ""
    file: str | None = None
    before: str | None = None
    temperature: float | None = None
    flags_unlike: bool = False
    members: tuple[str, ...] = ()

    @property
    def calibration_note(self) -> str:
        """What the model line says of its confidences: "confidences calibrated, T = 1.42", or that they are not."""
        if self.temperature is None:
            return "confidences not calibrated"
        return f"confidences calibrated, T = {self.temperature:.3g}"

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def editable_names(self) -> bool:
        """A model from a file carries no class names of ours: the user may name its outputs."""
        return self.source == "file"

    def renamed(self, names: list[str]) -> "ModelInfo":
        return dataclasses.replace(self, class_names=tuple(names))

    # -- the model the engine now holds: each way a model comes, built here only ---------------------------------
    @classmethod
    def trained(cls, inspector, run: str, spec: tuple, before: str | None, trust: Trust | None) -> "ModelInfo":
        """A model trained in this session as run ``run`` with ``spec`` (layers, preset name, settings), its
        ``trust`` measured after training (None: not measured)."""
        return cls._held(inspector, trust, run=run, spec=spec, before=before)

    @classmethod
    def of_run(cls, inspector, run, before: str | None, trust: Trust | None) -> "ModelInfo":
        """The model of ``run`` (a ``core.training.runs.Run``), restored from the runs list or brought back, with the
        trust kept with it (``run.trust`` read)."""
        return cls._held(inspector, trust, source="run", label=run.name, run=run.id,
                         spec=(list(run.layers), run.preset, run.settings), before=before)

    @classmethod
    def of_project(cls, inspector, project, folder, trust: Trust | None) -> "ModelInfo":
        """The model saved in the project ``folder``, with the trust kept with its run; a model the user brought
        stays theirs to name and to feed (its pixel mode) after a reopen."""
        brought = project.model_file is not None
        return cls._held(inspector, trust, source="file" if brought else "project", file=project.model_file,
                         label=f"{project.model_file} in {Path(folder).name}" if brought else Path(folder).name,
                         run=project.run, spec=(list(project.layers), project.preset, project.settings))

    @classmethod
    def of_file(cls, inspector, path) -> "ModelInfo":
        """A model the user opened from the file ``path``."""
        return cls._held(inspector, None, source="file", label=Path(path).name, file=Path(path).name)

    @classmethod
    def _held(cls, inspector, trust: Trust | None, **identity) -> "ModelInfo":
        """What the ``core.model.inspection.Inspector`` of the model the engine holds says (its classes, pixels,
        whether it has maps, how its outputs are shown) and its ``trust`` (None: none kept), with where the
        model came from (``identity``)."""
        calibrated = trust is not None and trust.calibration is not None
        return cls(tuple(inspector.class_names), inspector.preprocessing, has_maps=inspector.has_maps,
                   output_note=inspector.output_note, temperature=trust.temperature if calibrated else None,
                   flags_unlike=trust is not None and trust.novelty is not None,
                   members=tuple(inspector.members), **identity)


@dataclass(frozen=True, eq=False)
class Classified:
    """One image the viewer shows and what the model it was classified with said of it.

    Equal only to itself (``eq=False``): the same file opened twice is shown twice.

    Attributes:
        label: the file's name, or what the image is ("pasted image").
        path: the image file; None for an image without one (pasted, dropped as image data).
        model: the model (``ModelInfo``) that classified it.
        top: its most likely classes with their probabilities, most likely first.
        probabilities: the probability of each of the model's classes (a numpy array).
        prepared: the image as the model sees it (a numpy array, 0-255).
        display: the image as opened, for showing (a numpy array; None: ``prepared`` is shown).
        error: why it could not be classified (then nothing else is known of it).
        true_class: its class, when it was opened from the evaluation.
        unlike: whether it is unlike the training images (``core.work.novelty``); None when the model keeps no
            statistics to tell.
        unlike_reason: what is unlike them, in words ("" when it is not).
    """

    label: str
    path: str | None
    model: ModelInfo | None
    top: tuple[tuple[str, float], ...] = ()
    probabilities: Any = None
    prepared: Any = None
    display: Any = None
    error: str | None = None
    true_class: str | None = None
    unlike: bool | None = None
    unlike_reason: str = ""

    def relabeled(self, model: ModelInfo) -> "Classified | None":
        """What it shows when ``model`` holds: its verdict under ``model``'s class names when ``model`` is the model
        it was classified with, renamed; None when ``model`` is another model (the image must be classified again)."""
        mine = self.model
        if mine is None or mine.renamed(list(model.class_names)) != model:
            return None
        if self.error:
            return dataclasses.replace(self, model=model)
        order = np.argsort(-np.asarray(self.probabilities))[:len(self.top)]
        top = tuple((model.class_names[i], float(self.probabilities[i])) for i in order)
        return dataclasses.replace(self, model=model, top=top)


# -- the engine's answers (``ui.engine_worker``: its jobs answer with these) -----------------------------------------
@dataclass(frozen=True)
class Runtime:
    """The TensorFlow the engine trains with: versions, and the devices (``training.devices.available_devices``)."""

    tensorflow: str
    keras: str
    devices: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Trained:
    """A training run ended: what ``core.training.fitting.train`` gave back (its ``model`` None: the model stays in the
    engine's thread), the model the engine now holds, where its run's weights were kept for the save
    (``kept``, a ``core.training.runs.KeptRun``) or why they could not be (``kept_error``), and the model's trust
    (temperature, calibration, novelty statistics) to keep with the run."""

    result: Any  # core.training.progress.TrainResult
    model: ModelInfo
    kept: Any = None
    kept_error: str | None = None
    trust: dict | None = None  # core.work.trust.Trust.to_json() measured on the validation split; None: not measured


@dataclass(frozen=True)
class TrainedGroup:
    """A Train ×N ended (``core.training.repeats``): what ``train_repeats`` gave back (``Repeats`` with no models or
    recordings in it: they stay in the engine's thread), the model kept, now held (as run ``kept_run``), and where
    each run's weights and probe recording were written (run id -> ``core.training.runs.KeptRun``; a run missing
    there could not be kept, ``kept_error`` says why)."""

    repeats: Any
    model: ModelInfo
    kept_run: str
    kept_runs: dict
    kept_error: str | None = None
    trust: dict | None = None  # the kept best member's (``Trained.trust``); None for an ensemble, or not measured


@dataclass(frozen=True)
class ProjectOpened:
    """A project was opened: the ``core.project.store.Project`` and its model, now held (None: it has none)."""

    project: Any
    model: ModelInfo | None


@dataclass(frozen=True)
class ModelOpened:
    """A model file was opened and is now held; ``pixels_why`` says why its pixels are fed as they are, ``layers``
    names its layers."""

    model: ModelInfo
    pixels_why: str = ""
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRestored:
    """A run of the runs list is the current model again; ``probe_frames`` counts its probe recording's frames
    (None: it has none)."""

    model: ModelInfo
    probe_frames: int | None = None


def _seed_layers() -> list[LayerSpec]:
    return preset("seed")


@dataclass(eq=False)
class SessionState:
    """Everything one session works on; see the module docstring for who writes and who observes."""

    project_path: str | None = None
    dataset_path: str | None = None
    data: Any = None  # the LoadedDataset read from dataset_path with dataset_config, split without excluded; or None
    dataset_config: DatasetConfig = field(default_factory=DatasetConfig)
    layers: list[LayerSpec] = field(default_factory=_seed_layers)
    preset: str = "seed"
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    model: ModelInfo | None = None
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    batch_loss: list[tuple[float, float]] = field(default_factory=list)  # (epoch position, loss) of each batch
    viewed_images: list[str] = field(default_factory=list)  # the image files the viewer shows, in order
    classified: tuple[Classified, ...] = ()  # the images the viewer's strip shows, in order, with their verdicts
    viewer_tab: str = ""  # the viewer's tab shown (a ViewerPanel.TABS key; "" for its first)
    charted: ModelInfo | None = None  # the model whose run the Train tab's chart shows (drawn live as it trained)
    folder_result: Any = None  # a folder classified (core.work.classify_folder.FolderResult), or None; not saved
    runs: list = field(default_factory=list)  # the project's training runs (core.training.runs.Run), oldest first
    probe_images: list[str] = field(default_factory=list)  # image files recorded while training (core.probes)
    excluded: frozenset[str] = frozenset()  # image files the user excluded from training and validation
    color_sample: Any = None  # how grey data's images are (core.data.color_hint.ColorSample), for the grayscale hint
    activity: str = IDLE
    engine_ready: bool = False
    modified: bool = False

    #: Fields that are part of the saved project: changing one marks the session modified.
    DOCUMENT = frozenset({"dataset_path", "dataset_config", "layers", "preset", "settings", "model", "history",
                          "best_epoch", "batch_loss", "runs", "excluded"})
    #: Fields of the application itself, not of the work: New and Open (``reset``, ``load``) leave them.
    SESSION = frozenset({"activity", "engine_ready"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "_observers", [])
        object.__setattr__(self, "_pending", None)
        object.__setattr__(self, "_quiet", 0)
        object.__setattr__(self, "_edits", 0)

    # -- observing -----------------------------------------------------------
    def observe(self, callback: Observer, *names: str) -> Observer:
        """Call ``callback(changed_names)`` after any of ``names`` (all fields when none) changed."""
        unknown = set(names) - set(self.field_names())
        if unknown:
            raise AttributeError(f"SessionState has no field {', '.join(sorted(unknown))}")
        self._observers.append((callback, frozenset(names)))
        return callback

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    # -- changing ------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if name not in self.__dataclass_fields__:
            raise AttributeError(f"SessionState has no field {name!r}")
        old = self.__dict__.get(name, dataclasses.MISSING)
        if old is not dataclasses.MISSING and _same(old, value):
            return
        object.__setattr__(self, name, value)
        if old is dataclasses.MISSING:  # __init__
            return
        changed = {name}
        if name in self.DOCUMENT and not self._quiet:
            object.__setattr__(self, "_edits", self._edits + 1)
            if not self.modified:
                object.__setattr__(self, "modified", True)
                changed.add("modified")
        self._announce(changed)

    def update(self, **values) -> None:
        """Set several fields; observers hear once, after all of them."""
        with self.changes():
            for name, value in values.items():
                setattr(self, name, value)

    @contextmanager
    def changes(self) -> Iterator["SessionState"]:
        """Group changes: observers are told once, when the outermost block ends."""
        outer = self._pending is None
        if outer:
            object.__setattr__(self, "_pending", set())
        try:
            yield self
        finally:
            if outer:
                pending = self._pending
                object.__setattr__(self, "_pending", None)
                if pending:
                    self._notify(frozenset(pending))

    @contextmanager
    def not_an_edit(self) -> Iterator["SessionState"]:
        """Changes that are not edits of the work (opening a project, restoring settings): ``modified`` stays."""
        object.__setattr__(self, "_quiet", self._quiet + 1)
        try:
            with self.changes():
                yield self
        finally:
            object.__setattr__(self, "_quiet", self._quiet - 1)

    def _announce(self, names: set[str]) -> None:
        if self._pending is not None:
            self._pending.update(names)
        else:
            self._notify(frozenset(names))

    def _notify(self, names: frozenset[str]) -> None:
        for callback, wanted in list(self._observers):
            if not wanted or wanted & names:
                callback(names)

    # -- new and opened work ------------------------------------------------------
    def reset(self, **values) -> None:
        """Start new work: every field but ``SESSION``'s as a fresh session has it, then ``values``.

        The fields are the dataclass's own, so a field added later is reset too and nothing of the work before
        (its probe images, its excluded files…) is left for the next. Where to train stays: it is a preference of
        this machine. Not an edit: ``modified`` ends False; observers hear once.
        """
        fresh = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                 for f in dataclasses.fields(self) if f.name not in self.SESSION}
        fresh["settings"] = dataclasses.replace(fresh["settings"], device=self.settings.device)
        with self.not_an_edit():
            self.update(**{**fresh, **values})

    def load(self, folder: str, project, model: ModelInfo | None) -> None:
        """Make the project opened from ``folder`` (``core.project.store.Project``, with ``model`` the engine now holds)
        the work: what it holds, and what it does not as a fresh session has it (``reset``). Its dataset is not
        read yet: ``data`` stays None until the project's own is. The opening has ended: ``activity`` is idle."""
        self.reset(project_path=str(Path(folder)), dataset_path=project.dataset_path, dataset_config=project.dataset,
                   layers=list(project.layers), preset=project.preset, settings=project.settings,
                   history=list(project.history), best_epoch=project.best_epoch,
                   batch_loss=[tuple(p) for p in project.batch_loss], viewed_images=list(project.viewer_images),
                   viewer_tab=project.viewer_tab or "", excluded=frozenset(project.excluded_files),
                   runs=list(project.runs), model=model, activity=IDLE)

    # -- questions -------------------------------------------------------------
    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def edits(self) -> int:
        """How many edits of the work this session has seen: a save clears ``modified`` only if none came
        while it was being written."""
        return self._edits

    @property
    def loading(self) -> bool:
        """True while changes that are no edits (``not_an_edit``: a project opened, New, the last session's
        settings) are made and announced: an observer can tell a new piece of work from an edit of this one."""
        return self._quiet > 0

    @property
    def busy(self) -> bool:
        return self.activity != IDLE

    @property
    def training(self) -> bool:
        return self.activity in (TRAINING, STOPPING)

    def current_project(self):
        """The project as it would be saved now (``core.project.store.Project``)."""
        config = self.dataset_config
        if self.model is not None:
            # the project must reopen its model with the preprocessing the model was trained with
            config = dataclasses.replace(config, preprocessing=self.model.preprocessing)
            classes = list(self.model.class_names)
        else:
            classes = list(self.data.class_names) if self.data is not None else []
        return Project(
            dataset_path=self.dataset_path,
            class_names=classes,
            dataset=config,
            preset=self.preset,
            layers=list(self.layers),
            settings=self.settings,
            history=list(self.history),
            best_epoch=self.best_epoch,
            run=self.model.run if self.model is not None else None,
            batch_loss=[list(p) for p in thin(self.batch_loss)],
            viewer_images=list(self.viewed_images),
            model_file=self.model.file if self.model is not None else None,
            runs=list(self.runs),
            excluded_files=sorted(self.excluded),
            viewer_tab=self.viewer_tab or None,
        )


#: a project keeps at most this many batch-loss points (a long run's line keeps its shape)
MAX_BATCH_POINTS = 4000


def thin(points, most: int = MAX_BATCH_POINTS) -> list:
    """Every k-th point, so that at most ``most`` remain (the last one always kept)."""
    points = list(points)
    if len(points) <= most:
        return points
    step = -(-len(points) // most)
    kept = points[::step]
    if kept[-1] is not points[-1]:
        kept[-1] = points[-1]
    return kept


def _same(a, b) -> bool:
    """Equal for the purpose of announcing a change (arrays and datasets compare by identity).

    A ``LoadedDataset`` is equal only to itself (``eq=False``), so a dataset read again is a change
    found without comparing its pixels.
    """
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # e.g. numpy arrays: ambiguous truth value
        return False

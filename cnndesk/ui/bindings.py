"""Two-way wiring between the ``SessionState`` and the panels that edit or show it.

A panel is a view with setters and signals; it does not know the state. Each
``bind_*`` function writes the panel's user edits into the state and shows
the state's changes in the panel. A change the binding itself pushes into a
panel is not written back (the guard), so an update never echoes.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Callable

from ..core.model.architecture import default_image_size, has_backbone
from ..core.data.scanning import printable
from ..core.project.session import SessionState
from .dataset_panel import DatasetPanel
from .model_panel import ModelPanel


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


def bind_dataset_panel(state: SessionState, panel: DatasetPanel) -> None:
    guard = _Guard()

    def read(data) -> None:  # reading a folder is not an edit of the project; its settings are
        with state.not_an_edit():
            state.update(data=data, dataset_path=panel.folder)

    def edited() -> None:
        if not guard.active:
            state.dataset_config = panel.config()

    def show(_names) -> None:
        if panel.config() != state.dataset_config:
            with guard.pushing():
                panel.set_config(state.dataset_config)

    panel.dataset_changed.connect(read)
    panel.config_changed.connect(edited)
    state.observe(show, "dataset_config")
    # a project opened drops the dataset: the panel shows none either (before the exclusions split the old one)
    state.observe(lambda _: state.data is None and panel.forget(), "data")
    state.observe(lambda _: panel.set_excluded(state.excluded), "excluded")
    state.observe(lambda _: panel.set_busy(state.training), "activity")
    show(None)


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

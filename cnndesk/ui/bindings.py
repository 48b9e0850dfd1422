"""Two-way wiring between the ``SessionState`` and the panels that edit or show it.

A panel is a view with setters and signals; it does not know the state. Each
``bind_*`` function writes the panel's user edits into the state and shows
the state's changes in the panel. A change the binding itself pushes into a
panel is not written back (the guard), so an update never echoes.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

from ..core.architecture import default_image_size
from ..core.session import SessionState
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
    state.observe(lambda _: panel.set_excluded(state.excluded), "excluded")
    state.observe(lambda _: panel.set_busy(state.training), "activity")
    show(None)


def bind_model_panel(state: SessionState, panel: ModelPanel) -> None:
    guard = _Guard()

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
            switched = panel.preset_name != state.preset
            state.update(layers=layers, preset=panel.preset_name, settings=settings)
            if switched:
                _suggest_image_size(state, layers)

    def show(names) -> None:
        with guard.pushing():
            if {"layers", "preset"} & names and (panel.layers != state.layers or panel.preset_name != state.preset):
                if state.loading:  # another piece of work: its own undo history
                    panel.set_layers(list(state.layers), state.preset)
                else:  # an edit made elsewhere (a weights file chosen, a run restored): one more undo step
                    panel.take_layers(list(state.layers), state.preset)
            if "settings" in names and panel.settings() != state.settings:
                panel.set_settings(state.settings)

    def dataset(_names) -> None:
        if state.data is not None:
            panel.set_input(state.data.preprocessing.input_shape, state.data.num_classes)

    panel.changed.connect(edited)
    state.observe(show, "layers", "preset", "settings")
    state.observe(dataset, "data")
    state.observe(lambda _: panel.setEnabled(not state.training), "activity")
    show(frozenset({"layers", "preset", "settings"}))



def _suggest_image_size(state: SessionState, layers) -> None:
    """A pretrained preset just chosen: read the images at the size its backbone was trained at (and in colour).

    The user can change the size afterwards; only the switch to the preset sets it.
    """
    side = default_image_size(layers)
    config = state.dataset_config
    wanted = dataclasses.replace(config.preprocessing, image_size=(side, side), color_mode="rgb") if side else None
    if wanted is not None and wanted != config.preprocessing:
        state.dataset_config = dataclasses.replace(config, preprocessing=wanted)

"""What keeps the viewer quick on large models: channels coloured in one pass, grids capped, "All layers" drawn lazily.

Behaviour only (what is shown, and that it is the same picture as before); the timings are in
benchmarks/viewer_models.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from cnndesk.core.model.pictures import colorize, colorize_channels
from cnndesk.ui.inspection_views import OVERVIEW_CHANNELS, ActivationView, LayerOverview
from cnndesk.ui.widgets import MAX_CHANNEL_TILES, ImageTile
from conftest import shown


def _maps(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("shape, scale", [((7, 7, 300), 40.0), ((28, 20, 16), 1e-3), ((1, 1, 5), 1.0),
                                          ((3, 4, 1), 1e6)])
def test_colouring_all_channels_at_once_gives_the_same_pixels_as_one_by_one(shape, scale):
    rng = np.random.default_rng(3)
    maps = _maps(rng, shape, scale)
    if shape[-1] > 2:
        maps[..., 1] = 2.5  # a constant channel: the colour map's low end
        maps[..., 2] = np.maximum(maps[..., 2], 0)  # mostly zeros, as after a ReLU
    pictures = colorize_channels(maps)
    assert pictures.shape == (shape[-1], shape[0], shape[1], 3) and pictures.dtype == np.uint8
    for c in range(shape[-1]):
        assert np.array_equal(pictures[c], colorize(maps[..., c]))


def test_colouring_only_the_first_channels_leaves_the_maps_as_they_were():
    maps = _maps(np.random.default_rng(4), (6, 6, 20))
    before = maps.copy()
    first = colorize_channels(maps, count=8)
    assert first.shape == (8, 6, 6, 3)
    assert np.array_equal(first, colorize_channels(maps)[:8])
    assert np.array_equal(maps, before)
    assert colorize_channels(maps, count=0).shape == (0, 6, 6, 3)


def test_a_layer_of_512_channels_shows_the_first_tiles_and_says_so(qtbot):
    view = shown(qtbot, ActivationView(), 1000, 700)
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    maps = [("wide", _maps(rng, (4, 4, 512))), ("narrow", _maps(rng, (8, 8, 6)))]
    view.show_maps(image, maps, ["wide", "narrow"])
    assert view.layer_combo.currentText() == "wide"
    assert len(view.grid.tiles) == MAX_CHANNEL_TILES < 512
    assert view.layer_info.text() == f"wide: 512 channels of 4×4 (the first {MAX_CHANNEL_TILES} are shown)"
    assert all(not t.pixmap().isNull() and t.isVisibleTo(view) for t in view.grid.tiles)
    # another layer: only its own channels are shown, and a click enlarges the clicked one
    view.layer_combo.setCurrentText("narrow")
    assert len(view.grid.tiles) == 6
    assert view.layer_info.text() == "narrow: 6 channels of 8×8"
    assert sum(t.isVisibleTo(view) for t in view.grid.findChildren(ImageTile)) == 6  # the 512 layer's are hidden
    qtbot.mouseClick(view.grid.tiles[4], Qt.LeftButton)
    assert view.enlarged_caption.text().startswith("narrow, channel 4")


def test_a_grid_shows_the_pictures_it_is_given_and_colours_the_rest_itself(qtbot):
    view = shown(qtbot, ActivationView(), 1000, 700)
    rng = np.random.default_rng(6)
    maps = [("a", _maps(rng, (5, 5, 4))), ("b", _maps(rng, (5, 5, 4)))]
    # pictures made elsewhere (here: all white) are used as they are, for the layer they belong to
    white = np.full((4, 5, 5, 3), 255, np.uint8)
    view.show_maps(np.zeros((5, 5, 3), np.uint8), maps, ["a", "b"], pictures={"a": white})
    first = view.grid.tiles[0].pixmap().toImage()
    assert first.pixelColor(2, 2).name() == "#ffffff"
    view.layer_combo.setCurrentText("b")
    expected = colorize(maps[1][1][..., 0])[0, 0]
    assert view.grid.tiles[0].pixmap().toImage().pixelColor(1, 1).getRgb()[:3] == tuple(int(v) for v in expected)


def _filled(overview: LayerOverview) -> set[str]:
    return set(overview.filled_rows())


def test_all_layers_draws_only_the_rows_scrolled_into_view(qtbot):
    overview = shown(qtbot, LayerOverview(), 700, 300)
    rng = np.random.default_rng(7)
    names = [f"layer_{i:02d}" for i in range(40)]
    maps = [(n, _maps(rng, (6, 6, 12))) for n in names]
    overview.show_maps(np.zeros((16, 16, 3), np.uint8), maps)
    qtbot.waitUntil(lambda: bool(overview.filled_rows()))
    first = _filled(overview)
    assert "layer_00" in first and len(first) < 10  # the top of the column only
    captions = [lab.text() for lab in overview.findChildren(QLabel, "overviewCaption")]
    assert len(captions) == 41 and captions[-1] == "layer_39\n6×6×12\nfirst 8 of 12 channels"  # every row is listed
    with_pictures = [lab for lab in overview.widget().findChildren(QLabel) if not lab.pixmap().isNull()]
    assert len(with_pictures) == 1 + OVERVIEW_CHANNELS * len(first)  # the input, and the rows in view
    # scrolled to the end: the last rows get their pictures, the middle ones still have none
    bar = overview.verticalScrollBar()
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: "layer_39" in _filled(overview))
    assert "layer_20" not in _filled(overview)
    assert len(_filled(overview)) < 20


def test_the_next_image_of_the_same_model_keeps_the_rows_and_redraws_only_those_in_view(qtbot):
    overview = shown(qtbot, LayerOverview(), 700, 300)
    rng = np.random.default_rng(8)
    names = [f"layer_{i:02d}" for i in range(30)]
    overview.show_maps(np.zeros((16, 16, 3), np.uint8), [(n, _maps(rng, (6, 6, 12))) for n in names])
    qtbot.waitUntil(lambda: bool(overview.filled_rows()))
    bar = overview.verticalScrollBar()
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: "layer_29" in _filled(overview))
    captions = overview.findChildren(QLabel, "overviewCaption")
    # the next image: the same rows, its own pictures for the rows in view (the bottom), none elsewhere
    second = [(n, _maps(rng, (6, 6, 12))) for n in names]
    overview.show_maps(np.zeros((16, 16, 3), np.uint8), second)
    assert overview.findChildren(QLabel, "overviewCaption") == captions
    qtbot.waitUntil(lambda: "layer_29" in _filled(overview))
    assert "layer_00" not in _filled(overview)
    with_pictures = [lab for lab in overview.widget().findChildren(QLabel) if not lab.pixmap().isNull()]
    assert len(with_pictures) == 1 + OVERVIEW_CHANNELS * len(_filled(overview))
    last_row_first_tile = [lab for lab in with_pictures if lab.toolTip() == "layer_29 channel 0"]
    expected = colorize(second[-1][1][..., 0])[0, 0]
    assert last_row_first_tile[0].pixmap().toImage().pixelColor(1, 1).getRgb()[:3] == tuple(int(v) for v in expected)

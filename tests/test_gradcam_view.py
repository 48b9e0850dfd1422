"""The Grad-CAM heat map made readable: the smoothing itself, and the "Smooth" check box that switches it.

These parts need no model: the view is handed an image and a map, as the viewer hands them over.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QStyle, QStyleOptionButton

from cnndesk.core.model.pictures import smooth_map
from cnndesk.core.model.pictures import CAM_SMOOTH_SIGMA
from cnndesk.ui.inspection_views import GradCamView


def speckled_map(seed: int = 0) -> np.ndarray:
    """A 26×26 map like a late convolution's: spots everywhere, and one brighter region (rows 5-8, columns 17-20)."""
    rng = np.random.default_rng(seed)
    cam = rng.random((26, 26)) * 0.6
    cam[5:9, 17:21] += 0.4 + rng.random((4, 4)) * 0.6
    return cam / cam.max()


def test_smoothing_keeps_the_map_in_0_1_and_its_peak_in_its_region():
    cam = speckled_map()
    for sigma in (0.5, 1.0, 2.0):
        smoothed = smooth_map(cam, sigma)
        assert smoothed.shape == cam.shape
        assert smoothed.min() >= 0.0 and smoothed.max() <= 1.0
        assert smoothed.max() == np.float32(cam.max())  # red still means "raised the score most"
        row, col = np.unravel_index(np.argmax(smoothed), smoothed.shape)
        assert 5 <= row <= 8 and 17 <= col <= 20
    # less speckled: neighbouring cells differ less than in the raw map
    assert np.abs(np.diff(smooth_map(cam, 1.0), axis=1)).mean() < 0.5 * np.abs(np.diff(cam, axis=1)).mean()


def test_smoothing_leaves_a_constant_map_and_an_empty_one_as_they_are():
    for value in (0.0, 0.3, 1.0):
        flat = np.full((13, 13), value, np.float32)
        np.testing.assert_array_equal(smooth_map(flat, 1.0), flat)
    one_cell = np.array([[0.7]])
    np.testing.assert_array_equal(smooth_map(one_cell, 1.0), one_cell.astype(np.float32))


def test_a_lone_peak_at_the_border_stays_at_the_border():
    cam = np.zeros((10, 10))
    cam[0, 9] = 1.0
    smoothed = smooth_map(cam, 1.0)
    assert np.unravel_index(np.argmax(smoothed), smoothed.shape) == (0, 9)
    assert smoothed[0, 9] == 1.0 and smoothed[0, 8] > 0  # spread to its neighbours


def click_box(qtbot, box: QCheckBox) -> None:
    """Click the check box's square, as a person does (the widget may be wider than its square and text)."""
    option = QStyleOptionButton()
    box.initStyleOption(option)
    square = box.style().subElementRect(QStyle.SE_CheckBoxIndicator, option, box)
    qtbot.mouseClick(box, Qt.LeftButton, pos=square.center())


def shown_view(qtbot) -> GradCamView:
    view = GradCamView()
    qtbot.addWidget(view)
    view.set_classes(["left", "top", "centre"])
    view.set_layers(["conv2d_1", "conv2d_5"], "conv2d_5")
    view.resize(640, 360)
    view.show()
    qtbot.waitExposed(view)
    image = np.full((64, 64, 3), 120, np.uint8)
    view.show_cam(image, speckled_map())
    return view


def test_the_smooth_check_box_is_on_by_default_and_switches_what_is_shown(qtbot):
    view = shown_view(qtbot)
    assert view.smooth.isChecked()
    smoothed = view.overlay_image().copy()
    smoothed_pixmap = view.cam_view.pixmap().toImage()
    assert "smoothed over about 9 px of the 64-px image" in view.cam_caption.text()

    click_box(qtbot, view.smooth)
    assert not view.smooth.isChecked()
    raw = view.overlay_image()
    assert not np.array_equal(raw, smoothed)
    assert view.cam_view.pixmap().toImage() != smoothed_pixmap  # the picture on screen changed too
    assert "26×26, raw" in view.cam_caption.text()
    np.testing.assert_array_equal(view.shown_map(), view.cam)  # raw: the layer's exact values

    click_box(qtbot, view.smooth)
    np.testing.assert_array_equal(view.overlay_image(), smoothed)


def test_the_saved_overlay_is_the_map_that_is_shown(qtbot):
    from cnndesk.core.model.pictures import gradcam_overlay

    view = shown_view(qtbot)
    for checked in (True, False):
        view.smooth.setChecked(checked)
        expected = smooth_map(view.cam, CAM_SMOOTH_SIGMA) if checked else view.cam
        np.testing.assert_array_equal(view.overlay_image(),
                                      gradcam_overlay(view.image, expected, view.opacity.value() / 100.0))

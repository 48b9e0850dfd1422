"""The viewer's parts that need no model: the smooth Grad-CAM overlay, the drop signal, the shared colour bar."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from cnndesk.core.model.pictures import gradcam_overlay
from cnndesk.ui.viewer_panel import ViewerPanel
from cnndesk.ui.widgets import ColorBar


def test_a_coarse_heat_map_is_blended_smoothly_at_the_size_asked_for():
    image = np.full((8, 8, 3), 128, np.uint8)
    cam = np.array([[0.0, 1.0], [0.0, 0.0]])  # two cells a side: blocks if it were enlarged by copying
    over = gradcam_overlay(image, cam, opacity=1.0, size=(64, 64))
    assert over.shape == (64, 64, 3)
    top_row = over[0].astype(int)
    assert np.abs(np.diff(top_row, axis=0)).max() <= 40  # no edge between the two cells, a gradual ramp
    assert len({tuple(px) for px in top_row}) > 10  # many shades from one cell's colour to the other's
    # at opacity 0 the picture is the image, enlarged
    plain = gradcam_overlay(image, cam, opacity=0.0, size=(64, 64))
    assert (plain == 128).all()
    # without a size: the image's own size, as before
    assert gradcam_overlay(image, cam).shape == (8, 8, 3)


def test_files_dropped_on_the_viewer_are_handed_on_with_a_signal(qtbot, tmp_path):
    viewer = ViewerPanel()
    qtbot.addWidget(viewer)
    folder = tmp_path / "pictures"
    folder.mkdir()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder)), QUrl.fromLocalFile(str(tmp_path / "model.keras"))])
    pos = viewer.rect().center()
    enter = QDragEnterEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(viewer, enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(viewer.paths_dropped) as dropped:
        QApplication.sendEvent(viewer, QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    assert dropped.args[0] == [str(folder), str(tmp_path / "model.keras")]


def test_a_colour_bar_keeps_its_height_in_a_short_window(qtbot):
    bar = ColorBar("jet", 150)
    qtbot.addWidget(bar)
    bar.resize(80, 40)  # a layout asking for less
    bar.show()
    assert bar.height() == 150 and bar.bar.height() == 150
    assert bar.high.text() == "high" and bar.low.text() == "low"
    assert bar.high.geometry().bottom() < bar.low.geometry().top()

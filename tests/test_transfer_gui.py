"""Pretrained presets in the app, used as a person would: the preset list, the folded backbone, the weights
download with Cancel, the offline dialog and its "Choose a weights file…", training and fine-tuning."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QLabel, QMessageBox, QProgressDialog, QPushButton, QSpinBox, QToolButton

from pretrained import cache_weights, offline_urlopen
from test_app import drop_paths


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("urllib.request.urlopen", offline_urlopen)
    return tmp_path / "keras-home"


def choose_preset(window, qtbot, name):
    combo = window.model_panel.preset_combo
    combo.setCurrentIndex(combo.findData(name))
    qtbot.waitUntil(lambda: window.state.preset == name, timeout=5000)


def use_image_size(window, qtbot, text):
    panel = window.dataset_panel
    panel.image_size.setCurrentText(text)
    side = int(text)
    qtbot.waitUntil(lambda: panel.data is not None and panel.data.preprocessing.image_size == (side, side),
                    timeout=60000)


def test_a_pretrained_preset_trains_offline_from_a_chosen_weights_file(keras_home, window, qtbot, tmp_path,
                                                                       monkeypatch):
    w = window
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    choose_preset(w, qtbot, "mobilenetv3small")
    # the backbone's own size is suggested, and stays adjustable
    assert w.state.dataset_config.preprocessing.image_size == (224, 224)
    use_image_size(w, qtbot, "32")
    table = w.model_panel.table
    assert "MobileNetV3Small (ImageNet, frozen)" in table.item(1, 0).text()
    assert table.item(1, 2).text() == "939,120" and table.rowCount() == 5  # one row, not 157
    # the editor: the fine-tune control and the blocks, folded until opened
    w.model_panel.select_layer(0)
    tune = w.model_panel.editor_box.findChild(QSpinBox, "param_fine_tune")
    tune.selectAll()
    qtbot.keyClicks(tune, "1")
    qtbot.keyClick(tune, Qt.Key_Return)  # a number applies when it is finished
    qtbot.waitUntil(lambda: w.state.layers[0].params.get("fine_tune") == 1, timeout=5000)
    blocks = w.model_panel.editor_box.findChild(QLabel, "backboneBlockList")
    toggle = w.model_panel.editor_box.findChild(QToolButton, "backboneBlocksToggle")
    assert blocks.isHidden()
    qtbot.mouseClick(toggle, Qt.LeftButton)
    assert not blocks.isHidden() and "top: fine-tuned" in blocks.text() and "expanded_conv_10: frozen" in blocks.text()
    assert toggle.text() == "13 blocks, 939,120 parameters: top 1 fine-tuned, 12 frozen"
    w.model_panel.grab().save("/tmp/wt-16-model-panel.png")

    epochs = w.model_panel.epochs
    epochs.selectAll()
    qtbot.keyClicks(epochs, "1")
    qtbot.keyClick(epochs, Qt.Key_Return)
    chosen = cache_weights(tmp_path / "elsewhere", "MobileNetV3Small")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(chosen), ""))
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.findChild(QMessageBox, "weightsMissingBox") is not None
                    and w.findChild(QMessageBox, "weightsMissingBox").isVisible(), timeout=20000)
    box = w.findChild(QMessageBox, "weightsMissingBox")
    text = box.text()
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 (4.3 MB)" in text
    assert str(keras_home / "models") in text and "Temporary failure in name resolution" in text
    assert not w.training_panel.running
    qtbot.mouseClick(box.findChild(QPushButton, "chooseWeightsFile"), Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training_panel.running, timeout=10000)
    qtbot.waitUntil(lambda: not w.training_panel.running, timeout=300000)
    assert w.state.layers[0].params["weights"] == str(chosen)
    assert [h["epoch"] for h in w.state.history] == [1, 2]  # the head's epoch, then the fine-tuning one
    log = w.training_panel.log.toPlainText()
    assert "cached backbone features" in log and "Fine-tuning the top 1 blocks" in log

    # the viewer looks inside the backbone: its layers are in the choosers, as backbone/layer
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    v = w.viewer_panel
    image = next(Path(w.state.dataset_path).rglob("*.png"))
    drop_paths(v, [str(image)])
    qtbot.waitUntil(lambda: v.inspection is not None and v.inspection.get("cam") is not None, timeout=60000)
    combo = v.activations.layer_combo
    inside = [combo.itemText(i) for i in range(combo.count()) if "/" in combo.itemText(i)]
    assert inside and v.activations.grid.tiles  # maps of the backbone's own layers
    assert "/" in v.inspection["cam_layer"]  # the head has no convolution: the heat map is the backbone's


class Trickle(io.RawIOBase):
    """A download that sends one chunk, then waits until the test lets it go on."""

    def __init__(self, gate: threading.Event):
        self.gate, self.sent = gate, False
        self.headers = {"Content-Length": str(10_000_000)}

    def read(self, n=-1):
        if self.sent:
            self.gate.wait(30)
        self.sent = True
        return b"z" * 1000

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_download_shows_progress_and_cancel_leaves_nothing(keras_home, window, qtbot, monkeypatch):
    w = window
    gate = threading.Event()
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Trickle(gate))
    choose_preset(w, qtbot, "efficientnetb0")
    use_image_size(w, qtbot, "32")
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.findChild(QProgressDialog, "weightsDownload") is not None, timeout=10000)
    dialog = w.findChild(QProgressDialog, "weightsDownload")
    qtbot.waitUntil(lambda: "efficientnetb0_notop.h5 (16.7 MB)" in dialog.labelText(), timeout=10000)
    qtbot.mouseClick(dialog.findChild(QPushButton), Qt.LeftButton)  # Cancel
    gate.set()
    qtbot.waitUntil(lambda: not w.training.weights.busy, timeout=10000)
    assert not w.training_panel.running and w.state.history == []
    assert [p.name for p in (keras_home / "models").iterdir()] == []
    assert w.findChild(QMessageBox, "weightsMissingBox") is None

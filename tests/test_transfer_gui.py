"""Pretrained presets in the app, used as a person would: the preset list, the folded backbone, the weights
download with Cancel, the offline dialog and its "Choose a weights file…", training and fine-tuning."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFileDialog, QLabel, QMenu, QMessageBox, QProgressDialog, QPushButton, QSpinBox,
                               QToolButton)

from pretrained import cache_weights, offline_urlopen
from conftest import looked_inside
from test_app import drop_paths, layer_row_text, set_epochs


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
    state = window.state
    qtbot.waitUntil(lambda: state.data is not None and state.data.preprocessing.image_size == (side, side),
                    timeout=60000)


def offline_box(w, qtbot) -> QMessageBox:
    """Press Train with the ImageNet weights missing and no network: the offline dialog, once it is open."""
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.findChild(QMessageBox, "weightsMissingBox") is not None
                    and w.findChild(QMessageBox, "weightsMissingBox").isVisible(), timeout=20000)
    return w.findChild(QMessageBox, "weightsMissingBox")


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
    box = offline_box(w, qtbot)
    text = box.text()
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 (4.3 MB)" in text
    assert str(keras_home / "models") in text and text.startswith("No internet connection")
    assert not w.state.training
    qtbot.mouseClick(box.findChild(QPushButton, "chooseWeightsFile"), Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.training, timeout=10000)
    qtbot.waitUntil(lambda: not w.state.training, timeout=300000)
    assert w.state.layers[0].params["weights"] == str(chosen)
    assert [h["epoch"] for h in w.state.history] == [1, 2]  # the head's epoch, then the fine-tuning one
    log = w.training_panel.log.toPlainText()
    assert "cached backbone features" in log and "Fine-tuning the top 1 blocks" in log

    # the viewer looks inside the backbone: its layers are in the choosers, as backbone/layer
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    v = w.viewer_panel
    image = next(Path(w.state.dataset_path).rglob("*.png"))
    drop_paths(v, [str(image)])
    qtbot.waitUntil(lambda: looked_inside(v), timeout=60000)
    combo = v.activations.layer_combo
    inside = [combo.itemText(i) for i in range(combo.count()) if "/" in combo.itemText(i)]
    assert inside and v.activations.grid.tiles  # maps of the backbone's own layers
    assert "/" in v.gradcam.cam_layer.currentText()  # the head has no convolution: the heat map is the backbone's


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
    assert not w.state.training and w.state.history == []
    assert [p.name for p in (keras_home / "models").iterdir()] == []
    assert w.findChild(QMessageBox, "weightsMissingBox") is None


# -- issue 27: the seams between a pretrained preset and the rest of the app -------------------------------

def reads_at(w, side: int) -> bool:
    """The Dataset tab shows ``side``, the dataset is read at it, and the Model tab describes that input."""
    data = w.state.data
    return (w.dataset_panel.image_size.currentText() == str(side) and data is not None
            and data.preprocessing.image_size == (side, side) and not w.dataset_panel._reload_timer.isActive()
            and layer_row_text(w, 0)[0].startswith(f"Input {side}×{side}×3"))


def undo(w):
    """Edit > Undo."""
    action = next(a for m in w.menuBar().findChildren(QMenu) for a in m.actions() if a.text().startswith("&Undo"))
    assert action is w.model_panel.undo_action and action.isEnabled()
    action.trigger()


def use_faces(w, qtbot, tmp_path) -> Path:
    """Drop a folder of 25 px pictures, two classes (what a person with small face crops has), and wait for it."""
    from conftest import write_dataset

    folder = write_dataset(tmp_path / "faces", classes=("left", "top"), per_class=6, size=25)
    drop_paths(w, [folder])
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == folder, timeout=20000)
    return folder


def test_a_pretrained_preset_proposes_its_size_says_so_and_switching_away_puts_the_users_back(keras_home, window,
                                                                                               qtbot, tmp_path):
    w = window
    use_faces(w, qtbot, tmp_path)
    assert reads_at(w, 64)
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    choose_preset(w, qtbot, "mobilenetv3small")
    choose_preset(w, qtbot, "mobilenetv2")
    # the proposal is said where the switch was made, and the Model tab describes what training will use
    notice = w.model_panel.notice
    assert notice.isVisible() and "224×224" in notice.text() and "64×64" in notice.text()
    qtbot.waitUntil(lambda: reads_at(w, 224), timeout=30000)
    assert layer_row_text(w, 1)[1] == "7 × 7 × 1280"
    # back on a preset without a backbone: the size the user had
    choose_preset(w, qtbot, "seed")
    assert w.dataset_panel.image_size.currentText() == "64"
    qtbot.waitUntil(lambda: reads_at(w, 64), timeout=30000)
    assert "64×64" in notice.text() and notice.isVisible()
    # and undo takes the same way back and forth
    undo(w)
    assert w.state.preset == "mobilenetv2"
    qtbot.waitUntil(lambda: reads_at(w, 224), timeout=30000)
    assert layer_row_text(w, 1)[1] == "7 × 7 × 1280"
    undo(w)
    undo(w)
    assert w.state.preset == "seed"
    qtbot.waitUntil(lambda: reads_at(w, 64), timeout=30000)
    # a size the user chose while on a pretrained preset is theirs: switching away keeps it
    choose_preset(w, qtbot, "mobilenetv3small")
    use_image_size(w, qtbot, "48")
    choose_preset(w, qtbot, "tinyvgg")
    qtbot.waitUntil(lambda: reads_at(w, 48), timeout=30000)


def test_a_weights_file_chosen_offline_is_one_undo_step_and_the_history_stays(keras_home, window, qtbot, tmp_path,
                                                                             monkeypatch):
    w = window
    use_faces(w, qtbot, tmp_path)  # twelve pictures: the one epoch trained on the way is short
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    for name in ("tinyvgg", "mobilenetv3small", "mobilenetv2"):
        choose_preset(w, qtbot, name)
    use_image_size(w, qtbot, "32")
    set_epochs(w, qtbot, 1)
    chosen = cache_weights(tmp_path / "elsewhere", "MobileNetV2")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(chosen), ""))
    qtbot.mouseClick(offline_box(w, qtbot).findChild(QPushButton, "chooseWeightsFile"), Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.training, timeout=10000)
    qtbot.waitUntil(lambda: not w.state.training, timeout=300000)
    assert w.state.layers[0].params["weights"] == str(chosen) and w.state.history
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    choose_preset(w, qtbot, "seed")
    steps = []
    while w.model_panel.undo_action.isEnabled() and len(steps) < 10:
        steps.append(w.model_panel.undo_action.text())
        undo(w)
        if w.state.preset == "mobilenetv2":
            assert w.state.layers[0].params["weights"] == (str(chosen) if len(steps) == 1 else "imagenet")
    assert steps == ["&Undo Switch to Seed", "&Undo Change weights of layer 1",
                     "&Undo Switch to MobileNetV2 (pretrained)", "&Undo Switch to MobileNetV3Small (pretrained)",
                     "&Undo Switch to TinyVGG"]
    assert w.state.preset == "seed"


def test_offline_the_dialog_says_no_internet_in_plain_words(keras_home, window, qtbot):
    w = window
    choose_preset(w, qtbot, "mobilenetv3small")
    use_image_size(w, qtbot, "32")
    text = offline_box(w, qtbot).text()
    assert text.startswith("No internet connection: the weights could not be downloaded.")
    assert "Errno" not in text and "Name or service not known" not in text
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 (4.3 MB)" in text
    assert str(keras_home / "models") in text


def test_a_file_that_is_not_keras_weights_is_refused_on_the_backbone_row_and_f5_points_there(keras_home, window,
                                                                                             qtbot, tmp_path,
                                                                                             monkeypatch):
    w = window
    choose_preset(w, qtbot, "mobilenetv3small")
    use_image_size(w, qtbot, "32")
    bad = tmp_path / "photo.h5"
    bad.write_bytes(b"\xff\xd8\xff\xe0 a JPEG with the wrong name")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    # offline, the dialog offers to choose a file; the file chosen is not one
    box = offline_box(w, qtbot)
    qtbot.mouseClick(box.findChild(QPushButton, "chooseWeightsFile"), Qt.LeftButton)
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=5000)
    assert not w.state.training  # (Train starts at once when the file is taken)
    # the backbone row says what is wrong, in words; Train says where to fix it
    backbone = layer_row_text(w, 1)
    assert backbone[3] == "⚠"
    tip = w.model_panel.table.item(1, 0).toolTip()
    assert "This file is not a Keras weights file (.h5)" in tip and str(bad) in tip
    assert "signature" not in tip and "synchronously" not in tip
    assert "This file is not a Keras weights file (.h5)" in w.model_panel.error_label.text()
    reason = w.training_panel.reason.text()
    assert "Model tab" in reason and "backbone" in reason.lower()
    assert not w.training_panel.train_button.isEnabled()
    # F5 again and again: no modal, nothing trains
    assert not w.train_action.isEnabled()
    for _ in range(2):
        qtbot.keyClick(w, Qt.Key_F5)
    assert not w.state.training
    assert [b.objectName() for b in w.findChildren(QMessageBox) if b.isVisible()] == []
    # a good file fixes it, as one undoable step
    good = cache_weights(tmp_path / "elsewhere", "MobileNetV3Small")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(good), ""))
    w.tabs.setCurrentIndex(w.TAB_MODEL)
    w.model_panel.select_layer(0)
    qtbot.mouseClick(w.model_panel.editor_box.findChild(QPushButton, "chooseBackboneWeights"), Qt.LeftButton)
    assert layer_row_text(w, 1)[3] == "" and w.training_panel.train_button.isEnabled()
    assert w.model_panel.undo_action.text() == "&Undo Change weights of layer 1"

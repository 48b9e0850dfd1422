"""Several GPUs on one machine: ticking devices in the model panel, ``--device gpu:all``, and a mirrored run
over two logical CPU devices that leaves a normal, reloadable project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

from cnndesk.ui.model_panel import ModelPanel

REPO = Path(__file__).resolve().parents[1]
MACHINE = [("cpu", "CPU"), ("gpu:0", "GPU 0: test card"), ("gpu:1", "GPU 1: test card"), ("gpu:2", "GPU 2: test card")]


@pytest.fixture
def panel(qtbot):
    p = ModelPanel()
    qtbot.addWidget(p)
    p.resize(1024, 760)
    p.set_input((64, 64, 3), 4)
    p.set_devices(MACHINE)
    p.show()
    qtbot.waitExposed(p)
    return p


def tick(qtbot, panel, dev_id: str) -> None:
    """Click the check box of a device's row, where a person clicks."""
    view = panel.device.list
    item = panel.device.item(dev_id)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    option.rect = view.visualItemRect(item)
    option.features |= QStyleOptionViewItem.HasCheckIndicator | QStyleOptionViewItem.HasDisplay
    option.text = item.text()
    box = view.style().subElementRect(QStyle.SE_ItemViewItemCheckIndicator, option, view)
    assert box.isValid() and option.rect.contains(box.center())
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=box.center())


def ticked(panel) -> list[str]:
    return [d for d in panel.device.ids() if panel.device.item(d).checkState() == Qt.Checked]


def test_ticking_two_gpus_trains_mirrored_and_shows_the_global_batch(panel, qtbot):
    assert ticked(panel) == ["cpu"] and panel.settings().device == "cpu"
    assert not panel.device.batch_note.isVisible()
    with qtbot.waitSignal(panel.changed):
        tick(qtbot, panel, "gpu:0")
    assert ticked(panel) == ["gpu:0"]  # a GPU unticks the CPU
    assert panel.settings().device == "gpu:0" and not panel.device.batch_note.isVisible()
    tick(qtbot, panel, "gpu:2")
    assert panel.settings().device == "gpu:0,2"
    note = panel.device.batch_note
    assert note.isVisible()
    assert note.text() == "Mirrored over 2 GPUs: each step takes a global batch of 64 images (32 per GPU)."
    panel.batch_size.selectAll()
    qtbot.keyClicks(panel.batch_size, "24")
    qtbot.keyClick(panel.batch_size, Qt.Key_Return)  # a number applies when it is finished
    assert panel.settings().batch_size == 24  # the batch size stays per device
    assert "global batch of 48 images (24 per GPU)" in note.text()
    tick(qtbot, panel, "gpu:1")
    assert panel.settings().device == "gpu:0,1,2" and "global batch of 72 images" in note.text()


def test_the_cpu_and_the_gpus_exclude_each_other_and_one_row_stays_ticked(panel, qtbot):
    tick(qtbot, panel, "gpu:0")
    tick(qtbot, panel, "gpu:1")
    tick(qtbot, panel, "cpu")
    assert ticked(panel) == ["cpu"] and panel.settings().device == "cpu"
    assert not panel.device.batch_note.isVisible()
    tick(qtbot, panel, "cpu")  # unticking the only ticked row leaves it ticked
    assert ticked(panel) == ["cpu"]
    tick(qtbot, panel, "gpu:1")
    tick(qtbot, panel, "gpu:1")  # unticking the last GPU goes back to the CPU
    assert ticked(panel) == ["cpu"]


def test_devices_are_ticked_from_the_keyboard_too(panel, qtbot):
    view = panel.device.list
    view.setFocus()
    view.setCurrentRow(1)
    qtbot.keyClick(view, Qt.Key_Space)
    qtbot.keyClick(view, Qt.Key_Down)
    qtbot.keyClick(view, Qt.Key_Space)
    assert panel.settings().device == "gpu:0,1" and panel.device.batch_note.isVisible()


def test_a_saved_choice_comes_back_and_one_this_machine_lacks_is_not_forced(panel):
    from cnndesk.core.model.architecture import TrainingSettings

    panel.set_settings(TrainingSettings(device="gpu:1,2", batch_size=16))
    assert ticked(panel) == ["gpu:1", "gpu:2"] and "global batch of 32 images" in panel.device.batch_note.text()
    panel.set_settings(TrainingSettings(device="gpu:7"))  # a project from a bigger machine
    assert panel.settings().device == "gpu:1,2"
    panel.device.set_value("gpu:all")
    assert panel.settings().device == "gpu:0,1,2"
    panel.set_devices([("cpu", "CPU"), ("gpu:0", "GPU 0: test card")])  # fewer GPUs found: back to what exists
    assert panel.settings().device == "cpu" and not panel.device.batch_note.isVisible()


def test_the_device_list_is_as_tall_as_its_rows(panel, qtbot):
    view = panel.device.list
    assert view.height() >= 4 * view.sizeHintForRow(0)
    assert view.verticalScrollBar().maximum() == 0  # every device in sight, nothing to scroll
    panel.set_devices([("cpu", "CPU")])
    assert view.height() < 2 * view.sizeHintForRow(0) + 8


def test_ticking_gpus_in_the_window_is_where_to_train_not_an_unsaved_change(window, qtbot):
    window.model_panel.set_devices(MACHINE)
    window.state.modified = False
    window.tabs.setCurrentIndex(window.TAB_MODEL)
    tick(qtbot, window.model_panel, "gpu:0")
    tick(qtbot, window.model_panel, "gpu:1")
    assert window.state.settings.device == "gpu:0,1"
    assert not window.isWindowModified()


def test_gpu_all_on_a_machine_without_a_gpu_says_so(tiny_dataset, tmp_path, capsys):
    from cnndesk.cli import main

    code = main(["train", str(tiny_dataset), "--project", str(tmp_path / "p"), "--epochs", "1",
                 "--image-size", "32", "--device", "gpu:all"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'gpu:all' needs a GPU: TensorFlow found no GPU" in err and "Traceback" not in err
    assert not (tmp_path / "p" / "project.json").exists()


MIRRORED_PROJECT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cnndesk.core.model.architecture import TrainingSettings, preset
from cnndesk.core.data.dataset import DatasetConfig, load_dataset
from cnndesk.core.data.images import Preprocessing
from cnndesk.core.project.store import Project, new_run_id, open_project, save_project
from cnndesk.core.training.fitting import TrainingListener, train

class Steps(TrainingListener):
    def __init__(self):
        self.steps, self.messages = set(), []
    def on_batch(self, r):
        self.steps.add(r.steps)
    def on_message(self, text):
        self.messages.append(text)

dataset, folder = sys.argv[1], sys.argv[2]
config = DatasetConfig(Preprocessing((32, 32)), val_split=0.2, seed=5)
data = load_dataset(dataset, config)
settings = TrainingSettings(batch_size=8, epochs=1, patience=0, seed=4, min_steps=0)
strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
listener = Steps()
result = train(data, preset("seed"), settings, listener, strategy=strategy)
project = Project(dataset_path=dataset, class_names=data.class_names, dataset=config, preset="seed",
                  layers=preset("seed"), settings=settings, history=result.history, best_epoch=result.best_epoch,
                  run=new_run_id())
save_project(folder, project, result.model)
reopened, model = open_project(folder)
images = data.images[data.val_index[:6]].astype("float32")
trained = np.asarray(result.model(images, training=False))
again = np.asarray(model(images, training=False))
print(json.dumps({"steps": sorted(listener.steps), "messages": listener.messages, "train": len(data.train_index),
                  "history": reopened.history, "classes": reopened.class_names,
                  "largest_difference": float(np.abs(trained - np.asarray(again)).max())}))
"""


@pytest.mark.slow
def test_a_mirrored_run_over_two_logical_devices_saves_a_normal_project(tmp_path, sample_dir):
    # a child process: the CPU is split into two logical devices before TensorFlow runs any op, which would
    # otherwise hold for every later test of the session
    folder = tmp_path / "mirrored"
    proc = subprocess.run([sys.executable, "-c", MIRRORED_PROJECT, str(sample_dir), str(folder)], cwd=REPO,
                          capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # 8 images per device on 2 devices: 16 a step
    assert out["steps"] == [-(-out["train"] // 16)]
    assert out["messages"][0] == ("Training on 2 devices (mirrored): each step takes a global batch of 16 images, "
                                  "8 per device.")
    assert [r["epoch"] for r in out["history"]] == [1]
    assert out["classes"] == sorted(p.name for p in sample_dir.iterdir() if p.is_dir())
    assert out["largest_difference"] < 1e-5  # the reopened model predicts as the trained one did
    assert (folder / "project.json").is_file()

"""Confidence that means what it says, and "unlike anything I learned", in the window (issue 30).

Train in the window on a small generated folder: the run measures the model's temperature and novelty
statistics on its validation split as part of the train job; the viewer's model line says the confidences
are calibrated, a foreign image gets the banner and held-out images of the same kinds do not, the
Evaluation tab shows the expected calibration error before and after with its reliability diagram, and the
temperature survives saving and reopening the project. A model opened from a file says it is not calibrated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from scipy.optimize import minimize_scalar

from cnndesk.core.model.calibration import log_loss
from cnndesk.core.work.novelty import signal_reason
from cnndesk.core.work.trust import ModelHeads, Trust
from cnndesk.ui.trust_views import UNLIKE_TEXT

from conftest import write_dataset
from test_app import drop_paths, save_as, set_epochs

pytestmark = pytest.mark.slow

CLASSES = ("left", "top", "centre")


@pytest.fixture
def trained(window, qtbot, tmp_path):
    """The window after Train on 3 generated classes of 40 images, 30 % for validation (seed preset, 6 epochs),
    viewer shown."""
    w = window
    spin = w.dataset_panel.val_split
    spin.selectAll()
    qtbot.keyClicks(spin, "30")
    qtbot.keyClick(spin, Qt.Key_Return)
    root = write_dataset(tmp_path / "shapes", CLASSES, per_class=40)
    w.dataset_panel.load_folder(str(root))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == root, timeout=20000)
    assert len(w.state.data.val_index) == 36
    set_epochs(w, qtbot, 6)
    w.model_panel.batch_size.setValue(8)
    w.model_panel.learning_rate.setValue(0.003)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=120000)
    assert w.state.has_model
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    return w


def held_out_and_foreign(folder: Path) -> tuple[list[Path], Path]:
    """Ten new images of the trained kinds (another seed) and one of uniform noise."""
    held = sorted(write_dataset(folder / "held", CLASSES, per_class=4, seed=99).rglob("*.png"))[:10]
    noise = folder / "noise.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(noise)
    return held, noise


def banner_shown_for(w, qtbot, row: int) -> bool:
    v = w.viewer_panel
    v.strip.setCurrentRow(row)
    qtbot.waitUntil(lambda: v.current is w.state.classified[row], timeout=5000)
    return v.unlike_banner.isVisible()


def test_training_calibrates_flags_foreign_images_and_shows_the_reliability_diagram(trained, qtbot, tmp_path):
    w = trained
    v = w.viewer_panel
    run = w.state.runs[-1]
    temperature = run.trust["temperature"]
    # the train job measured it and said so in the log; the run keeps it
    log = w.training_panel.log.toPlainText()
    assert re.search(rf"Temperature {temperature:.3g} fitted on {len(w.state.data.val_index)} validation images",
                     log)
    assert f"confidences calibrated, T = {temperature:.3g}" in v.model_label.text()

    # the temperature is the one that minimises the validation log-loss, computed here directly
    data = w.state.data
    _, logits = ModelHeads(w.engine.worker.model, data.preprocessing)(data.images[data.val_index])
    labels = data.labels[data.val_index]
    direct = minimize_scalar(lambda log_t: log_loss(logits, labels, float(np.exp(log_t))), bounds=(-3, 3),
                             method="bounded", options={"xatol": 1e-9}).x
    if not np.all(logits.argmax(1) == labels):  # a split the model gets all right keeps T = 1
        assert temperature == pytest.approx(float(np.exp(direct)), rel=1e-3)

    # a foreign image gets the banner, new images of the kinds it learned do not
    held, noise = held_out_and_foreign(tmp_path)
    drop_paths(v, [*held, noise])
    qtbot.waitUntil(lambda: v.strip.count() == len(held) + 1, timeout=30000)
    assert banner_shown_for(w, qtbot, len(held))
    # with why: what the least likely of the signals says of it
    novelty = Trust.from_json(run.trust).novelty
    reasons = {signal_reason(g.source) for g in novelty.signals}
    first, reason = v.unlike_banner.text().split("\n")
    assert first == UNLIKE_TEXT and reason in reasons
    flagged = [banner_shown_for(w, qtbot, i) for i in range(len(held))]
    # a new image like the validation ones passes with probability 95 % at least: of ten, two flagged is already
    # rare (1.2 %), more a failure
    assert sum(flagged) <= 2, flagged
    # the bars show the calibrated probabilities: the model's logits through the temperature
    probs = w.state.classified[0].probabilities
    _, z = ModelHeads(w.engine.worker.model, data.preprocessing)(w.state.classified[0].prepared[None])
    expected = np.exp(z[0] / temperature - np.max(z[0] / temperature))
    np.testing.assert_allclose(probs, expected / expected.sum(), atol=1e-5)

    # the Evaluation tab: expected calibration error before and after, and the reliability diagram
    v.tabs.setCurrentWidget(v.evaluation_view)
    ev_view = v.evaluation_view
    qtbot.waitUntil(lambda: ev_view.evaluation is not None, timeout=30000)
    calibration = run.trust["calibration"]
    text = ev_view.calibration_label.text()
    assert f"T = {temperature:.3g}" in text
    assert f"{calibration['ece_before']:.1%} before, {calibration['ece_after']:.1%} after" in text
    assert ev_view.reliability.isVisible()
    assert [name for name, _ in ev_view.reliability.series()] == ["before", "after"]
    picture = ev_view.reliability.grab().toImage()
    blue = sum(picture.pixelColor(x, y).name() == "#1e88e5"
               for x in range(0, picture.width(), 2) for y in range(0, picture.height(), 2))
    assert blue > 20  # the bars after the temperature are drawn


def test_the_temperature_survives_saving_and_reopening_and_a_model_file_is_uncalibrated(
        trained, qtbot, make_window, tmp_path, monkeypatch):
    w = trained
    temperature = w.state.model.temperature
    assert temperature is not None and w.state.model.flags_unlike
    folder = tmp_path / "project"
    folder.mkdir()
    save_as(w, qtbot, monkeypatch, folder)
    saved = json.loads((folder / "project.json").read_text())
    run = next(r for r in saved["runs"] if r["id"] == saved["run"])
    assert run["trust"]["temperature"] == temperature

    w2 = make_window()
    qtbot.waitUntil(lambda: w2.engine.is_ready, timeout=60000)
    w2.open_project(str(folder), confirm=False)
    qtbot.waitUntil(lambda: w2.state.project_path == str(folder) and w2.state.has_model, timeout=30000)
    w2.tabs.setCurrentIndex(w2.TAB_VIEWER)
    assert w2.state.model.temperature == temperature
    assert f"confidences calibrated, T = {temperature:.3g}" in w2.viewer_panel.model_label.text()
    assert w2.engine.worker.inspector.temperature == temperature
    held, noise = held_out_and_foreign(tmp_path)
    drop_paths(w2.viewer_panel, [noise])
    qtbot.waitUntil(lambda: w2.viewer_panel.strip.count() == 1, timeout=30000)
    assert banner_shown_for(w2, qtbot, 0)  # the novelty statistics came back too

    # a model from a file carries no temperature: the model line says so
    model_file = tmp_path / "plain.keras"
    w2.engine.worker.model.save(model_file)
    w2.open_model(str(model_file))
    qtbot.waitUntil(lambda: w2.state.model is not None and w2.state.model.source == "file", timeout=30000)
    assert "confidences not calibrated" in w2.viewer_panel.model_label.text()
    assert w2.engine.worker.inspector.temperature == 1.0

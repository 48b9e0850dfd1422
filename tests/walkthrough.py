"""One sitting of the app on real folders, driven as a user drives it, with a screenshot of every screen.

Not a test (pytest does not collect it): run it by hand in a real X11 window, for example under Xvfb::

    Xvfb :77 -screen 0 1600x1000x24 &
    DISPLAY=:77 QT_QPA_PLATFORM=xcb python tests/walkthrough.py /tmp/shots 2> /tmp/shots.err

It makes three real folders from images that scikit-learn and scikit-image ship (``pip install .[bench]``):
the UCI handwritten digits (10 classes), patches of six photos (6 classes) and three textures (3 classes), then
switches between them, trains with two probe images, tries a pretrained preset offline, types a number out of
range, saves, starts anew, reopens, looks at the runs, the viewer, the evaluation and the shortcuts, and exports
twice into one folder. It prints what it saw; stderr should stay empty (nothing but cnndesk's own lines).
Then look at every PNG.
"""
import os, sys, time, shutil, tempfile
from pathlib import Path

SHOTS = Path(sys.argv[1] if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / "cnndesk-walkthrough-shots")
shutil.rmtree(SHOTS, ignore_errors=True); SHOTS.mkdir(parents=True)
REAL = Path(tempfile.gettempdir()) / "cnndesk-walkthrough-folders"


def make_real_folders(out: Path) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    import skimage.data as d
    # UCI digits: 10 classes, 8x8 -> 32 px grey PNG
    dg = load_digits()
    for i, (img, t) in enumerate(zip(dg.images, dg.target)):
        p = out / "digits" / str(t); p.mkdir(parents=True, exist_ok=True)
        a = (img / 16 * 255).astype(np.uint8)
        Image.fromarray(a).resize((32, 32), Image.BILINEAR).save(p / f"d{i:04d}.png")
    # photo patches: 6 photos, 64 px patches
    photos = {"astronaut": d.astronaut(), "chelsea": d.chelsea(), "coffee": d.coffee(), "rocket": d.rocket(),
              "camera": d.camera(), "hubble": d.hubble_deep_field()}
    for name, img in photos.items():
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        p = out / "patches" / name; p.mkdir(parents=True, exist_ok=True)
        h, w = img.shape[:2]; k = 0
        for y in range(0, h - 64, 48):
            for x in range(0, w - 64, 48):
                if k >= 24: break
                Image.fromarray(img[y:y+64, x:x+64, :3]).save(p / f"{name}_{k:02d}.jpg", quality=90); k += 1
    # textures: brick, grass, gravel
    for name in ("brick", "grass", "gravel"):
        img = getattr(d, name)()
        p = out / "textures" / name; p.mkdir(parents=True, exist_ok=True)
        k = 0
        for y in range(0, img.shape[0] - 64, 40):
            for x in range(0, img.shape[1] - 64, 40):
                Image.fromarray(img[y:y+64, x:x+64]).save(p / f"{name}_{k:03d}.png"); k += 1


if not (REAL / "digits").is_dir():
    make_real_folders(REAL)
WORK = Path(tempfile.mkdtemp(prefix="walk-"))

from cnndesk.core.app_log import start_logging
from cnndesk.core.library_warnings import quiet_libraries
quiet_libraries(); start_logging("walkthrough")

from PySide6.QtCore import QSettings, Qt, QPoint
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QDialog, QPushButton
app = QApplication([sys.argv[0]])
app.setOrganizationName("cnndesk-walk"); app.setApplicationName("cnndesk")
from cnndesk.ui.main_window import MainWindow

def log(*a):
    print("[walk]", *a, flush=True)

def wait(cond, timeout=300, what=""):
    end = time.time() + timeout
    while time.time() < end:
        app.processEvents(); time.sleep(0.02)
        if cond():
            return True
    log("TIMEOUT waiting for", what); return False

def pause(s=0.5):
    end = time.time() + s
    while time.time() < end:
        app.processEvents(); time.sleep(0.02)

n = [0]
def shot(name):
    pause(0.6)
    n[0] += 1
    p = SHOTS / f"{n[0]:02d}-{name}.png"
    app.primaryScreen().grabWindow(0).save(str(p))
    log("shot", p.name)

def top_dialogs():
    return [w for w in app.topLevelWidgets() if w.isVisible() and isinstance(w, (QMessageBox, QDialog)) and w is not win]

def close_dialogs():
    for d in top_dialogs():
        log("dialog:", d.windowTitle(), "|", (d.text() if isinstance(d, QMessageBox) else "")[:300].replace("\n", " "))
        d.close()
    pause(0.3)

settings = QSettings(str(WORK / "settings.ini"), QSettings.IniFormat)
win = MainWindow(settings=settings, sample_dir=str(WORK / "sample"))
win.show()
wait(lambda: win.engine.is_ready and win.state.data is not None, 180, "engine + sample")
shot("start-sample")

def choose_dataset(folder):
    QFileDialog.getExistingDirectory = staticmethod(lambda *a, **k: str(folder))
    QTest.mouseClick(win.dataset_panel.choose_button, Qt.LeftButton)
    wait(lambda: win.state.data is not None and Path(win.state.data.root) == Path(folder)
         and not win.dataset_panel.progress.isVisible(), 120, f"read {folder}")

def train(epochs=None):
    if epochs:
        box = win.model_panel.epochs
        box.setFocus(); box.selectAll(); QTest.keyClicks(box.lineEdit(), str(epochs)); QTest.keyClick(box, Qt.Key_Return)
    win.tabs.setCurrentIndex(win.TAB_TRAIN)
    QTest.mouseClick(win.training_panel.train_button, Qt.LeftButton)
    wait(lambda: win.training_panel.stop_button.isEnabled() or top_dialogs(), 60, "training to start")
    return

def wait_trained():
    wait(lambda: not win.training_panel.stop_button.isEnabled(), 900, "training to end")
    pause(1)

# 1. textures (3 classes), two probes, train
win.tabs.setCurrentIndex(win.TAB_DATASET)
choose_dataset(REAL / "textures")
shot("textures-dataset")
probes = [str(REAL / "textures/brick/brick_000.png"), str(REAL / "textures/grass/grass_000.png")]
QFileDialog.getOpenFileNames = staticmethod(lambda *a, **k: (probes, ""))
win.tabs.setCurrentIndex(win.TAB_TRAIN)
QTest.mouseClick(win.probe_view.add_button, Qt.LeftButton)
pause(1)
train(epochs=4); wait_trained()
shot("textures-trained")

# 2. photo patches (6 classes), chosen while on the Train tab, train with the probes live
QFileDialog.getExistingDirectory = staticmethod(lambda *a, **k: str(REAL / "patches"))
win.tabs.setCurrentIndex(win.TAB_TRAIN)
act = [a for a in win.findChildren(type(win.new_action)) if a.shortcut().toString() == "Ctrl+Shift+O"]
act[0].trigger() if act else choose_dataset(REAL / "patches")
wait(lambda: win.state.data is not None and Path(win.state.data.root) == REAL / "patches"
     and not win.dataset_panel.progress.isVisible(), 120, "patches")
win.tabs.setCurrentIndex(win.TAB_TRAIN)
shot("patches-chosen-from-train-tab")
train()
wait(lambda: win.training_panel.progress.value() > 30, 300, "some epochs")
shot("patches-training-live-probes")
wait_trained()
shot("patches-trained")

# 3. digits (10 classes)
win.tabs.setCurrentIndex(win.TAB_DATASET)
choose_dataset(REAL / "digits")
shot("digits-dataset")
train(); wait_trained()
shot("digits-trained")

# 4. a pretrained preset offline, then back to Seed
win.tabs.setCurrentIndex(win.TAB_MODEL)
combo = win.model_panel.preset_combo
names = [combo.itemText(i) for i in range(combo.count())]
log("presets:", names)
small = [i for i, t in enumerate(names) if "MobileNetV3Small" in t or "mobilenet" in t.lower()]
if small:
    combo.setCurrentIndex(small[0]); pause(2)
    shot("model-pretrained-preset")
    win.tabs.setCurrentIndex(win.TAB_TRAIN)
    QTest.mouseClick(win.training_panel.train_button, Qt.LeftButton); pause(6)
    shot("pretrained-train-offline")
    close_dialogs()
    win.tabs.setCurrentIndex(win.TAB_MODEL)
    combo.setCurrentIndex(0); pause(2)
    shot("model-back-to-seed")
    log("image size now:", win.dataset_panel.image_size.currentText())

# 5. a number out of range in the layer editor
win.tabs.setCurrentIndex(win.TAB_MODEL)
win.model_panel.table.selectRow(0); pause(0.5)
from PySide6.QtWidgets import QSpinBox
spins = [s for s in win.model_panel.editor_box.findChildren(QSpinBox) if s.isVisible()]
if spins:
    s = spins[0]; s.setFocus(); s.selectAll(); QTest.keyClicks(s.lineEdit(), "70000"); QTest.keyClick(s, Qt.Key_Return)
    shot("filters-70000-refused")
    log("filters value:", s.value(), "| total:", win.model_panel.total_label.text())

# 6. save, new, open
proj = WORK / "digits-project"
win.projects.save_to(str(proj)) if hasattr(win, "projects") else None
wait(lambda: (proj / "project.json").exists(), 120, "save")
pause(2)
QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.Discard)
win.new_action.trigger()
wait(lambda: win.state.data is not None, 120, "new")
pause(2)
shot("after-new")
log("probes after New:", win.state.probe_images)
win.projects.open(str(proj), confirm=False) if hasattr(win, "projects") else None
wait(lambda: win.state.model is not None, 120, "open"); pause(3)
win.tabs.setCurrentIndex(win.TAB_TRAIN)
shot("reopened-train-tab")
log("probes after Open:", win.state.probe_images)

# 7. runs: restore a run from the textures dataset while digits are loaded
from PySide6.QtWidgets import QTableWidget
runs = win.findChild(QTableWidget, "runsTable")
if runs is not None:
    tabs = win.training_panel.lower_tabs
    for i in range(tabs.count()):
        if "Run" in tabs.tabText(i):
            tabs.setCurrentIndex(i)
    pause(1)
    shot("runs-table")
    log("runs rows:", runs.rowCount(), [runs.horizontalHeaderItem(c).text() for c in range(runs.columnCount())])

# 8. viewer and evaluation
win.tabs.setCurrentIndex(win.TAB_VIEWER)
shot("viewer-empty")
log("save view enabled with nothing shown:", win.viewer_panel.save_view_button.isEnabled(),
    "| mark as probe:", win.viewer_panel.probe_button.isEnabled())
win.viewer_panel.classify_paths([str(REAL / "digits/3/d0003.png")]); pause(4)
shot("viewer-digit")
win.evaluate_action.trigger(); pause(8)
shot("evaluation")
log("calibration:", win.viewer_panel.evaluation_view.calibration_label.text()[:200])

# 8b. a photo on the digits model: the "unlike training" banner; then a whole folder of photos and digits
photo = next(p for p in (REAL / "patches").rglob("*") if p.is_file())
win.viewer_panel.tabs.setCurrentIndex(0)
win.viewer_panel.classify_paths([str(photo)]); pause(4)
shot("viewer-photo-on-digits")
log("model line:", win.viewer_panel.model_label.text()[:200], "| banner shown:", win.viewer_panel.unlike_banner.isVisible())
win.folder_work.classify([str(REAL / "patches")])  # what Classify Folder… does once the folder is chosen
folder_view = win.viewer_panel.folder_view
wait(lambda: folder_view.table.model().rowCount() > 0 and not folder_view.progress.isVisible(), 300, "folder")
pause(1)
shot("folder-patches-on-digits")
log("folder:", folder_view.counts.text()[:200])

# 9. shortcuts, about
[a for a in win.findChildren(type(win.new_action)) if a.shortcut().toString() == "F1"][0].trigger(); pause(1)
shot("shortcuts")
close_dialogs()

# 10. export twice into one folder
out = WORK / "exports"; out.mkdir()
try:
    from cnndesk.ui.model_io import ModelFiles
    for name in ("first", "second"):
        QFileDialog.getSaveFileName = staticmethod(lambda *a, _n=name, **k: (str(out / f"{_n}.keras"), ""))
        win.models.export_dialog("keras"); pause(5)
    log("exports:", sorted(p.name for p in out.iterdir()))
except Exception as e:
    log("export step failed:", repr(e))
close_dialogs()

# 11. Train x2 on the digits, keeping the best
choice = win.repeats.choice
choice.count.setFocus(); choice.count.selectAll(); QTest.keyClicks(choice.count, "2"); QTest.keyClick(choice.count, Qt.Key_Return)
choice.keep.setCurrentIndex(choice.keep.findText("keep the best"))
train(epochs=2); wait_trained()
shot("train-x2-digits")
log("runs after x2:", [r.name for r in win.state.runs], "| model line:", win.viewer_panel.model_label.text()[:160])
close_dialogs()
win.state.modified = False
win.close(); pause(2)
log("done; log file", open(os.environ.get("CNNDESK_LOG_DIR", "/tmp") + "/cnndesk.log").read()[-1500:] if os.environ.get("CNNDESK_LOG_DIR") else "")

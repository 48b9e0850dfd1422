"""The viewer driven as a person would (issue: drag-in classification, activation maps, Grad-CAM, evaluation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QMessageBox, QWidget

from conftest import columns_in_sight, looked_inside, make_image, rows_in_sight, write_dataset
from test_app import drop_paths, set_epochs


@pytest.fixture
def trained(window, qtbot, tiny_dataset):
    """The window after training the seed model for 3 epochs on the tiny dataset, viewer tab shown."""
    w = window
    w.dataset_panel.load_folder(str(tiny_dataset))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == tiny_dataset,
                    timeout=20000)
    set_epochs(w, qtbot, 3)
    w.model_panel.batch_size.setValue(4)  # 48 training images: small batches learn in a few epochs
    w.model_panel.learning_rate.setValue(0.003)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    assert w.state.has_model
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    return w


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(5)
    png = tmp_path / "a_centre.png"
    make_image("centre", rng).save(png)
    jpg = tmp_path / "b_left.jpg"
    make_image("left", rng).save(jpg, quality=95)
    fake = tmp_path / "c_notes.png"
    fake.write_text("shopping list, not a picture")
    return png, jpg, fake


def classify(w, qtbot, paths):
    before = w.viewer_panel.strip.count()
    drop_paths(w.viewer_panel, paths)
    qtbot.waitUntil(lambda: w.viewer_panel.strip.count() == before + len(paths), timeout=20000)
    qtbot.waitUntil(lambda: looked_inside(w.viewer_panel), timeout=20000)


def test_dropped_images_are_classified_and_a_bad_file_gets_a_message(trained, qtbot, images):
    w = trained
    v = w.viewer_panel
    assert v.placeholder.isVisible()  # before any image: tells the user what to do
    classify(w, qtbot, images)
    labels = v.strip_labels()
    assert labels[0].split()[0] in ("centre", "left", "top") and labels[0].endswith("%")
    assert labels[1].split()[0] in ("centre", "left", "top") and labels[1].endswith("%")
    assert "c_notes.png" in labels[2] and "not readable" in labels[2]
    # the first readable image is shown with its bars
    assert v.strip.currentRow() == 0
    names = [c for c, _ in v.current_view.bars.items]
    assert sorted(names) == ["centre", "left", "top"]
    probs = [p for _, p in v.current_view.bars.items]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-4)
    assert v.current_view.verdict.text().startswith(f"It looks like “{names[0]}”")
    assert not v.current_view.original_view[1].pixmap().isNull() and not v.current_view.model_view[1].pixmap().isNull()
    # clicking the unreadable one shows why
    v.strip.setCurrentRow(2)
    assert "not a readable image" in v.current_view.verdict.text()
    assert v.current_view.bars.items == []


def test_the_trained_model_learned_the_dropped_classes(trained, qtbot, tmp_path):
    rng = np.random.default_rng(11)
    paths = []
    for kind in ("centre", "left", "top"):
        p = tmp_path / f"{kind}.png"
        make_image(kind, rng).save(p)
        paths.append(p)
    classify(trained, qtbot, paths)
    top = [label.split()[0] for label in trained.viewer_panel.strip_labels()]
    assert sum(t == k for t, k in zip(top, ("centre", "left", "top"))) >= 2


def test_each_layer_shows_one_map_per_channel_and_a_click_enlarges_it(trained, qtbot, images):
    w = trained
    v = w.viewer_panel
    classify(w, qtbot, images[:1])
    names = [v.activations.layer_combo.itemText(i) for i in range(v.activations.layer_combo.count())]
    assert names[0].startswith("input")
    names = names[1:]
    assert names == ["conv2d_1", "conv2d_2", "maxpool2d_3", "conv2d_4", "conv2d_5", "maxpool2d_6"]
    assert v.activations.layer_combo.currentText() == "conv2d_1"  # the first layer is shown first
    for i, name in enumerate(names, 1):
        v.activations.layer_combo.setCurrentIndex(i)
        assert len(v.activations.grid.tiles) == 10
        assert v.activations.layer_info.text().startswith(f"{name}: 10 channels")
    qtbot.mouseClick(v.activations.grid.tiles[3], Qt.LeftButton)
    assert "channel 3" in v.activations.enlarged_caption.text()
    v.activations.layer_combo.setCurrentIndex(0)
    assert len(v.activations.grid.tiles) == 3  # the input's red, green and blue
    # the overview shows the input and then every layer in order
    v.tabs.setCurrentWidget(v.overview)
    assert v.overview.rows.count() == 1 + len(names) + 1  # input row, layer rows, stretch
    captions = [lab.text() for lab in v.overview.findChildren(QLabel, "overviewCaption")]
    assert captions[0] == "input"
    assert all(c.endswith("first 8 of 10 channels") for c in captions[1:]) and len(captions) == 1 + len(names)


def test_gradcam_follows_the_chosen_class_and_opacity(trained, qtbot, images):
    w = trained
    v = w.viewer_panel
    classify(w, qtbot, images[:1])
    v.tabs.setCurrentWidget(v.gradcam)
    assert v.gradcam.cam_layer.currentText() == "conv2d_5"  # the last conv layer by default
    first = v.gradcam.overlay_image().copy()
    predicted = v.gradcam.cam_class.currentIndex()
    other = (predicted + 1) % v.gradcam.cam_class.count()
    old_cam = v.gradcam.cam
    v.gradcam.cam_class.setCurrentIndex(other)
    qtbot.waitUntil(lambda: v.gradcam.cam is not old_cam, timeout=20000)
    assert not np.array_equal(v.gradcam.overlay_image(), first)
    shown = v.gradcam.overlay_image().copy()
    v.gradcam.opacity.setValue(0)
    assert np.array_equal(v.gradcam.overlay_image(), v.current.prepared)  # no heat map at opacity 0
    v.gradcam.opacity.setValue(90)
    assert not np.array_equal(v.gradcam.overlay_image(), shown)
    # another layer gives another map
    old_cam = v.gradcam.cam
    v.gradcam.cam_layer.setCurrentText("conv2d_1")
    qtbot.waitUntil(lambda: v.gradcam.cam is not old_cam, timeout=20000)
    assert v.gradcam.cam.shape == (62, 62)


def test_first_layer_filters_are_shown(trained, qtbot, images):
    v = trained.viewer_panel
    classify(trained, qtbot, images[:1])
    assert v.kernels.kernel_grid.count() == 10
    assert "10 filters of the first convolution, each 3×3×3" in v.kernels.kernel_info.text()


def test_saving_the_view_writes_a_png(trained, qtbot, images, tmp_path, monkeypatch):
    v = trained.viewer_panel
    classify(trained, qtbot, images[:1])
    out = tmp_path / "grid.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PNG images (*.png)"))
    qtbot.mouseClick(v.save_view_button, Qt.LeftButton)
    assert Image.open(out).size[0] > 100
    v.tabs.setCurrentWidget(v.gradcam)
    cam_png = tmp_path / "cam.png"
    assert v.save_view(str(cam_png))
    assert np.asarray(Image.open(cam_png).convert("RGB")).shape == v.gradcam.overlay_image().shape


def test_a_pasted_image_is_classified(trained, qtbot):
    v = trained.viewer_panel
    arr = np.asarray(make_image("top", np.random.default_rng(3)))
    img = QImage(arr.data, arr.shape[1], arr.shape[0], arr.strides[0], QImage.Format_RGB888).copy()
    QApplication.clipboard().setImage(img)
    trained.paste_action.trigger()
    qtbot.waitUntil(lambda: v.strip.count() == 1, timeout=20000)
    assert v.strip_labels()[0].endswith("%")
    assert v.current_view.image_info.text() == "pasted image"


def test_confusion_matrix_cells_list_their_images(trained, qtbot):
    w = trained
    v = w.viewer_panel
    qtbot.mouseClick(v.evaluation_view.evaluate_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: v.evaluation_view.evaluation is not None, timeout=30000)
    ev = v.evaluation_view.evaluation
    assert v.evaluation_view.accuracy_label.text().startswith("Accuracy ")
    assert v.evaluation_view.confusion.rowCount() == 3 and v.evaluation_view.confusion.columnCount() == 3
    assert sum(int(v.evaluation_view.confusion.item(r, c).text()) for r in range(3) for c in range(3)) == 12
    assert v.evaluation_view.metrics.rowCount() == 3
    # the misclassified browser lists the wrong ones, most confident first
    assert len(v.evaluation_view.eval_list_paths()) == len(ev.misclassified)
    # click the cell with the most images
    r, c = np.unravel_index(np.argmax(ev.confusion), ev.confusion.shape)
    item = v.evaluation_view.confusion.item(int(r), int(c))
    rect = v.evaluation_view.confusion.visualItemRect(item)
    qtbot.mouseClick(v.evaluation_view.confusion.viewport(), Qt.LeftButton, pos=rect.center())
    paths = v.evaluation_view.eval_list_paths()
    assert len(paths) == ev.confusion[r, c] > 0
    true_name = ev.class_names[r]
    assert all(Path(p).parent.name == true_name for p in paths)
    assert f"True {true_name}, predicted {ev.class_names[c]}" in v.evaluation_view.cell_label.text()
    # clicking one opens it in the viewer, which says what it really is and which file it is
    eval_list = v.evaluation_view.eval_list
    qtbot.mouseClick(eval_list.viewport(), Qt.LeftButton, pos=eval_list.visualItemRect(eval_list.item(0)).center())
    qtbot.waitUntil(lambda: v.strip.count() == 1, timeout=20000)
    assert w.state.viewed_images == [paths[0]]
    assert v.current_view.image_info.text() == f"true class: {true_name} · {Path(paths[0]).name}"
    assert v.current_view.verdict.text().startswith("It looks like")


def test_at_1200x800_a_four_class_evaluation_shows_every_column_and_row_below_the_image(window, qtbot, tmp_path):
    w = window
    w.resize(1200, 800)
    data = write_dataset(tmp_path / "dogs", classes=("left", "top", "centre", "stripes"), per_class=10)
    for kind, name in zip(("left", "top", "centre", "stripes"),
                          ("border collie", "dachshund", "german shepherd", "labrador retriever")):
        (data / kind).rename(data / name)
    w.dataset_panel.load_folder(str(data))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == data, timeout=20000)
    set_epochs(w, qtbot, 1)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state.has_model and not w.state.busy, timeout=60000)
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    v = w.viewer_panel
    classify(w, qtbot, [next((data / "dachshund").iterdir())])
    qtbot.mouseClick(v.tabs.tabBar(), Qt.LeftButton, pos=v.tabs.tabBar().tabRect(v.tabs.indexOf(v.evaluation_view)).center())
    qtbot.waitUntil(lambda: v.evaluation_view.evaluation is not None, timeout=30000)
    QApplication.processEvents()
    view = v.evaluation_view
    assert v.current_view.isVisible()  # the image is still shown above
    assert columns_in_sight(view.confusion) == 4 and rows_in_sight(view.confusion) == 4
    assert rows_in_sight(view.metrics) == 4


def _rect_in(widget: QWidget, ancestor: QWidget):
    """The widget's rectangle in an ancestor's coordinates."""
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def test_at_1024x700_the_enlarged_channel_its_colour_bar_and_caption_do_not_overlap(trained, qtbot, images):
    w = trained
    w.resize(1024, 700)
    v = w.viewer_panel
    classify(w, qtbot, images[:1])
    qtbot.mouseClick(v.activations.grid.tiles[2], Qt.LeftButton)
    QApplication.processEvents()
    assert w.height() == 700  # the window can be made that small
    a = v.activations
    picture, bar, caption = (_rect_in(x, w) for x in (a.enlarged, a.color_bar.bar, a.enlarged_caption))
    assert not picture.intersects(caption) and not bar.intersects(caption) and not picture.intersects(bar)
    assert caption.bottom() < picture.top()
    assert caption.height() >= a.enlarged_caption.sizeHint().height()  # both lines, not squeezed
    assert bar.height() == picture.height() == 180  # the colour scale keeps its height
    viewport = a.enlarged.parentWidget().parentWidget()  # of the scroll area around the enlarged channel
    assert viewport.rect().contains(_rect_in(a.enlarged_caption, viewport))  # in view, not scrolled away
    assert "channel 2" in a.enlarged_caption.text()


def test_the_image_strip_is_one_compact_row(trained, qtbot, images):
    v = trained.viewer_panel
    classify(trained, qtbot, images)
    assert v.strip.height() <= 64  # was 112 px for one small image
    for i in range(v.strip.count()):
        item = v.strip.item(i)
        assert "\n" not in item.text()
        rect = v.strip.visualItemRect(item)
        assert rect.top() >= 0 and rect.bottom() <= v.strip.viewport().height()
        assert rect.width() > v.strip.iconSize().width() + v.strip.fontMetrics().horizontalAdvance(item.text())
    assert v.strip_labels()[2] == "c_notes.png: not readable"  # in full, not elided to the first item's width


def test_the_gradcam_map_has_a_colour_scale_and_says_what_it_explains(trained, qtbot, images):
    w = trained
    v = w.viewer_panel
    classify(w, qtbot, images[:1])
    v.tabs.setCurrentWidget(v.gradcam)
    g = v.gradcam
    assert g.color_bar.isVisible()
    assert g.color_bar.high.text().startswith("high") and g.color_bar.low.text().startswith("low")
    predicted = g.cam_class.currentText()
    ch, cw = g.cam.shape
    assert g.cam_caption.isVisible()
    assert g.smooth.isChecked()  # smoothed by default: a late layer's fine map reads as regions
    assert g.cam_caption.text() == (f"Heat map for the class “{predicted}” at the layer conv2d_5 "
                                    f"({ch}×{cw}, smoothed over about 9 px of the 64-px image).")
    # shown larger than the model's 64 px input, filling the room it has
    shown = g.cam_view.pixmap()
    assert shown.width() > 64 * 3 and shown.width() >= min(g.cam_view.width(), g.cam_view.height()) - 2
    old = g.cam
    g.cam_layer.setCurrentText("conv2d_2")
    qtbot.waitUntil(lambda: g.cam is not old, timeout=20000)
    assert "at the layer conv2d_2" in g.cam_caption.text()


def _plain_keras_model(path, nested=False):
    """A classifier built by a plain Keras script (not cnndesk): Functional, no Rescaling, 2 classes."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    if nested:
        backbone = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu")],
                                    name="backbone")
        x = backbone(inp)
    else:
        x = keras.layers.Conv2D(6, 3, activation="relu", name="my_conv")(inp)
        x = keras.layers.MaxPooling2D(name="my_pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.compile("adam", "categorical_crossentropy")
    x_train = np.random.default_rng(0).random((8, 32, 32, 3)).astype("float32")
    model.fit(x_train, keras.utils.to_categorical([0, 1] * 4, 2), epochs=1, verbose=0)
    model.save(path)
    return path


def test_a_model_trained_elsewhere_opens_and_classifies(window, qtbot, tmp_path, images):
    w = window
    path = _plain_keras_model(tmp_path / "elsewhere.keras")
    w.open_model(str(path))
    qtbot.waitUntil(lambda: w.state.has_model and w.tabs.currentIndex() == w.TAB_VIEWER, timeout=30000)
    v = w.viewer_panel
    assert "elsewhere.keras · 2 classes · input 32×32 rgb" in v.model_label.text()
    assert v.names_button.isVisible()
    classify(w, qtbot, images[:2])
    assert sorted(c for c, _ in v.current_view.bars.items) == ["class 0", "class 1"]
    assert [v.activations.layer_combo.itemText(i) for i in range(1, v.activations.layer_combo.count())] == ["my_conv", "my_pool"]
    labels, seen = v.strip_labels(), w.state.classified
    # the user names the classes: the strip is relabeled, not classified again (the same numbers, the new names)
    v.rename_classes(["cats", "dogs"])
    qtbot.waitUntil(lambda: v.class_names == ["cats", "dogs"], timeout=20000)
    qtbot.waitUntil(lambda: v.strip.count() == 2 and bool(v.current_view.bars.items), timeout=20000)
    assert sorted(c for c, _ in v.current_view.bars.items) == ["cats", "dogs"]
    assert v.strip_labels() == [t.replace("class 0", "cats").replace("class 1", "dogs") for t in labels]
    assert [im.probabilities for im in w.state.classified] == [im.probabilities for im in seen]  # the same arrays
    assert all(im.model == w.state.model for im in w.state.classified)
    assert w.state.current_project().class_names == ["cats", "dogs"]  # a save keeps the names
    assert w.isWindowModified()


def test_save_view_and_mark_as_probe_wait_for_an_image_to_be_shown(window, qtbot, tmp_path, images):
    w = window
    v = w.viewer_panel
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    buttons = (v.save_view_button, v.probe_button)
    assert not any(b.isEnabled() for b in buttons)  # no model, nothing shown
    w.open_model(str(_plain_keras_model(tmp_path / "m.keras")))
    qtbot.waitUntil(lambda: w.state.has_model, timeout=30000)
    assert v.placeholder.isVisible() and not any(b.isEnabled() for b in buttons)  # a model, still no image
    classify(w, qtbot, images[:1])
    assert all(b.isEnabled() for b in buttons)
    # an image that could not be read shows no view; choosing the good one again brings the buttons back
    drop_paths(v, [images[2]])
    qtbot.waitUntil(lambda: v.strip.count() == 2, timeout=20000)
    v.strip.setCurrentRow(1)
    assert not any(b.isEnabled() for b in buttons)
    v.strip.setCurrentRow(0)
    assert all(b.isEnabled() for b in buttons)
    # a pasted image has a view to save, but no file to follow while training
    arr = np.asarray(make_image("top", np.random.default_rng(3)))
    QApplication.clipboard().setImage(
        QImage(arr.data, arr.shape[1], arr.shape[0], arr.strides[0], QImage.Format_RGB888).copy())
    w.paste_action.trigger()
    qtbot.waitUntil(lambda: v.strip.count() == 3 and v.strip.currentRow() == 2
                    and v.current_view.image_info.text() == "pasted image", timeout=20000)
    assert v.save_view_button.isEnabled() and not v.probe_button.isEnabled()
    # another model classifies the files again (the pasted image is gone) and shows the first
    w.open_model(str(_plain_keras_model(tmp_path / "other.keras")))
    qtbot.waitUntil(lambda: "other.keras" in v.model_label.text() and v.strip.count() == 2
                    and looked_inside(v), timeout=30000)
    assert v.current.path == str(images[0]) and all(b.isEnabled() for b in buttons)


def test_a_nested_model_opens_with_its_backbone_layers_in_the_choosers(window, qtbot, tmp_path, images):
    w = window
    path = _plain_keras_model(tmp_path / "nested.keras", nested=True)
    w.open_model(str(path))
    qtbot.waitUntil(lambda: w.state.has_model and w.tabs.currentIndex() == w.TAB_VIEWER, timeout=30000)
    v = w.viewer_panel
    classify(w, qtbot, images[:1])
    [layer] = [v.gradcam.cam_layer.itemText(i) for i in range(v.gradcam.cam_layer.count())]
    assert layer.startswith("backbone/conv2d") and v.gradcam.cam is not None


def test_dropping_a_keras_file_opens_it(window, qtbot, tmp_path):
    path = _plain_keras_model(tmp_path / "dropped.keras")
    drop_paths(window, [path])
    qtbot.waitUntil(lambda: window.state.has_model, timeout=30000)
    assert "dropped.keras" in window.viewer_panel.model_label.text()


def test_exporting_from_the_file_menu_writes_a_model_plain_keras_loads(trained, qtbot, tmp_path, monkeypatch, images):
    import keras

    out = tmp_path / "exported.keras"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "*.keras"))
    trained.export_actions["keras"].trigger()
    qtbot.waitUntil(out.exists, timeout=30000)
    qtbot.waitUntil(lambda: trained.engine.pending() == 0, timeout=30000)
    model = keras.saving.load_model(out)
    # the same prediction as the viewer shows, from 0-255 pixels
    classify(trained, qtbot, images[:1])
    probs = model(trained.viewer_panel.current.prepared[None].astype("float32"), training=False).numpy()[0]
    shown = dict(trained.viewer_panel.current_view.bars.items)
    for name, p in zip(trained.viewer_panel.class_names, probs):
        assert shown[name] == pytest.approx(float(p), abs=1e-5)


@pytest.mark.parametrize("case", ["weights bomb", "custom layer"])
def test_opening_a_crafted_model_file_answers_in_seconds_with_one_sentence(window, qtbot, tmp_path, case):
    import time

    from crafted_models import bomb_member, config_of, rewrite

    real = _plain_keras_model(tmp_path / "real.keras")
    if case == "weights bomb":
        path = rewrite(real, tmp_path / "bomb.keras",
                       replace={"model.weights.h5": bomb_member("model.weights.h5", 2 * 10**9, b"\0")})
        expected = "over the limit of 100-fold: a decompression bomb"
    else:
        config = config_of(real)
        config["config"]["layers"].insert(1, {"module": None, "class_name": "Scale01", "registered_name": "mine>Scale01",
                                              "config": {"name": "scale01"}})
        path = rewrite(real, tmp_path / "custom.keras", config=config)
        expected = "the model uses a layer cnndesk cannot load safely: Scale01 (custom code, registered as `mine>Scale01`)"
    qtbot.waitUntil(lambda: window.engine.is_ready, timeout=60000)
    t = time.perf_counter()
    window.open_model(str(path))
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None, timeout=30000)
    assert time.perf_counter() - t < 10
    box = window.findChild(QMessageBox, "errorBox")
    assert expected in box.text() and "Traceback" not in box.text()
    assert not window.state.has_model


def test_a_stack_without_conv_or_pooling_trains_and_the_viewer_shows_its_predictions_only(window, qtbot,
                                                                                          tiny_dataset, images):
    from cnndesk.core.model.architecture import CLASSES, LayerSpec

    w = window
    w.dataset_panel.load_folder(str(tiny_dataset))
    qtbot.waitUntil(lambda: w.state.data is not None and w.state.data.root == tiny_dataset,
                    timeout=20000)
    w.model_panel.set_layers([LayerSpec("Flatten"), LayerSpec("Dense", {"units": CLASSES, "activation": "softmax"})],
                             "custom")
    set_epochs(w, qtbot, 1)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=60000)
    assert w.state.has_model and not w.state.model.has_maps
    assert "failed" not in w.training_panel.progress.format().lower()
    v = w.viewer_panel
    w.tabs.setCurrentIndex(w.TAB_VIEWER)
    drop_paths(v, [str(images[0])])
    qtbot.waitUntil(lambda: v.strip.count() == 1 and bool(v.current_view.bars.items), timeout=20000)
    assert v.current_view.verdict.text().startswith("It looks like")
    shown = [v.tabs.tabText(i) for i in range(v.tabs.count()) if v.tabs.isTabVisible(i)]
    # nothing inside to look at (no maps, no heat map); the views of the whole dataset, and of a folder, stay
    assert shown == ["Evaluation", "Map", "Folder"]
    qtbot.mouseClick(v.evaluation_view.evaluate_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: v.evaluation_view.accuracy_label.text().startswith("Accuracy"), timeout=20000)


def test_open_model_starts_in_the_folder_last_used(window, monkeypatch, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    window.settings.setValue("folders/model", str(folder))
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda parent, title, start, *a: asked.append(start) or ("", ""))
    window.open_model_action.trigger()
    assert asked == [str(folder)]


def test_a_savedmodel_export_is_written_into_the_new_folder_named(trained, qtbot, tmp_path, monkeypatch):
    from cnndesk.ui import file_dialogs

    out = tmp_path / "my exports" / "shapes model"
    (tmp_path / "my exports").mkdir()
    monkeypatch.setattr(file_dialogs, "ask_folder_for_writing", lambda *a, **k: str(out))
    trained.export_actions["saved_model"].trigger()
    qtbot.waitUntil(lambda: trained.statusBar().currentMessage().startswith("Exported"), timeout=120000)
    assert (out / "saved_model.pb").is_file()  # the folder named, not a folder inside it


def test_the_pixels_of_a_model_from_a_file_are_shown_and_changing_them_classifies_again(window, qtbot, tmp_path,
                                                                                       images):
    w = window
    w.open_model(str(_plain_keras_model(tmp_path / "elsewhere.keras")))
    qtbot.waitUntil(lambda: w.state.has_model and w.tabs.currentIndex() == w.TAB_VIEWER, timeout=30000)
    v = w.viewer_panel
    # no Rescaling layer and no family it belongs to: fed 0-1, and the window says so
    assert "input 32×32 rgb, pixels 0-1" in v.model_label.text()
    assert v.pixels_combo.isVisible() and v.pixels_combo.currentText() == "0-1"
    assert "pixels 0-1 (the usual Keras convention" in w.statusBar().currentMessage()
    classify(w, qtbot, images[:2])
    before = [im.probabilities for im in w.state.classified]

    v.pixels_combo.setFocus()
    qtbot.keyClick(v.pixels_combo, Qt.Key_Down)  # the next choice: -1 to 1
    qtbot.waitUntil(lambda: w.state.model.preprocessing.pixels == "-1-1", timeout=20000)
    qtbot.waitUntil(lambda: v.strip.count() == 2 and all(im.model == w.state.model for im in w.state.classified)
                    and looked_inside(v), timeout=20000)
    assert "input 32×32 rgb, pixels -1-1" in v.model_label.text() and v.pixels_combo.currentText() == "-1-1"
    after = [im.probabilities for im in w.state.classified]
    assert all(not np.allclose(a, b, atol=1e-4) for a, b in zip(after, before))  # the same images, other numbers
    import keras

    model = keras.saving.load_model(tmp_path / "elsewhere.keras")
    fed = w.state.classified[0].prepared[None].astype(np.float32) / np.float32(127.5) - 1
    np.testing.assert_allclose(after[0], np.asarray(model(fed))[0], atol=1e-5)
    assert w.state.current_project().preprocessing.pixels == "-1-1"  # what a save stores
    assert w.isWindowModified()

    # saved in a project and reopened, the model is still the user's: its pixels stay a choice
    w.projects.save_to(str(tmp_path / "kept"))
    qtbot.waitUntil(lambda: not w.isWindowModified(), timeout=30000)
    w.open_project(str(tmp_path / "kept"), confirm=False)
    qtbot.waitUntil(lambda: w.state.has_model and w.state.model.label == "elsewhere.keras in kept", timeout=30000)
    assert "pixels -1-1" in v.model_label.text()
    assert v.pixels_combo.isVisible() and v.pixels_combo.currentText() == "-1-1"


def test_a_trained_model_shows_its_pixels_without_a_choice(trained):
    v = trained.viewer_panel
    # the pixels, then what the confidences are (this folder's 12 validation images are too few for a temperature)
    assert " rgb, pixels 0-255 · confidences not calibrated: only 12 validation images" in v.model_label.text()
    assert not v.pixels_combo.isVisible()  # it rescales inside: nothing to choose


def test_pixels_a_model_cannot_take_are_refused_and_the_choice_shows_what_it_gets(window, qtbot, tmp_path):
    import keras

    path = tmp_path / "grey.keras"
    keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(3, 3), keras.layers.Flatten(),
                      keras.layers.Dense(2, activation="softmax")]).save(path)
    window.open_model(str(path))
    qtbot.waitUntil(lambda: window.state.has_model, timeout=30000)
    combo = window.viewer_panel.pixels_combo
    combo.setFocus()
    qtbot.keyClick(combo, "c")  # typing picks "caffe", which needs colour channels
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None, timeout=20000)
    assert "caffe preprocessing works on RGB images only" in window.findChild(QMessageBox, "errorBox").text()
    assert combo.currentText() == "0-1" and window.state.model.preprocessing.pixels == "0-1"


def test_one_dropped_image_gets_its_prediction_and_maps_from_one_forward_pass(trained, qtbot, images):
    from cnndesk.ui.engine_worker import EngineWorker

    v = trained.viewer_panel
    submitted = []
    submit = trained.engine.submit
    trained.engine.submit = lambda method, *a, **k: (submitted.append(method), submit(method, *a, **k))[1]
    classify(trained, qtbot, [str(images[0])])
    assert EngineWorker.predict_files in submitted and EngineWorker.inspect not in submitted
    assert v.activations.grid.tiles and v.current_view.verdict.text().startswith("It looks like")
    assert looked_inside(v)  # the heat map followed as its own job


def test_the_prediction_is_on_screen_while_the_maps_are_still_being_prepared(trained, qtbot, images):
    import threading

    v = trained.viewer_panel
    worker = trained.engine.worker
    release = threading.Event()
    colour = worker._pictures

    def slow_pictures(*args, **kwargs):  # the maps' pictures take their time (a large model's layers)
        release.wait(30)
        return colour(*args, **kwargs)

    worker._pictures = slow_pictures
    try:
        before, shown = v.strip.count(), v.gradcam.cam
        drop_paths(v, [str(images[0])])
        qtbot.waitUntil(lambda: v.current_view.verdict.text().startswith("It looks like"), timeout=60000)
        assert v.strip.count() == before + 1 and v.gradcam.cam is shown  # the maps have not come yet
        release.set()
        qtbot.waitUntil(lambda: looked_inside(v), timeout=60000)  # then they do, and the heat map
        assert v.activations.grid.tiles
    finally:
        release.set()
        del worker._pictures

"""Viewer: drop images, see what the model predicts, and look inside it.

``ViewerPanel`` holds the strip of opened images and the current image with its verdict and probability bars.
Below them sit tabs: the inspection views (activation maps, all layers, Grad-CAM, first-layer filters) show the
current image; the evaluation view shows the whole validation set, the map view the whole dataset as the model sees it. The panel is the one that talks to the
engine and hands the answers to the views.

What the current model is (its classes, how it prepares images, whether it has maps to show) and what the strip
shows (``SessionState.classified``: each image with what the model said of it) come from the session state, which
the panel observes: a new model re-classifies the strip, a rename relabels it (``Classified.relabeled``). The panel
keeps only what is drawn from the state (the strip's pictures) and the answers of jobs on their way.

A little over 500 lines: the strip, the current image and the engine requests that fill them share one
selection and one model; the views and tiles that stand alone are in ``inspection_views``,
``evaluation_view`` and ``widgets``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QApplication, QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QListView, QListWidget,
    QListWidgetItem, QPushButton, QSplitter, QStackedWidget, QTabWidget, QVBoxLayout, QWidget,
)

from ..core import fsutil
from ..core.data.images import IMAGE_EXTENSIONS, PIXEL_MODES
from ..core.data.scanning import printable
from ..core.project.session import Classified, ModelInfo, SessionState
from .current_image import CurrentImageView, qimage_to_array
from .engine_worker import EngineWorker
from .dataset_map_view import DatasetMapView
from .evaluation_view import EvaluationView
from .folder_view import FolderView
from .inspection_views import OVERVIEW_CHANNELS, ActivationView, GradCamView, KernelView, LayerOverview
from .widgets import MAX_CHANNEL_TILES, array_to_pixmap, array_to_qimage

IMAGE_FILTER = "Images (" + " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + ")"
STRIP_ICON = 32


class ViewerPanel(QWidget):
    """Classify dropped images and look inside the network.

    Signals:
        status(str): a short message for the status bar.
        paths_dropped(list): files or folders were dropped on the viewer; the window decides what opens
            them (a folder is a dataset or project, a .keras file a model, images come back to
            ``classify_paths``).
        pixels_chosen(str): the user chose how a model from a file is fed its pixels (a ``PIXEL_MODES``
            key); the state's model changes when the engine has it, and the strip is classified again.
    """

    status = Signal(str)
    paths_dropped = Signal(list)
    pixels_chosen = Signal(str)
    probe_marked = Signal(str)  # the current image's file is to be a probe image (followed while training)

    #: the tabs, in order, by the names the state and a project give them (``SessionState.viewer_tab``)
    TABS = ("activations", "layers", "gradcam", "filters", "evaluation", "map", "folder")

    def __init__(self, state: SessionState, engine, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.engine = engine
        self.setAcceptDrops(True)
        self.current: Classified | None = None  # the image shown, one of the state's ``classified``
        self._pixmaps: dict[Classified, QPixmap] = {}  # the picture of each image in the strip, in its order
        self._came_with: dict[Classified, Any] = {}  # maps (model.inspection.Inspection) that came with a prediction
        self._maps_coming: set[Classified] = set()  # images shown whose maps are still on the way in the same job
        self.inspection = None  # the current image's model.inspection.Inspection with its heat map, once all are shown
        self._inspecting: dict | None = None  # its maps, shown, while the heat map is being computed
        self._known_classes: dict[str, str] = {}  # file -> true class, for images opened from the evaluation
        self._evaluating = False  # an evaluation job is on its way
        self._build()
        state.observe(self._on_model, "model")
        state.observe(self._show_strip, "classified")
        state.observe(self._update_enabled, "model", "activity", "engine_ready", "data")
        state.observe(self._on_data, "data")
        state.observe(self._evaluate_on_demand, "activity")
        state.observe(self._show_tab, "viewer_tab")
        self._update_enabled()

    # -- what the state says --------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """The current model's class names (empty without a model)."""
        return list(self.state.model.class_names) if self.state.model is not None else []

    @property
    def usable(self) -> bool:
        """A model is there and nothing (training, saving) holds the engine."""
        state = self.state
        return state.engine_ready and state.has_model and not state.busy

    # -- layout ------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.addLayout(self._build_toolbar())
        self.placeholder = QLabel(objectName="viewerPlaceholder", alignment=Qt.AlignCenter, wordWrap=True)
        self.placeholder.setStyleSheet("font-size: 14pt; color: #78909c; border: 2px dashed #b0bec5; "
                                       "border-radius: 12px; padding: 30px")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        content = QWidget()
        self.stack.addWidget(content)
        outer.addWidget(self.stack, 1)

        cl = QVBoxLayout(content)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self._build_strip())
        split = QSplitter(Qt.Vertical)
        cl.addWidget(split, 1)
        self.current_view = CurrentImageView()
        split.addWidget(self.current_view)
        split.addWidget(self._build_tabs())
        split.setStretchFactor(1, 2)

    def _build_toolbar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        self.open_button = QPushButton("Open images…", objectName="openImages")
        self.open_button.clicked.connect(self.open_images_dialog)
        self.paste_button = QPushButton("Paste", objectName="pasteButton")
        self.paste_button.clicked.connect(self.paste_image)
        self.save_view_button = QPushButton("Save view as PNG…", objectName="saveView")
        self.save_view_button.clicked.connect(self.save_view_dialog)
        self.probe_button = QPushButton("Mark as probe", objectName="markProbe")
        self.probe_button.setToolTip("Follow this image while training: its prediction, maps and heat map are "
                                     "recorded after every epoch (Train tab, Probe images)")
        self.probe_button.clicked.connect(self.mark_probe)
        self.names_button = QPushButton("Class names…", objectName="classNamesButton", visible=False)
        self.names_button.clicked.connect(self.edit_class_names)
        self.model_label = QLabel(objectName="modelLabel", wordWrap=True)  # a note can make it long
        self.model_label.setStyleSheet("color: #455a64")
        for w in (self.open_button, self.paste_button, self.save_view_button, self.probe_button, self.names_button):
            bar.addWidget(w)
        bar.addWidget(self._build_pixels_choice())
        bar.addWidget(self._build_member_choice())
        bar.addWidget(self.model_label, 1)
        return bar

    def _build_member_choice(self) -> QWidget:
        """"Maps of: [member 2]": whose activation maps an ensemble shows, shown only for an ensemble."""
        self.member_combo = QComboBox(objectName="memberCombo")
        self.member_combo.setToolTip("An ensemble predicts with the average of its models; its maps and heat maps "
                                     "are those of the model chosen here")
        self.member_combo.activated.connect(self._on_member_chosen)
        self.member_box = _labelled("Maps of:", self.member_combo)
        return self.member_box

    def _on_member_chosen(self, _index: int) -> None:
        """Another member of the ensemble: its maps for the current image."""
        if self.state.model is not None:
            self._show_pixels(self.state.model)
        if self.current is not None and self.current.prepared is not None and not self.current.error:
            self._look_inside(self.current)

    def _build_pixels_choice(self) -> QWidget:
        """"Pixels: [caffe]": how a model from a file is fed its pixels, shown only for such a model."""
        self.pixels_combo = QComboBox(objectName="pixelsCombo")
        self.pixels_combo.setToolTip("How the image's 0–255 pixels are turned into the numbers this model takes. "
                                     "cnndesk picked what the model's layers suggest; a wrong choice gives "
                                     "confident but wrong answers.")
        for key, description in PIXEL_MODES.items():
            self.pixels_combo.addItem(key, key)
            self.pixels_combo.setItemData(self.pixels_combo.count() - 1, description, Qt.ToolTipRole)
        self.pixels_combo.activated.connect(self._on_pixels_activated)
        self.pixels_box = _labelled("Pixels:", self.pixels_combo)
        return self.pixels_box

    def _build_strip(self) -> QListWidget:
        """One row of small icons, each with one line of text beside it, as tall as one item."""
        self.strip = QListWidget(objectName="thumbnailStrip")
        self.strip.setViewMode(QListView.ListMode)
        self.strip.setFlow(QListView.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setIconSize(QSize(STRIP_ICON, STRIP_ICON))
        self.strip.setMovement(QListView.Static)
        self.strip.setSpacing(2)
        self.strip.setTextElideMode(Qt.ElideMiddle)
        row = max(STRIP_ICON, self.strip.fontMetrics().height()) + 8
        scroll_bar = self.strip.horizontalScrollBar().sizeHint().height()
        self.strip.setFixedHeight(row + 2 * self.strip.spacing() + scroll_bar + 2 * self.strip.frameWidth())
        self.strip.currentRowChanged.connect(self._on_strip_row)
        return self.strip

    def _build_tabs(self) -> QTabWidget:
        self.tabs = QTabWidget(objectName="viewerTabs")
        self.activations = ActivationView()
        self.tabs.addTab(self.activations, "Activation maps")
        self.overview = LayerOverview()
        self.tabs.addTab(self.overview, "All layers")
        self.gradcam = GradCamView()
        self.gradcam.target_changed.connect(self._request_gradcam)
        self.tabs.addTab(self.gradcam, "Grad-CAM")
        self.kernels = KernelView()
        self.tabs.addTab(self.kernels, "First-layer filters")
        self.evaluation_view = EvaluationView()
        self.evaluation_view.evaluate_requested.connect(self.evaluate)
        self.evaluation_view.open_path.connect(self._open_evaluated)
        self.tabs.addTab(self.evaluation_view, "Evaluation")
        self.map_view = DatasetMapView()
        self.map_view.open_requested.connect(self._open_mapped)
        self.tabs.addTab(self.map_view, "Map")
        self.folder_view = FolderView()  # wired in bindings.bind_folder_view
        self.tabs.addTab(self.folder_view, "Folder")
        self.tabs.currentChanged.connect(self._evaluate_on_demand)
        self.tabs.currentChanged.connect(self._on_tab)
        return self.tabs

    def _on_tab(self, index: int) -> None:
        """The tab shown is part of the project (saved with it, not an edit of it)."""
        if 0 <= index < len(self.TABS):
            self.state.viewer_tab = self.TABS[index]

    def _show_tab(self, _names=None) -> None:
        """Show the tab the state names (a reopened project's), if the model has it."""
        key = self.state.viewer_tab
        if key in self.TABS and self.tabs.isTabVisible(self.TABS.index(key)):
            self.tabs.setCurrentIndex(self.TABS.index(key))

    # -- model state ---------------------------------------------------------------
    def _update_enabled(self, _names=None) -> None:
        state, usable = self.state, self.usable
        for w in (self.open_button, self.paste_button, self.names_button, self.pixels_combo):
            w.setEnabled(usable)
        self.evaluation_view.evaluate_button.setEnabled(usable and state.data is not None)
        self.map_view.set_can_compute(usable and state.data is not None)
        if state.training:
            self.placeholder.setText("Training in progress…\nThe viewer is available when training ends.")
        elif not state.has_model:
            self.placeholder.setText("Train a model (Train tab) or open a .keras model (File → Open Model),\n"
                                     "then drop images here to see what the network predicts and why.")
        else:
            self.placeholder.setText("Drop images here, or use Open images… / Paste (Ctrl+V).")
        self.stack.setCurrentIndex(1 if (usable and state.classified) else 0)
        self._update_image_buttons()

    def _update_image_buttons(self) -> None:
        """Save view and Mark as probe act on the image shown: off until one is (a probe needs its file too)."""
        im = self.current
        shown = self.usable and self.stack.currentIndex() == 1 and im is not None and not im.error
        self.save_view_button.setEnabled(shown)
        self.probe_button.setEnabled(shown and bool(im.path))

    def _on_model(self, _names=None) -> None:
        """A new model (or new names for it): forget what the old one showed, re-classify the strip."""
        model, shown = self.state.model, self.state.classified
        if model is None:
            self.state.classified = ()
            self.model_label.setText("")
            self.pixels_box.setVisible(False)
            self._reset_views()
            return
        self.names_button.setVisible(model.editable_names)
        self._show_members(model)
        self._show_pixels(model)
        for view in (self.activations, self.overview, self.gradcam, self.kernels):
            self.tabs.setTabVisible(self.tabs.indexOf(view), model.has_maps)  # else predictions only
        if not model.has_maps:
            self.tabs.setCurrentWidget(self.evaluation_view)
        relabeled = [im.relabeled(model) for im in shown]
        if shown and None not in relabeled:
            self._relabel(tuple(relabeled))  # the same model, new names: no need to ask the engine again
            return
        # the images shown (or, for a reopened project, the ones it showed) are classified again by the new model
        self._known_classes.update({im.path: im.true_class for im in shown if im.path and im.true_class})
        paths = [p for p in self.state.viewed_images if Path(p).is_file()]
        self._reset_views()
        self.state.classified = ()
        if paths:
            self.classify_paths(paths)
        self._evaluate_on_demand()

    def _show_members(self, model: ModelInfo) -> None:
        """The member chooser of an ensemble (its first member chosen); hidden for a single model."""
        names = [f"model {i + 1} ({name})" for i, name in enumerate(model.members)]
        if [self.member_combo.itemText(i) for i in range(self.member_combo.count())] != names:
            self.member_combo.clear()
            self.member_combo.addItems(names)
        self.member_box.setVisible(model.is_ensemble)

    def _show_pixels(self, model: ModelInfo) -> None:
        """The model line ("input 224×224 rgb, pixels caffe") and, for a model from a file, the pixel choice."""
        pre = model.preprocessing
        h, w = pre.image_size
        note = f" · {model.output_note}" if model.output_note else ""
        if model.is_ensemble:
            note = (f" · an ensemble of {len(model.members)} models averaging their probabilities; maps of "
                    f"model {self.member_combo.currentIndex() + 1}{note}")
        self.model_label.setText(f"Model: {model.label} · {len(model.class_names)} classes · "
                                 f"input {h}×{w} {pre.color_mode}, pixels {pre.pixels}{note}")
        self.model_label.setToolTip(f"Pixels: {PIXEL_MODES[pre.pixels]}")
        self.pixels_combo.setCurrentIndex(self.pixels_combo.findData(pre.pixels))  # `activated` is the user's only
        self.pixels_box.setVisible(model.source == "file")

    def _on_pixels_activated(self, index: int) -> None:
        """Ask for the chosen pixels, and keep showing the model's own until it has them (or was refused)."""
        self.pixels_chosen.emit(self.pixels_combo.itemData(index))
        if self.state.model is not None:
            self._show_pixels(self.state.model)

    def _relabel(self, relabeled: tuple[Classified, ...]) -> None:
        """Show the renamed classes on what is already classified."""
        current = self.strip.currentRow()
        self.state.classified = relabeled
        self.gradcam.set_classes(self.class_names)
        if 0 <= current < len(relabeled):
            self.strip.setCurrentRow(current)

    def _show_strip(self, _names=None) -> None:
        """Show the state's classified images in the strip: those added at its end are added, else all anew."""
        shown = self.state.classified
        drawn = list(self._pixmaps)
        appended = drawn == list(shown[:len(drawn)])
        new = shown[len(drawn):] if appended else shown
        # every picture first: the strip's row changes while it is cleared and filled show the state's images
        self._pixmaps = {im: self._pixmaps[im] if im in self._pixmaps else self._picture(im) for im in shown}
        kept = set(shown)
        self._came_with = {im: maps for im, maps in self._came_with.items() if im in kept}
        self._maps_coming &= kept
        if not appended:
            self.strip.clear()
        for im in new:
            self._add_strip_item(im)

    @staticmethod
    def _picture(im: Classified) -> QPixmap | None:
        if im.error:
            return None
        return array_to_pixmap(im.display if im.display is not None else im.prepared)

    def _reset_views(self) -> None:
        """Clear everything computed by a previous model (layers, maps, heat map, evaluation)."""
        self.evaluation_view.clear()
        self._evaluating = False
        self.inspection = self._inspecting = None
        self.current = None
        self.activations.clear()
        self.overview.clear()
        self.gradcam.clear()
        self.gradcam.set_classes(self.class_names)
        self.current_view.show_image(None)
        self._update_image_buttons()

    def edit_class_names(self) -> None:
        shown = [printable(n) for n in self.class_names]
        text, ok = QInputDialog.getMultiLineText(self, "Class names", "One name per line, in the model's output order:",
                                                 "\n".join(shown))
        if not ok:
            return
        names = [n.strip() for n in text.splitlines() if n.strip()]
        # a name left as shown keeps its original (a name with a newline or undecodable bytes is shown escaped)
        names = [old if i < len(shown) and n == shown[i] else n for i, (n, old) in
                 enumerate(zip(names, self.class_names + [""] * len(names)))]
        self.rename_classes(names)

    def rename_classes(self, names: list[str]) -> None:
        if len(names) != len(self.class_names):
            self.status.emit(f"Give exactly {len(self.class_names)} names, one per line.")
            return
        model = self.state.model
        self.engine.submit(EngineWorker.set_class_names, names, on_done=lambda n: self._on_renamed(model, n),
                           on_error=self.status.emit)

    def _on_renamed(self, model: ModelInfo, names: list[str]) -> None:
        if self.state.model is model:  # still the model the names were given for
            self.state.model = model.renamed(names)

    # -- classify ------------------------------------------------------------------
    def mark_probe(self) -> None:
        """Ask for the current image to be a probe (an image pasted without a file cannot be one)."""
        path = self.current.path if self.current is not None else None
        if path and Path(path).is_file():
            self.probe_marked.emit(path)
            self.status.emit(f"{Path(path).name} is a probe image: the next training records it (Train tab).")
        else:
            self.status.emit("Only an image opened from a file can be a probe image.")

    def open_images_dialog(self) -> None:
        if not self.open_button.isEnabled():
            return
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images to classify", str(Path.home()),
                                                f"{IMAGE_FILTER};;All files (*)")
        if paths:
            self.classify_paths(paths)

    def classify_paths(self, paths: list[str]) -> None:
        """Classify image files in the engine thread; unreadable files get a message."""
        if not self.usable:
            self.status.emit("Train or open a model first." if not self.state.has_model else
                             "Wait until the current work (training, saving) ends.")
            return
        if not paths:
            return
        # one file (a drop, a click in the evaluation): its maps come in the same pass as its prediction
        # (only the selected layer coloured there: "All layers" colours its rows as they come into view, so the
        # prediction does not wait for every layer's pictures)
        k = min(5, len(self.class_names))
        if len(paths) != 1 or not self.state.model.has_maps:
            self.engine.submit(EngineWorker.predict_files, list(paths), k=k, on_done=self._on_predicted,
                               on_error=self.status.emit)
            return
        # the prediction is shown as soon as the forward pass has run (a partial answer); the maps follow
        shown: list[Classified] = []

        def whole(results: list) -> None:
            if shown:
                self._on_looked(shown[0], results[0].inspection)
            else:  # the file could not be read: no partial answer came
                self._on_predicted(results)

        def failed(message: str) -> None:
            if shown:
                self._on_looked(shown[0], None)
            self.status.emit(message)

        self.engine.submit(EngineWorker.predict_files, list(paths), k=k,
                           look_inside=dict(self._inspect_arguments(), first_channels=0),
                           on_partial=lambda results: shown.extend(self._on_predicted(results, maps_coming=True)),
                           on_done=whole, on_error=failed)

    def paste_image(self) -> None:
        """Classify an image (or image files) from the clipboard."""
        if not self.usable:
            return
        md = QApplication.clipboard().mimeData()
        if md is not None and md.hasUrls():
            paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if paths:
                self.classify_paths(paths)
                return
        img = QApplication.clipboard().image()
        if img.isNull():
            self.status.emit("The clipboard holds no image.")
            return
        self._classify_image(img, "pasted image")

    def _classify_image(self, img: QImage, label: str) -> None:
        """Classify an in-memory image (pasted or dropped as image data)."""
        self.engine.submit(EngineWorker.predict_arrays, [qimage_to_array(img)], labels=[label],
                           k=min(5, len(self.class_names)), on_done=self._on_predicted, on_error=self.status.emit)

    def _on_predicted(self, results: list, maps_coming: bool = False) -> tuple[Classified, ...]:
        """Add the classified images to the strip and show the first; returns them.

        ``maps_coming``: their maps are on the way in the same job (``_on_looked`` receives them), so none are
        asked for when they are shown.
        """
        model, new = self.state.model, []
        for r in results:  # core.model.inspection.Seen
            is_file = bool(r.path) and Path(r.path).exists()
            path = r.path if is_file else None
            label = Path(r.path).name if is_file else (r.path or "image")
            true_class = self._known_classes.pop(path, None) if path else None
            if r.error is not None:
                new.append(Classified(label, path, model, error=r.error, true_class=true_class))
                continue
            # the picture is decoded once in the engine, with the model's input
            im = Classified(label, path, model, top=tuple(tuple(t) for t in r.top), probabilities=r.probabilities,
                            prepared=r.image, display=r.display, true_class=true_class)
            if r.inspection is not None:
                self._came_with[im] = r.inspection
            if maps_coming:
                self._maps_coming.add(im)
            new.append(im)
        shown = self.state.classified + tuple(new)
        # what the viewer shows is part of the working state a project brings back (not an edit of it)
        self.state.update(classified=shown, viewed_images=list(dict.fromkeys(im.path for im in shown if im.path)))
        self.stack.setCurrentIndex(1)
        errors = [im for im in new if im.error]
        if errors:
            self.status.emit("; ".join(f"{e.label}: {e.error}" for e in errors))
        first_new = len(shown) - len(new)
        good = [i for i in range(first_new, len(shown)) if not shown[i].error]
        self.strip.setCurrentRow(good[0] if good else len(shown) - 1)
        return tuple(new)

    def _on_looked(self, im: Classified, inspection) -> None:
        """The maps of ``im``, whose prediction is already shown, have come (``inspection`` None: they failed)."""
        self._maps_coming.discard(im)
        if inspection is not None and im in self._pixmaps:
            self._came_with[im] = inspection
        if self.current is im and not im.error and self.state.model.has_maps:
            self._look_inside(im)

    def _add_strip_item(self, im: Classified) -> None:
        if im.error:
            icon = self.style().standardIcon(self.style().StandardPixmap.SP_MessageBoxWarning)
            text = f"{im.label}: not readable"
        else:
            picture = self._pixmaps[im]
            icon = QIcon(picture.scaled(STRIP_ICON, STRIP_ICON, Qt.KeepAspectRatio, Qt.SmoothTransformation))
            name, prob = im.top[0]
            text = f"{printable(name)} {prob:.0%}"
        item = QListWidgetItem(icon, text)
        item.setToolTip(im.error or f"{im.label}: " + ", ".join(f"{printable(c)} {p:.1%}" for c, p in im.top))
        self.strip.addItem(item)

    def strip_labels(self) -> list[str]:
        return [self.strip.item(i).text() for i in range(self.strip.count())]

    def _on_strip_row(self, row: int) -> None:
        shown = self.state.classified
        if not (0 <= row < len(shown)):
            return
        im = shown[row]
        self.current = im
        self.current_view.show_image(im, self._pixmaps.get(im))
        self._update_image_buttons()
        if im.error:
            return
        self.gradcam.select_class(int(np.argmax(im.probabilities)))
        if not self.state.model.has_maps:
            return  # a model without conv or pooling layers: its prediction is all there is to show
        if im not in self._maps_coming:
            self._look_inside(im)

    def _look_inside(self, im: Classified) -> None:
        """Show the current image's maps: those that came with its prediction, else ask the engine for them."""
        inspection = self._came_with.pop(im, None)
        if inspection is not None:  # came with the prediction
            self._on_inspected(inspection)
            return
        self.engine.submit(EngineWorker.inspect, im.prepared, class_index=self.gradcam.class_index(),
                           **self._inspect_arguments(), with_cam=False, latest_only=True,
                           on_done=self._on_inspected, on_error=self.status.emit)

    def _inspect_arguments(self) -> dict:
        """What ``EngineWorker.inspect`` needs to know of the views: the heat map's layer and method, and which
        maps to colour first (the selected layer's, and the first channels of every layer for "All layers")."""
        return {"layer": self.gradcam.layer(), "cam_method": self.gradcam.method(),
                "member": max(self.member_combo.currentIndex(), 0),
                "shown_layer": self.activations.layer_combo.currentText(), "shown_channels": MAX_CHANNEL_TILES,
                "first_channels": OVERVIEW_CHANNELS}

    # -- inside the network ------------------------------------------------------------
    def _on_inspected(self, result) -> None:
        """Show the maps (a ``core.model.inspection.Inspection``), then ask for the heat map: ``inspection`` is set once
        the heat map is shown too."""
        if self.current is None or self.current.prepared is None:  # the model changed while it ran
            return
        image = self.current.prepared
        self.gradcam.set_layers([n for n, _ in result.maps], result.cam_layer)
        self.activations.show_maps(image, result.maps, result.conv_layers, result.pictures)
        self.overview.show_maps(image, result.maps, result.pictures)
        self.kernels.show_kernels(result.kernels)
        if result.cam_layer is None:
            self.inspection = result
            return
        # the heat map (a forward and a backward pass) is a job of its own, so the maps do not wait for it
        self._inspecting = result
        self._submit_gradcam(result.class_index, result.cam_layer)

    def _request_gradcam(self) -> None:
        model = self.state.model
        if self.current is None or self.current.prepared is None or self.gradcam.class_index() < 0 \
                or model is None or not model.has_maps:
            return
        self._submit_gradcam(self.gradcam.class_index(), self.gradcam.layer())

    def _submit_gradcam(self, class_index: int, layer: str | None) -> None:
        im = self.current
        self.engine.submit(EngineWorker.gradcam, im.prepared, class_index, layer=layer,
                           cam_method=self.gradcam.method(), latest_only=True,
                           on_done=lambda result: self._on_gradcam(im, result), on_error=self.status.emit)

    def _on_gradcam(self, im: Classified, result) -> None:
        if self.current is not im or im.prepared is None:  # another image or model since it was asked for
            return
        self.gradcam.show_cam(im.prepared, result.cam)
        if self._inspecting is not None:  # the heat map (a HeatMap) that completes the current image's inspection
            self.inspection = dataclasses.replace(self._inspecting, cam=result.cam, cam_layer=result.cam_layer)
            self._inspecting = None

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> None:
        data, model = self.state.data, self.state.model
        if data is None or not self.usable:
            self.status.emit("Evaluation needs a trained model and the dataset it was trained on.")
            return
        if data.preprocessing.input_shape != model.preprocessing.input_shape:
            h, w = model.preprocessing.image_size
            message = (f"The model takes {h}×{w} {model.preprocessing.color_mode} images; set the dataset's image "
                       "size and colour back to that to evaluate it.")
            self.evaluation_view.show_message(message)
            self.status.emit(message)
            return
        self.tabs.setCurrentWidget(self.evaluation_view)
        if self.stack.currentIndex() == 0:
            self.stack.setCurrentIndex(1)
        self.evaluation_view.show_message("Evaluating…")
        self._evaluating = True
        self.engine.submit(EngineWorker.evaluate, data, latest_only=True,
                           on_done=lambda ev: self._on_evaluated(ev, data, model),
                           on_error=self._on_evaluate_failed)

    def _on_evaluated(self, ev, data, model) -> None:
        self._evaluating = False
        if data is self.state.data and model is self.state.model:  # neither replaced while it ran
            self.evaluation_view.show_result(ev, data)

    def _on_evaluate_failed(self, message: str) -> None:
        self._evaluating = False
        self.evaluation_view.show_message(message)

    def _on_data(self, _names=None) -> None:
        """Another dataset (or split): an evaluation of the one before no longer holds."""
        self.evaluation_view.clear()
        self._evaluating = False
        self._evaluate_on_demand()

    def _evaluate_on_demand(self, _index=None) -> None:
        """Showing the Evaluation tab computes it, once per model and dataset (e.g. after reopening a project)."""
        if (self.tabs.currentWidget() is self.evaluation_view and self.evaluation_view.evaluation is None
                and self.usable and self.state.data is not None and self.isVisible() and not self._evaluating):
            self.evaluate()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._evaluate_on_demand()  # the Viewer tab shown with its Evaluation tab already current

    def _open_evaluated(self, path: str) -> None:
        """Classify an image clicked in the evaluation, remembering its true class to show beside the verdict."""
        true_class = self.evaluation_view.true_class(path)
        if true_class is not None:
            self._known_classes[path] = true_class
        self.classify_paths([path])

    def show_map(self, view: QWidget | None = None) -> None:
        """Show the Map tab, or another of the tabs (``view``); the tabs too, when no image is open yet."""
        self.tabs.setCurrentWidget(view or self.map_view)
        if self.stack.currentIndex() == 0 and self.usable:
            self.stack.setCurrentIndex(1)

    def _open_mapped(self, path: str) -> None:
        """Classify an image clicked on the map, with its class (its folder's name) beside the verdict."""
        data = self.state.data
        if data is not None and path in data.paths:
            self._known_classes[path] = data.class_names[int(data.labels[data.paths.index(path)])]
        self.classify_paths([path])

    # -- saving ----------------------------------------------------------------------------
    def save_view_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the current view", str(Path.home() / "cnndesk-view.png"),
                                              "PNG images (*.png)")
        if path:
            self.save_view(path)

    def save_view(self, path: str) -> bool:
        """Save what the current tab shows as PNG: the Grad-CAM overlay at the image's size, else the tab's picture."""
        tab = self.tabs.currentWidget()
        overlay = self.gradcam.overlay_image() if tab is self.gradcam else None
        picture = array_to_qimage(overlay) if overlay is not None else tab.grab()
        try:
            with fsutil.replacing(path) as tmp:
                if not picture.save(str(tmp), "PNG"):
                    raise OSError(f"Qt could not write {tmp}")  # whatever it wrote is not kept
            ok = True
        except OSError:
            ok = False
        self.status.emit(f"Saved {path}" if ok else f"Could not write {path}")
        return ok

    # -- drops -------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        md = event.mimeData()
        paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.paths_dropped.emit(paths)
        elif md.hasImage():
            event.acceptProposedAction()
            self._classify_image(QImage(md.imageData()), "dropped image")


def _labelled(text: str, combo: QComboBox) -> QWidget:
    """"Text: [combo]" in a box of its own, hidden until the model needs it (the pixel and member choices)."""
    box = QWidget(visible=False)
    row = QHBoxLayout(box)
    row.setContentsMargins(6, 0, 0, 0)
    label = QLabel(text)
    label.setBuddy(combo)
    row.addWidget(label)
    row.addWidget(combo)
    return box

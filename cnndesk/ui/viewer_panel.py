"""Viewer: drop images, see what the model predicts, and look inside it.

``ViewerPanel`` shows the strip of opened images and the current image with its verdict and probability bars.
Below them sit tabs: the inspection views (activation maps, all layers, Grad-CAM, first-layer filters) show the
current image; the evaluation view shows the whole validation set, the map view the whole dataset as the model
sees it.

The panel is a view: it knows neither the session state nor the engine. It shows what it is given (the model's
description, the state's ``classified`` images, the maps, heat map and evaluation the engine computed) and says
what the user asks for through its signals; ``bindings.ViewerBinding`` turns those requests into engine jobs and
writes the answers into the state. It keeps only what it draws (the strip's pictures) and what the user selected.
"""

from __future__ import annotations

from pathlib import Path

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
from ..core.project.session import Classified, ModelInfo
from .current_image import CurrentImageView, qimage_to_array
from .dataset_map_view import DatasetMapView
from .evaluation_view import EvaluationView
from .folder_view import FolderView
from .inspection_views import OVERVIEW_CHANNELS, ActivationView, GradCamView, KernelView, LayerOverview
from .trust_views import UnlikeBanner
from .widgets import MAX_CHANNEL_TILES, array_to_pixmap, array_to_qimage

IMAGE_FILTER = "Images (" + " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + ")"
STRIP_ICON = 32


class ViewerPanel(QWidget):
    """Classify dropped images and look inside the network: a view (see the module docstring).

    Signals (requests; ``bindings.ViewerBinding`` answers them):
        status(str): a short message for the status bar.
        paths_dropped(list): files or folders were dropped on the viewer; the window decides what opens
            them (a folder is a dataset or project, a .keras file a model, images are classified).
        classify_requested(list): image files to classify (Open images…, Paste).
        open_requested(str, object): one image file to classify and show, with its true class when the view knows
            it (a click in the evaluation), else None.
        image_given(object, str): an image without a file (pasted, or dropped as image data): its RGB array, its label.
        image_selected(object): the strip's current image (a ``Classified``) changed; its maps are wanted.
        gradcam_requested(): the heat map's class, layer or method was changed.
        evaluate_requested(): evaluate the model on the validation split.
        evaluation_wanted(): the Evaluation tab came into view with no evaluation on it.
        names_given(list): the user gave the model's classes new names (as many as it has).
        tab_chosen(str): the user showed another tab (a ``TABS`` key).
        pixels_chosen(str): the user chose how a model from a file is fed its pixels (a ``PIXEL_MODES``
            key); the state's model changes when the engine has it, and the strip is classified again.
        member_chosen(int): the user chose whose maps an ensemble shows (its member, from 0): the selected
            image's maps are wanted again.
        probe_marked(str): the current image's file is to be a probe image (followed while training).
    """

    status = Signal(str)
    paths_dropped = Signal(list)
    classify_requested = Signal(list)
    open_requested = Signal(str, object)
    image_given = Signal(object, str)
    image_selected = Signal(object)
    gradcam_requested = Signal()
    evaluate_requested = Signal()
    evaluation_wanted = Signal()
    names_given = Signal(list)
    tab_chosen = Signal(str)
    pixels_chosen = Signal(str)
    member_chosen = Signal(int)
    probe_marked = Signal(str)

    #: the tabs, in order, by the names the state and a project give them (``SessionState.viewer_tab``)
    TABS = ("activations", "layers", "gradcam", "filters", "evaluation", "map", "folder")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.current: Classified | None = None  # the image selected in the strip
        self._shown: tuple[Classified, ...] = ()  # the images the strip shows, in its order
        self._pixmaps: dict[Classified, QPixmap] = {}  # the picture of each of them
        self._usable = False  # a model is there and nothing holds the engine
        self._pixels: str | None = None  # the pixels of the model described
        self._model: ModelInfo | None = None  # the model described
        self._class_names: list[str] = []  # its class names, as the model has them (shown printable)
        self._build()
        self.show_model(None)
        self.show_availability(usable=False, has_model=False, training=False, has_data=False)

    @property
    def class_names(self) -> list[str]:
        """The class names the viewer shows (the model's; empty without a model)."""
        return list(self._class_names)

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
        self.unlike_banner = UnlikeBanner()
        cl.addWidget(self.unlike_banner)
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
        self.member_combo.activated.connect(self._on_member_activated)
        self.member_box = _labelled("Maps of:", self.member_combo)
        return self.member_box

    def _on_member_activated(self, index: int) -> None:
        """Another member of the ensemble chosen: the model line says whose maps show; ask for them."""
        if self._model is not None:
            self._show_model_line(self._model)
        self.member_chosen.emit(index)

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
        self.gradcam.target_changed.connect(self.gradcam_requested)
        self.tabs.addTab(self.gradcam, "Grad-CAM")
        self.kernels = KernelView()
        self.tabs.addTab(self.kernels, "First-layer filters")
        self.evaluation_view = EvaluationView()
        self.evaluation_view.evaluate_requested.connect(self.evaluate_requested)
        self.evaluation_view.open_path.connect(self._open_evaluated)
        self.tabs.addTab(self.evaluation_view, "Evaluation")
        self.map_view = DatasetMapView()
        self.tabs.addTab(self.map_view, "Map")
        self.folder_view = FolderView()  # its binding: folder_view.FolderWork
        self.tabs.addTab(self.folder_view, "Folder")
        self.tabs.currentChanged.connect(self._ask_for_evaluation)
        self.tabs.currentChanged.connect(self._on_tab)
        return self.tabs


    def _on_tab(self, index: int) -> None:
        if 0 <= index < len(self.TABS):
            self.tab_chosen.emit(self.TABS[index])

    # -- what it is given to show ------------------------------------------------------
    def show_tab(self, key: str) -> None:
        """Show the tab named ``key`` (a reopened project's), if the model has it."""
        if key in self.TABS and self.tabs.isTabVisible(self.TABS.index(key)):
            self.tabs.setCurrentIndex(self.TABS.index(key))

    def show_availability(self, usable: bool, has_model: bool, training: bool, has_data: bool) -> None:
        """What can be done now: ``usable``, a model is there and nothing (training, saving) holds the engine."""
        self._usable = usable
        for w in (self.open_button, self.paste_button, self.names_button, self.pixels_combo):
            w.setEnabled(usable)
        self.evaluation_view.evaluate_button.setEnabled(usable and has_data)
        self.map_view.set_can_compute(usable and has_data)
        if training:
            self.placeholder.setText("Training in progress…\nThe viewer is available when training ends.")
        elif not has_model:
            self.placeholder.setText("Train a model (Train tab) or open a .keras model (File → Open Model),\n"
                                     "then drop images here to see what the network predicts and why.")
        else:
            self.placeholder.setText("Drop images here, or use Open images… / Paste (Ctrl+V).")
        self.stack.setCurrentIndex(1 if (usable and self._shown) else 0)
        self._update_image_buttons()

    def show_content(self) -> None:
        """Show the strip and the tabs (rather than the placeholder), as when images are open."""
        self.stack.setCurrentIndex(1)

    def _update_image_buttons(self) -> None:
        """Save view and Mark as probe act on the image shown: off until one is (a probe needs its file too)."""
        im = self.current
        shown = self._usable and self.stack.currentIndex() == 1 and im is not None and not im.error
        self.save_view_button.setEnabled(shown)
        self.probe_button.setEnabled(shown and bool(im.path))

    def show_model(self, model: ModelInfo | None) -> None:
        """Describe the current model (None: none): its line, the pixel choice of a model from a file, the class
        names button, the tabs it has (a model without conv or pooling layers has predictions only)."""
        self._class_names = list(model.class_names) if model is not None else []
        self.gradcam.set_classes(self._class_names)
        self._model = model
        if model is None:
            self.model_label.setText("")
            self._pixels = None
            self.pixels_box.setVisible(False)
            self.member_box.setVisible(False)
            return
        self.names_button.setVisible(model.editable_names)
        self._show_members(model)
        self._show_model_line(model)
        pre = model.preprocessing
        self._pixels = pre.pixels
        self.pixels_combo.setCurrentIndex(self.pixels_combo.findData(pre.pixels))  # `activated` is the user's only
        self.pixels_box.setVisible(model.source == "file")
        for view in (self.activations, self.overview, self.gradcam, self.kernels):
            self.tabs.setTabVisible(self.tabs.indexOf(view), model.has_maps)
        if not model.has_maps:
            self.tabs.setCurrentWidget(self.evaluation_view)

    def _show_members(self, model: ModelInfo) -> None:
        """The member chooser of an ensemble (its first member chosen); hidden for a single model."""
        names = [f"model {i + 1} ({name})" for i, name in enumerate(model.members)]
        if [self.member_combo.itemText(i) for i in range(self.member_combo.count())] != names:
            self.member_combo.clear()
            self.member_combo.addItems(names)
        self.member_box.setVisible(model.is_ensemble)

    def _show_model_line(self, model: ModelInfo) -> None:
        """The model line ("input 224×224 rgb, pixels caffe"; for an ensemble, whose maps show)."""
        pre = model.preprocessing
        h, w = pre.image_size
        note = f" · {model.output_note}" if model.output_note else ""
        if model.is_ensemble:
            note = (f" · an ensemble of {len(model.members)} models averaging their probabilities; maps of "
                    f"model {self.member_combo.currentIndex() + 1}{note}")
        self.model_label.setText(f"Model: {model.label} · {len(model.class_names)} classes · "
                                 f"input {h}×{w} {pre.color_mode}, pixels {pre.pixels} · {model.calibration_note}{note}")
        self.model_label.setToolTip(f"Pixels: {PIXEL_MODES[pre.pixels]}")

    def _on_pixels_activated(self, index: int) -> None:
        """Ask for the chosen pixels, and keep showing the model's own until it has them (or was refused)."""
        self.pixels_chosen.emit(self.pixels_combo.itemData(index))
        if self._pixels is not None:
            self.pixels_combo.setCurrentIndex(self.pixels_combo.findData(self._pixels))

    def show_classified(self, shown: tuple[Classified, ...], select: int | None = None) -> None:
        """Show ``shown`` in the strip (those added at its end are added, else all anew, keeping the row
        selected), then select row ``select`` if given."""
        row = self.strip.currentRow()
        drawn = list(self._pixmaps)
        appended = drawn == list(shown[:len(drawn)])
        new = shown[len(drawn):] if appended else shown
        # every picture first: the strip's row changes while it is cleared and filled show these images
        self._pixmaps = {im: self._pixmaps[im] if im in self._pixmaps else self._picture(im) for im in shown}
        self._shown = tuple(shown)
        if not appended:
            self.strip.clear()
        for im in new:
            self._add_strip_item(im)
        if select is None and not appended and 0 <= row < len(shown):
            select = row  # the same images renamed: the same one stays selected
        if select is not None and 0 <= select < len(shown):
            self.strip.setCurrentRow(select)

    @staticmethod
    def _picture(im: Classified) -> QPixmap | None:
        if im.error:
            return None
        return array_to_pixmap(im.display if im.display is not None else im.prepared)

    def reset_views(self) -> None:
        """Clear everything computed by a previous model (layers, maps, heat map, evaluation)."""
        self.evaluation_view.clear()
        self.current = None
        self.activations.clear()
        self.overview.clear()
        self.gradcam.clear()
        self.gradcam.set_classes(self._class_names)
        self.current_view.show_image(None)
        self.unlike_banner.show_for(None)
        self._update_image_buttons()

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
        if not (0 <= row < len(self._shown)):
            return
        im = self._shown[row]
        self.current = im
        self.current_view.show_image(im, self._pixmaps.get(im))
        self.unlike_banner.show_for(im)
        self._update_image_buttons()
        if im.error:
            return
        self.gradcam.select_class(int(np.argmax(im.probabilities)))
        self.image_selected.emit(im)

    def inspect_arguments(self) -> dict:
        """What ``EngineWorker.inspect`` needs to know of the views: the heat map's layer and method, and which
        maps to colour first (the selected layer's, and the first channels of every layer for "All layers")."""
        return {"layer": self.gradcam.layer(), "cam_method": self.gradcam.method(),
                "member": max(self.member_combo.currentIndex(), 0),
                "shown_layer": self.activations.layer_combo.currentText(), "shown_channels": MAX_CHANNEL_TILES,
                "first_channels": OVERVIEW_CHANNELS}

    def show_maps(self, image: np.ndarray, result) -> None:
        """Show the maps of ``image`` (a ``core.model.inspection.Inspection``); its heat map comes apart."""
        self.gradcam.set_layers([n for n, _ in result.maps], result.cam_layer)
        self.activations.show_maps(image, result.maps, result.conv_layers, result.pictures)
        self.overview.show_maps(image, result.maps, result.pictures)
        self.kernels.show_kernels(result.kernels)

    def show_cam(self, image: np.ndarray, cam: np.ndarray) -> None:
        self.gradcam.show_cam(image, cam)

    # -- class names ------------------------------------------------------------------------
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
        """Ask for the model's classes to be called ``names`` (as many as it has)."""
        if len(names) != len(self.class_names):
            self.status.emit(f"Give exactly {len(self.class_names)} names, one per line.")
            return
        self.names_given.emit(list(names))

    # -- requests -----------------------------------------------------------------------------
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
        """Ask for image files to be classified (unreadable files get a message)."""
        self.classify_requested.emit(list(paths))

    def paste_image(self) -> None:
        """Classify an image (or image files) from the clipboard."""
        if not self._usable:
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
        self.image_given.emit(qimage_to_array(img), "pasted image")

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> None:
        """Ask for the model to be evaluated on the validation split."""
        self.evaluate_requested.emit()

    def show_evaluating(self) -> None:
        """An evaluation is on its way: the Evaluation tab says so."""
        self.tabs.setCurrentWidget(self.evaluation_view)
        if self.stack.currentIndex() == 0:
            self.stack.setCurrentIndex(1)
        self.evaluation_view.show_message("Evaluating…")

    def wants_evaluation(self) -> bool:
        """The Evaluation tab is in view with no evaluation on it."""
        return (self.tabs.currentWidget() is self.evaluation_view and self.evaluation_view.evaluation is None
                and self.isVisible())

    def _ask_for_evaluation(self, _index=None) -> None:
        if self.wants_evaluation():
            self.evaluation_wanted.emit()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._ask_for_evaluation()  # the Viewer tab shown with its Evaluation tab already current

    def _open_evaluated(self, path: str) -> None:
        """Classify an image clicked in the evaluation, with its true class to show beside the verdict."""
        self.open_requested.emit(path, self.evaluation_view.true_class(path))

    def show_map(self, view: QWidget | None = None) -> None:
        """Show the Map tab, or another of the tabs (``view``); the tabs too, when no image is open yet."""
        self.tabs.setCurrentWidget(view or self.map_view)
        if self.stack.currentIndex() == 0 and self._usable:
            self.stack.setCurrentIndex(1)

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
            self.image_given.emit(qimage_to_array(QImage(md.imageData())), "dropped image")


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

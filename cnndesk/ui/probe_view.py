"""The probe view: choose probe images, then scrub through what the network saw in them while it trained.

``ProbeView`` sits in the training tab below the chart. Its top row lists the probe images (up to
``MAX_PROBES``: added with "Add image…", dropped on the view, or marked in the viewer) that the next
training records (``core.probes``). Below, a timeline slider (with play/pause) picks a recorded frame;
for each probe the view shows the image, its heat map, the maps of one layer and the top predictions
of that moment, then the first-layer filters. ``epoch_shown`` tells the loss chart which epoch to mark.
The view knows neither the state nor the engine: it shows the probe images and the recording it is given
(``bindings.ProbeBinding`` gives it the state's probe images, the frames that come live while a run trains,
and the engine's copy of the current model's recording otherwise) and asks for probe images to be chosen
through ``probes_chosen``. "Export…" writes the frames as an animated GIF/WebP or a PNG strip
(``core.training.probe_pictures``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QMessageBox,
    QPushButton, QScrollArea, QSlider, QVBoxLayout, QWidget,
)

from ..core.errors import UserError
from ..core.data.images import IMAGE_EXTENSIONS
from ..core.training.probe_pictures import (
    filters_picture, heat_picture, maps_picture, probe_picture, save_animation, save_strip, top_predictions,
)
from ..core.training.probes import MAX_PROBES, ProbeRecording
from .widgets import ProbabilityBars, array_to_pixmap

IMAGE_FILTER = "Images (" + " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + ")"
#: how long play shows each frame
PLAY_INTERVAL_MS = 600


class ProbeView(QWidget):
    """Probe images and their recording; see the module docstring.

    Signals:
        probes_chosen(list): the probe images the user wants (files added or removed), to be the state's.
        epoch_shown(object): the epoch of the frame shown (a float), or None when none is.
        status(str): a short message for the status bar.
        wants_room(bool): whether the view has frames to show (probes chosen, or a recording); without, it is
            two rows of controls and the room can go to the chart.
    """

    probes_chosen = Signal(list)
    epoch_shown = Signal(object)
    status = Signal(str)
    wants_room = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("probeView")
        self.setAcceptDrops(True)  # image files dropped anywhere on the view become probes
        self.recording: ProbeRecording | None = None  # the recording shown
        self._probes: list[str] = []  # the probe images shown (the state's)
        self._none_for: str | None = None  # who has no recording, when the model shown has none
        self.start_folder = str(Path.home())  # where "Add image…" looks first (the dataset's folder)
        self._fitted = False  # wants_room has been emitted once
        self._timer = QTimer(self, interval=PLAY_INTERVAL_MS)
        self._timer.timeout.connect(self._advance)
        self._build()
        self.show_probes([])

    # -- layout --------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel(f"<b>Probe images</b> (up to {MAX_PROBES}):"))
        self.probe_list = QListWidget(objectName="probeList")
        self.probe_list.setFlow(QListView.LeftToRight)
        self.probe_list.setIconSize(QSize(40, 40))
        self.probe_list.setFixedHeight(64)
        top.addWidget(self.probe_list, 1)
        self.add_button = QPushButton("Add image…", objectName="addProbe")
        self.add_button.setToolTip("Follow an image while training: after every epoch its prediction, activation "
                                   "maps and heat map are recorded. Images can also be dropped here or marked "
                                   "in the viewer.")
        self.add_button.clicked.connect(self.add_probe_dialog)
        self.remove_button = QPushButton("Remove", objectName="removeProbe")
        self.remove_button.clicked.connect(self.remove_selected)
        top.addWidget(self.add_button)
        top.addWidget(self.remove_button)
        outer.addLayout(top)

        timeline = QHBoxLayout()
        self.play_button = QPushButton("▶", objectName="playProbes", checkable=True)
        self.play_button.setToolTip("Play the recording, one epoch after another")
        self.play_button.setFixedWidth(36)
        self.play_button.toggled.connect(self._on_play)
        self.slider = QSlider(Qt.Horizontal, objectName="probeSlider")
        self.slider.valueChanged.connect(self._show_frame)
        self.epoch_label = QLabel(objectName="probeEpochLabel")
        self.epoch_label.setMinimumWidth(120)
        self.layer_combo = QComboBox(objectName="probeLayer")
        self.layer_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.layer_combo.setToolTip("The layer whose activation maps are shown (its first channels)")
        self.layer_combo.currentIndexChanged.connect(lambda _i: self._show_frame(self.slider.value()))
        self.export_animation_button = QPushButton("Export animation…", objectName="exportProbeAnimation")
        self.export_animation_button.clicked.connect(self.export_animation_dialog)
        self.export_strip_button = QPushButton("Export PNG strip…", objectName="exportProbeStrip")
        self.export_strip_button.clicked.connect(self.export_strip_dialog)
        for w in (self.play_button, self.slider, self.epoch_label, self.layer_combo,
                  self.export_animation_button, self.export_strip_button):
            timeline.addWidget(w, 1 if w is self.slider else 0)
        outer.addLayout(timeline)

        self.note = QLabel(objectName="probeNote", wordWrap=True)
        self.note.setStyleSheet("color: #455a64")
        outer.addWidget(self.note)
        self.frame_widget = QWidget()
        self.grid = QGridLayout(self.frame_widget)
        self.grid.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.frames_area = scroll = QScrollArea(objectName="probeFrames")
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.frame_widget)
        outer.addWidget(scroll, 1)
        self.filler = QWidget()  # takes the room the frames would, while there are none: the rows stay on top
        outer.addWidget(self.filler, 1)
        self.map_header = QLabel("Activation maps")
        for col, header in enumerate(("Probe", "Heat map (true class)", self.map_header, "Prediction")):
            self.grid.addWidget(header if isinstance(header, QLabel) else QLabel(header), 0, col)
        self.images, self.heats, self.maps, self.bars = [], [], [], []
        for row in range(MAX_PROBES):
            cells = [QLabel(objectName=f"probeImage{row}"), QLabel(objectName=f"probeHeat{row}"),
                     QLabel(objectName=f"probeMaps{row}"), ProbabilityBars()]
            cells[3].setObjectName(f"probeBars{row}")
            cells[3].setMinimumWidth(240)
            for col, cell in enumerate(cells):
                self.grid.addWidget(cell, row + 1, col)
            self.images.append(cells[0])
            self.heats.append(cells[1])
            self.maps.append(cells[2])
            self.bars.append(cells[3])
        self.filters = QLabel(objectName="probeFilters")
        self.filters_title = QLabel("First-layer filters:")
        filters_row = QHBoxLayout()
        filters_row.addWidget(self.filters_title)
        filters_row.addWidget(self.filters)
        filters_row.addStretch(1)
        self.grid.addLayout(filters_row, MAX_PROBES + 1, 0, 1, 4)

    # -- the probe images ---------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        event.acceptProposedAction()
        self.add_probes(paths)

    def add_probe_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Choose probe images", self.start_folder, IMAGE_FILTER)
        if paths:
            self.add_probes(paths)

    def add_probes(self, paths: list[str]) -> None:
        """Ask for image files to be probes (files already probes, and any beyond ``MAX_PROBES``, are left out,
        saying so)."""
        current = list(self._probes)
        refused = []
        for path in paths:
            path = str(Path(path).resolve())
            if path in current:
                continue
            if QImage(path).isNull():
                refused.append(f"{Path(path).name} is not an image cnndesk can read")
            elif len(current) >= MAX_PROBES:
                refused.append(f"{Path(path).name}: at most {MAX_PROBES} probe images")
            else:
                current.append(path)
        if current != self._probes:
            self.probes_chosen.emit(current)
        if refused:
            QMessageBox.information(self, "Probe images", "Not added: " + "; ".join(refused) + ".")

    def remove_selected(self) -> None:
        row = self.probe_list.currentRow()
        if 0 <= row < len(self._probes):
            self.probes_chosen.emit([p for i, p in enumerate(self._probes) if i != row])

    def show_probes(self, paths: list[str]) -> None:
        """Show ``paths`` as the probe images the next training records."""
        self._probes = list(paths)
        self.probe_list.clear()
        for path in self._probes:
            item = QListWidgetItem(QIcon(QPixmap(path)), Path(path).name)
            item.setToolTip(path)
            self.probe_list.addItem(item)
        self.add_button.setEnabled(len(self._probes) < MAX_PROBES)
        self.remove_button.setEnabled(bool(self._probes))
        self._fit_frames()
        if not self.recording:
            self._show_recording()

    # -- the recording -------------------------------------------------------------------
    def show_recording(self, recording: ProbeRecording | None, none_for: str | None = None) -> None:
        """Show ``recording`` from its last frame; None with ``none_for`` (the name of the model shown): that
        model has no recording, which the note says, rather than leaving another run's frames on show."""
        self.recording = recording
        self._none_for = none_for if recording is None else None
        self._show_recording(follow=True)

    def add_frame(self, frame) -> None:
        """A frame of the recording shown, just recorded by the running training."""
        if self.recording is None:
            return
        at_end = self.slider.value() == self.slider.maximum()
        if not self.recording.layers:
            self.recording.layers = list(frame.maps)
        self.recording.add(frame)
        self._show_recording(follow=at_end)

    def show_note(self, text: str) -> None:
        self.note.setText(text)

    def _fit_frames(self) -> None:
        """The frames area only while there is something to show in it (probes chosen, or a recording)."""
        wanted = bool(self._probes) or bool(self.recording is not None and self.recording.frames)
        if wanted != self.frames_area.isVisibleTo(self) or not self._fitted:
            self._fitted = True
            self.frames_area.setVisible(wanted)
            self.filler.setVisible(not wanted)
            self.wants_room.emit(wanted)

    def _show_recording(self, follow: bool = True) -> None:
        self._fit_frames()
        rec = self.recording
        frames = rec.frames if rec is not None else []
        layers = rec.layers if rec is not None else []
        if [self.layer_combo.itemText(i) for i in range(self.layer_combo.count())] != layers:
            chosen = self.layer_combo.currentText()
            with QSignalBlocker(self.layer_combo):
                self.layer_combo.clear()
                self.layer_combo.addItems(layers)
                self.layer_combo.setCurrentIndex(layers.index(chosen) if chosen in layers else len(layers) - 1)
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, max(0, len(frames) - 1))
            if follow:
                self.slider.setValue(self.slider.maximum())
        for w in (self.slider, self.play_button, self.layer_combo, self.export_animation_button,
                  self.export_strip_button):
            w.setEnabled(bool(frames))
        if rec is not None and rec.note:
            self.note.setText(rec.note)
        elif not frames and rec is None and self._none_for is not None:
            self.note.setText(f"{self._none_for} has no probe recording (it was trained without probe images, "
                              "or its recording was not kept)."
                              + (" Train to record the probe images chosen above." if self._probes else ""))
        elif not frames:
            self.note.setText("Add probe images, then train: after every epoch cnndesk records what the network "
                              "sees in them, to scrub through here." if not self._probes else
                              "Train to record the probe images: the frames appear here after every epoch.")
        else:
            self.note.setText("")
        self._show_frame(self.slider.value())

    def _show_frame(self, index: int) -> None:
        rec = self.recording
        if rec is None or not 0 <= index < len(rec.frames):
            self._clear_frame()
            return
        frame = rec.frames[index]
        last = rec.frames[-1].epoch
        self.epoch_label.setText(f"{frame.label.capitalize()} of {last:g}" if float(last).is_integer()
                                 else frame.label.capitalize())
        layer = self.layer_combo.currentText() or None
        self.map_header.setText(f"Activation maps of {layer}, first channels" if layer else "Activation maps")
        for p in range(MAX_PROBES):
            shown = p < len(rec.probes)
            for w in (self.images[p], self.heats[p], self.maps[p], self.bars[p]):
                w.setVisible(shown)
            if not shown:
                continue
            self.images[p].setPixmap(array_to_pixmap(probe_picture(rec, p)))
            self.images[p].setToolTip(rec.probes[p].path or rec.probes[p].name)
            self.heats[p].setPixmap(array_to_pixmap(heat_picture(rec, frame, p)))
            self.maps[p].setPixmap(array_to_pixmap(maps_picture(frame, layer, p)))
            self.bars[p].set_items(top_predictions(rec, frame, p))
        filters = filters_picture(frame)
        self.filters.setPixmap(array_to_pixmap(filters) if filters is not None else QPixmap())
        self.filters_title.setVisible(filters is not None)
        self.epoch_shown.emit(frame.epoch)

    def _clear_frame(self) -> None:
        self.epoch_label.setText("No recording" if self.recording is None else "No frames yet")
        for p in range(MAX_PROBES):
            for w in (self.images[p], self.heats[p], self.maps[p]):
                w.clear()
                w.setVisible(False)
            self.bars[p].set_items([])
            self.bars[p].setVisible(False)
        self.filters.clear()
        self.filters_title.setVisible(False)
        self.epoch_shown.emit(None)

    def top_text(self, probe: int) -> str:
        """What the bars of ``probe`` say: "left 93.0%, top 4.1%, …" ("" when nothing is shown)."""
        return ", ".join(f"{name} {p:.1%}" for name, p in self.bars[probe].items)

    # -- play ------------------------------------------------------------------------------
    def _on_play(self, playing: bool) -> None:
        self.play_button.setText("❚❚" if playing else "▶")
        if playing:
            if self.slider.value() == self.slider.maximum():
                self.slider.setValue(0)
            self._timer.start()
        else:
            self._timer.stop()

    def _advance(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.play_button.setChecked(False)
            return
        self.slider.setValue(self.slider.value() + 1)

    # -- export ----------------------------------------------------------------------------
    def export_animation_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the probe recording", str(Path.home() / "probes.gif"),
                                              "Animated GIF (*.gif);;Animated WebP (*.webp)")
        if path:
            self._export(save_animation, path)

    def export_strip_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the probe recording as a strip",
                                              str(Path.home() / "probes.png"), "PNG images (*.png)")
        if path:
            self._export(save_strip, path)

    def _export(self, write, path: str) -> None:
        if self.recording is None:
            return
        try:
            out = write(self.recording, path, self.layer_combo.currentText() or None)
        except UserError as e:
            QMessageBox.warning(self, "Export failed", str(e))
            return
        self.status.emit(f"Saved {len(self.recording.frames)} frames to {out}")


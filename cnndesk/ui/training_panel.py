"""Training panel: Train/Stop, a live loss/accuracy chart, progress and a log."""

from __future__ import annotations

import html
import math

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QScatterSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox, QGraphicsLineItem, QGraphicsRectItem, QGraphicsSimpleTextItem, QHBoxLayout, QLabel, QPlainTextEdit,
    QProgressBar, QPushButton, QSplitter, QTabWidget, QVBoxLayout, QWidget,
)

from ..core.intervals import with_interval
from .runs_view import RunsView
from .widgets import format_duration

COLORS = {"loss": "#1f77b4", "val_loss": "#ff7f0e", "accuracy": "#2ca02c", "val_accuracy": "#d62728",
          "batch_loss": "#9ecae1"}
LABELS = {"loss": "Training loss", "val_loss": "Validation loss", "accuracy": "Training accuracy",
          "val_accuracy": "Validation accuracy", "batch_loss": "Batch loss (smoothed)"}
#: how an overlaid run's lines are named in the legend, after the run's name
SHORT_LABELS = {"loss": "loss", "accuracy": "acc", "val_loss": "val loss", "val_accuracy": "val acc"}
#: one colour per run overlaid on the chart (none of the current run's colours)
OVERLAY_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: how the legend draws a line of each pen style
LINE_SAMPLES = {Qt.SolidLine: "━━", Qt.DashLine: "╸╺╸", Qt.DotLine: "┈┈", Qt.DashDotLine: "╸·╸"}


def epoch_summary(row: dict, epochs: int | None = None) -> str:
    """One log line for an epoch of the history: "Epoch 2/5  loss …  acc …  val_loss …  val_acc 0.900 (95 % interval
    0.699–0.972, 20 images)" (the validation accuracy alone in a row of an older cnndesk, which did not record on how
    many images it was measured)."""
    of = f"/{epochs}" if epochs else ""
    val = "" if row.get("val_loss") is None else f"  val_loss {row['val_loss']:.4f}  val_acc {val_accuracy_text(row)}"
    return f"Epoch {row['epoch']}{of}  loss {row['loss']:.4f}  acc {row['accuracy']:.3f}{val}"


def val_accuracy_text(row: dict) -> str:
    """An epoch's validation accuracy with its interval ("0.900 (95 % interval 0.699–0.972, 20 images)"), or alone
    when its row does not say on how many images it was measured (``unrecorded_note`` says so once)."""
    n = row.get("val_images")
    return with_interval(row["val_accuracy"], n) if n is not None else f"{row['val_accuracy']:.3f}"


def unrecorded_note(history) -> str | None:
    """What the log says once for a run of an older cnndesk, whose epochs did not record their validation images."""
    if any(r.get("val_accuracy") is not None and r.get("val_images") is None for r in history):
        return ("The number of validation images was not recorded with this run (an older cnndesk), so its "
                "validation accuracies are shown without their 95 % intervals.")
    return None


#: room right of the last epoch, as a share of the epochs shown, so that a point or the kept-epoch
#: marker on the last epoch is drawn whole instead of cut by the edge of the plot
EPOCH_PAD = 0.04
#: room above accuracy 1.0, for the same reason: the kept-epoch marker's 9 px fit down to the chart's
#: minimum height (a plot about 150 px tall)
ACCURACY_PAD = 0.1
#: an epoch's values as the chart draws them and the hover label lists them, with their number formats
EPOCH_VALUES = (("loss", ".4f"), ("val_loss", ".4f"), ("accuracy", ".3f"), ("val_accuracy", ".3f"))


def epoch_tick_interval(epochs: int, max_intervals: int = 10) -> int:
    """The whole number of epochs between two epoch-axis ticks: 1, 2, 5, 10, 20, 50, …

    The smallest such step giving at most ``max_intervals`` intervals over
    ``epochs`` epochs, so that every tick is a whole epoch and labels never crowd.
    """
    scale = 1
    while True:
        for step in (scale, 2 * scale, 5 * scale):
            if epochs <= max_intervals * step:
                return step
        scale *= 10


class TrainingChart(QChartView):
    """Loss (left axis) and accuracy (right axis, 0-1) per epoch, plus smoothed batch loss.

    The epoch axis has ticks on whole epochs only (``QValueAxis`` would otherwise
    space its ticks evenly over the range and print them truncated to integers,
    so points would not sit on their numbers). Hovering over the plot shows the
    values of the nearest epoch in a label on the chart.

    The legend is ``legend_label``, for the panel to place below the chart: a
    label that wraps onto more lines as runs are overlaid, where the chart's own
    legend, one row, cut every name short ("Training accur…").
    """

    def __init__(self, parent: QWidget | None = None):
        self.chart_ = QChart()
        super().__init__(self.chart_, parent)
        self.setObjectName("trainingChart")
        self.setRenderHint(QPainter.Antialiasing)
        self.chart_.legend().setVisible(False)
        self.legend_label = QLabel(objectName="chartLegend", wordWrap=True, textFormat=Qt.RichText)
        self.x_axis = QValueAxis(titleText="Epoch", labelFormat="%d")
        self.x_axis.setTickType(QValueAxis.TicksDynamic)
        self.x_axis.setTickAnchor(0)
        self.loss_axis = QValueAxis(titleText="Loss", labelFormat="%.2f")
        self.acc_axis = QValueAxis(titleText="Accuracy", labelFormat="%.1f")
        self.acc_axis.setTickType(QValueAxis.TicksDynamic)
        self.acc_axis.setTickAnchor(0)
        self.acc_axis.setTickInterval(0.2)
        self.acc_axis.setRange(0, 1 + ACCURACY_PAD)
        self.acc_axis.setGridLineVisible(False)  # one set of horizontal grid lines (the loss axis') is enough
        self.chart_.addAxis(self.x_axis, Qt.AlignBottom)
        self.chart_.addAxis(self.loss_axis, Qt.AlignLeft)
        self.chart_.addAxis(self.acc_axis, Qt.AlignRight)
        self.series: dict[str, QLineSeries] = {}
        for key in ("batch_loss", "loss", "val_loss", "accuracy", "val_accuracy"):
            s = QLineSeries(name=LABELS[key])
            pen = QPen(QColor(COLORS[key]))
            pen.setWidthF(1.2 if key == "batch_loss" else 2.2)
            if key.startswith("val_"):
                pen.setStyle(Qt.DashLine)
            s.setPen(pen)
            s.setPointsVisible(key != "batch_loss")
            self.chart_.addSeries(s)
            s.attachAxis(self.x_axis)
            s.attachAxis(self.acc_axis if "accuracy" in key else self.loss_axis)
            self.series[key] = s
        # the epoch whose weights the model keeps, drawn on its validation accuracy (what it was picked by)
        self.best = QScatterSeries(name="Kept epoch")
        self.best.setMarkerSize(14)
        self.best.setColor(QColor("#ffd700"))
        self.best.setBorderColor(QColor("#333333"))
        self.chart_.addSeries(self.best)
        self.best.attachAxis(self.x_axis)
        self.best.attachAxis(self.acc_axis)
        self._make_hover_items()
        self._make_probe_marker()
        self.setMouseTracking(True)
        self.overlay_series: list[QLineSeries] = []  # other runs drawn beside the current one (set_overlays)
        self._overlay_epochs = 0
        self._overlay_max_loss = 0.0
        self.clear()
        self._show_legend()

    def _show_legend(self) -> None:
        """Name every line (the probe marker aside) in ``legend_label``, each beside a sample of its colour and
        pen, wrapping between names, never inside one."""
        entries = []
        for s in self.chart_.series():
            if s is self.probe_marker:
                continue
            if isinstance(s, QScatterSeries):
                color, sample = s.color().name(), "●"
            else:
                color, sample = s.pen().color().name(), LINE_SAMPLES.get(s.pen().style(), "━━")
            entries.append(f'<span style="white-space:nowrap"><span style="color:{color}">{sample}</span> '
                           f'{html.escape(s.name())}</span>')
        self.legend_label.setText(" &nbsp; ".join(entries))

    def _make_hover_items(self) -> None:
        """A dotted line through the hovered epoch and a label with its values, above the series."""
        self.hover_line = QGraphicsLineItem(self.chart_)
        self.hover_line.setPen(QPen(QColor("#666666"), 1, Qt.DotLine))
        self.hover_box = QGraphicsRectItem(self.chart_)
        self.hover_box.setBrush(QColor(255, 255, 255, 235))
        self.hover_box.setPen(QPen(QColor("#888888")))
        self.hover_label = QGraphicsSimpleTextItem(self.hover_box)
        self.hover_label.setPos(6, 4)
        for item in (self.hover_line, self.hover_box):
            item.setZValue(1000)
            item.setVisible(False)

    def _make_probe_marker(self) -> None:
        """A vertical line at the epoch the probe view shows (``mark_epoch``), left out of the legend."""
        self.probe_marker = QLineSeries(name="Probe epoch")
        pen = QPen(QColor("#8e24aa"), 1.6, Qt.DashDotLine)
        self.probe_marker.setPen(pen)
        self.chart_.addSeries(self.probe_marker)
        self.probe_marker.attachAxis(self.x_axis)
        self.probe_marker.attachAxis(self.acc_axis)  # its range stays 0 to 1: the line spans the plot
        for marker in self.chart_.legend().markers(self.probe_marker):
            marker.setVisible(False)

    def mark_epoch(self, epoch: float | None) -> None:
        """Draw the probe marker at ``epoch`` (a position on the epoch axis), or remove it (None)."""
        self.probe_marker.clear()
        if epoch is not None and math.isfinite(epoch):
            self.probe_marker.append(epoch, 0)
            self.probe_marker.append(epoch, 1 + ACCURACY_PAD)

    def marked_epoch(self) -> float | None:
        """Where the probe marker is drawn, or None."""
        return self.probe_marker.at(0).x() if self.probe_marker.count() else None

    def clear(self) -> None:
        for s in self.series.values():
            s.clear()
        self.best.clear()
        self.probe_marker.clear()
        self._rows: dict[int, dict] = {}  # epoch -> its values, for the hover label
        self._kept: int | None = None
        self._ema = None
        self._max_loss = 1.0
        self.set_epochs(1)
        self.loss_axis.setRange(0, 1)
        self._grow_loss(self._overlay_max_loss)
        self.hide_values()

    def set_epochs(self, epochs: int) -> None:
        """Show epochs 0 to ``epochs`` (plus a margin), with a tick on every 1, 2, 5, 10, 20, … epochs.

        The range also takes in every run overlaid on the chart.
        """
        self._epochs = max(1, epochs, self._overlay_epochs)
        self.x_axis.setTickInterval(epoch_tick_interval(self._epochs))
        self.x_axis.setRange(0, self._epochs * (1 + EPOCH_PAD))

    def _grow_loss(self, value: float) -> None:
        if math.isfinite(value) and value > self._max_loss:
            self._max_loss = value
            self.loss_axis.setRange(0, self._max_loss * 1.05)
            self.loss_axis.applyNiceNumbers()

    def add_batch(self, x: float, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
        self.series["batch_loss"].append(x, self._ema)
        self._grow_loss(self._ema)
        if x > self._epochs:
            self.set_epochs(math.ceil(x))

    def add_epoch(self, epoch: int, values: dict) -> None:
        self._rows[epoch] = {key: values.get(key) for key, _ in EPOCH_VALUES}
        self._rows[epoch]["val_images"] = values.get("val_images")
        for key, _ in EPOCH_VALUES:
            v = values.get(key)
            if v is not None and math.isfinite(v):
                self.series[key].append(epoch, v)
                if "loss" in key:
                    self._grow_loss(v)
        if epoch > self._epochs:
            self.set_epochs(epoch)

    def epoch_values(self, epoch: int) -> dict | None:
        """The values drawn for ``epoch`` (loss, val_loss, accuracy, val_accuracy, and val_images: how many validation
        images measured them, None when not recorded), or None if not drawn."""
        return self._rows.get(epoch)

    def last_epoch(self) -> int | None:
        return max(self._rows, default=None)

    def mark_best(self, epoch: int, accuracy: float | None) -> None:
        """Mark the kept epoch at its validation accuracy (training accuracy without validation)."""
        self.best.clear()
        self._kept = epoch
        if accuracy is not None and math.isfinite(accuracy):
            self.best.append(epoch, accuracy)

    def point_count(self, key: str) -> int:
        return self.series[key].count()

    # -- other runs ------------------------------------------------------------
    def set_overlays(self, runs) -> None:
        """Draw other runs beside the current one: ``runs`` is ``[(name, history), …]``, each in its own colour.

        A run is drawn by its validation loss (left axis) and validation accuracy (right axis), or by its
        training values when it had no validation images.
        """
        for s in self.overlay_series:
            self.chart_.removeSeries(s)
            s.deleteLater()
        self.overlay_series = []
        self._overlay_epochs, self._overlay_max_loss = 0, 0.0
        for i, (name, history) in enumerate(runs):
            color = QColor(OVERLAY_COLORS[i % len(OVERLAY_COLORS)])
            has_val = any(r.get("val_loss") is not None for r in history)
            for key, axis, style in (("loss", self.loss_axis, Qt.DashDotLine), ("accuracy", self.acc_axis, Qt.DotLine)):
                shown = f"val_{key}" if has_val else key
                s = QLineSeries(name=f"{name}: {SHORT_LABELS[shown]}")  # short: the legend cuts long names
                pen = QPen(color)
                pen.setWidthF(2.0)
                pen.setStyle(style)
                s.setPen(pen)
                for row in history:
                    v = row.get(shown)
                    if v is not None and math.isfinite(v):
                        s.append(row["epoch"], v)
                        if key == "loss":
                            self._overlay_max_loss = max(self._overlay_max_loss, v)
                self.chart_.addSeries(s)
                s.attachAxis(self.x_axis)
                s.attachAxis(axis)
                self.overlay_series.append(s)
            self._overlay_epochs = max([self._overlay_epochs, *(r["epoch"] for r in history)])
        self.set_epochs(max(self._epochs, self._overlay_epochs))
        self._grow_loss(self._overlay_max_loss)
        self._show_legend()

    def overlay_names(self) -> list[str]:
        """The legend names of the overlaid runs' lines, in order."""
        return [s.name() for s in self.overlay_series]

    # -- values on hover -------------------------------------------------------
    def values_text(self, epoch: int) -> str:
        """What the hover label says about ``epoch``: its number, then one line per value it has."""
        row = self._rows[epoch]
        lines = [f"Epoch {epoch}" + ("  (weights kept)" if epoch == self._kept else "")]
        lines += [f"{LABELS[key]}: {val_accuracy_text(row) if key == 'val_accuracy' else format(row[key], fmt)}"
                  for key, fmt in EPOCH_VALUES if row[key] is not None]
        return "\n".join(lines)

    def shown_values(self) -> str:
        """The text of the hover label, or "" while it is hidden."""
        return self.hover_label.text() if self.hover_box.isVisible() else ""

    def mouseMoveEvent(self, event) -> None:
        super().mouseMoveEvent(event)
        self.show_values_at(self.chart_.mapFromScene(self.mapToScene(event.position().toPoint())))

    def leaveEvent(self, event) -> None:
        self.hide_values()
        super().leaveEvent(event)

    def show_values_at(self, at: QPointF) -> None:
        """Show the values of the epoch nearest to ``at`` (chart coordinates), if ``at`` is over the plot."""
        plot = self.chart_.plotArea()
        if not self._rows or not plot.contains(at):
            self.hide_values()
            return
        x = self.chart_.mapToValue(at, self.series["loss"]).x()
        epoch = min(self._rows, key=lambda e: abs(e - x))
        ex = self.chart_.mapToPosition(QPointF(epoch, 0), self.series["loss"]).x()
        self.hover_line.setLine(ex, plot.top(), ex, plot.bottom())
        self.hover_label.setText(self.values_text(epoch))
        text = self.hover_label.boundingRect()
        width = text.width() + 12
        self.hover_box.setRect(0, 0, width, text.height() + 8)
        # beside the line, on the side with room for it
        left = ex + 10 if ex + 10 + width <= plot.right() else ex - 10 - width
        self.hover_box.setPos(max(left, plot.left()), plot.top() + 6)
        self.hover_line.setVisible(True)
        self.hover_box.setVisible(True)

    def hide_values(self) -> None:
        self.hover_line.setVisible(False)
        self.hover_box.setVisible(False)


class TrainingPanel(QWidget):
    """Train/Stop, chart, progress and log: a view. Whether a run goes on, is stopping, or may start is the
    session state's (``TrainingControl.show_buttons`` shows it with ``show_state``); the panel only asks.

    Signals:
        train_requested(bool): Train pressed; True means continue from the current model.
        stop_requested(): Stop pressed.
    """

    train_requested = Signal(bool)
    stop_requested = Signal()
    previous_requested = Signal()  # bring back the model of the previous run

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        row = QHBoxLayout()
        self.train_button = QPushButton("▶  Train", objectName="trainButton")
        self.train_button.setToolTip("Train the model (F5)")
        self.train_button.setMinimumHeight(34)
        self.stop_button = QPushButton("■  Stop", objectName="stopButton", enabled=False)
        self.stop_button.setToolTip("Stop after the current batch, keeping the model trained so far (Esc)")
        self.stop_button.setMinimumHeight(34)
        self.continue_check = QCheckBox("Continue from the current model", objectName="continueTraining")
        self.continue_check.setEnabled(False)
        self.reason = QLabel(objectName="trainBlockedReason", wordWrap=True)
        self.reason.setStyleSheet("color: #b71c1c")
        row.addWidget(self.train_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.continue_check)
        row.addWidget(self.reason, 1)
        self._buttons_row = row
        self.previous_button = QPushButton("↶  Bring Back Previous Model", objectName="previousRunButton")
        self.previous_button.setVisible(False)
        row.addWidget(self.previous_button)
        outer.addLayout(row)

        prow = QHBoxLayout()
        self.progress = QProgressBar(objectName="trainProgress", textVisible=True)
        self.progress.setFormat("")
        self.speed = QLabel(objectName="trainSpeed")
        self.speed.setMinimumWidth(260)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.speed)
        outer.addLayout(prow)
        # how the run ended, in one plain sentence when it needs the user's attention (near chance)
        self.verdict = QLabel(objectName="trainingVerdict", wordWrap=True)
        self.verdict.setStyleSheet("color: #b71c1c; font-weight: bold")
        self.verdict.setVisible(False)
        outer.addWidget(self.verdict)

        split = QSplitter(Qt.Vertical)
        self.chart = TrainingChart()
        chart_box = QWidget()
        chart_layout = QVBoxLayout(chart_box)
        chart_layout.setContentsMargins(0, 0, 0, 0)
        chart_layout.addWidget(self.chart, 1)
        chart_layout.addWidget(self.chart.legend_label)
        split.addWidget(chart_box)
        self.log = QPlainTextEdit(objectName="trainingLog", readOnly=True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFont("monospace"))
        self.log.setPlaceholderText("Epoch summaries appear here.")
        self.runs_view = RunsView()
        self.lower_tabs = QTabWidget(objectName="trainingTabs")
        self.lower_tabs.addTab(self.log, "Log")
        self.lower_tabs.addTab(self.runs_view, "Runs")
        split.addWidget(self.lower_tabs)
        self.chart.setMinimumHeight(220)  # with its legend below it: as tall as it was with its own legend inside
        split.setCollapsible(0, False)  # dragging a handle up stops at the chart's minimum instead of folding it away
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 100])  # stretch factors only share out extra room: give the chart its share at once
        outer.addWidget(split, 1)
        self.split = split

        self.train_button.clicked.connect(lambda: self.train_requested.emit(self.continue_check.isChecked()))
        self.stop_button.clicked.connect(self.stop_requested)
        self.previous_button.clicked.connect(self.previous_requested)
        self._epochs = 0
        self._initial_epoch = 0
        self._last_batch = None  # the latest BatchReport of the run, to say how far a stopped run got
        self._stage = ""  # which model of a Train ×N is training ("Model 2 of 5"), said before its progress

    def add_train_option(self, widget: QWidget) -> None:
        """Show ``widget`` (the Train ×N choice) beside Stop."""
        self._buttons_row.insertWidget(self._buttons_row.indexOf(self.stop_button) + 1, widget)

    def set_stage(self, text: str) -> None:
        """Say which model of several is training ("Model 2 of 5"), before each batch's progress; "" for one."""
        self._stage = text
        if text:  # a model starts: its progress from the start
            self.progress.setFormat(text)
            self.progress.setValue(0)

    def add_view(self, widget: QWidget, stretch: int = 2) -> None:
        """Show ``widget`` below the log, sharing the chart's splitter (the probe view)."""
        self.split.addWidget(widget)
        self.split.setStretchFactor(self.split.count() - 1, stretch)
        self.give_view_room(True)

    def give_view_room(self, wanted: bool) -> None:
        """Share the splitter between the chart, the log and the view below them: with ``wanted`` the view shows
        two probes at once; without, it keeps just the height of its controls and the chart takes the rest."""
        if self.split.count() < 3:
            return
        total = sum(self.split.sizes()) or 740
        view = self.split.widget(2)
        if wanted:
            sizes = [300, 80, 360]
        else:
            sizes = [300, 80, view.minimumSizeHint().height()]
            sizes[0] = max(300, total - sizes[1] - sizes[2])
        self.split.setSizes(sizes)

    # -- state -------------------------------------------------------------
    def show_state(self, can_train: bool, reason: str = "", has_model: bool = False, training: bool = False,
                   stopping: bool = False) -> None:
        """Show what the session allows: Train (or ``reason`` why not), Continue (with a model to continue), Stop
        while a run goes on, and "Stopping…" once a stop was asked for (the run ends after its current batch)."""
        self.reason.setText("" if can_train else reason)
        self.train_button.setEnabled(can_train and not training)
        self.continue_check.setEnabled(has_model and not training)  # kept ticked through a save
        if not has_model:
            self.continue_check.setChecked(False)
        self.stop_button.setEnabled(training and not stopping)
        self.stop_button.setText("Stopping…" if stopping else "■  Stop")
        if stopping:
            self.progress.setFormat("Stopping…")
            self.speed.clear()

    def set_previous(self, description: str | None, enabled: bool = True) -> None:
        """Offer to bring back the previous model (``description`` says which: "the model of …"), or hide the offer."""
        self.previous_button.setVisible(description is not None)
        self.previous_button.setEnabled(description is not None and enabled)
        self.previous_button.setToolTip(f"Make {description} current again; the current one is kept "
                                        "in its place" if description else "")

    def training_started(self, epochs: int, continuing: bool, initial_epoch: int) -> None:
        """Make room for a run of ``epochs`` epochs (its buttons follow the state: ``show_state``)."""
        self._last_batch = None
        self._epochs = epochs
        self._initial_epoch = initial_epoch if continuing else 0
        if not continuing:
            self.chart.clear()
            self.log.clear()
        self.verdict.clear()
        self.verdict.setVisible(False)
        self.chart.set_epochs(self._initial_epoch + epochs)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self.speed.clear()  # the previous run's speed says nothing about this one
        self.log.appendPlainText(f"Training for {epochs} epochs…")

    def on_batch(self, r, stopping: bool = False) -> None:
        """A batch of the run; ``stopping``: Stop was asked for (the ETA no longer says anything)."""
        self._last_batch = r
        done = (r.epoch - 1 - self._initial_epoch) * r.steps + r.batch
        total = self._epochs * r.steps
        if not stopping:  # the words first: the bar then shows them with its new value
            stage = f"{self._stage} · " if self._stage else ""
            self.progress.setFormat(f"{stage}Epoch {r.epoch}/{r.epochs} · batch {r.batch}/{r.steps}")
            self.speed.setText(f"{r.images_per_s:,.0f} images/s · ETA {format_duration(r.eta_s)}")
        self.progress.setValue(int(1000 * done / max(total, 1)))
        self.chart.add_batch(r.epoch - 1 + r.batch / r.steps, r.loss)

    def show_phase(self, text: str) -> None:
        """What the run does after its epochs (measuring the model's trust), on the progress bar."""
        self.progress.setFormat(text)

    def show_phase_progress(self, percent: float) -> None:
        self.progress.setValue(int(10 * percent))

    def on_epoch(self, r) -> None:
        self.chart.add_epoch(r.epoch, r.to_json())
        self.log.appendPlainText(f"{epoch_summary(r.to_json(), r.epochs)}"
                                 f"  ({r.seconds:.1f} s, {r.images_per_s:,.0f} img/s)")

    def training_finished(self, result=None, error: str | None = None) -> None:
        """Say how the run ended (its buttons follow the state: ``show_state``)."""
        self.speed.clear()
        if error:
            self.progress.setFormat("Training failed")
            self.log.appendPlainText(f"Training failed: {' '.join(error.split())}")  # one line, after the run's
            return
        if result.cancelled:
            self.progress.setFormat("Stopped; the model trained so far is kept")
        else:
            self.progress.setValue(1000)
            note = f" (early stopping at epoch {result.history[-1]['epoch']})" if result.stopped_early else ""
            self.progress.setFormat(f"Done{note}")
        self.log.appendPlainText(result.stop_message)
        self.log.appendPlainText(self.kept_sentence(result))
        kept = result.best_epoch or self.chart.last_epoch()
        if kept is not None and self.chart.epoch_values(kept) is not None:
            self.chart.mark_best(kept, _shown_accuracy(self.chart.epoch_values(kept)))
        if result.chance_message:
            self.log.appendPlainText(f"Warning: {result.chance_message}")
            self.verdict.setText(result.chance_message)
            self.verdict.setVisible(True)

    def kept_sentence(self, result) -> str:
        """Which epoch's weights the model holds now, with the accuracy that epoch had (the run's log line)."""
        if result.cancelled:
            return _stopped_kept_sentence(self.chart, self._last_batch)
        kept = result.best_epoch or self.chart.last_epoch()
        row = self.chart.epoch_values(kept)
        if row is None:
            return result.kept_message
        if not result.kept_message:
            return f"Kept the weights of epoch {kept}: {_accuracy_phrase(row)}."
        if result.best_epoch is not None:
            return result.kept_message  # the trainer's sentence names the kept epoch, its accuracy and why
        # the last epoch's weights: the trainer's sentence says why; add that epoch's accuracy
        return f"{result.kept_message} Epoch {kept}: {_accuracy_phrase(row)}."

    def add_note(self, text: str) -> None:
        """A sentence from the trainer, e.g. which stopping rules apply to this run."""
        self.log.appendPlainText(text)

    def clear_run(self) -> None:
        """Show no run: an empty chart and log, and no progress or verdict of the run shown before."""
        self.chart.clear()
        self.log.clear()
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.verdict.clear()
        self.verdict.setVisible(False)

    def show_history(self, history: list[dict], best_epoch: int | None, batch_loss=(), kept_message: str = "") -> None:
        """Show a saved run as it was drawn while it trained (after opening a project or bringing one back):
        the epochs, the batch-loss line, each epoch's time and the kept epoch, said with ``kept_message`` (the
        sentence the run ended with) when there is one. How the run shown before ended (its progress, a failure,
        a verdict) goes."""
        self.clear_run()
        self.chart.set_epochs(max(len(history), 1))
        for x, loss in batch_loss:
            self.chart.add_batch(x, loss)
        for row in history:
            self.chart.add_epoch(row["epoch"], row)
            self.log.appendPlainText(epoch_summary(row) + _timing(row))
        if not history:
            return
        if note := unrecorded_note(history):
            self.log.appendPlainText(note)
        kept = best_epoch if self.chart.epoch_values(best_epoch) is not None else history[-1]["epoch"]
        row = self.chart.epoch_values(kept)
        self.chart.mark_best(kept, _shown_accuracy(row))
        if kept_message:
            self.log.appendPlainText(kept_message)
        elif kept == best_epoch:
            self.log.appendPlainText(f"Kept the weights of epoch {kept}: {_accuracy_phrase(row)}.")
        else:
            self.log.appendPlainText(f"The model holds the weights it had when training ended, after epoch {kept}: "
                                     f"{_accuracy_phrase(row)}.")


def _timing(row: dict) -> str:
    """"  (1.2 s, 480 img/s)" for a history row that recorded them (older projects did not)."""
    seconds, speed = row.get("seconds"), row.get("images_per_s")
    if seconds is None:
        return ""
    return f"  ({seconds:.1f} s, {speed:,.0f} img/s)" if speed else f"  ({seconds:.1f} s)"


def _stopped_kept_sentence(chart: TrainingChart, last_batch) -> str:
    """What a stopped run keeps: the weights after the last complete epoch plus the batches trained since.

    Stop takes effect after the current batch, so the weights are those of the
    last complete epoch (whose validation figures the chart shows) trained
    further on part of the next epoch, which has no validation figures.
    """
    last_epoch = chart.last_epoch()
    partial = ""
    if last_batch is not None and (last_epoch is None or last_batch.epoch > last_epoch):
        partial = f"{last_batch.batch} of {last_batch.steps} batches of epoch {last_batch.epoch}"
    if last_epoch is None:
        return (f"Kept the weights trained so far: {partial or 'part of the first epoch'}, "
                "before any epoch was complete (no validation figures yet).")
    after = f"epoch {last_epoch}, {_accuracy_phrase(chart.epoch_values(last_epoch))}"
    return f"Kept the weights trained so far: {after}" + (f", plus {partial}." if partial else ".")


def _accuracy_phrase(row: dict) -> str:
    """ "validation accuracy 0.700 (95 % interval 0.481–0.855, 20 images)", or the training accuracy when the run
    had no validation images."""
    if row.get("val_accuracy") is not None:
        return f"validation accuracy {val_accuracy_text(row)}"
    return f"training accuracy {row['accuracy']:.3f} (no validation images)"


def _shown_accuracy(row: dict) -> float | None:
    """The accuracy the kept-epoch marker sits on: validation, or training without validation."""
    acc = row.get("val_accuracy")
    return acc if acc is not None else row.get("accuracy")
